"""Transports against a real local SMTP sink and a temporary Maildir."""

from __future__ import annotations

import asyncio
import email
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from typing import Any

import pytest

from mailsms.errors import PermanentFailure, TemporaryFailure
from mailsms.mail.compose import compose_reply, message_to_bytes
from mailsms.mail.transport import (
    TRANSPORTS,
    MaildirTransport,
    PartialDeliveryFailure,
    SmtpRelayTransport,
    TransportConfig,
    make_transport,
)
from tests.fakes.smtp_sink import SmtpSink, SmtpSinkFactory

SENDER = "14155551212@sms.example.com"
RCPT = "alice@corp.example"
TIMEOUT = 5.0


def message() -> bytes:
    msg = compose_reply(
        phone="+14155551212",
        domain="sms.example.com",
        to=RCPT,
        original_subject="Lunch",
        original_message_id="<orig@corp.example>",
        references=[],
        text="Sure 👍\n.\nA line with only a dot above",
        received_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        unique="r-1",
    )
    return message_to_bytes(msg)


def relay(sink: SmtpSink, **options: Any) -> SmtpRelayTransport:
    options.setdefault("security", "none")
    options.setdefault("timeout", TIMEOUT)
    options.setdefault("helo_name", "mailsms.test")
    return SmtpRelayTransport(sink.host, sink.port, **options)


def free_port() -> int:
    # Bind and release: nothing listens there afterwards.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_plain_delivery(smtp_sink: SmtpSink) -> None:
    data = message()
    await relay(smtp_sink).deliver(SENDER, [RCPT], data)
    [envelope] = await smtp_sink.wait_for(1)
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == (RCPT,)
    assert not envelope.tls
    # Dot-stuffing and line ends were handled: the sink got the same bytes.
    assert envelope.content.replace(b"\r\n", b"\n") == data.replace(b"\r\n", b"\n")
    parsed = email.message_from_bytes(envelope.content, policy=policy.default)
    assert parsed["Subject"] == "Re: Lunch"


async def test_null_reverse_path_for_bounces(smtp_sink: SmtpSink) -> None:
    await relay(smtp_sink).deliver("", [RCPT], message())
    [envelope] = await smtp_sink.wait_for(1)
    assert envelope.mail_from == ""


async def test_starttls_with_trusted_ca(smtp_sink_factory: SmtpSinkFactory) -> None:
    sink = await smtp_sink_factory(tls="starttls")
    transport = relay(sink, security="starttls", tls_context=sink.client_tls_context())
    await transport.deliver(SENDER, [RCPT], message())
    [envelope] = await sink.wait_for(1)
    assert envelope.tls


async def test_starttls_with_untrusted_certificate_is_temporary(
    smtp_sink_factory: SmtpSinkFactory,
) -> None:
    sink = await smtp_sink_factory(tls="starttls")
    other = await smtp_sink_factory(tls="starttls")  # a different CA
    transport = relay(sink, security="starttls", tls_context=other.client_tls_context())
    with pytest.raises(TemporaryFailure):
        await transport.deliver(SENDER, [RCPT], message())
    assert sink.envelopes == []


async def test_starttls_required_but_not_offered_is_temporary(smtp_sink: SmtpSink) -> None:
    transport = relay(smtp_sink, security="starttls")
    with pytest.raises(TemporaryFailure, match="STARTTLS"):
        await transport.deliver(SENDER, [RCPT], message())
    assert smtp_sink.envelopes == []


async def test_implicit_tls(smtp_sink_factory: SmtpSinkFactory) -> None:
    sink = await smtp_sink_factory(tls="tls")
    transport = relay(sink, security="tls", tls_context=sink.client_tls_context())
    await transport.deliver(SENDER, [RCPT], message())
    [envelope] = await sink.wait_for(1)
    assert envelope.tls


@pytest.mark.parametrize("exclude", [("PLAIN",), ("LOGIN",)])
async def test_auth_over_starttls(
    smtp_sink_factory: SmtpSinkFactory, exclude: tuple[str, ...]
) -> None:
    sink = await smtp_sink_factory(
        tls="starttls", credentials=("mailsms", "s3cret!"), auth_exclude=exclude
    )
    transport = relay(
        sink,
        security="starttls",
        tls_context=sink.client_tls_context(),
        username="mailsms",
        password="s3cret!",
    )
    await transport.deliver(SENDER, [RCPT], message())
    [envelope] = await sink.wait_for(1)
    assert envelope.login == "mailsms"


async def test_auth_over_implicit_tls(smtp_sink_factory: SmtpSinkFactory) -> None:
    sink = await smtp_sink_factory(tls="tls", credentials=("mailsms", "s3cret!"))
    transport = relay(
        sink,
        security="tls",
        tls_context=sink.client_tls_context(),
        username="mailsms",
        password="s3cret!",
    )
    await transport.deliver(SENDER, [RCPT], message())
    assert (await sink.wait_for(1))[0].login == "mailsms"


async def test_refused_login_is_permanent_and_hides_the_password(
    smtp_sink_factory: SmtpSinkFactory,
) -> None:
    sink = await smtp_sink_factory(tls="starttls", credentials=("mailsms", "right"))
    transport = relay(
        sink,
        security="starttls",
        tls_context=sink.client_tls_context(),
        username="mailsms",
        password="wrong-Pa55word",
    )
    with pytest.raises(PermanentFailure) as caught:
        await transport.deliver(SENDER, [RCPT], message())
    assert caught.value.code == "535"
    assert "wrong-Pa55word" not in str(caught.value)
    assert "wrong-Pa55word" not in repr(caught.value.args)
    assert "wrong-Pa55word" not in repr(transport)
    assert sink.envelopes == []


async def test_451_is_temporary_then_delivery_succeeds(smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse_next(1, "451 4.3.0 Try again later")
    transport = relay(smtp_sink)
    with pytest.raises(TemporaryFailure) as caught:
        await transport.deliver(SENDER, [RCPT], message())
    assert caught.value.code == "451"
    await transport.deliver(SENDER, [RCPT], message())
    assert len(await smtp_sink.wait_for(1)) == 1


async def test_550_is_permanent_with_code_and_text(smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse_next(1, "550 5.7.1 Message rejected as spam")
    with pytest.raises(PermanentFailure) as caught:
        await relay(smtp_sink).deliver(SENDER, [RCPT], message())
    assert caught.value.code == "550"
    assert "rejected as spam" in str(caught.value)


@pytest.mark.parametrize(
    ("stage", "reply", "failure", "code"),
    [
        ("mail", "451 4.7.1 Greylisted", TemporaryFailure, "451"),
        ("mail", "553 5.1.8 Bad sender", PermanentFailure, "553"),
        ("rcpt", "450 4.2.1 Mailbox busy", TemporaryFailure, "450"),
        ("rcpt", "550 5.1.1 No such user", PermanentFailure, "550"),
    ],
)
async def test_refusals_at_each_stage(
    smtp_sink: SmtpSink, stage: Any, reply: str, failure: type[Exception], code: str
) -> None:
    smtp_sink.refuse_next(1, reply, stage=stage)
    with pytest.raises(failure) as caught:
        await relay(smtp_sink).deliver(SENDER, [RCPT], message())
    assert getattr(caught.value, "code", None) == code


async def test_partial_recipient_refusal(smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse_recipients.add("nobody@corp.example")
    with pytest.raises(PartialDeliveryFailure) as caught:
        await relay(smtp_sink).deliver(SENDER, [RCPT, "nobody@corp.example"], message())
    assert isinstance(caught.value, PermanentFailure)
    assert caught.value.accepted == (RCPT,)
    assert caught.value.refused["nobody@corp.example"][0] == 550
    [envelope] = await smtp_sink.wait_for(1)
    assert envelope.rcpt_tos == (RCPT,)


async def test_connection_refused_is_temporary() -> None:
    transport = SmtpRelayTransport(
        "127.0.0.1", free_port(), security="none", timeout=TIMEOUT, helo_name="mailsms.test"
    )
    with pytest.raises(TemporaryFailure):
        await transport.deliver(SENDER, [RCPT], message())


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never says a word (no SMTP greeting)."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def test_timeout_is_temporary(silent_server: int) -> None:
    transport = SmtpRelayTransport(
        "127.0.0.1", silent_server, security="none", timeout=0.3, helo_name="mailsms.test"
    )
    with pytest.raises(TemporaryFailure):
        await asyncio.wait_for(transport.deliver(SENDER, [RCPT], message()), 5)


async def test_server_disconnect_is_temporary() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hello\r\n")
        await writer.drain()
        await reader.readline()  # EHLO
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        transport = SmtpRelayTransport(
            "127.0.0.1", port, security="none", timeout=TIMEOUT, helo_name="mailsms.test"
        )
        with pytest.raises(TemporaryFailure):
            await transport.deliver(SENDER, [RCPT], message())
    finally:
        server.close()
        await server.wait_closed()


async def test_injected_address_is_permanent_and_sends_nothing(smtp_sink: SmtpSink) -> None:
    with pytest.raises(PermanentFailure):
        await relay(smtp_sink).deliver(SENDER, ["a@b.example>\r\nRCPT TO:<x@y.example"], message())
    assert smtp_sink.envelopes == []


def test_constructor_guards() -> None:
    with pytest.raises(ValueError, match="together"):
        SmtpRelayTransport("relay.example", 587, username="u")
    with pytest.raises(ValueError, match="without TLS"):
        SmtpRelayTransport("relay.example", 25, security="none", username="u", password="p")
    # Loopback relays may take cleartext AUTH (same host).
    SmtpRelayTransport("127.0.0.1", 25, security="none", username="u", password="p")
    with pytest.raises(ValueError, match="security"):
        SmtpRelayTransport("relay.example", 25, security="ssl")  # type: ignore[arg-type]


async def test_maildir_writes_a_parsable_file_in_new(tmp_path: Path) -> None:
    folder = tmp_path / "Maildir"
    await MaildirTransport(folder).deliver("", [RCPT, "bob@corp.example"], message())
    files = list((folder / "new").iterdir())
    assert len(files) == 1
    assert list((folder / "tmp").iterdir()) == []
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert parsed["Return-Path"] == "<>"
    assert parsed.get_all("Delivered-To") == [RCPT, "bob@corp.example"]
    assert parsed["Subject"] == "Re: Lunch"
    assert "Sure 👍" in parsed.get_content()


async def test_maildir_os_error_is_temporary(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the Maildir should be")
    with pytest.raises(TemporaryFailure):
        await MaildirTransport(blocker / "Maildir").deliver(SENDER, [RCPT], message())


async def test_maildir_rejects_header_injection_in_envelope(tmp_path: Path) -> None:
    with pytest.raises(PermanentFailure):
        await MaildirTransport(tmp_path).deliver("a@b\r\nX-Evil: 1", [RCPT], message())


async def test_registry_builds_both_transports(smtp_sink: SmtpSink, tmp_path: Path) -> None:
    assert set(TRANSPORTS) == {"smtp", "maildir"}
    config = TransportConfig(
        relay_host=smtp_sink.host,
        relay_port=smtp_sink.port,
        relay_security="none",
        relay_username=None,
        relay_password=None,
        relay_timeout=TIMEOUT,
        maildir_path=tmp_path / "md",
        helo_name="mailsms.test",
    )
    await make_transport("smtp", config).deliver(SENDER, [RCPT], message())
    assert len(await smtp_sink.wait_for(1)) == 1
    await make_transport("maildir", config).deliver(SENDER, [RCPT], message())
    assert len(list((tmp_path / "md" / "new").iterdir())) == 1
    with pytest.raises(ValueError, match="maildir, smtp"):
        make_transport("pigeon", config)
    with pytest.raises(ValueError, match="maildir_path"):
        make_transport("maildir", TransportConfig())


async def test_relay_ca_file_is_trusted_for_the_relay(
    smtp_sink_factory: SmtpSinkFactory, tmp_path: Path
) -> None:
    """A relay whose certificate comes from a private CA: with that CA's
    file configured the message goes out over STARTTLS; with the system's
    CAs alone the certificate is refused, a temporary failure."""
    sink = await smtp_sink_factory(tls="starttls")
    config = TransportConfig(
        relay_host="localhost",  # the name on the sink's certificate
        relay_port=sink.port,
        relay_security="starttls",
        relay_timeout=TIMEOUT,
        helo_name="mailsms.test",
    )
    with pytest.raises(TemporaryFailure, match=r"(?i)certificate"):
        await make_transport("smtp", config).deliver(SENDER, [RCPT], message())
    assert sink.envelopes == []

    trusted = replace(config, relay_ca_file=sink.write_ca(tmp_path / "relay-ca.pem"))
    await make_transport("smtp", trusted).deliver(SENDER, [RCPT], message())
    [envelope] = await sink.wait_for(1)
    assert envelope.tls and envelope.rcpt_tos == (RCPT,)


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "cannot read the CA file"), ("not a certificate\n", "holds no usable certificate")],
)
def test_unusable_relay_ca_file_is_refused_in_one_line(
    tmp_path: Path, content: str | None, words: str
) -> None:
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_text(content)
    with pytest.raises(ValueError, match=words) as info:
        make_transport("smtp", TransportConfig(relay_ca_file=ca_file))
    assert str(ca_file) in str(info.value) and "\n" not in str(info.value)


def test_config_repr_hides_the_password() -> None:
    config = TransportConfig(relay_username="u", relay_password="hunter2")
    assert "hunter2" not in repr(config)
    assert "relay_username='u'" in repr(config)
