"""``mailsms serve --workers N``: N gateway processes on shared listeners and
one database, driven as a user runs them (a real process, smtplib, the
fake Twilio over HTTP, signals)."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email import policy
from pathlib import Path

import pytest

from mailsms import prefork
from mailsms.cli import EXIT_FAILURE, EXIT_USAGE
from tests.bench.procs import child_pids, free_port, free_ports
from tests.conftest import DOMAIN, SENDER
from tests.core.test_durability import run_cli, wait_port
from tests.core.test_smtp_gateway import simple_message
from tests.fakes.twilio import FakeTwilio

TIMEOUT = 20.0


def children(pid: int) -> set[int]:
    return set(child_pids(pid))


def gone(pid: int) -> bool:
    """Exited: no process, or only its zombie entry."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "zombie" in status.lower()


def wait_until(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def gateway_env(tmp_path: Path, smtp_port: int, http_port: int, **settings: str) -> dict[str, str]:
    """This environment without MAILSMS_* settings, plus the gateway's."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("MAILSMS_")},
        "MAILSMS_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}",
        "MAILSMS_SMTP_PORT": str(smtp_port),
        "MAILSMS_HTTP_PORT": str(http_port),
        **settings,
    }


def start_workers(
    tmp_path: Path, twilio: FakeTwilio, *args: str, **env: str
) -> tuple[subprocess.Popen[bytes], int, int]:
    smtp_port, http_port = free_ports(2)
    environment = gateway_env(
        tmp_path,
        smtp_port,
        http_port,
        MAILSMS_DOMAIN=DOMAIN,
        MAILSMS_CARRIER="twilio",
        MAILSMS_TWILIO_ACCOUNT_SID=twilio.account_sid,
        MAILSMS_TWILIO_AUTH_TOKEN=twilio.auth_token,
        MAILSMS_TWILIO_API_URL=twilio.url,
        MAILSMS_DEFAULT_FROM="+14155550100",
        MAILSMS_TRUSTED_NETWORKS="127.0.0.0/8",
        MAILSMS_DISPATCH_POLL_INTERVAL="0.05",
        # 40 texts to one phone in a second: the abuse limits would answer.
        MAILSMS_DESTINATION_PER_HOUR="0",
        MAILSMS_SENDER_RATE_PER_MINUTE="0",
        **env,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailsms", "serve", *args],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "gateway.log", "ab"),  # noqa: SIM115
    )
    wait_port(smtp_port, proc)
    return proc, smtp_port, http_port


def send(port: int, text: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail(SENDER)
        code, reply = client.rcpt(f"4155551212@{DOMAIN}")
        if code != 250:
            return code, reply
        return client.data(simple_message(text).as_bytes(policy=policy.SMTP))


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=TIMEOUT)


def test_two_workers_share_the_listeners_and_send_each_sms_once(
    tmp_path: Path, fake_twilio: FakeTwilio
) -> None:
    run_cli(tmp_path, "senders", "add", SENDER)
    proc, smtp_port, http_port = start_workers(tmp_path, fake_twilio, "--workers", "2")
    try:
        wait_until(lambda: len(children(proc.pid)) == 2, "two worker processes")
        workers = children(proc.pid)
        texts = [f"message {i}" for i in range(40)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            replies = list(pool.map(lambda t: send(smtp_port, t), texts))
        assert all(code == 250 for code, _ in replies), replies
        # One committed id per message, from both processes' group commits.
        ids = {re.search(rb"message (\d+)", reply)[1] for _, reply in replies}  # type: ignore[index]
        assert len(ids) == 40

        sent = fake_twilio.wait_for(40, timeout=TIMEOUT)
        time.sleep(0.5)  # time enough for a duplicate send to show up
        assert sorted(r.fields["Body"] for r in fake_twilio.requests) == sorted(texts)
        assert len(sent) == 40

        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=5) as r:
            assert r.status == 200
        assert children(proc.pid) == workers  # nobody died on the way
    finally:
        code = stop(proc)
    assert code == 0
    assert all(gone(pid) for pid in workers)
    log = (tmp_path / "gateway.log").read_text()
    assert "starting 2 workers" in log and "Traceback" not in log


def thread_cpus(pid: int) -> list[set[int]]:
    """The CPUs each thread of process ``pid`` may run on."""
    return [os.sched_getaffinity(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")]


@pytest.mark.parametrize("affinity", ["auto", "off"])
def test_each_worker_keeps_its_threads_on_one_cpu_unless_told_not_to(
    tmp_path: Path, fake_twilio: FakeTwilio, affinity: str
) -> None:
    allowed = os.sched_getaffinity(0)
    run_cli(tmp_path, "senders", "add", SENDER)
    proc, smtp_port, _ = start_workers(
        tmp_path, fake_twilio, MAILSMS_WORKERS="2", MAILSMS_WORKER_CPU_AFFINITY=affinity
    )
    try:
        wait_until(lambda: len(children(proc.pid)) == 2, "two worker processes")
        for i in range(4):  # every worker's database thread exists by now
            assert send(smtp_port, f"pinned {i}")[0] == 250
        placement = {pid: thread_cpus(pid) for pid in children(proc.pid)}
    finally:
        assert stop(proc) == 0
    log = (tmp_path / "gateway.log").read_text()
    for threads in placement.values():
        assert len(threads) >= 2  # the event loop and the database thread at least
    if affinity == "off" or len(allowed) < 2:
        assert all(cpus == allowed for threads in placement.values() for cpus in threads)
        assert "runs on CPU" not in log
        return
    first_two = sorted(allowed)[:2]
    used = []
    for threads in placement.values():
        [cpus] = {frozenset(c) for c in threads}  # all threads of a worker: one set
        assert len(cpus) == 1
        used.extend(cpus)
    assert sorted(used) == first_two  # one worker per CPU
    assert f"worker 0 runs on CPU {first_two[0]}" in log
    assert f"worker 1 runs on CPU {first_two[1]}" in log


def test_a_cpu_that_cannot_be_taken_leaves_the_worker_unpinned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(pid: int, cpus: object) -> None:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    assert prefork.pin_to_cpu(1) is None
    assert "worker 1 cannot be kept on CPU 1" in caplog.text


def test_a_killed_worker_is_replaced_and_the_service_keeps_accepting(
    tmp_path: Path, fake_twilio: FakeTwilio
) -> None:
    run_cli(tmp_path, "senders", "add", SENDER)
    proc, smtp_port, _ = start_workers(tmp_path, fake_twilio, MAILSMS_WORKERS="2")
    try:
        wait_until(lambda: len(children(proc.pid)) == 2, "two worker processes")
        victim = min(children(proc.pid))
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(children(proc.pid) - {victim}) == 2, "a replacement worker")
        for i in range(6):  # whichever worker the kernel picks answers
            code, _ = send(smtp_port, f"after the crash {i}")
            assert code == 250
        fake_twilio.wait_for(6, timeout=TIMEOUT)
    finally:
        assert stop(proc) == 0
    assert "exited unexpectedly" in (tmp_path / "gateway.log").read_text()


def test_workers_that_cannot_start_stop_the_service_with_an_error(
    tmp_path: Path, fake_twilio: FakeTwilio
) -> None:
    run_cli(tmp_path, "senders", "add", SENDER)
    smtp_port, http_port = free_ports(2)
    result = subprocess.run(
        [sys.executable, "-m", "mailsms", "serve", "--workers", "2"],
        # The DKIM pair is only checked when a gateway starts: in each worker.
        env=gateway_env(tmp_path, smtp_port, http_port, MAILSMS_DKIM_SELECTOR="s1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "DKIM signing needs both" in result.stderr
    assert "workers keep failing at start" in result.stderr
    assert "Traceback" not in result.stderr


def refused_at_start(env: dict[str, str], *args: str, status: int = EXIT_FAILURE) -> str:
    """Run ``mailsms serve *args``, which must stop at once with ``status``
    (1, or 2 for a setting that cannot work), one readable line and no
    worker started; its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "mailsms", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == status, (args, result.stderr[-2000:])
    assert "worker 0 started" not in result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_an_unreadable_relay_ca_file_is_one_line_before_any_worker_starts(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "relay-ca.pem"
    env = gateway_env(
        tmp_path, *free_ports(2), MAILSMS_MAIL_TRANSPORT="smtp", MAILSMS_RELAY_CA_FILE=str(missing)
    )
    for args in ((), ("--workers", "2")):
        stderr = refused_at_start(env, *args, status=EXIT_USAGE)
        assert (
            f"mailsms: invalid relay settings (MAILSMS_RELAY_*): cannot read the CA file {missing}"
            in stderr
        )


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "so_reuseport"])
def test_a_taken_port_is_one_line_before_any_worker_starts(
    tmp_path: Path, reuse_port: bool
) -> None:
    """Also when the other program listens with SO_REUSEPORT (another
    mailsms, say): the workers' own SO_REUSEPORT sockets could join it and
    silently share its connections."""
    with socket.socket() as taken:
        if reuse_port:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stderr = refused_at_start(gateway_env(tmp_path, port, free_port()), "--workers", "3")
    assert f"cannot listen for SMTP on 127.0.0.1:{port}" in stderr


def test_a_port_shared_by_two_listeners_is_one_line(tmp_path: Path) -> None:
    """SMTP and HTTP on one port: with SO_REUSEPORT both binds would succeed
    and the kernel would hand SMTP clients to the HTTP server."""
    [port] = free_ports(1)
    for args in ((), ("--workers", "2")):
        stderr = refused_at_start(gateway_env(tmp_path, port, port), *args)
        assert (
            f"MAILSMS_SMTP_PORT and MAILSMS_HTTP_PORT are both {port}: "
            "each listener needs a port of its own"
        ) in stderr


def test_workers_stop_when_the_supervisor_is_killed(
    tmp_path: Path, fake_twilio: FakeTwilio
) -> None:
    run_cli(tmp_path, "senders", "add", SENDER)
    proc, smtp_port, _ = start_workers(tmp_path, fake_twilio, "--workers", "2")
    wait_until(lambda: len(children(proc.pid)) == 2, "two worker processes")
    workers = children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)

    # No orphan keeps serving: the kernel tells each worker to stop.  (A
    # worker's main thread can show as a zombie while its other threads
    # still hold the sockets, so the port itself is the proof.)
    wait_until(lambda: all(gone(pid) for pid in workers), "the workers to exit")

    def refused() -> bool:
        with socket.socket() as probe:
            probe.settimeout(2)
            return probe.connect_ex(("127.0.0.1", smtp_port)) != 0

    wait_until(refused, "the SMTP port to close")


def test_connections_are_spread_over_the_workers(tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    """Kept-open connections (a relay's, a load generator's) reach every
    worker, not just the one whose event loop woke first (SO_REUSEPORT)."""
    proc, smtp_port, _ = start_workers(
        tmp_path, fake_twilio, "--workers", "2", MAILSMS_LOG_LEVEL="DEBUG"
    )
    clients: list[socket.socket] = []
    try:
        wait_until(lambda: len(children(proc.pid)) == 2, "two worker processes")
        workers = children(proc.pid)
        # A burst, as when a relay opens its connections: all are queued
        # before any worker accepts.  (All 16 on one worker by chance with
        # SO_REUSEPORT: 2 in 65,536.)
        for _ in range(16):
            clients.append(socket.create_connection(("127.0.0.1", smtp_port), timeout=10))
        for client in clients:
            assert client.recv(512).startswith(b"220"), "no greeting"
        ports = {c.getsockname()[1] for c in clients}

        def served_by() -> dict[int, int]:
            # aiosmtpd logs each connection's peer at DEBUG, with our pid.
            log = (tmp_path / "gateway.log").read_text(errors="replace")
            found = re.findall(r"\[(\d+)\] INFO mail\.log: Peer: \('127\.0\.0\.1', (\d+)\)", log)
            return {int(port): int(pid) for pid, port in found if int(port) in ports}

        wait_until(lambda: len(served_by()) == len(ports), "a log line per connection")
        assert set(served_by().values()) == workers
    finally:
        for client in clients:
            client.close()
        assert stop(proc) == 0
