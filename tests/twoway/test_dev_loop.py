"""The whole loop without a carrier account: console carrier, `mailsms
simulate inbound`, replies in the local Maildir (the embedded defaults)."""

from __future__ import annotations

import json
import mailbox
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import aiosmtplib
import pytest
from typer.testing import CliRunner

from mailsms.app import Gateway
from mailsms.cli import app
from mailsms.keywords import Keyword, classify
from mailsms.routing import PairUse, allocate_number
from mailsms.store.models import InboundStatus, SmsStatus
from tests.conftest import DOMAIN, SENDER, make_settings, prepare_store, wait_for_status
from tests.core.test_smtp_gateway import simple_message
from tests.twoway.conftest import eventually


async def test_simulated_answer_lands_in_the_maildir_threaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, maildir=tmp_path / "maildir")
    assert settings.mail_transport == "maildir"  # the embedded default
    store = prepare_store(settings)
    store.add_number("+14155550100", None, datetime.now(UTC))
    gateway = Gateway(settings)
    await gateway.start()
    try:
        original = simple_message("Are you coming?", message_id="<q1@corp.example>")
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
            await client.send_message(original)
        [sms] = await wait_for_status(store, SmsStatus.DELIVERED)  # console delivers at once
        assert sms.from_number == "+14155550100"

        monkeypatch.setenv("MAILSMS_DATABASE_URL", settings.database_url)
        result = CliRunner().invoke(
            app,
            [
                "simulate",
                "inbound",
                "--from",
                "(415) 555-1212",
                "--to",
                "+14155550100",
                "On my way!",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "stored" in result.output

        new = tmp_path / "maildir" / "new"
        await eventually(lambda: new.is_dir() and any(new.iterdir()))
        messages = list(mailbox.Maildir(tmp_path / "maildir", create=False))
        reply = message_from_bytes(messages[0].as_bytes(), policy=policy.default)
        assert reply["From"].addresses[0].addr_spec == f"14155551212@{DOMAIN}"
        assert reply["To"].addresses[0].addr_spec == SENDER
        assert str(reply["In-Reply-To"]) == "<q1@corp.example>"
        assert reply.get_content().strip() == "On my way!"

        listed = CliRunner().invoke(app, ["messages", "list", "--direction", "in", "--json"])
        assert listed.exit_code == 0
        [row] = json.loads(listed.output)
        assert (row["status"], row["routed_to"], row["from"]) == (
            InboundStatus.ROUTED,
            SENDER,
            "+14155551212",
        )
    finally:
        await gateway.stop()


def test_simulate_refuses_bad_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSMS_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    result = CliRunner().invoke(
        app, ["simulate", "inbound", "--from", "12", "--to", "+14155550100", "x"]
    )
    assert result.exit_code == 2
    assert "not" in result.output


def test_dkim_keygen_writes_key_and_prints_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILSMS_DOMAIN", "sms.example.com")
    key = tmp_path / "s1.pem"
    result = CliRunner().invoke(app, ["dkim", "keygen", "--selector", "s1", "--key-file", str(key)])
    assert result.exit_code == 0, result.output
    assert key.stat().st_mode & 0o777 == 0o600
    assert "s1._domainkey.sms.example.com" in result.output
    assert '"v=DKIM1; k=rsa; p=' in result.output
    again = CliRunner().invoke(app, ["dkim", "keygen", "--selector", "s1", "--key-file", str(key)])
    assert again.exit_code == 2  # an existing key is never overwritten by accident


def test_dkim_settings_need_both_values(tmp_path: Path) -> None:
    import asyncio

    from mailsms.config import SettingsError

    settings = make_settings(tmp_path, dkim_selector="s1")
    prepare_store(settings)
    with pytest.raises(SettingsError, match="MAILSMS_DKIM"):
        asyncio.run(Gateway(settings).start())


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("STOP", Keyword.STOP),
        (" stop ", Keyword.STOP),
        ("Unsubscribe.", Keyword.STOP),
        ("stopall", Keyword.STOP),
        ("OPTOUT", Keyword.STOP),
        ("quit", Keyword.STOP),
        ("start", Keyword.START),
        ("UNSTOP", Keyword.START),
        ("yes", Keyword.START),
        ("help", Keyword.HELP),
        ("INFO", Keyword.HELP),
        ("stop by at 5", None),
        ("yes please", None),
        ("", None),
    ],
)
def test_keywords(text: str, kind: Keyword | None) -> None:
    found = classify(text)
    assert (found[0] if found else None) == kind


def test_allocation_rules() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    pool = ["+1A", "+1B"]
    # Sticky: alice keeps the number she already uses with this phone.
    assert (
        allocate_number(
            sender="alice",
            phone="+1P",
            own=None,
            pool=pool,
            default_from=None,
            conversations=[PairUse("+1B", "alice", t0)],
        )
        == "+1B"
    )
    # Her own number wins over the pool when there is no conversation yet.
    assert (
        allocate_number(
            sender="alice", phone="+1P", own="+1OWN", pool=pool, default_from=None, conversations=[]
        )
        == "+1OWN"
    )
    # Bob avoids the number alice uses with the same phone.
    assert (
        allocate_number(
            sender="bob",
            phone="+1P",
            own=None,
            pool=pool,
            default_from=None,
            conversations=[PairUse("+1A", "alice", t0)],
        )
        == "+1B"
    )
    # A clash: every pool number is taken for this phone; the pair idle
    # longest is taken over (documented rule).
    taken = [PairUse("+1A", "alice", t0 + timedelta(hours=1)), PairUse("+1B", "bob", t0)]
    assert (
        allocate_number(
            sender="carol", phone="+1P", own=None, pool=pool, default_from=None, conversations=taken
        )
        == "+1B"
    )
    # No pool: the default number.
    assert (
        allocate_number(
            sender="carol", phone="+1P", own=None, pool=[], default_from="+1D", conversations=taken
        )
        == "+1D"
    )
