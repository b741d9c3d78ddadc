"""Fuzzing the DATA handler through a real SMTP session, and the text
engine directly (hypothesis, bounded examples).

The only acceptable outcomes for any input: ``250`` with exactly one more
stored message, or a ``4xx``/``5xx`` with nothing stored; and the server
still answers (``NOOP`` -> 250) afterwards.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsms.app import Gateway
from mailsms.store import Store
from mailsms.text import EmptyMessage, MessageTooLong, TextError, TextOptions, email_to_sms
from tests.conftest import DOMAIN, SENDER, make_settings, prepare_store

TO = f"4155551212@{DOMAIN}"
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class ThreadedGateway:
    """A gateway on its own loop in a thread, so synchronous hypothesis
    tests can talk to it over a socket."""

    def __init__(self, tmp: Path) -> None:
        self.settings = make_settings(
            tmp,
            dispatcher_enabled=False,
            sender_rate_per_minute=0,
            sender_daily_quota=0,
            destination_per_hour=0,
        )
        self.store: Store = prepare_store(self.settings)
        self.loop = asyncio.new_event_loop()
        self.gateway = Gateway(self.settings)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedGateway:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.gateway.start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def count(self) -> int:
        return len(self.store.list_emails(limit=100_000))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedGateway]:
    with ThreadedGateway(tmp_path_factory.mktemp("fuzz")) as gateway:
        yield gateway


class Session:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        assert self.reply()[0] == 220

    def reply(self) -> tuple[int, str]:
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != b"-":
                return int(line[:3]), line[4:].decode("utf-8", "replace").strip()

    def command(self, line: bytes) -> tuple[int, str]:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        try:
            self.command(b"QUIT")
        finally:
            self.file.close()
            self.sock.close()


def stuffed(payload: bytes) -> bytes:
    """Dot-stuff (RFC 5321 section 4.5.2) so the payload cannot end DATA
    early; everything else is sent byte for byte."""
    if payload.startswith(b"."):
        payload = b"." + payload
    return payload.replace(b"\r\n.", b"\r\n..")


def drive(live: ThreadedGateway, payload: bytes) -> None:
    before = live.count()
    session = Session(live.gateway.smtp_port)
    try:
        assert session.command(b"EHLO fuzz.example")[0] == 250
        assert session.command(f"MAIL FROM:<{SENDER}>".encode())[0] == 250
        assert session.command(f"RCPT TO:<{TO}>".encode())[0] == 250
        assert session.command(b"DATA")[0] == 354
        body = stuffed(payload)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        session.sock.sendall(body + b".\r\n")
        code, text = session.reply()
        after = live.count()
        if code == 250:
            assert after == before + 1 or "not sent again" in text, (code, text)
        else:
            assert 400 <= code < 600, (code, text)
            assert after == before, (code, text)
        assert "Traceback" not in text
        assert session.command(b"NOOP")[0] == 250
    finally:
        session.close()


HEADER_NAMES = st.sampled_from(
    ["Subject", "To", "Message-ID", "Content-Type", "Content-Transfer-Encoding",
     "MIME-Version", "Received", "Auto-Submitted", "X-Junk", "From"]
)  # fmt: skip
HEADER_VALUES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60
).map(lambda s: s.encode("utf-8", "surrogatepass"))


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    headers = [b"From: alice@corp.example", f"To: {TO}".encode()]
    for _ in range(draw(st.integers(0, 6))):
        headers.append(draw(HEADER_NAMES).encode() + b": " + draw(HEADER_VALUES))
    boundary = b"b" + str(draw(st.integers(0, 999))).encode()
    if draw(st.booleans()):
        headers.append(b'Content-Type: multipart/mixed; boundary="' + boundary + b'"')
        parts = []
        for _ in range(draw(st.integers(0, 3))):
            ctype = draw(st.sampled_from([b"text/plain", b"text/html", b"image/png", b"bogus"]))
            cte = draw(st.sampled_from([b"7bit", b"base64", b"quoted-printable", b"x-weird"]))
            text = draw(HEADER_VALUES)
            parts.append(
                b"--" + boundary + b"\r\nContent-Type: " + ctype
                + b"; charset=" + draw(st.sampled_from([b"utf-8", b"latin-1", b"nope"]))
                + b"\r\nContent-Transfer-Encoding: " + cte + b"\r\n\r\n" + text
            )  # fmt: skip
        body = b"\r\n".join(parts) + b"\r\n--" + boundary + b"--"
    else:
        body = draw(HEADER_VALUES)
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


@FUZZ
@given(payload=st.binary(max_size=2000))
def test_raw_bytes_into_data(live: ThreadedGateway, payload: bytes) -> None:
    drive(live, payload)


@FUZZ
@given(payload=structured())
def test_structured_mime_into_data(live: ThreadedGateway, payload: bytes) -> None:
    drive(live, payload)


@FUZZ
@given(payload=structured())
def test_text_engine_only_raises_its_own_errors(payload: bytes) -> None:
    msg = BytesParser(policy=policy.default).parsebytes(payload)
    assert isinstance(msg, EmailMessage)
    options = TextOptions(
        subject_policy="prepend", transliterate=True, max_segments=3, length_policy="refuse"
    )
    try:
        result = email_to_sms(msg, options)
    except (EmptyMessage, MessageTooLong, TextError):
        return
    for part in result.messages:
        assert part.text
        assert part.segments >= 1
