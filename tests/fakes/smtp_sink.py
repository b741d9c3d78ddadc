"""A local SMTP sink for tests: the smarthost mailsms relays through.

A real aiosmtpd server on 127.0.0.1, on an ephemeral port, served by
``loop.create_server`` in the test's own event loop (no background thread,
unlike aiosmtpd's ``Controller``), so it starts and stops with the test.
It records every accepted envelope and can be told to:

* offer STARTTLS (RFC 3207) or speak implicit TLS (RFC 8314) with a
  certificate from a throwaway trustme CA (``sink.client_tls_context()``
  trusts it);
* require AUTH (RFC 4954) with given credentials;
* refuse the next N deliveries with a given reply (``451``, ``550``, ...)
  at MAIL, RCPT or DATA.

    async def test_x(smtp_sink: SmtpSink) -> None:
        ...  # deliver to ("127.0.0.1", smtp_sink.port)
        [envelope] = await smtp_sink.wait_for(1)

``smtp_sink`` is a plain sink; ``smtp_sink_factory`` starts configured
ones (``await smtp_sink_factory(tls="starttls", credentials=("u", "p"))``)
and stops them all at teardown.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest_asyncio
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = [
    "RecordedEnvelope",
    "SmtpSink",
    "SmtpSinkFactory",
    "smtp_sink",
    "smtp_sink_factory",
]

TlsMode = Literal["none", "starttls", "tls"]
Stage = Literal["mail", "rcpt", "data"]

SINK_HOSTNAME = "sink.localhost"


@dataclass(frozen=True)
class RecordedEnvelope:
    """One message the sink accepted."""

    mail_from: str
    """Reverse-path; ``""`` for the null reverse-path ``<>``."""
    rcpt_tos: tuple[str, ...]
    content: bytes
    mail_options: tuple[str, ...]
    tls: bool
    """Whether the session was encrypted (STARTTLS or implicit TLS)."""
    login: str | None
    """The AUTH identity, or None when the client did not authenticate."""


@dataclass
class _Refusal:
    remaining: int
    reply: str
    stage: Stage


@dataclass
class _Handler:
    """aiosmtpd handler: applies scripted refusals and records envelopes."""

    sink: SmtpSink
    refusal: _Refusal | None = None

    def _take_refusal(self, stage: Stage) -> str | None:
        refusal = self.refusal
        if refusal is None or refusal.stage != stage or refusal.remaining <= 0:
            return None
        refusal.remaining -= 1
        return refusal.reply

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if reply := self._take_refusal("mail"):
            return reply
        # The null reverse-path arrives as "<>"; keep it so (aiosmtpd needs a
        # truthy mail_from before RCPT) and record it as "" in handle_DATA.
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if reply := self._take_refusal("rcpt"):
            return reply
        if address in self.sink.refuse_recipients:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if reply := self._take_refusal("data"):
            return reply
        content = envelope.content
        assert isinstance(content, bytes)
        login = session.auth_data if session.authenticated else None
        await self.sink._record(
            RecordedEnvelope(
                mail_from="" if envelope.mail_from in (None, "<>") else envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                content=content,
                mail_options=tuple(envelope.mail_options),
                tls=session.ssl is not None or self.sink.tls == "tls",
                login=login.decode() if isinstance(login, bytes) else login,
            )
        )
        return "250 2.0.0 Message accepted"


@dataclass
class SmtpSink:
    """The running sink; see the module docstring."""

    tls: TlsMode = "none"
    credentials: tuple[str, str] | None = None
    auth_exclude: tuple[str, ...] = ()
    envelopes: list[RecordedEnvelope] = field(default_factory=list)
    refuse_recipients: set[str] = field(default_factory=set)
    host: str = "127.0.0.1"
    port: int = 0
    _ca: trustme.CA = field(default_factory=trustme.CA, repr=False)
    _server: asyncio.Server | None = field(default=None, repr=False)
    _handler: _Handler | None = field(default=None, repr=False)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition, repr=False)
    _protocols: list[SMTP] = field(default_factory=list, repr=False)

    def _server_tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        return context

    def client_tls_context(self) -> ssl.SSLContext:
        """A client context that trusts the sink's certificate (and only it)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self._ca.configure_trust(context)
        return context

    def write_ca(self, path: Path) -> Path:
        """The sink's CA certificate as a PEM file, as an operator would
        configure it (``MAILSMS_RELAY_CA_FILE``)."""
        self._ca.cert_pem.write_to_path(str(path))
        return path

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if self.credentials is None or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = self.credentials
        ok = data.login == user.encode() and data.password == password.encode()
        return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)

    async def start(self) -> SmtpSink:
        loop = asyncio.get_running_loop()
        self._handler = _Handler(self)
        tls_context = self._server_tls_context() if self.tls != "none" else None

        def factory() -> SMTP:
            with warnings.catch_warnings():
                # aiosmtpd warns about AUTH without TLS; with implicit TLS
                # the connection is encrypted below its view.
                warnings.simplefilter("ignore", UserWarning)
                protocol = self._make_protocol(loop, tls_context)
            self._protocols.append(protocol)
            return protocol

        self._server = await loop.create_server(
            factory,
            host=self.host,
            port=self.port,  # 0 (the default): an ephemeral port
            ssl=tls_context if self.tls == "tls" else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _make_protocol(
        self, loop: asyncio.AbstractEventLoop, tls_context: ssl.SSLContext | None
    ) -> SMTP:
        return SMTP(
            self._handler,
            hostname=SINK_HOSTNAME,
            tls_context=tls_context if self.tls == "starttls" else None,
            require_starttls=self.tls == "starttls",
            auth_required=self.credentials is not None,
            # With implicit TLS aiosmtpd does not see the TLS layer, yet
            # the session is encrypted: let AUTH through.
            auth_require_tls=self.tls == "starttls",
            auth_exclude_mechanism=self.auth_exclude,
            authenticator=self._authenticate,
            timeout=30,
            loop=loop,
        )

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for protocol in self._protocols:
            if protocol.transport is not None:
                protocol.transport.close()
        await self._server.wait_closed()
        # Let the protocols' handler tasks see their cancellation.
        await asyncio.sleep(0)
        self._server = None

    def refuse_next(
        self, count: int, reply: str = "451 4.3.0 Try again later", *, stage: Stage = "data"
    ) -> None:
        """Answer the next ``count`` deliveries at ``stage`` with ``reply``."""
        assert self._handler is not None, "start the sink first"
        assert reply[:3].isdigit() and reply[0] in "45", "refusals are 4xx/5xx replies"
        self._handler.refusal = _Refusal(remaining=count, reply=reply, stage=stage)

    async def _record(self, envelope: RecordedEnvelope) -> None:
        async with self._changed:
            self.envelopes.append(envelope)
            self._changed.notify_all()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[RecordedEnvelope]:
        """Wait (bounded) until ``count`` envelopes were accepted; return them."""

        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.envelopes) >= count)

        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"SMTP sink got {len(self.envelopes)} message(s), expected {count}"
            ) from None
        return list(self.envelopes)


SmtpSinkFactory = Callable[..., Awaitable[SmtpSink]]


@pytest_asyncio.fixture
async def smtp_sink_factory() -> AsyncIterator[SmtpSinkFactory]:
    """Start sinks with options (``tls``, ``credentials``, ``auth_exclude``)."""
    sinks: list[SmtpSink] = []

    async def start(**options: Any) -> SmtpSink:
        sink = await SmtpSink(**options).start()
        sinks.append(sink)
        return sink

    try:
        yield start
    finally:
        for sink in sinks:
            await sink.stop()


@pytest_asyncio.fixture
async def smtp_sink(smtp_sink_factory: SmtpSinkFactory) -> SmtpSink:
    """A plain (no TLS, no AUTH) sink on 127.0.0.1."""
    return await smtp_sink_factory()
