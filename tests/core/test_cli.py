"""The mailsms command line, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailsms.cli import app


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("MAILSMS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    return CliRunner()


def test_senders_add_list_remove(cli: CliRunner) -> None:
    added = cli.invoke(app, ["senders", "add", "Alice@Corp.Example"])
    assert added.exit_code == 0, added.output
    assert "registered alice@corp.example" in added.output
    domain = cli.invoke(app, ["senders", "add", "@Partner.Example"])
    assert domain.exit_code == 0 and "@partner.example" in domain.output

    listed = cli.invoke(app, ["senders", "list", "--json"])
    assert listed.exit_code == 0
    assert [s["address"] for s in json.loads(listed.output)] == [
        "@partner.example",
        "alice@corp.example",
    ]
    table = cli.invoke(app, ["senders", "list"])
    assert "alice@corp.example" in table.output

    removed = cli.invoke(app, ["senders", "remove", "alice@corp.example"])
    assert removed.exit_code == 0
    listed = cli.invoke(app, ["senders", "list", "--json"])
    assert [s["address"] for s in json.loads(listed.output)] == ["@partner.example"]


@pytest.mark.parametrize("bad", ["not-an-email", "alice@", "@", "a@b@c", "@bad_domain!"])
def test_bad_sender_address_exits_2_with_a_message(cli: CliRunner, bad: str) -> None:
    result = cli.invoke(app, ["senders", "add", bad])
    assert result.exit_code == 2
    assert "is not a valid" in result.output
    assert "Traceback" not in result.output


def test_duplicate_and_unknown_sender(cli: CliRunner) -> None:
    assert cli.invoke(app, ["senders", "add", "a@corp.example"]).exit_code == 0
    again = cli.invoke(app, ["senders", "add", "a@corp.example"])
    assert again.exit_code == 2 and "already registered" in again.output
    missing = cli.invoke(app, ["senders", "remove", "b@corp.example"])
    assert missing.exit_code == 2 and "is not registered" in missing.output


def test_numbers_add_list_remove(cli: CliRunner) -> None:
    assert cli.invoke(app, ["senders", "add", "alice@corp.example"]).exit_code == 0
    pool = cli.invoke(app, ["numbers", "add", "(415) 555-0100"])
    assert pool.exit_code == 0 and "+14155550100 (pool)" in pool.output
    own = cli.invoke(app, ["numbers", "add", "+14155550101", "--sender", "alice@corp.example"])
    assert own.exit_code == 0 and "for alice@corp.example" in own.output
    listed = json.loads(cli.invoke(app, ["numbers", "list", "--json"]).output)
    assert listed == [
        {"number": "+14155550100", "sender": None},
        {"number": "+14155550101", "sender": "alice@corp.example"},
    ]
    bad = cli.invoke(app, ["numbers", "add", "12"])
    assert bad.exit_code == 2 and "not" in bad.output
    unknown_owner = cli.invoke(app, ["numbers", "add", "+14155550102", "--sender", "x@y.example"])
    assert unknown_owner.exit_code == 2 and "not a registered sender" in unknown_owner.output
    assert cli.invoke(app, ["numbers", "remove", "+14155550100"]).exit_code == 0
    listed = json.loads(cli.invoke(app, ["numbers", "list", "--json"]).output)
    assert [n["number"] for n in listed] == ["+14155550101"]


def test_messages_list_rejects_unknown_status(cli: CliRunner) -> None:
    result = cli.invoke(app, ["messages", "list", "--status", "lost"])
    assert result.exit_code == 2
    assert "unknown status 'lost'" in result.output


def test_messages_list_json_is_empty_list_on_new_database(cli: CliRunner) -> None:
    result = cli.invoke(app, ["messages", "list", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output) == []


def test_db_init_reports_without_password(cli: CliRunner) -> None:
    result = cli.invoke(app, ["db", "init"])
    assert result.exit_code == 0
    assert result.output.startswith("database ready: sqlite:///")


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"MAILSMS_SMTP_PORT": "not-a-port"}, "MAILSMS_SMTP_PORT"),
        # httpx cannot parse this URL: it used to pass the settings check
        # and stop `serve` with a traceback when the carrier was built.
        (
            {
                "MAILSMS_CARRIER": "twilio",
                "MAILSMS_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                "MAILSMS_TWILIO_AUTH_TOKEN": "secret-token",
                "MAILSMS_TWILIO_API_URL": "http://[::1",
            },
            "MAILSMS_TWILIO_API_URL",
        ),
    ],
)
def test_invalid_setting_stops_with_one_line_naming_it(
    tmp_path: Path, settings: dict[str, str], named: str
) -> None:
    env = {
        **os.environ,
        "MAILSMS_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "MAILSMS_SMTP_PORT": "0",
        "MAILSMS_HTTP_PORT": "0",
        **settings,
    }
    result = subprocess.run(
        [sys.executable, "-m", "mailsms", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"mailsms: invalid setting {named}")
    assert "Traceback" not in result.stderr
    assert "secret-token" not in result.stderr


def test_taken_port_stops_with_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "MAILSMS_SMTP_PORT": str(port),
            "MAILSMS_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        }
        result = subprocess.run(
            [sys.executable, "-m", "mailsms", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"mailsms: cannot listen for SMTP on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_preview_prints_the_sms_as_sent(cli: CliRunner) -> None:
    raw = (
        b"From: alice@corp.example\r\nSubject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"\r\nIt\xe2\x80\x99s ready \xe2\x80\x94 come by.\r\n\r\n-- \r\nAlice\r\n"
    )
    human = cli.invoke(app, ["preview", "-"], input=raw)
    assert human.exit_code == 0, human.output
    assert "It's ready - come by." in human.output
    as_json = cli.invoke(app, ["preview", "-", "--json"], input=raw)
    report = json.loads(as_json.output)
    assert report["texts"] == ["It's ready - come by."]
    assert report["encoding"] == "GSM-7"
    assert report["segments"] == 1
    assert "signature" in report["stripped"]
    assert set(report["transliterated"]) == {"\u2019", "\u2014"}


def test_preview_of_an_empty_mail_exits_1_with_the_reason(cli: CliRunner, tmp_path: Path) -> None:
    eml = tmp_path / "empty.eml"
    eml.write_bytes(b"From: a@corp.example\r\nSubject: x\r\n\r\n-- \r\nsig\r\n")
    result = cli.invoke(app, ["preview", str(eml)])
    assert result.exit_code == 1
    assert "Not sent" in result.output
    missing = cli.invoke(app, ["preview", str(tmp_path / "nope.eml")])
    assert missing.exit_code == 2 and "cannot read" in missing.output


@pytest.mark.parametrize(("level", "per_request"), [("INFO", False), ("DEBUG", True)])
def test_the_service_log_leaves_out_per_command_and_per_request_lines(
    level: str, per_request: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiosmtpd's line per SMTP command and httpx's per carrier request
    only appear when debugging."""
    import logging

    from mailsms.cli import configure_logging

    root = logging.getLogger()
    loggers = [root, *(logging.getLogger(n) for n in ("mail.log", "httpx"))]
    saved = [(lg, lg.level) for lg in loggers]
    # As in a fresh process: no handlers yet (pytest installs its own).
    monkeypatch.setattr(root, "handlers", [])
    try:
        for lg in loggers[1:]:
            lg.setLevel(logging.NOTSET)
        configure_logging(level, workers=1)
        assert logging.getLogger("mail.log").isEnabledFor(logging.INFO) == per_request
        assert logging.getLogger("httpx").isEnabledFor(logging.INFO) == per_request
        assert logging.getLogger("mailsms.app").isEnabledFor(logging.INFO)
    finally:
        for lg, old_level in saved:
            lg.setLevel(old_level)
