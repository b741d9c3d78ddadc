"""``mailsms senders``: policies, passwords (never shown), free-mail domains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailsms.cli import app
from mailsms.store import Store, make_engine
from mailsms.trust import verify_password


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("MAILSMS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    return CliRunner()


@pytest.mark.parametrize(
    "domain",
    ["@gmail.com", "@GMX.de", "@yahoo.co.uk", "@mail.ru", "@proton.me", "@sub.outlook.com"],
)
def test_free_mail_domains_cannot_be_registered_whole(cli: CliRunner, domain: str) -> None:
    result = cli.invoke(app, ["senders", "add", domain])
    assert result.exit_code == 2
    assert "free-mail domain" in result.output
    assert "register the exact addresses" in result.output
    # A single free-mail address is fine.
    assert cli.invoke(app, ["senders", "add", "someone@gmail.com"]).exit_code == 0


def test_policy_and_password(cli: CliRunner, tmp_path: Path) -> None:
    added = cli.invoke(app, ["senders", "add", "a@corp.example", "--policy", "smtp-auth"])
    assert added.exit_code == 0 and "policy smtp-auth" in added.output
    assert cli.invoke(app, ["senders", "add", "@corp.example"]).exit_code == 0
    bad = cli.invoke(app, ["senders", "add", "b@corp.example", "--policy", "magic"])
    assert bad.exit_code == 2 and "unknown sender policy" in bad.output

    secret = "s3cret pass phrase"
    result = cli.invoke(app, ["senders", "set-password", "a@corp.example"], input=secret + "\n")
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    missing = cli.invoke(app, ["senders", "set-password", "x@corp.example"], input="pw\n")
    assert missing.exit_code == 2 and "is not registered" in missing.output
    empty = cli.invoke(app, ["senders", "set-password", "a@corp.example"], input="\n")
    assert empty.exit_code == 2 and "must not be empty" in empty.output

    listed = cli.invoke(app, ["senders", "list", "--json"])
    rows = {row["address"]: row for row in json.loads(listed.output)}
    assert rows["a@corp.example"]["policy"] == "smtp-auth"
    assert rows["a@corp.example"]["password"] is True
    assert rows["@corp.example"]["policy"] is None
    assert rows["@corp.example"]["effective_policy"] == "dkim"
    assert rows["@corp.example"]["password"] is False
    table = cli.invoke(app, ["senders", "list"]).output
    assert "smtp-auth" in table and "default (dkim)" in table
    assert "scrypt" not in listed.output + table

    store = Store(make_engine(f"sqlite:///{tmp_path / 'cli.db'}"))
    stored = store.sender_password_hash("a@corp.example")
    assert stored is not None and verify_password(secret, stored)

    changed = cli.invoke(app, ["senders", "set-policy", "@corp.example", "trusted-relay"])
    assert changed.exit_code == 0
    cleared = cli.invoke(app, ["senders", "set-password", "a@corp.example", "--clear"])
    assert cleared.exit_code == 0
    assert store.sender_password_hash("a@corp.example") is None
