"""The README quick start, as a newcomer runs it: `mailsms serve` on the
embedded defaults, `mailsms senders add`, swaks, and the outbox."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.procs import free_ports
from tests.core.test_durability import wait_port


def swaks_path() -> str:
    found = shutil.which("swaks")
    if found is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("swaks (Debian package swaks) is required in CI")
        pytest.skip("swaks not installed (Debian package swaks; `make test` installs it as root)")
    return found


def test_readme_quick_start_with_swaks(tmp_path: Path) -> None:
    swaks = swaks_path()
    smtp_port, http_port = free_ports(2)
    # The embedded defaults, run from a fresh folder; only the ports differ
    # so the test never collides with a gateway a developer is running.
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAILSMS_")}
    env.update(MAILSMS_SMTP_PORT=str(smtp_port), MAILSMS_HTTP_PORT=str(http_port))
    cli = [sys.executable, "-m", "mailsms"]
    added = subprocess.run(
        [*cli, "senders", "add", "alice@corp.example"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    log = (tmp_path / "gateway.log").open("wb")
    server = subprocess.Popen([*cli, "serve"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        wait_port(smtp_port, server)
        sent = subprocess.run(
            [
                swaks,
                "--server",
                f"127.0.0.1:{smtp_port}",
                "--from",
                "alice@corp.example",
                "--to",
                "415-555-1212@sms.localhost",
                "--header",
                "Subject: hello",
                "--body",
                "Running late, see you at 8.",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "<-  250 2.0.0 OK: message 1, 1 SMS queued" in sent.stdout
        outbox = tmp_path / "outbox.jsonl"
        for _ in range(200):
            if outbox.exists() and outbox.read_text():
                break
            subprocess.run(["sleep", "0.05"], check=True)
        [record] = [json.loads(line) for line in outbox.read_text().splitlines()]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
    assert record["to"] == "+14155551212"
    assert record["text"] == "Running late, see you at 8."
    assert (tmp_path / "mailsms.db").exists()  # the default database, created on first use
