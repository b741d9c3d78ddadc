"""Starting the SMTP listeners on the application's own event loop.

aiosmtpd's threaded ``Controller`` would run a second loop in a second
thread; the gateway instead hands ``loop.create_server`` a protocol factory,
so SMTP sessions, the dispatcher and the HTTP side share one loop and one
set of resources (RFC 5321 server, ESMTP SIZE per RFC 1870).

Two listeners can run side by side:

- the main one (``MAILSMS_SMTP_PORT``) offers STARTTLS (RFC 3207) when a
  certificate is configured, and can require it (``MAILSMS_REQUIRE_STARTTLS``);
- the optional implicit-TLS submission port (``MAILSMS_SUBMISSIONS_PORT``,
  RFC 8314 section 3.3) is a second ``loop.create_server(..., ssl=context)``
  on the same loop: TLS from the first byte, no STARTTLS inside it.

SMTP AUTH (RFC 4954; PLAIN per RFC 4616 and LOGIN) is only offered and only
accepted on an encrypted session: after STARTTLS, or on the implicit-TLS
port.  Anywhere else ``AUTH`` gets ``538 5.7.11``.  aiosmtpd's
``authenticator`` callback is synchronous, and checking a password means a
database read plus one scrypt (tens of milliseconds of CPU) that would stall
every session sharing the loop, so :class:`GatewaySMTP` implements the two
mechanisms itself and awaits :meth:`GatewayHandler.check_credentials`,
which runs both off the loop.  A session gets three attempts; the third
failure closes it (``421 4.7.0``).  Credentials are never logged.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import re
import socket
import ssl
from base64 import b64decode
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any, AnyStr, ClassVar

from aiosmtpd.smtp import MISSING, SMTP, AuthResult

from mailsms.policy import PLAIN_ADDR_SPEC
from mailsms.smtp import codes
from mailsms.smtp.codes import LIBRARY_REPLIES
from mailsms.smtp.data import read_message
from mailsms.smtp.handler import GatewayHandler

MAX_AUTH_FAILURES = 3

# aiosmtpd's logger: the lines this module logs for it read as its own.
log = logging.getLogger("mail.log")


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP protocol with enhanced status codes on every reply,
    and asynchronous, TLS-only AUTH PLAIN/LOGIN."""

    _protocol_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, handler: GatewayHandler, *, implicit_tls: bool = False, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self.implicit_tls = implicit_tls
        self._gateway_handler = handler
        self._auth_failures = 0

    def __dir__(self) -> list[str]:
        """Only the names aiosmtpd's constructor looks for.

        For every connection aiosmtpd builds its tables of AUTH mechanisms
        (``auth_*``) and commands (``smtp_*``) with ``inspect.getmembers``
        and ``dir`` of the new protocol object, which reads every attribute
        and property: 0.2 ms, a third of a bare session's CPU.  Those
        methods are class attributes, listed once per class.
        """
        return list(self._protocol_names)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._protocol_names = _names_of(cls)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The address of a MAIL/RCPT argument and the rest of the line, or
        (None, None) when it does not parse; ``("", "")`` for no argument.

        aiosmtpd's own answer (the stdlib's RFC 5322 angle-addr / addr-spec
        grammar, then its local-part limit), cheaper: aiosmtpd 1.4 defines
        a ``typing.Protocol`` class inside this method on every call (70 of
        its 96 us, paid at MAIL and at RCPT), and the usual
        ``<local@domain>`` needs no grammar at all.  One change: an
        argument that crashes the stdlib parser (``MAIL FROM:0@`` raises
        IndexError) is a syntax error here, not a 451 for a local error.
        tests/core/test_smtp_gateway.py checks it against aiosmtpd's method.
        """
        if not arg:
            return "", ""
        plain = _PLAIN_PATH.fullmatch(arg)
        if plain is not None and not plain.group("rest").startswith("("):
            # The usual <local@domain> [params]: nothing for the grammar
            # to decide (a comment after ">" takes the full parse).
            addr, rest = plain.group("addr"), plain.group("rest")
        else:
            parsed = _parse_path(arg)
            if parsed is None:
                return None, None
            addr, rest = parsed
        local_part = addr.rpartition("@")[0]
        if self.local_part_limit and len(local_part) > self.local_part_limit:
            return None, None
        return addr, rest

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, reading the message text with
        :func:`mailsms.smtp.data.read_message` (one search of the stream,
        not a coroutine call per line).  The checks before the 354 and the
        handler call after the text are aiosmtpd's own, in its order."""
        if self._decode_data or not self.data_size_limit or "DATA" not in self._handle_hooks:
            # Settings the gateway never uses: aiosmtpd's own DATA.
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            text = await read_message(
                self._reader, size_limit=self.data_size_limit, line_limit=self.line_length_limit
            )
        except asyncio.CancelledError:
            # The connection was lost (eof_received cancels the session).
            log.info("Connection lost during DATA")
            self._writer.close()
            raise
        if text.refusal is not None:
            await self.push(text.refusal)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        self.envelope.content = self.envelope.original_content = text.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    @property
    def encrypted(self) -> bool:
        """True when this session runs over TLS (STARTTLS done, or the
        implicit-TLS port)."""
        return self.implicit_tls or self._tls_protocol is not None

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            for prefix, replacement in LIBRARY_REPLIES:
                if status.startswith(prefix):
                    status = replacement
                    break
        await super().push(status)

    # --- AUTH mechanisms (RFC 4954) -------------------------------------------
    # aiosmtpd calls these as ``method(self, args)`` on the bound method, hence
    # the ignored first argument; ``args`` is ["PLAIN", initial-response?].
    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if not self.encrypted:
            return await self._refuse_plaintext()
        blob = await self._initial_or_challenge(args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        # RFC 4616: [authzid] NUL authcid NUL passwd
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Cannot split the AUTH PLAIN response")
            return AuthResult(success=False, handled=True)
        authzid, login, password = parts
        if authzid and authzid != login:
            # Acting for someone else (proxy authorisation) is not offered.
            return await self._failed()
        return await self._check(login, password)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if not self.encrypted:
            return await self._refuse_plaintext()
        login = await self._initial_or_challenge(args, self.AuthLoginUsernameChallenge)
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await self._challenge(self.AuthLoginPasswordChallenge)
        if password is None:
            return AuthResult(success=False, handled=True)
        return await self._check(login, password)

    async def _initial_or_challenge(self, args: list[str], challenge: str) -> bytes | None:
        if len(args) == 1:
            return await self._challenge(challenge)
        try:
            return b64decode(args[1].encode(), validate=True)
        except (binascii.Error, ValueError):
            await self.push("501 5.5.2 Cannot decode base64")
            return None

    async def _challenge(self, challenge: str) -> bytes | None:
        # challenge_auth pushes its own 501 on '*' or bad base64, and never
        # logs the client's answer unless asked to (we never ask).
        answer = await self.challenge_auth(challenge)
        return None if answer is MISSING else bytes(answer)

    async def _check(self, login: bytes, password: bytes) -> AuthResult:
        identity = await self._gateway_handler.check_credentials(login, password)
        if identity is None:
            return await self._failed()
        return AuthResult(success=True, auth_data=identity)

    async def _failed(self) -> AuthResult:
        self._auth_failures += 1
        if self._auth_failures >= MAX_AUTH_FAILURES:
            await self.push("421 4.7.0 Too many failed authentication attempts; closing connection")
            if self.transport is not None:
                self.transport.close()
            return AuthResult(success=False, handled=True)
        # handled=False: aiosmtpd pushes ``message`` (AuthResult defaults to
        # handled=True, which would leave the client waiting for a reply).
        return AuthResult(
            success=False,
            handled=False,
            message=codes.BAD_CREDENTIALS.reply("Authentication credentials invalid"),
        )

    async def _refuse_plaintext(self) -> AuthResult:
        # Defence in depth: aiosmtpd already refuses AUTH before TLS on the
        # main port (auth_require_tls); the implicit-TLS port sets it off.
        await self.push(
            codes.ENCRYPTION_REQUIRED.reply("Encryption required for requested authentication")
        )
        return AuthResult(success=False, handled=True)


def make_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2+, RFC 8314 section 4.1 and RFC 8996).

    Raises ``OSError`` or ``ssl.SSLError`` for unreadable or invalid files;
    the app turns that into one start-up line.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


# A MAIL/RCPT argument of the usual shape: <dot-atom@dot-atom>, then
# optional ESMTP parameters after spaces (RFC 5321 section 4.1.2).
_PLAIN_PATH = re.compile(rf"[ \t]*<(?P<addr>{PLAIN_ADDR_SPEC})>[ \t]*(?P<rest>[^\r\n]*)")


def _parse_path(arg: str) -> tuple[str, str] | None:
    """(address, rest) by the stdlib's RFC 5322 grammar, as aiosmtpd does."""
    try:
        if arg.lstrip().startswith("<"):
            angle, rest = get_angle_addr(arg)
            return str(angle.addr_spec), rest
        spec, rest = get_addr_spec(arg)
        return str(spec.addr_spec), rest
    except HeaderParseError:
        return None
    except (IndexError, AttributeError):
        # The stdlib parser crashes on some hostile input ("0@", "0@[").
        return None


_PROTOCOL_PREFIXES = ("auth_", "smtp_")


def _names_of(cls: type) -> tuple[str, ...]:
    return tuple(name for name in dir(cls) if name.startswith(_PROTOCOL_PREFIXES))


GatewaySMTP._protocol_names = _names_of(GatewaySMTP)


async def start_smtp(
    handler: GatewayHandler,
    *,
    sock: socket.socket,
    hostname: str,
    data_size_limit: int,
    idle_timeout: float,
    tls_context: ssl.SSLContext | None = None,
    require_starttls: bool = False,
    implicit_tls: bool = False,
    backlog: int = 100,
) -> asyncio.Server:
    """Serve SMTP on the bound listening socket ``sock``; returns the server.

    ``implicit_tls``: the whole connection is TLS (``tls_context`` required);
    otherwise ``tls_context`` enables STARTTLS.  ``backlog``: the kernel's
    queue of pending connections; asyncio calls ``listen`` again with it
    when it starts serving, whatever the socket was bound with.
    """
    loop = asyncio.get_running_loop()
    if implicit_tls and tls_context is None:
        raise ValueError("implicit TLS needs a TLS context")

    def factory() -> SMTP:
        return GatewaySMTP(
            handler,
            implicit_tls=implicit_tls,
            data_size_limit=data_size_limit,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=hostname,
            ident="mailsms ESMTP",
            timeout=idle_timeout,
            # No STARTTLS inside implicit TLS (RFC 8314 section 3.3).
            tls_context=None if implicit_tls else tls_context,
            require_starttls=require_starttls and not implicit_tls,
            # On the implicit-TLS port the socket itself is TLS, which
            # aiosmtpd cannot see; GatewaySMTP checks ``encrypted`` itself.
            auth_require_tls=not implicit_tls,
            loop=loop,
        )

    ssl_context = tls_context if implicit_tls else None
    return await loop.create_server(factory, sock=sock, ssl=ssl_context, backlog=backlog)
