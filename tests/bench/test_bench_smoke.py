"""Smoke test for the benchmark harness: tiny counts, SQLite only, so it
proves ``make bench`` still runs (and writes its JSON) without timing
anything.  Targets are not asserted here: timing belongs to ``make bench``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from tests.bench import loadgen
from tests.bench.procs import ROOT, Baseline


def test_harness_writes_rows(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench",
            "--smoke",
            "--rows",
            "accept,drain",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = {row["id"]: row for row in report["rows"]}
    for row_id in ("baseline", "accept_sqlite", "drain_20", "drain_200", "peak_rss"):
        assert rows[row_id]["value"] > 0, rows[row_id]
    assert rows["accept_sqlite"]["status"] in ("PASS", "FAIL")
    # Each accept run was paired with a baseline run just before it.
    accept = rows["accept_sqlite"]
    assert len(accept["paired_baseline_runs"]) == len(accept["runs"])
    assert all(rate > 0 for rate in accept["paired_baseline_runs"])
    assert accept["ratio"] == accept["paired_ratio"]
    assert rows["dispatch_cost"]["status"] in ("PASS", "FAIL")
    assert report["machine"]["nproc"] >= 1
    assert "| row |" in proc.stdout  # the table was printed


def test_builtin_load_generator() -> None:
    """The asyncio generator (used when smtp-source is missing) and the paced
    latency client, against the bare aiosmtpd baseline."""
    with Baseline() as server:
        blast = asyncio.run(
            loadgen.blast(
                "127.0.0.1", server.port, sessions=2, messages=10,
                sender="a@b.example", rcpt="1@c.example", size=1024,
            )
        )  # fmt: skip
        paced = asyncio.run(
            loadgen.paced(
                "127.0.0.1", server.port, rate=100, seconds=0.2, connections=2,
                sender="a@b.example", rcpt="1@c.example", size=1024,
            )
        )  # fmt: skip
    assert (blast.sent, blast.failed) == (10, 0)
    assert paced.failed == 0 and paced.sent == len(paced.latencies) >= 15
