"""Smoke test for the benchmark harness: tiny counts, SQLite only, so it
proves ``make bench`` still runs (and writes its JSON) without timing
anything.  Targets are not asserted here: timing belongs to ``make bench``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench import loadgen
from tests.bench.harness import cpu_budget_rows
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
            "accept,e2e,drain",
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
    for row_id in (
        "baseline", "baseline_durable", "accept_sqlite", "drain_20", "drain_200", "peak_rss",
    ):  # fmt: skip
        assert rows[row_id]["value"] > 0, rows[row_id]
    # The durable ceiling is compared with the bare server of the same run.
    durable = rows["baseline_durable"]
    assert durable["ratio"] == durable["value"] / rows["baseline"]["value"]
    assert rows["accept_sqlite"]["status"] in ("PASS", "FAIL")
    # Each accept run was paired with a baseline run just before it.
    accept = rows["accept_sqlite"]
    assert len(accept["paired_baseline_runs"]) == len(accept["runs"])
    assert all(rate > 0 for rate in accept["paired_baseline_runs"])
    assert accept["ratio"] == accept["paired_ratio"]
    assert rows["dispatch_cost"]["status"] in ("PASS", "FAIL")
    # Every throughput row says what a message cost in CPU, and the end to
    # end row is taken apart into it.
    for row_id in ("baseline", "accept_sqlite", "e2e_sqlite"):
        assert rows[row_id]["cpu_ms_per_msg"] > 0, rows[row_id]
    budget = rows["e2e_sqlite_cpu"]
    assert budget["value"] == rows["e2e_sqlite"]["cpu_ms_per_msg"]
    assert budget["allowed_cpu_ms"] > 0
    assert "accept only" in budget["label"] and "dispatch alone" in budget["label"]
    assert report["machine"]["nproc"] >= 1
    assert "| row |" in proc.stdout  # the table was printed


def test_cpu_budget_is_the_ratio_taken_apart() -> None:
    """A rate is CPUs over CPU per message: the row's allowance is the CPU
    per message at which the gateway's CPUs would give the target ratio."""
    rows = {
        "baseline": {"value": 4000.0, "cpu_ms_per_msg": 0.25, "cpu_cores": 1.0},
        "accept_sqlite": {"cpu_ms_per_msg": 0.5},
        "e2e_sqlite": {
            "value": 2000.0, "gateway_cpu_cores": 1.5, "cpu_ms_per_msg": 0.75,
            "cpu_ms_runs": [0.75],
        },
    }  # fmt: skip
    [budget] = cpu_budget_rows(rows, {"value": 0.25})
    # 1.5 CPUs at 0.75 ms is 2,000 msg/s, half of 1 CPU at 0.25 ms; 0.80x of
    # 4,000 msg/s on 1.5 CPUs leaves 1.5 / 3,200 s = 0.469 ms a message.
    assert budget["allowed_cpu_ms"] == pytest.approx(1.5 / 3200 * 1000)
    assert budget["ratio"] == pytest.approx(3.0)
    assert "accept only 0.500 + dispatch alone 0.250 ms" in budget["label"]
    assert "allows 0.469 ms" in budget["label"]
    # No PostgreSQL rows, no baseline CPU: nothing to take apart.
    assert cpu_budget_rows({"e2e_sqlite": rows["e2e_sqlite"]}, None) == []


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
