"""End to end over real sockets: smtplib/aiosmtplib against the real
listener on 127.0.0.1, SQLite on disk, the console carrier's outbox."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsms.app import Gateway
from mailsms.config import Settings
from mailsms.smtp.handler import GatewayHandler, HandlerConfig
from mailsms.smtp.server import GatewaySMTP
from mailsms.store import Store, queries
from mailsms.store.abuse import SenderTrust
from mailsms.store.models import EmailDisposition
from mailsms.text import TextOptions
from tests.conftest import DOMAIN, SENDER, prepare_store, read_outbox, wait_outbox

GMAIL_STYLE = (
    "From: Alice Example <alice@corp.example>\r\n"
    "To: 415-555-1212@sms.localhost\r\n"
    "Subject: Re: dinner\r\n"
    "Message-ID: <CAF1234@mail.gmail.com>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/alternative; boundary="000000000000abcdef"\r\n'
    "\r\n"
    "--000000000000abcdef\r\n"
    'Content-Type: text/plain; charset="UTF-8"\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Running late, see you at 8 at Caf=C3=A9 Rouge.\r\n"
    "\r\n"
    "On Sat, Nov 21, 2026 at 6:02 PM Bob <bob@example.net> wrote:\r\n"
    "> Where are you?\r\n"
    "\r\n"
    "--000000000000abcdef\r\n"
    'Content-Type: text/html; charset="UTF-8"\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    '<div dir=3D"ltr">Running late, see you at 8 at Caf=C3=A9 Rouge.</div><br>'
    '<div class=3D"gmail_quote"><div dir=3D"ltr">On Sat, Nov 21, 2026 at 6:02 PM'
    " Bob wrote:<br></div><blockquote>Where are you?</blockquote></div>\r\n"
    "\r\n"
    "--000000000000abcdef--\r\n"
)


def simple_message(
    text: str = "Hello from mail",
    *,
    sender: str = SENDER,
    to: str = f"4155551212@{DOMAIN}",
    message_id: str | None = None,
    **headers: str,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = "test"
    msg["Message-ID"] = message_id or make_msgid(domain="corp.example")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text)
    return msg


def smtp_reply(exc: BaseException) -> tuple[int, str]:
    """(code, text) of a refusal from smtplib or aiosmtplib."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()))
        return code, text.decode()
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error
        return exc.smtp_code, text.decode() if isinstance(text, bytes) else str(text)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return exc.recipients[0].code, exc.recipients[0].message
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code, exc.message
    raise AssertionError(f"not an SMTP refusal: {exc!r}")


async def test_gmail_multipart_alternative_becomes_one_clean_sms(
    gateway: Gateway, settings: Settings
) -> None:
    def send() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as client:
            return client.sendmail(SENDER, [f"415-555-1212@{DOMAIN}"], GMAIL_STYLE.encode())

    refused = await asyncio.to_thread(send)
    assert refused == {}
    records = await wait_outbox(settings.console_outbox, 1)
    assert len(records) == 1
    sms = records[0]
    assert sms["to"] == "+14155551212"
    assert sms["text"] == "Running late, see you at 8 at Café Rouge."
    assert sms["encoding"] == "GSM-7"  # é is in the GSM 03.38 alphabet
    assert sms["segments"] == 1
    assert set(sms) == {"to", "from", "text", "encoding", "segments", "message_id"}


async def test_250_reply_names_the_stored_message(gateway: Gateway, store: Store) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
        ehlo = await client.ehlo()
        assert "ENHANCEDSTATUSCODES" in ehlo.message
        _, message = await client.send_message(simple_message())
    assert message.startswith("2.0.0 OK: message ")
    emails = store.list_emails()
    assert len(emails) == 1
    assert emails[0].from_address == SENDER
    assert emails[0].subject == "test"
    assert emails[0].disposition == EmailDisposition.QUEUED


async def test_unregistered_envelope_sender_is_refused_at_mail(gateway: Gateway) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as info:
            await client.send_message(
                simple_message(sender="mallory@evil.example"), sender="mallory@evil.example"
            )
    code, text = smtp_reply(info.value)
    assert code == 550
    assert text.startswith("5.7.1 ")
    assert "sender <mallory@evil.example> is not registered" in text


async def test_registered_envelope_with_unregistered_from_is_refused_at_data(
    gateway: Gateway, store: Store
) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
        with pytest.raises(aiosmtplib.SMTPDataError) as info:
            await client.send_message(simple_message(sender="ceo@evil.example"), sender=SENDER)
    code, text = smtp_reply(info.value)
    assert (code, text[:6]) == (550, "5.7.1 ")
    assert "From address <ceo@evil.example> is not registered" in text
    assert store.list_emails() == []


async def test_whole_domain_entry_admits_every_address_in_it(
    settings: Settings, tmp_path: object
) -> None:
    prepare_store(settings, senders=("@corp.example",))
    gw = Gateway(settings)
    await gw.start()
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.smtp_port) as client:
            await client.send_message(simple_message(sender="Bob@Corp.Example"))
        records = await wait_outbox(settings.console_outbox, 1)
        assert records[0]["to"] == "+14155551212"
    finally:
        await gw.stop()


@pytest.mark.parametrize(
    ("recipient", "code", "enhanced", "words"),
    [
        ("4155551212@example.org", 550, "5.7.1", "relaying to example.org is not allowed"),
        (f"hello@{DOMAIN}", 550, "5.1.1", "'hello' is not a phone number"),
        (f"12@{DOMAIN}", 550, "5.1.1", "not"),
        (f"+999123@{DOMAIN}", 550, "5.1.1", "'+999123'"),
    ],
)
async def test_bad_recipients_are_refused_at_rcpt(
    gateway: Gateway, recipient: str, code: int, enhanced: str, words: str
) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
        await client.mail(SENDER)
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as info:
            await client.rcpt(recipient)
    assert info.value.code == code
    assert info.value.message.startswith(enhanced + " ")
    assert words in info.value.message


async def test_too_many_recipients_gets_452(tmp_path: object, settings: Settings) -> None:
    limited = settings.model_copy(update={"max_recipients": 2})
    prepare_store(limited)
    gw = Gateway(limited)
    await gw.start()
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.smtp_port) as client:
            await client.mail(SENDER)
            await client.rcpt(f"4155551212@{DOMAIN}")
            await client.rcpt(f"4155551213@{DOMAIN}")
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as info:
                await client.rcpt(f"4155551214@{DOMAIN}")
        assert info.value.code == 452
        assert info.value.message.startswith("4.5.3 Too many recipients: at most 2")
    finally:
        await gw.stop()


async def test_a_message_of_megabytes_is_read_whole_and_its_text_sent(
    settings: Settings,
) -> None:
    """A text and a 4 MB attachment, well under the size limit: the DATA
    text spans thousands of socket reads (asyncio pauses and resumes the
    socket on the way) and must arrive whole, dots and all."""
    store = prepare_store(settings)
    gw = Gateway(settings)
    await gw.start()
    try:
        msg = simple_message("Slides attached.\n.\n..two dots stay one")
        blob = bytes(range(256)) * (4 * 1024 * 1024 // 256)
        msg.add_attachment(blob, maintype="application", subtype="pdf", filename="deck.pdf")
        raw = msg.as_bytes()
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.smtp_port, timeout=60) as client:
            errors, reply = await client.sendmail(SENDER, [f"4155551212@{DOMAIN}"], raw)
        assert errors == {}
        [sms] = await wait_outbox(settings.console_outbox, 1)
        [email] = store.list_emails()
    finally:
        await gw.stop()
    assert reply.startswith("2.0.0 ")
    assert sms["text"] == "Slides attached.\n.\n..two dots stay one"
    # The stored size is the message as sent, its dot-stuffing undone, with
    # CRLF line ends (aiosmtplib sends them).
    assert email.size == len(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    assert email.attachments == "deck.pdf (application/pdf)"


async def test_oversize_message_is_refused_with_552_at_mail_and_at_data(
    settings: Settings,
) -> None:
    small = settings.model_copy(update={"max_message_size": 2048})
    prepare_store(small)
    gw = Gateway(small)
    await gw.start()
    try:
        big = simple_message("word " * 2000)
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.smtp_port) as client:
            # Declared size (RFC 1870): refused at MAIL.
            with pytest.raises(aiosmtplib.SMTPResponseException) as declared:
                await client.mail(SENDER, options=["SIZE=100000"])
            assert declared.value.code == 552
            assert declared.value.message.startswith("5.3.4 ")
            await client.rset()
            # Undeclared: refused after DATA.
            await client.mail(SENDER)
            await client.rcpt(f"4155551212@{DOMAIN}")
            with pytest.raises(aiosmtplib.SMTPDataError) as sent:
                await client.data(big.as_bytes())
            assert sent.value.code == 552
            assert sent.value.message.startswith("5.3.4 ")
            # The session is still usable afterwards.
            response = await client.noop()
            assert response.code == 250
        assert read_outbox(small.console_outbox) == []
    finally:
        await gw.stop()


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   \n\n  \n",
        "-- \nAlice Example\nCorp",
        "On Mon, Nov 2, 2026 at 9:00 AM Bob <bob@example.net> wrote:\n> only a quote\n",
    ],
)
async def test_empty_result_is_refused_with_550_5_6_0(
    gateway: Gateway, store: Store, body: str
) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
        with pytest.raises(aiosmtplib.SMTPDataError) as info:
            await client.send_message(simple_message(body))
    assert info.value.code == 550
    assert info.value.message.startswith("5.6.0 Nothing to send")
    assert store.list_sms() == []


async def test_bounce_is_accepted_kept_and_never_texted(
    gateway: Gateway, store: Store, settings: Settings
) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
        _, message = await client.send_message(
            simple_message("Delivery failed", sender="MAILER-DAEMON@example.net"), sender=""
        )
    assert "not texted" in message
    emails = store.list_emails()
    assert [e.disposition for e in emails] == [EmailDisposition.IGNORED]
    assert "bounce" in (emails[0].reason or "")
    assert store.list_sms() == []
    await asyncio.sleep(0.2)
    assert read_outbox(settings.console_outbox) == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto_Submitted": "auto-replied"},
        {"Auto_Submitted": "auto-generated; owner-email=x@corp.example"},
        {"Precedence": "bulk"},
        {"Precedence": "list"},
        {"Precedence": "junk"},
    ],
)
async def test_auto_replies_are_kept_and_never_texted(
    gateway: Gateway, store: Store, headers: dict[str, str]
) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
        await client.send_message(simple_message("I am on vacation", **headers))
    emails = store.list_emails()
    assert [e.disposition for e in emails] == [EmailDisposition.IGNORED]
    assert "automatic message" in (emails[0].reason or "")
    assert store.list_sms() == []


async def test_auto_submitted_no_is_a_person(gateway: Gateway, settings: Settings) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
        await client.send_message(simple_message("real person", Auto_Submitted="no"))
    assert (await wait_outbox(settings.console_outbox, 1))[0]["text"] == "real person"


async def test_same_message_id_from_same_sender_is_sent_once(
    gateway: Gateway, settings: Settings, store: Store
) -> None:
    msg = simple_message("only once", message_id="<once@corp.example>")
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
        await client.send_message(msg)
        _, again = await client.send_message(msg)
    assert "not sent again" in again
    await wait_outbox(settings.console_outbox, 1)
    await asyncio.sleep(0.3)
    assert len(read_outbox(settings.console_outbox)) == 1
    assert len(store.list_emails()) == 1


async def test_message_ids_are_kept_as_sent_folded_or_8bit(gateway: Gateway, store: Store) -> None:
    """Message-ID and References are stored unfolded and as text; 8-bit
    bytes in them (SMTPUTF8 clients) are decoded, never stored raw."""
    folded = (
        f"From: {SENDER}\r\nTo: 4155551212@{DOMAIN}\r\nSubject: ids\r\n"
        "Message-ID:\r\n <folded.1@corp.example>\r\n"
        "References: <a@corp.example>\r\n\t<b@corp.example>\r\n\r\nhello\r\n"
    ).encode()
    utf8 = (
        f"From: {SENDER}\r\nTo: 4155551212@{DOMAIN}\r\nSubject: ids\r\n"
        "Message-ID: <caf\u00e9.2@corp.example>\r\n\r\nhello again\r\n"
    ).encode()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
        for raw in (folded, utf8):
            refused, reply = await client.sendmail(SENDER, [f"4155551212@{DOMAIN}"], raw)
            assert refused == {} and reply.startswith("2.0.0 OK: message ")
    first, second = sorted(store.list_emails(), key=lambda e: e.id or 0)
    assert first.message_id == "<folded.1@corp.example>"
    assert first.thread_references == "<a@corp.example> <b@corp.example>"
    assert second.message_id.startswith("<caf") and second.message_id.endswith(".2@corp.example>")
    assert all(not ("\udc80" <= c <= "\udcff") for c in second.message_id)


async def test_concurrent_sessions_are_all_committed_and_sent(
    gateway: Gateway, settings: Settings
) -> None:
    async def one(i: int) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
            await client.send_message(
                simple_message(f"message {i}", to=f"41555500{i:02d}@{DOMAIN}")
            )

    await asyncio.gather(*(one(i) for i in range(30)))
    records = await wait_outbox(settings.console_outbox, 30)
    assert sorted(r["text"] for r in records) == sorted(f"message {i}" for i in range(30))


async def test_several_recipients_get_one_sms_each(settings: Settings) -> None:
    # +44 7911 is Guernsey (GG); only the default region is allowed by default.
    settings = settings.model_copy(update={"allowed_countries": "GG,US"})
    prepare_store(settings)
    gateway = Gateway(settings)
    await gateway.start()
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
            await client.send_message(
                simple_message("to all"),
                recipients=[
                    f"4155551212@{DOMAIN}",
                    f"+447911123456@{DOMAIN}",
                    f"(415)555-1212@{DOMAIN}",  # the same phone again: texted once
                ],
            )
        records = await wait_outbox(settings.console_outbox, 2)
        await asyncio.sleep(0.2)
        records = read_outbox(settings.console_outbox)
    finally:
        await gateway.stop()
    assert sorted(r["to"] for r in records) == ["+14155551212", "+447911123456"]


async def test_commit_failure_answers_451_and_leaks_nothing(
    gateway: Gateway, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire: secret-token-123")

    # The insert fails in the round's shared transaction and again when the
    # emails are committed alone: the email's own error, not the round's.
    monkeypatch.setattr(queries, "_insert_batch", broken)
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
        with pytest.raises(aiosmtplib.SMTPDataError) as info:
            await client.send_message(simple_message())
        assert info.value.code == 451
        assert info.value.message.startswith("4.3.0 ")
        assert "secret" not in info.value.message
        assert (await client.noop()).code == 250


async def test_unexpected_handler_error_answers_451(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mailsms.smtp.handler as handler_module

    def explode(*args: object, **kwargs: object) -> None:
        raise ValueError("internal detail that must not leak")

    monkeypatch.setattr(handler_module, "parse_recipient", explode)
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
        await client.mail(SENDER)
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as info:
            await client.rcpt(f"4155551212@{DOMAIN}")
    assert info.value.code == 451
    assert info.value.message.startswith("4.3.0 ")
    assert "internal detail" not in info.value.message


async def test_overlong_line_is_refused(gateway: Gateway) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
        await client.mail(SENDER)
        await client.rcpt(f"4155551212@{DOMAIN}")
        payload = b"From: alice@corp.example\r\nSubject: x\r\n\r\n" + b"a" * 1200 + b"\r\n"
        with pytest.raises(aiosmtplib.SMTPDataError) as info:
            await client.data(payload)
    assert info.value.code == 500
    assert info.value.message.startswith("5.5.2 Line too long")


async def test_health_endpoints(gateway: Gateway) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        live = await client.get("/healthz")
        ready = await client.get("/readyz")
        missing = await client.get("/nope")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "smtp": "ok"}
    assert missing.status_code == 404 and "error" in missing.json()


async def test_from_number_is_the_senders_own_then_the_pool(
    tmp_path: object, settings: Settings
) -> None:
    from datetime import UTC, datetime

    store = prepare_store(settings, senders=(SENDER, "bob@corp.example"))
    store.add_number("+14155550100", SENDER, datetime.now(UTC))
    store.add_number("+14155550199", None, datetime.now(UTC))
    gw = Gateway(settings)
    await gw.start()
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.smtp_port) as client:
            await client.send_message(simple_message("from alice"))
            await client.send_message(
                simple_message("from bob", sender="bob@corp.example"), sender="bob@corp.example"
            )
        records = await wait_outbox(settings.console_outbox, 2)
        by_text = {r["text"]: r["from"] for r in records}
        assert by_text == {"from alice": "+14155550100", "from bob": "+14155550199"}
    finally:
        await gw.stop()


async def test_default_from_when_no_numbers(tmp_path: object, settings: Settings) -> None:
    configured = settings.model_copy(update={"default_from": "+14155550123"})
    prepare_store(configured)
    gw = Gateway(configured)
    await gw.start()
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.smtp_port) as client:
            await client.send_message(simple_message())
        assert (await wait_outbox(configured.console_outbox, 1))[0]["from"] == "+14155550123"
    finally:
        await gw.stop()


async def test_the_listener_knows_every_command_hook_and_auth_mechanism() -> None:
    """GatewaySMTP and the handler narrow ``dir()`` to what aiosmtpd looks
    up per connection; its tables must equal what a full ``dir()`` gives."""
    handler = GatewayHandler.__new__(GatewayHandler)  # no state is read
    proto = GatewaySMTP(handler, hostname="x", loop=asyncio.get_running_loop())

    full_proto = object.__dir__(proto)
    commands = sorted(n.removeprefix("smtp_") for n in full_proto if n.startswith("smtp_"))
    assert sorted(proto._smtp_methods) == commands
    assert {"AUTH", "DATA", "EHLO", "MAIL", "RCPT", "STARTTLS", "QUIT"} <= set(commands)
    mechanisms = {n.removeprefix("auth_") for n in full_proto if n.startswith("auth_")}
    assert set(proto._auth_methods) == mechanisms == {"PLAIN", "LOGIN"}

    full_handler = object.__dir__(handler)
    hooks = sorted(n.removeprefix("handle_") for n in full_handler if n.startswith("handle_"))
    assert sorted(proto._handle_hooks) == hooks
    assert {"DATA", "EHLO", "MAIL", "RCPT", "exception"} <= set(hooks)
    assert not [n for n in full_handler if n.startswith("auth_")]


_PATH_CHARS = 'ab0.@<>"\\ ,:;()[]=-\t'


_atoms = st.text("ab0.-+=_", min_size=1, max_size=6)
_plain_paths = st.builds(
    lambda pad, local, domain, sep, rest: f"{pad}<{local}@{domain}>{sep}{rest}",
    st.sampled_from(["", " ", "\t"]),
    _atoms,
    _atoms,
    st.sampled_from(["", " ", "  ", "\t"]),
    st.sampled_from(["", "SIZE=10", "BODY=8BITMIME SMTPUTF8", "(c) SIZE=1", "x ", "(", ">"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(_PATH_CHARS, max_size=24),
        _plain_paths,
        st.sampled_from(["<alice@corp.example> SIZE=10", "<>", "<@a,@b:x@y>", "x" * 70 + "@y"]),
        st.sampled_from(["<" + "x" * 65 + "@y>", "<" + "x" * 64 + "@y>"]),
    )
)
def test_mail_and_rcpt_addresses_parse_as_aiosmtpd_parses_them(arg: str) -> None:
    """GatewaySMTP._getaddr is aiosmtpd's parse without its per-call class
    creation; where aiosmtpd's own crashes, ours reports a syntax error."""
    loop = asyncio.new_event_loop()
    try:
        handler = GatewayHandler.__new__(GatewayHandler)
        ours = GatewaySMTP(handler, hostname="x", loop=loop)
        theirs = SMTP(handler, hostname="x", loop=loop)
        try:
            expected = SMTP._getaddr(theirs, arg)
        except (IndexError, AttributeError):
            expected = (None, None)
        assert ours._getaddr(arg) == expected
    finally:
        loop.close()


async def test_an_address_that_crashes_the_parser_is_a_syntax_error(
    settings: Settings,
) -> None:
    prepare_store(settings)
    gw = Gateway(settings)
    await gw.start()
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.smtp_port) as client:
            await client.ehlo()
            code, text = await client.execute_command(b"MAIL", b"FROM:0@")
            assert code == 553, text
            code, _ = await client.mail(SENDER)
            assert code == 250
    finally:
        await gw.stop()


class _ListStore:
    """The allow-list tables, as lists a test changes."""

    def __init__(self, *senders: str) -> None:
        self.senders = list(senders)

    def sender_trust(self) -> list[SenderTrust]:
        return [SenderTrust(address, None, False) for address in self.senders]

    def list_numbers(self) -> list[object]:
        return []

    def suppression_stamp(self) -> tuple[object, ...]:
        return (0,)

    def suppressed_phones(self) -> frozenset[str]:
        return frozenset()


class _SlowRunner:
    """Reads the tables when called; while ``slow``, answers only when the
    test says so (``answer(i)`` for the i-th held load): a database thread
    that is slow to return, in an order the test picks."""

    def __init__(self, store: _ListStore) -> None:
        self.store = store
        self.loads = 0
        self.slow = False
        self.held: list[asyncio.Event] = []

    async def call(self, fn: Any, *args: Any) -> Any:
        self.loads += 1
        result = fn(*args)
        if self.slow:
            answer = asyncio.Event()
            self.held.append(answer)
            await answer.wait()
        return result

    def answer(self, index: int) -> None:
        self.held[index].set()


def _directory_handler(runner: _SlowRunner) -> GatewayHandler:
    config = HandlerConfig(
        domain=DOMAIN,
        default_region="US",
        max_recipients=10,
        text=TextOptions(),
        retry_deadline=timedelta(hours=1),
        default_from=None,
        directory_ttl=0.05,
    )
    return GatewayHandler(config, runner, None, lambda: datetime.now(UTC))  # type: ignore[arg-type]


async def _senders_after_reload(handler: GatewayHandler, sender: str) -> frozenset[str]:
    for _ in range(200):  # bounded: 2 s
        senders = (await handler._dir()).senders
        if sender in senders:
            return senders
        await asyncio.sleep(0.01)
    raise AssertionError(f"{sender} never appeared in the allow-list snapshot")


async def test_an_expired_allow_list_snapshot_is_loaded_once_for_all_sessions() -> None:
    """The sessions in flight share one load of the snapshot, and one reload
    each time it expires, instead of each querying the database (a herd of
    20 per second)."""
    runner = _SlowRunner(_ListStore())
    runner.slow = True  # the first load: every session waits for it
    handler = _directory_handler(runner)
    waiting = asyncio.gather(*(handler._dir() for _ in range(20)))
    await asyncio.sleep(0.01)
    runner.answer(0)
    snapshots = await asyncio.wait_for(waiting, timeout=1)
    assert len({id(s) for s in snapshots}) == 1
    runner.slow = False
    for _ in range(2):
        await asyncio.sleep(0.06)  # let it expire
        snapshots = await asyncio.gather(*(handler._dir() for _ in range(20)))
        assert len({id(s) for s in snapshots}) == 1
    await asyncio.sleep(0.01)  # the last reload
    assert runner.loads == 3
    await handler.aclose()


async def test_an_expired_snapshot_answers_at_once_while_one_reload_runs() -> None:
    """Sessions do not wait for the allow-list's reload (milliseconds behind
    the group commit under load); the reload shows up once it is done."""
    store = _ListStore("alice@corp.example")
    runner = _SlowRunner(store)
    handler = _directory_handler(runner)
    first = await handler._dir()
    store.senders.append("bob@corp.example")
    runner.slow = True  # the database thread is busy now
    await asyncio.sleep(0.06)  # the snapshot expires
    snapshots = await asyncio.wait_for(
        asyncio.gather(*(handler._dir() for _ in range(20))), timeout=1
    )
    assert all(snapshot is first for snapshot in snapshots)
    assert runner.loads == 2  # the first load, and one reload for all
    runner.slow = False
    runner.answer(0)
    senders = await _senders_after_reload(handler, "bob@corp.example")
    assert senders == {"alice@corp.example", "bob@corp.example"}
    await handler.aclose()


async def test_a_reload_from_before_forget_directory_does_not_replace_a_newer_load() -> None:
    store = _ListStore("alice@corp.example")
    runner = _SlowRunner(store)
    handler = _directory_handler(runner)
    await handler._dir()
    runner.slow = True
    await asyncio.sleep(0.06)
    await handler._dir()  # starts a reload, which reads the tables as they are
    await asyncio.sleep(0.01)
    assert runner.loads == 2
    store.senders.append("carol@corp.example")
    handler.forget_directory()  # say, an opt-out was just recorded here
    waiting = asyncio.ensure_future(handler._dir())  # must wait for a new load
    await asyncio.sleep(0.02)
    assert not waiting.done()
    runner.answer(1)  # the new load answers first...
    assert "carol@corp.example" in (await waiting).senders
    runner.answer(0)  # ...and the reload from before, with the old tables, after it
    await asyncio.sleep(0.01)
    assert "carol@corp.example" in (await handler._dir()).senders
    await handler.aclose()


async def test_closing_the_handler_stops_a_reload_in_progress() -> None:
    runner = _SlowRunner(_ListStore("alice@corp.example"))
    handler = _directory_handler(runner)
    await handler._dir()
    runner.slow = True
    await asyncio.sleep(0.06)
    await handler._dir()
    await asyncio.sleep(0.01)  # the reload has asked the database
    assert runner.loads == 2
    await asyncio.wait_for(handler.aclose(), timeout=1)
    assert handler._refresh is None


async def test_a_burst_of_connections_waits_in_the_listen_queue(settings: Settings) -> None:
    """300 clients connecting while the gateway is busy are queued by the
    kernel (backlog 1024), not dropped (asyncio would listen with 100)."""
    prepare_store(settings)
    gw = Gateway(settings)
    await gw.start()
    port = gw.smtp_port

    def burst() -> list[socket.socket]:
        opened: list[socket.socket] = []
        try:
            for _ in range(300):
                # A full queue drops the SYN: the retry comes after 1 s.
                opened.append(socket.create_connection(("127.0.0.1", port), timeout=0.5))
        except OSError:
            for sock in opened:
                sock.close()
            raise
        return opened

    try:
        loop = asyncio.get_running_loop()
        connecting = loop.run_in_executor(None, burst)
        time.sleep(2.0)
        opened = await connecting
        assert len(opened) == 300
        for sock in opened:
            sock.close()
    finally:
        await gw.stop()
