"""Hostile input: raw-byte smuggling over a plain socket (smtplib would
normalise line endings), header limits, hop limit and loop defence, and the
From-header differential (CVE-2023-27043 class)."""

from __future__ import annotations

from typing import Any

import aiosmtplib
import pytest

from mailsms.mail.compose import ORIGIN_HEADER
from mailsms.store.models import EmailDisposition
from tests.conftest import DOMAIN, SENDER
from tests.core.test_smtp_gateway import smtp_reply
from tests.security.conftest import RawSmtp

TO = f"4155551212@{DOMAIN}"
HEAD = (
    b"From: alice@corp.example\r\nTo: 4155551212@sms.localhost\r\n"
    b"Subject: hi\r\nMessage-ID: <raw-1@corp.example>\r\n"
)


async def open_transaction(port: int) -> RawSmtp:
    client = await RawSmtp.connect(port)
    assert (await client.command("EHLO client.example"))[0] == 250
    assert (await client.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
    assert (await client.command(f"RCPT TO:<{TO}>"))[0] == 250
    return client


@pytest.mark.parametrize(
    "payload",
    [
        HEAD + b"\r\nhello\nBcc: victim@example.com\r\n",  # bare LF in the body
        HEAD + b"X-Smuggle: a\nBcc: victim@example.com\r\n\r\nhello\r\n",  # in a header
        HEAD + b"\r\nhello\n.\r\nMAIL FROM:<mallory@evil.example>\r\n",  # \n.\r\n
        HEAD + b"\r\nhello\r.\r\nmore\r\n",  # bare CR
        HEAD + b"\r\nhello\r\n\r.\r\n",  # \r.\r\n
    ],
    ids=["bare-lf-body", "bare-lf-header", "lf-dot-crlf", "bare-cr", "cr-dot-crlf"],
)
async def test_smuggling_attempts_are_refused_with_550_5_6_0(
    start_gateway: Any, payload: bytes
) -> None:
    async with start_gateway() as (gw, _settings, store):
        client = await open_transaction(gw.smtp_port)
        code, text = await client.send_data(payload)
        assert (code, text[:6]) == (550, "5.6.0 "), text
        assert "CRLF" in text
        # Nothing was stored, nothing smuggled became a command, and the
        # session is still healthy.
        assert (await client.command("NOOP"))[0] == 250
        await client.close()
        assert store.list_emails() == []


async def test_too_many_headers_are_refused_before_parsing(start_gateway: Any) -> None:
    many = b"".join(b"X-Filler-%d: x\r\n" % i for i in range(501))
    async with start_gateway() as (gw, _settings, store):
        client = await open_transaction(gw.smtp_port)
        code, text = await client.send_data(HEAD + many + b"\r\nhello\r\n")
        assert (code, text[:6]) == (550, "5.6.0 "), text
        assert "too many header fields" in text
        await client.close()
        assert store.list_emails() == []


async def test_received_hop_limit_is_a_routing_loop(start_gateway: Any) -> None:
    hop = b"Received: from relay%d.example by x; Mon, 1 Jan 2024\r\n"
    hops = b"".join(hop % i for i in range(4))
    async with start_gateway(max_hops=3) as (gw, _settings, store):
        client = await open_transaction(gw.smtp_port)
        code, text = await client.send_data(hops + HEAD + b"\r\nhello\r\n")
        assert (code, text[:6]) == (554, "5.4.6 "), text
        assert "Routing loop" in text
        await client.close()
        assert store.list_emails() == []


@pytest.mark.parametrize(
    "extra",
    [
        f"{ORIGIN_HEADER}: sms.localhost\r\n".encode(),
        b"In-Reply-To: <x@corp.example>\r\n",  # control: not a loop (see below)
    ],
)
async def test_mail_we_generated_is_kept_and_never_texted(
    start_gateway: Any, extra: bytes
) -> None:
    async with start_gateway() as (gw, _settings, store):
        client = await open_transaction(gw.smtp_port)
        code, text = await client.send_data(HEAD + extra + b"\r\nhello again\r\n")
        assert code == 250, text
        await client.close()
        emails = store.list_emails()
        looped = extra.startswith(ORIGIN_HEADER.encode())
        assert [e.disposition for e in emails] == [
            EmailDisposition.IGNORED if looped else EmailDisposition.QUEUED
        ]
        assert (store.list_sms() == []) == looped


async def test_message_id_on_our_domain_is_kept_and_never_texted(start_gateway: Any) -> None:
    head = HEAD.replace(b"<raw-1@corp.example>", b"<reply-1@sms.localhost>")
    async with start_gateway() as (gw, _settings, store):
        client = await open_transaction(gw.smtp_port)
        code, text = await client.send_data(head + b"\r\nhello\r\n")
        assert code == 250 and "not texted" in text, text
        await client.close()
        assert "loop defence" in (store.list_emails()[0].reason or "")
        assert store.list_sms() == []


# --- CVE-2023-27043 class: the checked address is the reply address -------
MALLORY_VARIANTS = [
    '"alice@corp.example" <mallory@evil.example>',
    "alice@corp.example <mallory@evil.example>",
    "mallory@evil.example (alice@corp.example)",
    "alice@corp.example@evil.example",
    '"alice@corp.example"@evil.example',
    "=?utf-8?q?alice=40corp.example?= <mallory@evil.example>",
    "=?utf-8?b?YWxpY2VAY29ycC5leGFtcGxlIDxtYWxsb3J5QGV2aWwuZXhhbXBsZT4=?=",
    "alice@corp.example (x) <mallory@evil.example>",
    "<alice@corp.example> <mallory@evil.example>",
    "mallory@evil.example <alice@corp.example>",
    "alice@corp.example, mallory@evil.example",
    "alice@corp.example;mallory@evil.example",
    "Team: alice@corp.example, mallory@evil.example;",
    "Team: mallory@evil.example;",
    "alice(@corp.example)@evil.example",
    "mallory@evil.example\r\n (alice@corp.example)",
    "alice@corp.example\r\n <mallory@evil.example>",
    "0@",  # CPython's address parser raises IndexError: a 550, not a 451
]
ALICE_VARIANTS = [
    "alice@corp.example",
    "Alice <alice@corp.example>",
    '"mallory@evil.example" <alice@corp.example>',
    "=?utf-8?q?mallory=40evil.example?= <alice@corp.example>",
    "alice@corp.example (mallory@evil.example)",
    "Team: alice@corp.example;",
    "ALICE@Corp.Example",
    "alice(@evil.example)@corp.example",
]


async def _send_from(port: int, from_header: str, n: int) -> tuple[int, str]:
    raw = (
        f"From: {from_header}\r\nTo: {TO}\r\nSubject: s\r\n"
        f"Message-ID: <diff-{n}@corp.example>\r\n\r\nhello {n}\r\n"
    ).encode()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as client:
        try:
            _, text = await client.sendmail(SENDER, [TO], raw)
        except aiosmtplib.SMTPException as exc:
            return smtp_reply(exc)
    return 250, text


async def test_from_header_differential(start_gateway: Any) -> None:
    async with start_gateway() as (gw, _settings, store):
        for n, header in enumerate(MALLORY_VARIANTS):
            code, text = await _send_from(gw.smtp_port, header, n)
            assert code >= 500, (header, code, text)
        assert store.list_emails() == []
        for n, header in enumerate(ALICE_VARIANTS, start=100):
            code, text = await _send_from(gw.smtp_port, header, n)
            assert code == 250, (header, text)
        emails = store.list_emails(limit=1000)
        sms = store.list_sms(limit=1000)
    # Whatever was accepted: the stored author (where replies and bounces
    # go) is exactly the address the allow-list check admitted.
    assert len(emails) == len(ALICE_VARIANTS)
    assert {e.from_address for e in emails} == {SENDER}
    assert {s.sender for s in sms} == {SENDER}


@pytest.mark.parametrize(
    "reverse_path",
    [
        '<"alice@corp.example"@evil.example>',
        "<alice@corp.example@evil.example>",
        "<mallory@evil.example>",
        "<alice@corp.example.evil.example>",
        "<@corp.example:mallory@evil.example>",
    ],
)
async def test_envelope_sender_differential(start_gateway: Any, reverse_path: str) -> None:
    """Bounces go to MAIL FROM: it must be the address that was checked."""
    async with start_gateway() as (gw, _settings, _store):
        client = await RawSmtp.connect(gw.smtp_port)
        await client.command("EHLO client.example")
        code, text = await client.command(f"MAIL FROM:{reverse_path}")
        assert code >= 500, (reverse_path, text)
        await client.close()
