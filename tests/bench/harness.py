"""``make bench`` / ``python -m tests.bench [--quick|--smoke]``.

Compares mailsms with the bare aiosmtpd ceiling on this machine, prints a
table (markdown) with PASS/FAIL against the targets, and writes the figures
as JSON (``tests/bench/results/latest.json`` unless ``--out``).  Exits 0
unless the harness itself crashed: targets are reported, not enforced.

Every figure is the median of ``--repeats`` runs; every gateway run is a
fresh ``python -m mailsms serve`` process on free 127.0.0.1 ports with a
fresh database (a temporary SQLite file, or a dropped and recreated
PostgreSQL schema).  The speed of a shared machine drifts within minutes,
so each run of a throughput row (accept, end to end) is paired with a run
of the bare baseline just before it, and the row's ratio is the median of
the pairs' ratios; the sweep pairs its rows the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.bench import loadgen
from tests.bench.procs import (
    CLK_TCK,
    PYTHON,
    ROOT,
    Baseline,
    FakeCarrier,
    GatewayProcess,
    mailsms_cli,
    mailsms_env,
)

SENDER = "alice@corp.example"
RCPT = "4155551212@sms.localhost"
FROM_NUMBER = "+14155550100"
BODY_BYTES = 1024
PG_DSN = "postgresql://{user}@127.0.0.1:5432/test"
PG_SCHEMA = "mailsms_bench"
RESULTS = Path(__file__).with_name("results")

TARGETS = {
    "accept_sqlite": 0.90,
    "e2e_sqlite": 0.80,
    "e2e_postgres": 0.70,
    "p99_ms": 25.0,
    "rss_mb": 150.0,
    "dispatch_cost_drift": 0.20,
}


@dataclass(frozen=True)
class Profile:
    name: str
    repeats: int = 3
    sessions: int = 20
    messages: int = 4000
    """Messages per run, the same for the bare baseline and every gateway
    row: a short run measures start-up more than the steady state."""
    latency_seconds: float = 5.0
    latency_connections: int = 50
    latency_rate: float | None = None
    """Fixed offered rate; None means half the measured baseline."""
    sweep: tuple[int, ...] = (1, 5, 20, 100)
    sweep_messages: int = 200
    drain_small: int = 1000
    drain_large: int = 100_000
    drain_seconds: float = 8.0
    postgres: bool = True
    workers: int = 1
    """MAILSMS_WORKERS of the gateway (main sets one per CPU by default)."""


PROFILES = {
    "full": Profile("full"),
    "quick": Profile(
        "quick",
        messages=1500,
        latency_seconds=3.0,
        sweep_messages=150,
        drain_seconds=5.0,
    ),
    "smoke": Profile(
        "smoke",
        repeats=1,
        sessions=4,
        messages=30,
        latency_seconds=0.5,
        latency_connections=4,
        latency_rate=40.0,
        sweep=(1, 4),
        sweep_messages=12,
        drain_small=20,
        drain_large=200,
        drain_seconds=0.5,
        postgres=False,
    ),
}


@dataclass(frozen=True)
class BaselineRun:
    """One run of the bare aiosmtpd server."""

    rate: float
    """Messages per second."""
    peak_rss_mb: float
    cpu_ms: float
    """CPU per message, in ms (the server's one thread)."""
    cores: float
    """CPUs the server kept busy: its CPU time over the run's length."""


# --- helpers ---------------------------------------------------------------
MIN_TICKS = 5
"""The least CPU time, in /proc's clock ticks (1/SC_CLK_TCK s each), a
drain window must span to be measured on its own: with the ticks, a
shorter one is mostly rounding; with the kernel's nanosecond counts
(procs.thread_cpu_seconds) it is a handful of SMS at most."""
SMALL_QUEUE = 10_000
"""A queue up to this size drains within a second or so: its drain is
sampled every 10 ms instead of every 100 ms."""


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    versions = {}
    for dist in ("aiosmtpd", "sqlalchemy", "sqlmodel", "psycopg", "httpx"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[dist] = version(dist)
    return {
        "git": _git_state(),
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
    }


def _git_state() -> str:
    """The commit measured, and whether mailsms/ had uncommitted changes
    (read-only git commands)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            timeout=10, check=False,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--", "mailsms"],
            cwd=ROOT, capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'no commit'}{' + uncommitted changes in mailsms/' if dirty else ''}"


class Bench:
    def __init__(self, profile: Profile, loadgen_kind: str, workdir: Path, pyspy: Path | None):
        self.p = profile
        self.workdir = workdir
        self.pyspy_dir = pyspy
        self.smtp_source = loadgen.find_smtp_source() if loadgen_kind != "python" else None
        if loadgen_kind == "smtp-source" and self.smtp_source is None:
            raise SystemExit("smtp-source not found (apt-get install postfix, or --loadgen python)")
        self.loadgen = "smtp-source" if self.smtp_source else "python-asyncio"
        self.carrier: FakeCarrier | None = None
        self.rows: list[dict[str, Any]] = []
        self._run = 0
        self._profiled: set[str] = set()

    # --- load -----------------------------------------------------------
    def load(self, port: int, sessions: int, messages: int) -> loadgen.LoadResult:
        timeout = 60 + messages * 0.05
        if self.smtp_source:
            result = loadgen.run_smtp_source(
                self.smtp_source,
                "127.0.0.1",
                port,
                sessions=sessions,
                messages=messages,
                sender=SENDER,
                rcpt=RCPT,
                size=BODY_BYTES,
                timeout=timeout,
            )
        else:
            result = asyncio.run(
                asyncio.wait_for(
                    loadgen.blast(
                        "127.0.0.1",
                        port,
                        sessions=sessions,
                        messages=messages,
                        sender=SENDER,
                        rcpt=RCPT,
                        size=BODY_BYTES,
                    ),
                    timeout,
                )
            )
        if result.failed:
            raise RuntimeError(f"load failed: {result.failed} refused: {result.errors}")
        return result

    def paced(self, port: int, rate: float) -> loadgen.LoadResult:
        seconds = self.p.latency_seconds
        return asyncio.run(
            asyncio.wait_for(
                loadgen.paced(
                    "127.0.0.1",
                    port,
                    rate=rate,
                    seconds=seconds,
                    connections=self.p.latency_connections,
                    sender=SENDER,
                    rcpt=RCPT,
                    size=BODY_BYTES,
                ),
                120 + seconds * 2,
            )
        )

    # --- databases and gateways ------------------------------------------
    def sqlite_url(self) -> str:
        self._run += 1
        folder = self.workdir / f"run{self._run}"
        folder.mkdir()
        return f"sqlite:///{folder / 'mailsms.db'}"

    def postgres_url(self) -> str:
        """A freshly recreated schema in database ``test`` (other users of that
        database are not touched); raises when PostgreSQL is unreachable."""
        import psycopg

        last: Exception | None = None
        for user in ("postgres", "root"):
            dsn = PG_DSN.format(user=user)
            try:
                with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
                    conn.execute(f"CREATE SCHEMA {PG_SCHEMA}")
                return f"{dsn}?options=-csearch_path%3D{PG_SCHEMA}"
            except Exception as exc:
                last = exc
        raise RuntimeError(f"{type(last).__name__}: {str(last).strip().splitlines()[0][:160]}")

    def drop_postgres(self) -> None:
        with contextlib.suppress(Exception):
            import psycopg

            for user in ("postgres", "root"):
                with psycopg.connect(
                    PG_DSN.format(user=user), connect_timeout=3, autocommit=True
                ) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
                    return

    def env(self, url: str, dispatcher: bool) -> dict[str, str]:
        carrier_url = self.carrier.url if self.carrier else "http://127.0.0.1:9"
        return mailsms_env(
            url,
            domain="sms.localhost",
            dispatcher_enabled=dispatcher,
            carrier="twilio",
            twilio_account_sid="AC" + "0" * 32,
            twilio_auth_token="bench-token",
            twilio_api_url=carrier_url,
            default_from=FROM_NUMBER,
            # The load comes from one sender over 127.0.0.1 at hundreds of
            # messages a second: trust the local relay and lift the abuse
            # limits (0 = unlimited), or the limits, not the speed, answer.
            # Unknown MAILSMS_* variables are ignored by older trees.
            sender_policy="trusted-relay",
            trusted_networks="127.0.0.0/8,::1",
            sender_rate_per_minute=0,
            sender_daily_quota=0,
            destination_per_hour=0,
            workers=self.p.workers,
        )

    @contextlib.contextmanager
    def gateway(self, url: str, dispatcher: bool, tag: str) -> Iterator[GatewayProcess]:
        env = self.env(url, dispatcher)
        mailsms_cli(env, "senders", "add", SENDER)
        log_path = self.workdir / f"gateway-{self._run}-{tag}.log"
        gw = GatewayProcess(env, log_path)
        try:
            with self.maybe_profile(gw.pid, tag):
                yield gw
        finally:
            gw.stop()

    @contextlib.contextmanager
    def maybe_profile(self, pid: int, tag: str) -> Iterator[None]:
        """With --pyspy DIR: record the gateway's first run of each kind."""
        pyspy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
        if self.pyspy_dir is None or tag in self._profiled or not os.access(pyspy, os.X_OK):
            yield
            return
        self._profiled.add(tag)
        self.pyspy_dir.mkdir(parents=True, exist_ok=True)
        out = self.pyspy_dir / f"{tag}.folded"
        proc = subprocess.Popen(
            [pyspy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
             "--threads", "--subprocesses", "--nonblocking", "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)
        try:
            yield
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log(f"py-spy profile of {tag}: {out}")

    # --- row builders -----------------------------------------------------
    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        self.rows.append(row)
        return row

    def baseline_once(self, durable: bool = False) -> BaselineRun:
        """One run of the bare server (``durable``: the one that fsyncs)."""
        with Baseline(durable) as srv:
            cpu0 = srv.fine_cpu()
            result = self.load(srv.port, self.p.sessions, self.p.messages)
            cpu = srv.fine_cpu() - cpu0
            return BaselineRun(
                rate=self.p.messages / result.seconds,
                peak_rss_mb=srv.peak_rss_mib() * 1.048576,
                cpu_ms=cpu * 1000 / self.p.messages,
                cores=cpu / result.seconds,
            )

    def measure_baseline(self, durable: bool = False) -> dict[str, Any]:
        """The bare server's row; ``durable``: the durable ceiling's (not a
        target row: the bare server putting each message on disk, with a
        group-committed fsync, before its 250; the most any durable
        aiosmtpd-based gateway can do here)."""
        row_id = "baseline_durable" if durable else "baseline"
        runs = [self.baseline_once(durable) for _ in range(self.p.repeats)]
        for i, run in enumerate(runs, 1):
            log(f"{row_id} run {i}: {run.rate:.0f} msg/s, {run.cpu_ms:.3f} CPU ms/msg")
        what = "fsync before each 250, group-committed" if durable else "250 only"
        return self.add(
            {
                "id": row_id,
                "label": f"bare aiosmtpd, {what} ({self.p.sessions} sessions)",
                "unit": "msg/s",
                "runs": [run.rate for run in runs],
                "value": median([run.rate for run in runs]),
                "cpu_ms_per_msg": median([run.cpu_ms for run in runs]),
                "cpu_cores": median([run.cores for run in runs]),
                "peak_rss_mb": max(run.peak_rss_mb for run in runs),
            }
        )

    def measure_mailsms(self, row_id: str, label: str, db: str, dispatcher: bool) -> dict[str, Any]:
        messages = self.p.messages  # as many as the baseline runs paired with these
        runs, accept_runs, rss, cpu, cpu_ms, paired = [], [], [], [], [], []
        for i in range(self.p.repeats):
            # The machine's speed drifts within minutes: each run is paired
            # with a baseline run just before it, and the row's ratio is the
            # median of the pairs' ratios (see judge).
            paired.append(self.baseline_once().rate)
            url = self.sqlite_url() if db == "sqlite" else self.postgres_url()
            with self.gateway(url, dispatcher, row_id) as gw:
                if self.carrier:
                    self.carrier.reset()
                cpu0 = gw.cpu()
                t0 = time.time()
                result = self.load(gw.smtp_port, self.p.sessions, messages)
                accept_rate = messages / result.seconds
                accept_runs.append(accept_rate)
                if dispatcher:
                    assert self.carrier is not None
                    stats = self.carrier.wait_count(messages, timeout=60 + messages * 0.1)
                    if stats["count"] < messages:
                        raise RuntimeError(
                            f"carrier got {stats['count']} of {messages} SMS (see {gw.log_path})"
                        )
                    elapsed = stats["last"] - t0
                else:
                    elapsed = result.seconds
                used = gw.cpu() - cpu0
                cpu.append(used / elapsed)
                cpu_ms.append(used * 1000 / messages)
                runs.append(messages / elapsed)
                rss.append(gw.peak_rss_mib() * 1.048576)
            log(
                f"{row_id} run {i + 1}: {runs[-1]:.0f} msg/s (accept {accept_rate:.0f} msg/s; "
                f"baseline just before: {paired[-1]:.0f} msg/s)"
            )
        return self.add(
            {
                "id": row_id,
                "label": label,
                "unit": "msg/s",
                "runs": runs,
                "value": median(runs),
                "accept_msg_s": median(accept_runs),
                "gateway_cpu_cores": median(cpu),
                "cpu_ms_per_msg": median(cpu_ms),
                "cpu_ms_runs": cpu_ms,
                "peak_rss_mb": max(rss),
                "paired_baseline_runs": paired,
                "paired_ratio": median([r / b for r, b in zip(runs, paired, strict=True)]),
            }
        )

    def measure_latency(
        self, rate: float, configs: list[tuple[str, str, bool | str]] | None = None
    ) -> None:
        """p50/p99 at ``rate``; each config is (row id, label, what serves):
        ``"bare"`` or ``"durable"`` for the bare servers, or whether the
        gateway's dispatcher runs."""
        if configs is None:
            configs = [
                ("latency_baseline", "accept latency, bare aiosmtpd", "bare"),
                (
                    "latency_baseline_durable",
                    "accept latency, bare aiosmtpd + group-committed fsync",
                    "durable",
                ),
                ("latency_accept", "accept latency, mailsms SQLite, dispatcher off", False),
                (
                    "latency_e2e",
                    "accept latency, mailsms SQLite, dispatcher on (full gateway)",
                    True,
                ),
            ]
        for row_id, label, server in configs:
            p50s, p99s, maxes, late, achieved = [], [], [], [], []
            for _ in range(self.p.repeats):
                if isinstance(server, str):
                    with Baseline(durable=server == "durable") as srv:
                        result = self.paced(srv.port, rate)
                else:
                    with self.gateway(self.sqlite_url(), server, row_id) as gw:
                        result = self.paced(gw.smtp_port, rate)
                if result.failed:
                    raise RuntimeError(f"{row_id}: {result.failed} refused: {result.errors}")
                ms = [x * 1000 for x in result.latencies]
                p50s.append(percentile(ms, 0.50))
                p99s.append(percentile(ms, 0.99))
                maxes.append(max(ms))
                late.append(result.late)
                achieved.append(result.sent / result.seconds)
            log(f"{row_id}: p50 {median(p50s):.2f} ms, p99 {median(p99s):.2f} ms")
            self.add(
                {
                    "id": row_id,
                    "label": f"{label} @ {rate:.0f} msg/s offered",
                    "unit": "ms p99",
                    "runs": p99s,
                    "value": median(p99s),
                    "p50_ms": median(p50s),
                    "max_ms": median(maxes),
                    "offered_msg_s": rate,
                    "achieved_msg_s": median(achieved),
                    "late_starts": median(late),
                }
            )

    def measure_sweep(self) -> None:
        base: dict[int, list[float]] = {s: [] for s in self.p.sweep}
        gate: dict[int, list[float]] = {s: [] for s in self.p.sweep}
        for _ in range(self.p.repeats):
            with Baseline() as srv:
                for s in self.p.sweep:
                    result = self.load(srv.port, s, max(self.p.sweep_messages, s))
                    base[s].append(result.sent / result.seconds)
            with self.gateway(self.sqlite_url(), False, "sweep") as gw:
                for s in self.p.sweep:
                    result = self.load(gw.smtp_port, s, max(self.p.sweep_messages, s))
                    gate[s].append(result.sent / result.seconds)
        for s in self.p.sweep:
            log(
                f"sweep {s} sessions: baseline {median(base[s]):.0f}, mailsms {median(gate[s]):.0f}"
            )
            self.add(
                {
                    "id": f"sweep_{s}",
                    "label": f"accept only, SQLite, {s} session{'s' if s > 1 else ''}",
                    "unit": "msg/s",
                    "runs": gate[s],
                    "value": median(gate[s]),
                    "baseline_value": median(base[s]),
                    "baseline_runs": base[s],
                }
            )

    # --- the drain rows (queue size vs dispatch cost, RSS) ----------------
    def prefill(self, url: str, count: int) -> None:
        """Queue ``count`` due SMS (one email each) with bulk Core inserts."""
        from sqlalchemy import insert

        from mailsms.store import make_engine, migrate
        from mailsms.store.models import InboundEmail, OutboundSms, SmsEvent

        engine = make_engine(url)
        migrate(engine)
        now = datetime.now(UTC) - timedelta(minutes=1)
        deadline = now + timedelta(hours=48)
        text = "1" + "X" * 150
        chunk = 20_000
        try:
            with engine.begin() as conn:
                for start in range(1, count + 1, chunk):
                    ids = range(start, min(count, start + chunk - 1) + 1)
                    conn.execute(
                        insert(InboundEmail.__table__),  # type: ignore[attr-defined]
                        [
                            {
                                "id": i, "message_id": f"<prefill.{i}@bench>",
                                "mail_from": SENDER, "from_address": SENDER, "subject": "bench",
                                "received_at": now, "peer": "127.0.0.1:1", "size": 1200,
                                "recipients": 1, "disposition": "queued",
                            }
                            for i in ids
                        ],
                    )  # fmt: skip
                    conn.execute(
                        insert(OutboundSms.__table__),  # type: ignore[attr-defined]
                        [
                            {
                                "id": i, "uid": f"{i:032x}", "email_id": i, "sender": SENDER,
                                "to_number": "+14155551212", "from_number": FROM_NUMBER,
                                "text": text, "encoding": "GSM-7", "segments": 1,
                                "status": "queued", "attempts": 0, "next_attempt_at": now,
                                "deadline_at": deadline, "created_at": now, "updated_at": now,
                            }
                            for i in ids
                        ],
                    )  # fmt: skip
                    conn.execute(
                        insert(SmsEvent.__table__),  # type: ignore[attr-defined]
                        [{"sms_id": i, "status": "queued", "at": now} for i in ids],
                    )
            if engine.dialect.name == "sqlite":
                with engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            engine.dispose()

    def drain(self, queued: int, template: Path | None) -> dict[str, Any]:
        """Start a gateway over ``queued`` due SMS and watch it dispatch."""
        assert self.carrier is not None
        url = self.sqlite_url()
        db = Path(url.removeprefix("sqlite:///"))
        env = self.env(url, True)
        if template is not None:
            shutil.copyfile(template, db)
        else:
            self.prefill(url, queued)
        self.carrier.reset()
        warm = max(1, min(100, queued // 10))
        # The window also ends before the queue runs dry: at its end the
        # claims find fewer SMS than there are free slots and the hand-overs
        # in flight thin out, which costs more per SMS.  The large queue's
        # window never gets there, so comparing the small one's with it
        # compared a full queue with one running out (1,000 queued used to
        # cost 6-25% more than 100,000, more than the depth explains).
        full = queued - warm
        spawned = time.monotonic()
        gw = GatewayProcess(env, self.workdir / f"gateway-{self._run}-drain{queued}.log")
        samples: list[tuple[float, int, float, float]] = []
        try:
            with self.maybe_profile(gw.pid, f"drain{queued}"):
                deadline = time.monotonic() + self.p.drain_seconds + 60
                window_end: float | None = None
                while time.monotonic() < deadline:
                    count = self.carrier.stats()["count"]
                    samples.append((time.monotonic(), count, gw.fine_cpu(), gw.rss_mib()))
                    if count >= warm and window_end is None:
                        window_end = time.monotonic() + self.p.drain_seconds
                    if count >= full or (window_end and time.monotonic() >= window_end):
                        break
                    # 1,000 SMS drain in about 0.1 s: sampled every 100 ms,
                    # the window after the first 100 was often no window
                    # at all, and the figure fell back to the whole run,
                    # start-up included (0.88 instead of 0.15 ms per SMS).
                    time.sleep(0.01 if queued <= SMALL_QUEUE else 0.1)
                peak = gw.peak_rss_mib() * 1.048576
        finally:
            gw.stop()
        start = next((s for s in samples if s[1] >= warm), samples[0])
        end = samples[-1]
        if end[1] - start[1] <= 0 or end[2] - start[2] < MIN_TICKS / CLK_TCK:
            # A queue this small drained before the first sample, or within
            # too few of the kernel's CPU clock ticks to measure (smoke
            # counts; a window of 0 ticks once read as 0 ms per SMS):
            # measure from the spawn, start-up included.
            start = (spawned, 0, 0.0, 0.0)
        dcount = end[1] - start[1]
        if dcount <= 0:
            raise RuntimeError(f"nothing dispatched from a queue of {queued}")
        return {
            "wall_ms": (end[0] - start[0]) * 1000 / dcount,
            "cpu_ms": (end[2] - start[2]) * 1000 / dcount,
            "msg_s": dcount / (end[0] - start[0]),
            "dispatched": dcount,
            "peak_rss_mb": peak,
            "max_sampled_rss_mb": max(s[3] for s in samples) * 1.048576,
        }

    def measure_drain(self) -> None:
        """Each repeat drains the small queue, then the large one: the host's
        speed drifts within minutes, and all the small runs before all the
        large ones put that drift into their comparison (the pairs' median
        is the dispatch_cost row, as the baseline's pairs are the ratios)."""
        sizes = (self.p.drain_small, self.p.drain_large)
        templates: dict[int, Path] = {}
        for queued in sizes:
            log(f"drain: pre-filling {queued} queued SMS")
            t0 = time.monotonic()
            template_url = self.sqlite_url()
            self.prefill(template_url, queued)
            templates[queued] = Path(template_url.removeprefix("sqlite:///"))
            log(f"drain: pre-filled in {time.monotonic() - t0:.1f}s")
        results: dict[int, list[dict[str, Any]]] = {queued: [] for queued in sizes}
        for _ in range(self.p.repeats):
            for queued in sizes:
                results[queued].append(self.drain(queued, templates[queued]))
                r = results[queued][-1]
                log(
                    f"drain {queued}: {r['msg_s']:.0f} msg/s, {r['cpu_ms']:.2f} CPU ms/msg, "
                    f"peak RSS {r['peak_rss_mb']:.0f} MB"
                )
        for queued, runs in results.items():
            self.add(
                {
                    "id": f"drain_{queued}",
                    "label": f"dispatch with {queued:,} queued (SQLite, fake carrier)",
                    "unit": "CPU ms/msg",
                    "runs": [r["cpu_ms"] for r in runs],
                    "value": median([r["cpu_ms"] for r in runs]),
                    "wall_ms_per_msg": median([r["wall_ms"] for r in runs]),
                    "msg_s": median([r["msg_s"] for r in runs]),
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                }
            )

    # --- everything -------------------------------------------------------
    def run_all(self, rows: set[str]) -> None:
        with FakeCarrier() as carrier:
            self.carrier = carrier
            base = self.measure_baseline()
            if "accept" in rows:
                self.measure_baseline(durable=True)
                self.measure_mailsms(
                    "accept_sqlite", "mailsms accept only, SQLite durable (WAL, FULL)",
                    "sqlite", False,
                )  # fmt: skip
            if "e2e" in rows:
                self.measure_mailsms(
                    "e2e_sqlite", "mailsms end to end, SQLite, fake Twilio",
                    "sqlite", True,
                )  # fmt: skip
            if "postgres" in rows:
                self.postgres_rows()
            if "latency" in rows:
                rate = self.p.latency_rate or (base["value"] / 2)
                self.measure_latency(rate)
                accept = next((r for r in self.rows if r["id"] == "accept_sqlite"), None)
                if accept is not None and not self.p.latency_rate:
                    # Not a target row: the latency a user sees when the
                    # gateway is not overloaded (half its own accept rate).
                    self.measure_latency(
                        accept["value"] / 2,
                        [
                            (
                                "latency_within_capacity",
                                "accept latency, mailsms SQLite, dispatcher off, at half "
                                "its own accept rate",
                                False,
                            )
                        ],
                    )
            if "sweep" in rows:
                self.measure_sweep()
            if "drain" in rows:
                self.measure_drain()

    def postgres_rows(self) -> None:
        labels = {
            "accept_postgres": "mailsms accept only, PostgreSQL",
            "e2e_postgres": "mailsms end to end, PostgreSQL, fake Twilio",
        }
        reason = None
        if not self.p.postgres:
            reason = "disabled for this profile (--no-postgres or --smoke)"
        else:
            try:
                self.postgres_url()
            except Exception as exc:
                reason = f"PostgreSQL not reachable on 127.0.0.1:5432: {exc}"
        if reason:
            for row_id, label in labels.items():
                self.add({"id": row_id, "label": label, "unit": "msg/s", "skipped": reason})
            return
        try:
            self.measure_mailsms("accept_postgres", labels["accept_postgres"], "postgres", False)
            self.measure_mailsms("e2e_postgres", labels["e2e_postgres"], "postgres", True)
        finally:
            self.drop_postgres()


# --- verdicts and output -------------------------------------------------------
def judge(rows: list[dict[str, Any]]) -> None:
    """Add ``ratio``, ``target`` and ``status`` to every row."""
    by_id = {row["id"]: row for row in rows}
    base = by_id.get("baseline", {}).get("value")
    base_rss = by_id.get("baseline", {}).get("peak_rss_mb")
    for row in rows:
        row.setdefault("status", "-")
        row.setdefault("target", "")
        if row.get("skipped"):
            row["status"] = "SKIP"
            continue
        rid, value = row["id"], row.get("value")
        if value is None:
            continue
        if rid.startswith(("accept_", "e2e_")) and row.get("paired_ratio"):
            # Each run against the baseline run just before it.
            row["ratio"] = row["paired_ratio"]
        elif rid.startswith(("accept_", "e2e_")) and base:
            row["ratio"] = value / base
        elif rid.startswith("sweep_") and row.get("baseline_value"):
            row["ratio"] = value / row["baseline_value"]
        elif rid.startswith("latency_") and rid != "latency_baseline":
            ref = by_id.get("latency_baseline", {}).get("value")
            row["ratio"] = value / ref if ref else None
        elif rid == "baseline":
            row["ratio"] = 1.0
        elif rid == "baseline_durable" and base:
            row["ratio"] = value / base
        goal = {
            "accept_sqlite": TARGETS["accept_sqlite"],
            "e2e_sqlite": TARGETS["e2e_sqlite"],
            "e2e_postgres": TARGETS["e2e_postgres"],
        }.get(rid)
        if goal is not None and "ratio" in row:
            row["target"] = f">= {goal:.2f} x baseline"
            row["status"] = "PASS" if row["ratio"] >= goal else "FAIL"
        if rid in ("latency_accept", "latency_e2e"):
            row["target"] = f"p99 <= {TARGETS['p99_ms']:g} ms"
            row["status"] = "PASS" if value <= TARGETS["p99_ms"] else "FAIL"
    # peak RSS: one row over every gateway run, and the drain of the big queue
    rss_rows = [r for r in rows if r.get("peak_rss_mb") and not r["id"].startswith("baseline")]
    if rss_rows:
        worst = max(rss_rows, key=lambda r: r["peak_rss_mb"])
        rows.append(
            {
                "id": "peak_rss",
                "label": f"gateway peak RSS (VmHWM), worst run: {worst['id']}",
                "unit": "MB",
                "value": worst["peak_rss_mb"],
                "runs": [r["peak_rss_mb"] for r in rss_rows],
                "ratio": worst["peak_rss_mb"] / base_rss if base_rss else None,
                "target": f"<= {TARGETS['rss_mb']:g} MB",
                "status": "PASS" if worst["peak_rss_mb"] <= TARGETS["rss_mb"] else "FAIL",
            }
        )
    drains = sorted(
        (r for r in rows if r["id"].startswith("drain_") and r.get("value")),
        key=lambda r: int(r["id"].split("_")[1]),
    )
    rows.extend(cpu_budget_rows(by_id, drains[0] if drains else None))
    if len(drains) == 2:
        small, large = drains
        # Each repeat ran a small drain and then a large one (measure_drain):
        # the median of those pairs' changes, as the baseline's pairs.
        drift = median([b / a - 1 for a, b in zip(small["runs"], large["runs"], strict=True)])
        assert drift is not None
        rows.append(
            {
                "id": "dispatch_cost",
                "label": f"dispatch CPU cost/msg, {large['id'][6:]} vs {small['id'][6:]} queued",
                "unit": "change",
                "value": drift,
                "wall_change": large["wall_ms_per_msg"] / small["wall_ms_per_msg"] - 1,
                "target": f"within ±{TARGETS['dispatch_cost_drift']:.0%}",
                "status": "PASS" if abs(drift) <= TARGETS["dispatch_cost_drift"] else "FAIL",
            }
        )


def cpu_budget_rows(
    by_id: dict[str, dict[str, Any]], drain: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """What each end-to-end ratio is made of, in CPU.

    A rate is the CPUs kept busy over the CPU one message costs, so an
    end-to-end row's ratio to the baseline is exactly
    (gateway's CPUs / baseline's CPUs) x (baseline's CPU per message /
    gateway's CPU per message).  From the CPUs the gateway got in that row
    follows the CPU per message its target allows; the accept-only row and
    the smaller queue's drain (SQLite) show which part of the message costs
    what.  Informational rows: the targets are judged on the ratios."""
    base = by_id.get("baseline", {})
    base_cpu, base_cores = base.get("cpu_ms_per_msg"), base.get("cpu_cores")
    if not base_cpu or not base_cores:
        return []
    added = []
    for db, name in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        e2e, accept = by_id.get(f"e2e_{db}"), by_id.get(f"accept_{db}")
        if not e2e or not e2e.get("cpu_ms_per_msg"):
            continue
        goal = TARGETS[f"e2e_{db}"]
        allowed = e2e["gateway_cpu_cores"] / base_cores * base_cpu / goal
        parts = []
        if accept and accept.get("cpu_ms_per_msg"):
            parts.append(f"accept only {accept['cpu_ms_per_msg']:.3f}")
        if drain is not None and db == "sqlite":
            parts.append(f"dispatch alone {drain['value']:.3f}")
        made_of = f" ({' + '.join(parts)} ms)" if parts else ""
        added.append(
            {
                "id": f"e2e_{db}_cpu",
                "label": (
                    f"CPU per message end to end, {name}{made_of}, against the bare "
                    f"server's {base_cpu:.3f} ms on {base_cores:.2f} CPUs; at the "
                    f"{e2e['gateway_cpu_cores']:.2f} CPUs the gateway got, {goal:.2f}x "
                    f"allows {allowed:.3f} ms"
                ),
                "unit": "CPU ms/msg",
                "runs": e2e["cpu_ms_runs"],
                "value": e2e["cpu_ms_per_msg"],
                "ratio": e2e["cpu_ms_per_msg"] / base_cpu,
                "allowed_cpu_ms": allowed,
            }
        )
    return added


def fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "change":
        return f"{value:+.0%}"
    if unit in ("msg/s",):
        return f"{value:,.0f}"
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


def _paired(row: dict[str, Any]) -> str:
    runs = row.get("paired_baseline_runs")
    if not runs:
        return ""
    return "; baseline runs just before: " + ", ".join(f"{v:,.0f}" for v in runs)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| row | value | unit | runs | vs baseline | target | result |",
        "|---|---:|---|---|---:|---|---|",
    ]
    for row in rows:
        if row.get("skipped"):
            lines.append(f"| {row['label']} | - | | | | | SKIP: {row['skipped']} |")
            continue
        unit = row.get("unit", "")
        runs = ", ".join(fmt(v, unit) for v in row.get("runs", []) if unit != "change")
        extra = ""
        if row["id"].startswith("latency"):
            extra = f" (p50 {row['p50_ms']:.2f} ms, max {row['max_ms']:.1f} ms)"
        elif row["id"].startswith("e2e") and "accept_msg_s" in row:
            extra = (
                f" (accept {row['accept_msg_s']:,.0f} msg/s, {row['gateway_cpu_cores']:.2f} cores,"
                f" {row['cpu_ms_per_msg']:.3f} CPU ms/msg{_paired(row)})"
            )
        elif row["id"].startswith("accept"):
            extra = (
                f" ({row['gateway_cpu_cores']:.2f} cores, {row['cpu_ms_per_msg']:.3f} CPU ms/msg"
                f"{_paired(row)})"
            )
        elif row["id"] in ("baseline", "baseline_durable"):
            extra = f" ({row['cpu_cores']:.2f} cores, {row['cpu_ms_per_msg']:.3f} CPU ms/msg)"
        elif row["id"].startswith("drain"):
            extra = f" ({row['msg_s']:,.0f} msg/s, {row['wall_ms_per_msg']:.2f} wall ms/msg)"
        elif row["id"] == "dispatch_cost":
            extra = f" (wall {row['wall_change']:+.0%})"
        ratio = row.get("ratio")
        ratio_s = f"{ratio:.2f}x" if isinstance(ratio, float) else "-"
        lines.append(
            f"| {row['label']}{extra} | {fmt(row.get('value'), unit)} | {unit} | {runs} "
            f"| {ratio_s} | {row.get('target', '')} | {row.get('status', '-')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench", description=__doc__.split("\n")[0]
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="smaller counts (~2 min)")
    group.add_argument("--smoke", action="store_true", help="tiny counts, SQLite only (seconds)")
    parser.add_argument("--repeats", type=int, help="runs per row (median taken)")
    parser.add_argument("--sessions", type=int, help="concurrent SMTP sessions for the main rows")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1,
        help="gateway processes (MAILSMS_WORKERS); default: one per CPU",
    )  # fmt: skip
    parser.add_argument(
        "--loadgen", choices=("auto", "smtp-source", "python"), default="auto",
        help="load generator: smtp-source when installed (auto), or the asyncio one",
    )  # fmt: skip
    parser.add_argument(
        "--rows", default="accept,e2e,postgres,latency,sweep,drain",
        help="comma-separated subset of accept,e2e,postgres,latency,sweep,drain "
        "(the baseline always runs)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--pyspy", type=Path, help="record py-spy profiles (folded) into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (gateway logs)")
    parser.add_argument(
        "--mailsms-src", type=Path,
        help="run the gateway from another source tree (a folder holding mailsms/, e.g. "
        "`git archive HEAD mailsms | tar -x -C DIR`, or a branch's worktree) to A/B a change",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.mailsms_src:
        src = args.mailsms_src.resolve()
        if not (src / "mailsms" / "__init__.py").is_file():
            parser.error(f"{src} holds no mailsms/ package")
        # Children (gateway, CLI) and this process (pre-fill) import it first.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p
        )
        sys.path.insert(0, str(src))

    profile = PROFILES["quick" if args.quick else "smoke" if args.smoke else "full"]
    if args.repeats:
        profile = replace(profile, repeats=args.repeats)
    if args.sessions:
        profile = replace(profile, sessions=args.sessions)
    if args.no_postgres:
        profile = replace(profile, postgres=False)
    profile = replace(profile, workers=max(1, args.workers))
    rows = {r.strip() for r in args.rows.split(",") if r.strip()}

    workdir = Path(tempfile.mkdtemp(prefix="mailsms-bench-"))
    started = time.monotonic()
    try:
        bench = Bench(profile, args.loadgen, workdir, args.pyspy)
        log(f"profile {profile.name}, load generator {bench.loadgen}, work dir {workdir}")
        bench.run_all(rows)
    except BaseException:
        traceback.print_exc()
        log(f"bench crashed; gateway logs kept in {workdir}")
        return 1
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)

    judge(bench.rows)
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "command": "python -m tests.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "profile": asdict(profile),
        "load_generator": bench.loadgen,
        "mailsms_src": str(args.mailsms_src.resolve()) if args.mailsms_src else str(ROOT),
        "message": {"body_bytes": BODY_BYTES, "sender": SENDER, "recipient": RCPT},
        "targets": TARGETS,
        "machine": machine(),
        "rows": bench.rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print()
    print(table(bench.rows))
    print()
    m = report["machine"]
    print(
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB; "
        f"load generator: {bench.loadgen}; gateway workers: {profile.workers}; "
        f"{profile.repeats} runs per row (median); "
        f"{report['duration_s']}s in all; JSON: {args.out}"
    )
    return 0
