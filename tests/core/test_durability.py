"""A crash after 250 loses nothing: the gateway runs as a real process,
is killed with SIGKILL after accepting, and on restart sends exactly once."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.procs import free_ports
from tests.conftest import DOMAIN, SENDER, read_outbox
from tests.core.test_smtp_gateway import simple_message


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"gateway did not listen on {port}")


def start(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[bytes], int]:
    smtp_port, http_port = free_ports(2)
    environment = {
        **os.environ,
        "MAILSMS_DOMAIN": DOMAIN,
        "MAILSMS_SMTP_PORT": str(smtp_port),
        "MAILSMS_HTTP_PORT": str(http_port),
        "MAILSMS_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}",
        "MAILSMS_CONSOLE_OUTBOX": str(tmp_path / "outbox.jsonl"),
        "MAILSMS_DISPATCH_POLL_INTERVAL": "0.05",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailsms", "serve"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "gateway.log", "ab"),  # noqa: SIM115
    )
    wait_port(smtp_port, proc)
    return proc, smtp_port


def run_cli(tmp_path: Path, *args: str) -> None:
    env = {**os.environ, "MAILSMS_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}"}
    subprocess.run(
        [sys.executable, "-m", "mailsms", *args],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_killed_after_250_sends_exactly_once_after_restart(tmp_path: Path) -> None:
    run_cli(tmp_path, "senders", "add", SENDER)
    outbox = tmp_path / "outbox.jsonl"

    proc, port = start(tmp_path, MAILSMS_DISPATCHER_ENABLED="false")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.send_message(simple_message("survives a crash"))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert read_outbox(outbox) == []

    proc, port = start(tmp_path)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not read_outbox(outbox):
            time.sleep(0.05)
        time.sleep(0.5)  # time enough for a second (wrong) send to show up
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0

    records = read_outbox(outbox)
    assert [r["text"] for r in records] == ["survives a crash"]
    assert records[0]["to"] == "+14155551212"

    # A third start finds nothing left to send.
    proc, port = start(tmp_path)
    try:
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    assert len(read_outbox(outbox)) == 1
