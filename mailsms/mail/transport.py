"""Mail transports: hand one finished message to the outside world, once.

A transport delivers a message (bytes, already signed) to an envelope
(RFC 5321 §2.3.1: reverse-path and forward-paths) and either returns, meaning
the next hop has taken responsibility for it, or raises one of
:mod:`mailsms.errors`.  It never retries: the outbound queue in the database
decides about retries, so a transport only *classifies* failures:

* :class:`TemporaryFailure` -- connection refused/reset, timeouts, a
  dropped connection, TLS trouble, any ``4xx`` reply (RFC 5321 §4.2.1);
* :class:`PermanentFailure` -- any ``5xx`` reply, a refused login
  (``535``), an address that cannot be put on an SMTP command line.

``envelope_from=""`` is the null reverse-path ``<>`` used for bounces
(RFC 5321 §4.5.5, RFC 3464).

Transports are picked by name from :data:`TRANSPORTS` (the app reads the
``MAILSMS_MAIL_TRANSPORT`` setting) and built from a :class:`TransportConfig`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import mailbox
import os
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, Protocol

import aiosmtplib

from mailsms.errors import PermanentFailure, TemporaryFailure

__all__ = [
    "TRANSPORTS",
    "MailTransport",
    "MaildirTransport",
    "PartialDeliveryFailure",
    "Security",
    "SmtpRelayTransport",
    "TransportConfig",
    "TransportFactory",
    "make_transport",
]

Security = Literal["none", "starttls", "tls"]

# Overall bound on one SMTP session, in multiples of the per-command
# timeout: aiosmtplib applies ``timeout`` to each command, so a peer that
# answers every command just in time could otherwise hold us for ~10x it.
_SESSION_TIMEOUT_FACTOR = 4


class MailTransport(Protocol):
    """Something that delivers a finished message once."""

    async def deliver(self, envelope_from: str, recipients: Sequence[str], message: bytes) -> None:
        """Deliver ``message`` from ``envelope_from`` ("" = ``<>``) to ``recipients``.

        :raises TemporaryFailure: worth retrying later.
        :raises PermanentFailure: retrying cannot help.
        """
        ...


class PartialDeliveryFailure(PermanentFailure):
    """The relay took the message for some recipients and refused others.

    Permanent *for this message*: the accepted recipients already have it,
    so retrying the whole message would deliver it to them twice.  The
    caller may re-queue :attr:`refused` individually if it wants to.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None,
        accepted: Sequence[str],
        refused: Mapping[str, tuple[int, str]],
    ) -> None:
        super().__init__(message, code=code)
        self.accepted = tuple(accepted)
        self.refused = dict(refused)


def _is_loopback(host: str) -> bool:
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_envelope_address(address: str) -> None:
    """Refuse what aiosmtplib would silently reinterpret or could not send.

    aiosmtplib extracts *an* address from whatever it is given, so a value
    such as ``a@b>\r\nRCPT TO:<c@d`` would go out to some other mailbox
    instead of failing.  Only a plain addr-spec (or "" for ``<>``) passes.
    """
    if address == "":
        return
    if any(c in "<>" or c.isspace() or not c.isprintable() for c in address):
        raise PermanentFailure(f"not a deliverable envelope address: {address!r}")
    if "@" not in address.strip('"'):
        raise PermanentFailure(f"not a deliverable envelope address: {address!r}")


def _classify_reply(code: int, what: str, text: str) -> TemporaryFailure | PermanentFailure:
    """4xx -> temporary, everything else (5xx, nonsense) -> permanent."""
    message = f"SMTP relay refused {what}: {code} {text}".strip()
    if 400 <= code < 500:
        return TemporaryFailure(message, code=str(code))
    return PermanentFailure(message, code=str(code))


class SmtpRelayTransport:
    """Deliver through a smarthost over SMTP submission (RFC 5321, RFC 6409).

    ``security``: ``"tls"`` is implicit TLS (port 465, RFC 8314),
    ``"starttls"`` requires a STARTTLS upgrade (RFC 3207) and fails if the
    relay does not offer it, ``"none"`` is cleartext (never upgraded, for a
    relay on the same host or network).  Certificates are verified against
    ``tls_context`` or the system trust store.

    Credentials are refused with ``security="none"`` unless the relay is on
    a loopback address: AUTH in cleartext would expose the password.

    Partial recipient refusal: if the relay accepts the message for some
    recipients and refuses others, :class:`PartialDeliveryFailure` (a
    permanent failure) is raised after the message went out to the
    accepted ones -- see its docstring.  mailsms itself always sends to a
    single recipient, so this only matters to other callers.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: Security = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        helo_name: str | None = None,
    ) -> None:
        if security not in ("none", "starttls", "tls"):
            raise ValueError(f"security must be none, starttls or tls, not {security!r}")
        if (username is None) != (password is None):
            raise ValueError("relay username and password must be given together")
        if username is not None and security == "none" and not _is_loopback(host):
            raise ValueError("refusing SMTP AUTH without TLS to a non-local relay")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._host = host
        self._port = port
        self._security: Security = security
        self._username = username
        self._password = password
        self._timeout = timeout
        self._tls_context = tls_context
        self._helo_name = helo_name

    def __repr__(self) -> str:
        # The password never appears; the username only as "set".
        auth = "yes" if self._username is not None else "no"
        return (
            f"SmtpRelayTransport(host={self._host!r}, port={self._port}, "
            f"security={self._security!r}, auth={auth})"
        )

    def _scrub(self, text: str) -> str:
        # A relay could echo what it was sent; never let the password through.
        if self._password:
            text = text.replace(self._password, "***")
        return text

    async def deliver(self, envelope_from: str, recipients: Sequence[str], message: bytes) -> None:
        """Run one SMTP session: connect, (STARTTLS,) (AUTH,) MAIL/RCPT/DATA, QUIT."""
        recipients = list(recipients)
        if not recipients:
            raise PermanentFailure("no recipients")
        for address in [envelope_from, *recipients]:
            _check_envelope_address(address)
        try:
            await self._session(envelope_from, recipients, message)
        except PartialDeliveryFailure:
            raise
        except aiosmtplib.SMTPAuthenticationError as exc:
            code = exc.code
            # 454 is a temporary authentication failure (RFC 4954 §6).
            failure_type = TemporaryFailure if 400 <= code < 500 else PermanentFailure
            raise failure_type(
                self._scrub(f"SMTP relay refused authentication: {code} {exc.message}"),
                code=str(code),
            ) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusals = {r.recipient: (r.code, r.message) for r in exc.recipients}
            detail = "; ".join(f"{rcpt}: {c} {t}" for rcpt, (c, t) in refusals.items())
            temporary = [c for c, _ in refusals.values() if 400 <= c < 500]
            if temporary:
                raise TemporaryFailure(
                    self._scrub(f"SMTP relay refused recipients: {detail}"),
                    code=str(temporary[0]),
                ) from None
            first = next(iter(refusals.values()))[0]
            raise PermanentFailure(
                self._scrub(f"SMTP relay refused recipients: {detail}"), code=str(first)
            ) from None
        except aiosmtplib.SMTPSenderRefused as exc:
            raise _classify_reply(exc.code, "sender", self._scrub(exc.message)) from None
        except aiosmtplib.SMTPDataError as exc:
            raise _classify_reply(exc.code, "message", self._scrub(exc.message)) from None
        except aiosmtplib.SMTPResponseException as exc:
            # Greeting, HELO/EHLO, STARTTLS or another command refused.
            raise _classify_reply(exc.code, "command", self._scrub(exc.message)) from None
        except aiosmtplib.SMTPNotSupported as exc:
            # E.g. an internationalised address the relay cannot take.
            raise PermanentFailure(f"SMTP relay lacks a needed extension: {exc.message}") from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError) as exc:
            raise TemporaryFailure(f"SMTP relay connection failed: {exc.message}") from None
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            raise TemporaryFailure(
                f"SMTP relay {self._host}:{self._port} timed out", code="timeout"
            ) from None
        except aiosmtplib.SMTPException as exc:
            # Remaining cases are session-level: STARTTLS or AUTH not offered.
            # Like an MTA, defer (the relay's configuration may be fixed).
            raise TemporaryFailure(self._scrub(f"SMTP relay: {exc.message}")) from None
        except ssl.SSLError as exc:
            raise TemporaryFailure(f"TLS with SMTP relay failed: {exc.reason or exc}") from None
        except OSError as exc:
            # ConnectionRefusedError, unreachable network, DNS failure, reset.
            raise TemporaryFailure(
                f"cannot reach SMTP relay {self._host}:{self._port}: {exc.strerror or exc}"
            ) from None
        except (ValueError, UnicodeError) as exc:
            # An address with characters that cannot go on a command line.
            raise PermanentFailure(f"address not deliverable by SMTP: {exc}") from None

    async def _session(self, envelope_from: str, recipients: list[str], message: bytes) -> None:
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            timeout=self._timeout,
            use_tls=self._security == "tls",
            start_tls=self._security == "starttls",
            tls_context=self._tls_context,
            validate_certs=True,
            local_hostname=self._helo_name,
        )
        try:
            async with asyncio.timeout(self._timeout * _SESSION_TIMEOUT_FACTOR):
                await client.connect()
                if self._username is not None and self._password is not None:
                    await client.login(self._username, self._password)
                options: list[str] = []
                if not all(address.isascii() for address in [envelope_from, *recipients]):
                    options.append("SMTPUTF8")  # RFC 6531; refused if unsupported
                if not message.isascii():
                    options.append("BODY=8BITMIME")  # RFC 6152
                refused, _ = await client.sendmail(
                    envelope_from, recipients, message, mail_options=options
                )
        except BaseException:
            # Nothing was accepted: drop the connection without waiting for
            # a polite QUIT (the session may be stuck, e.g. after a timeout).
            client.close()
            raise
        # DATA got its 250: from here on the relay owns the message, and
        # nothing below may turn into an error (a retry would duplicate it).
        # QUIT is outside the session deadline, bounded by the per-command one.
        await _quit_quietly(client)
        if refused:
            accepted = [r for r in recipients if r not in refused]
            detail = "; ".join(f"{rcpt}: {r.code} {r.message}" for rcpt, r in refused.items())
            raise PartialDeliveryFailure(
                self._scrub(f"SMTP relay accepted {len(accepted)} recipient(s), refused {detail}"),
                code=str(next(iter(refused.values())).code),
                accepted=accepted,
                refused={rcpt: (r.code, r.message) for rcpt, r in refused.items()},
            )


async def _quit_quietly(client: aiosmtplib.SMTP) -> None:
    # Once DATA got its 250 the relay owns the message: a failing QUIT must
    # not turn into an error, or the retry would deliver a duplicate.
    if not client.is_connected:
        return
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()


class MaildirTransport:
    """Deliver into a local Maildir folder (for development and tests).

    One file per message, however many recipients: it is one folder, and a
    single atomic ``tmp/`` -> ``new/`` rename means a retry after an error
    cannot leave a partial duplicate.  ``Return-Path:`` (RFC 5321 §4.4) and
    one ``Delivered-To:`` per recipient are prepended, as a delivery agent
    would.  Writing happens in a worker thread; OSError -> TemporaryFailure.
    """

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    def __repr__(self) -> str:
        return f"MaildirTransport(path={str(self._path)!r})"

    async def deliver(self, envelope_from: str, recipients: Sequence[str], message: bytes) -> None:
        """Write ``message`` to ``<path>/new/``."""
        if not recipients:
            raise PermanentFailure("no recipients")
        for address in [envelope_from, *recipients]:
            _check_envelope_address(address)
        trace = f"Return-Path: <{envelope_from}>\n" + "".join(
            f"Delivered-To: {rcpt}\n" for rcpt in recipients
        )
        # Maildir files conventionally use the local line end (LF).
        data = trace.encode("utf-8") + message.replace(b"\r\n", b"\n")
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:
            raise TemporaryFailure(f"cannot write to Maildir {self._path}: {exc}") from None

    def _write(self, data: bytes) -> None:
        folder = mailbox.Maildir(self._path, factory=None, create=True)
        key = folder.add(data)
        # A plain new message is stored as new/<key>; fsync it and the
        # directory so "delivered" survives a crash.
        stored = self._path / "new" / key
        if stored.exists():
            fd = os.open(stored, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            dir_fd = os.open(self._path / "new", os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Settings the transport factories read (values come from app settings)."""

    relay_host: str = "localhost"
    relay_port: int = 587
    relay_security: Security = "starttls"
    relay_username: str | None = None
    relay_password: str | None = field(default=None, repr=False)
    relay_timeout: float = 30.0
    relay_ca_file: Path | None = None
    """CAs (PEM) to check the relay's certificate against; None: the system's."""
    maildir_path: Path | None = None
    helo_name: str | None = None


TransportFactory = Callable[[TransportConfig], MailTransport]


def _relay_tls_context(ca_file: Path | None) -> ssl.SSLContext | None:
    """The client context that checks the relay's certificate against the
    CAs in ``ca_file`` (hostname checked too, as with the system's CAs), or
    None for the system trust store.  ValueError, in one line and without
    the file's contents, when the file cannot be read or holds no CA."""
    if ca_file is None:
        return None
    try:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    except ssl.SSLError as exc:  # before OSError, its base class
        reason = exc.reason or "unusable"
        raise ValueError(f"the CA file {ca_file} holds no usable certificate ({reason})") from None
    except OSError as exc:
        raise ValueError(f"cannot read the CA file {ca_file}: {exc.strerror or exc}") from None


def _smtp_factory(config: TransportConfig) -> MailTransport:
    return SmtpRelayTransport(
        config.relay_host,
        config.relay_port,
        security=config.relay_security,
        username=config.relay_username,
        password=config.relay_password,
        timeout=config.relay_timeout,
        tls_context=_relay_tls_context(config.relay_ca_file),
        helo_name=config.helo_name,
    )


def _maildir_factory(config: TransportConfig) -> MailTransport:
    if config.maildir_path is None:
        raise ValueError("the maildir transport needs maildir_path")
    return MaildirTransport(config.maildir_path)


TRANSPORTS: Mapping[str, TransportFactory] = MappingProxyType(
    {"smtp": _smtp_factory, "maildir": _maildir_factory}
)
"""Transport factories by the name used in ``MAILSMS_MAIL_TRANSPORT``."""


def make_transport(name: str, config: TransportConfig) -> MailTransport:
    """Build the transport called ``name``; ValueError names the valid ones."""
    try:
        factory = TRANSPORTS[name.strip().lower()]
    except KeyError:
        valid = ", ".join(sorted(TRANSPORTS))
        raise ValueError(f"unknown mail transport {name!r} (expected one of: {valid})") from None
    return factory(config)
