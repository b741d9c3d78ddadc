"""Proof of the sender, end to end: a real gateway, a local DNS server with
DKIM keys, SPF and DMARC records made here, and dkimpy-signed mail."""

from __future__ import annotations

from typing import Any

import aiosmtplib
import pytest

from tests.conftest import DOMAIN, SENDER, wait_outbox
from tests.core.test_smtp_gateway import smtp_reply
from tests.fakes.dns import FakeDnsServer
from tests.trust import publish_domain, publish_key, sign

CRLF = b"\r\n"
TO = f"4155551212@{DOMAIN}"


def message(
    *,
    from_header: str = "Alice <alice@corp.example>",
    body: bytes = b"Server room temperature is 41C\r\n",
    extra: tuple[str, ...] = (),
    message_id: str = "<alert-1@corp.example>",
) -> bytes:
    headers = [
        *extra,
        f"From: {from_header}",
        f"To: {TO}",
        "Subject: Alert",
        "Date: Mon, 03 Jun 2024 10:00:00 +0000",
        f"Message-ID: {message_id}",
    ]
    return CRLF.join(h.encode() for h in headers) + CRLF + CRLF + body


def dns_settings(dns: FakeDnsServer, **more: Any) -> dict[str, Any]:
    # SPF never passes for 127.0.0.1 here: only DKIM can prove the domain.
    return {"dns_nameservers": dns.nameserver, "dns_timeout": 1.0, **more}


def publish(dns: FakeDnsServer) -> None:
    publish_domain(dns, "corp.example", spf="v=spf1 ip4:192.0.2.1 -all")


async def send(port: int, raw: bytes, sender: str = SENDER) -> tuple[int, str]:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) as client:
        try:
            _, text = await client.sendmail(sender, [TO], raw)
        except aiosmtplib.SMTPException as exc:
            return smtp_reply(exc)
    return 250, text


async def test_aligned_dkim_signature_passes_end_to_end(
    start_gateway: Any, dns_server: FakeDnsServer
) -> None:
    publish(dns_server)
    forged = "Authentication-Results: sms.localhost; dkim=pass header.d=corp.example"
    theirs = "Authentication-Results: mx.corp.example; spf=pass smtp.mailfrom=corp.example"
    raw = sign(message(extra=(forged, theirs)))
    async with start_gateway(
        policies={SENDER: "dkim"}, **dns_settings(dns_server)
    ) as (gw, settings, store):
        code, text = await send(gw.smtp_port, raw)
        assert code == 250, text
        sms = await wait_outbox(settings.console_outbox, 1)
        assert sms[0]["text"] == "Server room temperature is 41C"
        email = store.list_emails()[0]
    assert email.auth_results is not None
    assert email.auth_results.startswith("sms.localhost; dkim=pass")
    assert "header.d=corp.example" in email.auth_results
    assert "dmarc=pass" in email.auth_results
    headers = email.headers or ""
    assert headers.startswith("Authentication-Results: sms.localhost; dkim=pass")
    # The incoming claim in our name is gone; someone else's stays.
    lines = headers.split("\r\n")
    assert forged not in lines
    assert sum(line.startswith("Authentication-Results: sms.localhost") for line in lines) == 1
    assert theirs in lines


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", "no DKIM signature"),
        ("wrong-key", "did not verify"),
        ("misaligned", "not aligned"),
        ("altered-body", "did not verify"),
    ],
)
async def test_unproven_mail_is_refused_with_550_5_7_26(
    start_gateway: Any, dns_server: FakeDnsServer, case: str, reason: str
) -> None:
    publish(dns_server)
    publish_key(dns_server, domain="evil.example", key="evil")
    original = message()
    raw = {
        "unsigned": original,
        "wrong-key": sign(original, key="other"),
        "misaligned": sign(original, domain="evil.example", key="evil"),
        # A replay of a genuinely signed message with another body.
        "altered-body": sign(original).replace(b"41C", b"14C, wire 5000 USD"),
    }[case]
    async with start_gateway(
        policies={SENDER: "dkim"}, **dns_settings(dns_server)
    ) as (gw, _settings, store):
        code, text = await send(gw.smtp_port, raw)
        assert (code, text[:7]) == (550, "5.7.26 "), text
        assert reason in text
        assert store.list_emails() == []
        assert store.list_sms() == []


async def test_dns_timeout_is_a_temporary_451_4_7_5(
    start_gateway: Any, dns_server: FakeDnsServer
) -> None:
    publish(dns_server)
    raw = sign(message())
    async with start_gateway(
        policies={SENDER: "dkim"}, **dns_settings(dns_server, dns_timeout=0.3)
    ) as (gw, _settings, store):
        dns_server.silent = True
        code, text = await send(gw.smtp_port, raw)
        assert (code, text[:6]) == (451, "4.7.5 "), text
        assert "Try again later" in text
        assert store.list_emails() == []


async def test_trusted_network_does_not_satisfy_an_explicit_dkim_entry(
    start_gateway: Any, dns_server: FakeDnsServer
) -> None:
    """127.0.0.1 is trusted by default, but alice asked for DKIM."""
    publish(dns_server)
    async with start_gateway(
        policies={SENDER: "dkim"}, **dns_settings(dns_server)
    ) as (gw, _settings, store):
        code, text = await send(gw.smtp_port, message())
        assert code == 550 and text.startswith("5.7.26 "), text
        assert store.list_emails() == []


async def test_default_entry_needs_proof_outside_the_trusted_networks(
    start_gateway: Any, dns_server: FakeDnsServer
) -> None:
    publish(dns_server)
    async with start_gateway(
        trusted_networks="", **dns_settings(dns_server)
    ) as (gw, settings, _store):
        code, text = await send(gw.smtp_port, message())
        assert code == 550 and text.startswith("5.7.26 "), text
        code, text = await send(gw.smtp_port, sign(message(message_id="<a2@corp.example>")))
        assert code == 250, text
        await wait_outbox(settings.console_outbox, 1)


async def test_default_entry_from_a_trusted_network_is_accepted_on_the_allow_list(
    start_gateway: Any, dns_server: FakeDnsServer
) -> None:
    """The quick start: a sender added without --policy, swaks from
    127.0.0.1, no DNS at all."""
    async with start_gateway(**dns_settings(dns_server)) as (gw, settings, store):
        code, text = await send(gw.smtp_port, message())
        assert code == 250, text
        await wait_outbox(settings.console_outbox, 1)
        email = store.list_emails()[0]
    assert email.auth_results == "sms.localhost; none (trusted relay 127.0.0.1)"
    assert dns_server.queries == []


async def test_explicit_trusted_relay_entry_outside_the_networks_needs_dkim(
    start_gateway: Any, dns_server: FakeDnsServer
) -> None:
    publish(dns_server)
    async with start_gateway(
        policies={SENDER: "trusted-relay"},
        trusted_networks="10.0.0.0/8",
        **dns_settings(dns_server),
    ) as (gw, _settings, _store):
        code, text = await send(gw.smtp_port, message())
        assert code == 550 and text.startswith("5.7.26 "), text
        code, text = await send(gw.smtp_port, sign(message(message_id="<a3@corp.example>")))
        assert code == 250, text


async def test_smtp_auth_entry_without_auth_gets_530_at_mail(
    start_gateway: Any, dns_server: FakeDnsServer
) -> None:
    async with start_gateway(policies={SENDER: "smtp-auth"}) as (gw, _settings, store):
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.smtp_port) as client:
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as info:
                await client.sendmail(SENDER, [TO], sign(message()))
        code, text = smtp_reply(info.value)
        assert (code, text[:6]) == (530, "5.7.0 ")
        assert "Authentication required" in text
        assert store.list_emails() == []
