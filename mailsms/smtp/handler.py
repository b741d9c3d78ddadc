"""The SMTP handler: decides at each step of the transaction (RFC 5321
section 3.3) and commits accepted mail before answering 250.

- AUTH (RFC 4954, PLAIN and LOGIN, only under TLS: STARTTLS per RFC 3207 or
  the implicit-TLS port per RFC 8314): the identity is an allow-list entry
  with a password (``mailsms senders set-password``); see
  :meth:`GatewayHandler.check_credentials`.
- MAIL: the envelope sender must be registered (the null reverse-path of a
  bounce is accepted, kept, and never texted); an authenticated session may
  only use addresses its identity may send as; an entry whose policy is
  ``smtp-auth`` gets ``530 5.7.0`` without AUTH.
- RCPT: the domain must be ours (we never relay), the local part a valid
  phone number, the destination's country and number type allowed
  (:mod:`mailsms.destinations`) and the phone not throttled; past the
  recipient limit, 452 4.5.3.
- DATA, in this order, each refusal before any later step runs:
  raw-byte checks before any parser (bare CR/LF, header count/size, header
  syntax: ``550 5.6.0``), the Received-hop limit (``554 5.4.6``), parsing,
  the From author (registered, single address), proof of the sender
  (:mod:`mailsms.proof`: DMARC-aligned DKIM/SPF via
  :func:`mailsms.trust.prove_sender` -> ``550 5.7.26`` / ``451 4.7.5``, or
  AUTH, or a trusted relay), loop and auto-reply handling (kept, never
  texted), the text engine, the abuse limits (:mod:`mailsms.limits`,
  charged atomically in the database), then the commit and 250.

The trusted-network rule: a connection from ``MAILSMS_TRUSTED_NETWORKS``
satisfies entries whose policy is ``trusted-relay`` *and entries registered
without a policy* (they follow the global default), but never an entry
whose policy was explicitly set to ``dkim`` or ``smtp-auth``.  So a local
trial (swaks from 127.0.0.1 for a sender added without ``--policy``) works
out of the box, while any connection from elsewhere must prove the sender,
and an operator who asks for proof for an entry always gets it.

Every Authentication-Results field claiming our authserv-id is removed from
the kept header block and ours (RFC 8601) is prepended and recorded.

Nothing here calls a carrier: the dispatcher does, later.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from mailsms.addressing import ForeignDomain, InvalidNumber, Recipient, parse_recipient
from mailsms.config import Settings
from mailsms.destinations import DestinationPolicy, check_destination, parse_countries
from mailsms.limits import PHONE_HOUR, Charge, Limits, charges_for, describe, window_start
from mailsms.limits import is_permanent as limit_is_permanent
from mailsms.mail.compose import ORIGIN_HEADER
from mailsms.policy import (
    address_key,
    auto_reply_reason,
    check_author,
    check_envelope_sender,
    header_from_address,
    normalise_sender_entry,
    registered_entry,
)
from mailsms.proof import (
    Network,
    SenderPolicy,
    in_networks,
    may_send_as,
    parse_networks,
    required_proof,
)
from mailsms.smtp import codes
from mailsms.store.models import EmailDisposition
from mailsms.store.queries import AcceptedEmail, NewSms, Store
from mailsms.store.runner import DbRunner, GroupCommit
from mailsms.text import EmptyMessage, MessageTooLong, TextError, TextOptions, email_to_sms
from mailsms.text.mime import field_value
from mailsms.text.parsing import parse_message
from mailsms.trust import (
    ResolverConfig,
    check_header_limits,
    check_header_syntax,
    find_bare_line_endings,
    prove_sender,
    received_hops,
    strip_forged_authentication_results,
    verify_password,
)

log = logging.getLogger(__name__)

# Header limits, checked on the raw bytes before parsing: no real message
# comes near them, and they bound what the parsers and DKIM have to chew.
MAX_HEADER_FIELDS = 500
MAX_HEADER_BYTES = 64 * 1024
# Recipient addresses whose parse is remembered (a few hundred bytes each).
RECIPIENT_CACHE_SIZE = 4096

# A syntactically valid scrypt hash of a random password nobody knows: an
# unknown user costs one scrypt like a known one, so timing does not tell
# which identities exist.
_DUMMY_HASH = (
    "scrypt$16384$8$1$KqhKx0Yb0nOfdb7B8O6m3g==$m8Xq2mGfK2v6S9b4pYV3o0hJm3b7o1N2w4uP5yQk6ZE="
)


@dataclass(frozen=True, slots=True)
class TrustConfig:
    """Sender proof, abuse limits and hostile-input settings."""

    default_policy: SenderPolicy = "dkim"
    trusted_networks: tuple[Network, ...] = ()
    authserv_id: str = "localhost"
    resolver: ResolverConfig = field(default_factory=ResolverConfig)
    destinations: DestinationPolicy = field(
        default_factory=lambda: DestinationPolicy(countries=None)
    )
    limits: Limits = field(default_factory=Limits)
    max_hops: int = 30


@dataclass(frozen=True, slots=True)
class HandlerConfig:
    domain: str
    default_region: str
    max_recipients: int
    text: TextOptions
    retry_deadline: timedelta
    default_from: str | None
    directory_ttl: float = 1.0
    """Seconds a snapshot of senders and numbers is reused; changes made
    with the CLI take effect within this time."""
    trust: TrustConfig = field(default_factory=TrustConfig)


@dataclass(frozen=True, slots=True)
class _Directory:
    senders: frozenset[str]
    policies: Mapping[str, str | None]
    """entry -> its explicit policy (None: the global default)."""
    numbers: tuple[tuple[str, str | None], ...]
    """(number, owner entry or None) in registration order."""
    opted_out: frozenset[str]
    """Phones with an opt-out, for the early refusal at RCPT; reloaded only
    when the table's stamp changes.  A STOP newer than the snapshot is
    caught by the dispatcher, which checks again as it claims each SMS."""
    opted_out_stamp: tuple[object, ...]
    loaded: float


@dataclass(frozen=True, slots=True)
class _Proven:
    """How the author was proven: the proof and our A-R header value."""

    how: str
    auth_results: str


class GatewayHandler:
    """aiosmtpd handler hooks (``handle_MAIL``, ``handle_RCPT``, ...).

    No method name starts with ``auth_``: aiosmtpd would take it for an AUTH
    mechanism.
    """

    def __init__(
        self,
        config: HandlerConfig,
        runner: DbRunner,
        committer: GroupCommit,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self._runner = runner
        self._committer = committer
        self._clock = clock
        self._directory: _Directory | None = None
        self._reloading = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None
        # Parsing and classifying a number (phonenumbers) is most of RCPT's
        # CPU, and the same few addresses come back again and again; both
        # are pure functions of the address here.  Refusals (exceptions)
        # are not kept.
        self._recipient = functools.lru_cache(maxsize=RECIPIENT_CACHE_SIZE)(self._classify)

    def __dir__(self) -> list[str]:
        """The hooks only: aiosmtpd lists them (and looks for ``auth_*``)
        with ``dir``/``inspect.getmembers`` of the handler on every
        connection, which would otherwise read every attribute."""
        return [name for name in type(self).__dict__ if name.startswith("handle_")]

    def _classify(self, address: str) -> tuple[Recipient, str | None]:
        """The recipient, and why its destination is refused (or None)."""
        recipient = parse_recipient(address, self.config.domain, self.config.default_region)
        return recipient, check_destination(recipient.e164, self.config.trust.destinations)

    # --- the allow-list snapshot -----------------------------------------
    async def _dir(self) -> _Directory:
        current = self._directory
        if current is None:
            return await self._load()
        if self._refresh is None and time.monotonic() - current.loaded > self.config.directory_ttl:
            # Expired: the sessions go on with it while one task loads the
            # next.  A load waits for the database thread, behind the group
            # commit's round, and on SQLite for the write gate: 2-25 ms
            # under load, during which every session in MAIL or DATA waited
            # too (about 2% of messages at half the bench's baseline rate,
            # the tail of the accept latency).
            self._refresh = asyncio.create_task(
                self._reload(current), name="mailsms-allow-list-reload"
            )
        return current

    async def _load(self) -> _Directory:
        """A snapshot to wait for (the first, or after forget_directory).
        One load at a time: the sessions in flight share it."""
        async with self._reloading:
            current = self._directory
            if current is None:
                current = await self._runner.call(
                    _load_directory, self._runner.store, None, time.monotonic()
                )
                self._directory = current
            return current

    async def _reload(self, previous: _Directory) -> None:
        try:
            fresh = await self._runner.call(
                _load_directory, self._runner.store, previous, time.monotonic()
            )
        except Exception:
            # The database is down, say: keep the snapshot for another
            # period rather than try again at every command.
            log.warning("reloading the allow-list failed; keeping the last one", exc_info=True)
            fresh = replace(previous, loaded=time.monotonic())
        finally:
            self._refresh = None
        # Unless forget_directory() dropped it meanwhile: a load started
        # before an opt-out must not replace one made after it.
        if self._directory is previous:
            self._directory = fresh

    def forget_directory(self) -> None:
        """Reload the snapshot before the next command is answered (an
        opt-out changed here; other instances see it within
        ``directory_ttl``)."""
        self._directory = None

    async def aclose(self) -> None:
        """Stop a reload in progress (at shutdown)."""
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh

    # --- AUTH (called by smtp.server.GatewaySMTP, only under TLS) ----------
    async def check_credentials(self, login: bytes, password: bytes) -> str | None:
        """The entry ``login`` names when ``password`` is its password, else
        None.  Never logs or returns the password; costs one scrypt whether
        or not the entry exists."""
        try:
            identity = normalise_sender_entry(login.decode("utf-8"), refuse_freemail=False)
            secret = password.decode("utf-8")
        except (UnicodeDecodeError, ValueError):
            identity, secret = None, ""
        stored = None
        if identity is not None:
            stored = await self._runner.call(self._runner.store.sender_password_hash, identity)
        # scrypt is CPU work: off the event loop, like the store calls.
        ok = await asyncio.to_thread(verify_password, secret, stored or _DUMMY_HASH)
        if ok and stored is not None and identity is not None:
            return identity
        return None

    # --- SMTP hooks ------------------------------------------------------
    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        # RFC 2034: announce that every reply carries an enhanced code.
        return [*responses[:-1], "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        # aiosmtpd hands the null reverse-path over as "<>" and needs a truthy
        # mail_from to accept RCPT, so "<>" stays in the envelope.
        if address and address != "<>":
            directory = await self._dir()
            decision = check_envelope_sender(address, directory.senders)
            if not decision.allowed:
                log.info(
                    "refused MAIL FROM <%s> from %s: %s", address, session.peer, decision.reason
                )
                return codes.NOT_AUTHORIZED.reply(decision.reason)
            identity = _identity(session)
            if identity is not None:
                if not may_send_as(identity, address):
                    return codes.NOT_AUTHORIZED.reply(
                        f"authenticated as {identity}, which may not send as "
                        f"<{address_key(address)}>"
                    )
            elif self._required(directory, decision.entry, session) == "smtp-auth":
                # RFC 4954 section 6: refuse the command that needs AUTH.
                return codes.AUTH_REQUIRED.reply(
                    f"Authentication required: {decision.entry} must log in (SMTP AUTH "
                    "after STARTTLS) to send"
                )
        # The null reverse-path (a bounce) is accepted: refusing bounces
        # breaks mail (RFC 5321 section 4.5.5); it is never texted.
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return codes.SENDER_OK.reply("Sender OK")

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.config.max_recipients:
            return codes.TOO_MANY_RECIPIENTS.reply(
                f"Too many recipients: at most {self.config.max_recipients} per message"
            )
        try:
            recipient, refused = self._recipient(address)
        except ForeignDomain as exc:
            return codes.NOT_AUTHORIZED.reply(f"Relay access denied: {exc.reason}")
        except InvalidNumber as exc:
            return codes.BAD_MAILBOX.reply(f"No such mailbox: {exc.reason}")
        if refused is not None:
            return codes.DESTINATION_REFUSED.reply(refused)
        suppression = None
        if recipient.e164 in (await self._dir()).opted_out:
            # Confirmed in the database, so a START since the snapshot counts.
            suppression = await self._runner.call(
                self._runner.store.suppression_for, recipient.e164
            )
        if suppression is not None:
            return codes.NOT_AUTHORIZED.reply(
                f"{recipient.e164} has opted out of SMS (replied {suppression.keyword} "
                f"to {suppression.number}); it must text START to opt back in"
            )
        if recipient.e164 in {r for _, r in getattr(envelope, "mailsms_numbers", [])}:
            # The same phone twice in one message is texted once.
            envelope.rcpt_tos.append(address)
            return codes.RECIPIENT_OK.reply(f"Recipient OK ({recipient.e164}, duplicate)")
        throttled = await self._phone_throttled(recipient.e164)
        if throttled is not None:
            # Early, per recipient: the client retries just this one.  The
            # authoritative check is the atomic charge at DATA.
            return codes.RATE_LIMITED.reply(throttled)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        numbers: list[tuple[str, str]] = getattr(envelope, "mailsms_numbers", [])
        numbers.append((address, recipient.e164))
        envelope.mailsms_numbers = numbers
        return codes.RECIPIENT_OK.reply(f"Recipient OK ({recipient.e164})")

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or b""
        received_at = self._clock()
        trust = self.config.trust

        # Hostile input first, on the raw bytes, before any parser can
        # disagree with another about what they mean.
        problem = (
            find_bare_line_endings(raw)
            or check_header_limits(raw, MAX_HEADER_FIELDS, MAX_HEADER_BYTES)
            or check_header_syntax(raw)
        )
        if problem is not None:
            log.info("refused DATA from %s: %s", session.peer, problem)
            return codes.CONTENT_REFUSED.reply(f"Malformed message refused: {problem}")
        hops = received_hops(raw)
        if hops > trust.max_hops:
            return codes.ROUTING_LOOP.reply(
                f"Routing loop detected: {hops} Received headers, at most {trust.max_hops}"
            )
        try:
            msg = parse_message(raw)
            subject = _header_text(msg, "Subject")
            message_id = _raw_header(msg, "Message-ID")
        except Exception as exc:
            # Python's parser is lenient, but header folding or charset errors
            # can still raise; that is the sender's content, not our fault.
            log.info("unparsable message from %s: %s", session.peer, type(exc).__name__)
            return codes.CONTENT_REFUSED.reply("The message could not be parsed")

        numbers: list[tuple[str, str]] = getattr(envelope, "mailsms_numbers", [])
        clean = strip_forged_authentication_results(raw, trust.authserv_id)
        item = AcceptedEmail(
            message_id=message_id or f"<{uuid.uuid4().hex}@mailsms.invalid>",
            mail_from="" if envelope.mail_from == "<>" else envelope.mail_from,
            from_address="",
            subject=subject,
            received_at=received_at,
            deadline_at=received_at + self.config.retry_deadline,
            peer=_peer(session),
            size=len(raw),
            headers=_header_block(clean),
        )

        if not item.mail_from:
            return await self._keep_ignored(item, msg, "null reverse-path (a bounce)")

        from_address, problem = header_from_address(msg)
        if from_address is None:
            return codes.NOT_AUTHORIZED.reply(f"Sender not allowed: {problem}")
        directory = await self._dir()
        decision = check_author(from_address, directory.senders)
        if not decision.allowed:
            log.info("refused DATA from %s: %s", session.peer, decision.reason)
            return codes.NOT_AUTHORIZED.reply(decision.reason)
        # From here on, this one string is both the address that was checked
        # and the address replies and bounces go to (CVE-2023-27043 class).
        item.from_address = address_key(from_address)

        refusal, proven = await self._prove(server, session, envelope, raw, item, directory)
        if refusal is not None:
            return refusal
        assert proven is not None
        item.headers = f"Authentication-Results: {proven.auth_results}\r\n{item.headers or ''}"
        item.auth_results = proven.auth_results

        loop = self._loop_reason(msg, message_id)
        if loop is not None:
            return await self._keep_ignored(item, msg, loop)
        auto = auto_reply_reason(msg)
        if auto is not None:
            return await self._keep_ignored(item, msg, f"automatic message ({auto})")

        try:
            conversion = email_to_sms(msg, self.config.text)
        except EmptyMessage as exc:
            return codes.CONTENT_REFUSED.reply(f"Nothing to send: {exc.reason}")
        except MessageTooLong as exc:
            return codes.TEXT_TOO_LONG.reply(f"Message too long for SMS: {exc.reason}")
        except TextError as exc:
            return codes.CONTENT_REFUSED.reply(exc.reason)

        own, pool = _numbers_for(directory, decision.entry)
        item.own_number, item.pool = own, tuple(pool)
        item.default_from = self.config.default_from
        item.attachments = ", ".join(conversion.attachments) or None
        item.thread_references = _raw_header(msg, "References")
        for _, e164 in numbers:
            # The from-number is allocated in the commit (sticky per pair).
            for part in conversion.messages:
                item.sms.append(
                    NewSms(
                        to_number=e164,
                        text=part.text,
                        encoding=part.encoding,
                        segments=part.segments,
                    )
                )

        # The limits are counted and checked in the commit's own transaction.
        item.charges = tuple(
            charges_for(
                item.from_address, (e164 for _, e164 in numbers), len(item.sms), received_at,
                trust.limits,
            )
        )  # fmt: skip
        return await self._commit(item, f"{len(numbers)} SMS queued")

    # --- proof of the sender ------------------------------------------------
    def _required(
        self, directory: _Directory, entry: str | None, session: Any
    ) -> SenderPolicy | None:
        trusted = getattr(session, "mailsms_trusted", None)
        if trusted is None:
            # The peer is fixed for the connection: decide once, not per
            # command of every message it sends.
            trusted = in_networks(_peer_ip(session), self.config.trust.trusted_networks)
            session.mailsms_trusted = trusted
        return required_proof(
            directory.policies.get(entry or ""), self.config.trust.default_policy, trusted
        )

    async def _prove(
        self,
        server: Any,
        session: Any,
        envelope: Any,
        raw: bytes,
        item: AcceptedEmail,
        directory: _Directory,
    ) -> tuple[str | None, _Proven | None]:
        """(refusal reply, None) or (None, how the author was proven)."""
        trust = self.config.trust
        authserv = trust.authserv_id
        identity = _identity(session)
        if identity is not None:
            # AUTH is the strongest proof and satisfies every policy, but an
            # authenticated user may only write as addresses it owns.
            if not may_send_as(identity, item.from_address):
                return codes.NOT_AUTHORIZED.reply(
                    f"authenticated as {identity}, which may not send as "
                    f"<{item.from_address}> (the From address)"
                ), None
            return None, _Proven("smtp-auth", f"{authserv}; auth=pass smtp.auth={identity}")

        entry = registered_entry(item.from_address, directory.senders)
        required = self._required(directory, entry, session)
        if required is None:
            ip = _peer_ip(session) or "unknown"
            return None, _Proven("trusted-relay", f"{authserv}; none (trusted relay {ip})")
        if required == "smtp-auth":
            return codes.AUTH_REQUIRED.reply(
                f"Authentication required: {entry} must log in (SMTP AUTH after STARTTLS) to send"
            ), None

        proof = await prove_sender(
            raw,
            mail_from=item.mail_from,
            client_ip=_peer_ip(session) or "0.0.0.0",  # noqa: S104 - an address, not a bind
            helo=str(getattr(session, "host_name", "") or ""),
            resolver_config=trust.resolver,
        )
        if proof.verdict == "temperror":
            log.info("DNS trouble proving %s: %s", item.from_address, proof.reason)
            return codes.DNS_TEMPORARY.reply(f"Try again later: {proof.reason}"), None
        if proof.verdict != "pass":
            log.info("refused DATA from %s: %s", session.peer, proof.reason)
            return codes.NOT_PROVEN.reply(
                f"Sender not authenticated (DMARC, RFC 7489): {proof.reason}"
            ), None
        _, _, domain = item.from_address.rpartition("@")
        if (proof.from_domain or "").rstrip(".").lower() != domain:
            # The DMARC code and the email parser read different From
            # domains: a parser-differential attack, never a real message.
            return codes.NOT_PROVEN.reply(
                "Sender not authenticated: the From header is ambiguous"
            ), None
        return None, _Proven("dkim", proof.authentication_results(authserv))

    def _loop_reason(self, msg: EmailMessage, message_id: str | None) -> str | None:
        """Why this is mail we generated ourselves (never text it again)."""
        if ORIGIN_HEADER in msg:
            return f"generated by a mailsms gateway ({ORIGIN_HEADER}); loop defence"
        if message_id:
            _, at, domain = message_id.strip().strip("<>").rpartition("@")
            if at and domain.lower().rstrip(".") == self.config.domain:
                return f"Message-ID on our domain {self.config.domain}; loop defence"
        return None

    async def _phone_throttled(self, e164: str) -> str | None:
        limit = self.config.trust.limits.per_phone_hour
        if limit <= 0:
            return None
        start = window_start(PHONE_HOUR, self._clock())
        used = await self._runner.call(self._runner.store.counter_value, PHONE_HOUR, e164, start)
        if used >= limit:
            return describe(Charge(PHONE_HOUR, e164, start, 1, limit))
        return None

    # --- keeping and committing ---------------------------------------------
    async def _keep_ignored(self, item: AcceptedEmail, msg: EmailMessage, reason: str) -> str:
        """Accept and keep the message without texting it: nothing accepted
        is lost, and the sender's mail system sees no error to bounce."""
        if not item.from_address:
            author, _ = header_from_address(msg)
            item.from_address = address_key(author or item.mail_from or "")
        item.disposition = EmailDisposition.IGNORED
        item.reason = reason
        log.info("kept %s without texting it: %s", item.message_id, reason)
        return await self._commit(item, f"accepted, not texted: {reason}")

    async def _commit(self, item: AcceptedEmail, what: str) -> str:
        try:
            outcome = await self._committer.enqueue(item)
        except Exception:
            log.exception("could not commit message %s", item.message_id)
            return codes.LOCAL_ERROR.reply("Temporary local problem, please try again later")
        if outcome.refused is not None:
            over = outcome.refused
            log.info("refused %s from %s: %s", item.message_id, item.from_address, describe(over))
            status = codes.QUOTA_EXHAUSTED if limit_is_permanent(over) else codes.RATE_LIMITED
            return status.reply(describe(over))
        if outcome.duplicate:
            return codes.MESSAGE_ACCEPTED.reply(
                f"Already accepted as message {outcome.email_id}; not sent again"
            )
        return codes.MESSAGE_ACCEPTED.reply(f"OK: message {outcome.email_id}, {what}")

    async def handle_exception(self, error: Exception) -> str:
        # Never leak internals to the client (aiosmtpd's default would put
        # the exception text in a 500 reply).
        log.error("unexpected error in SMTP session", exc_info=error)
        return codes.LOCAL_ERROR.reply("Temporary local problem, please try again later")


def _load_directory(store: Store, previous: _Directory | None, now: float) -> _Directory:
    """A fresh snapshot of senders and numbers (small tables); the opt-out
    phones are carried over unless the table changed."""
    senders = store.sender_trust()
    numbers = store.list_numbers()
    stamp = store.suppression_stamp()
    if previous is not None and previous.opted_out_stamp == stamp:
        opted_out = previous.opted_out
    else:
        opted_out = store.suppressed_phones()
    return _Directory(
        senders=frozenset(s.address for s in senders),
        policies={s.address: s.policy for s in senders},
        numbers=tuple((row.number, row.sender) for row in numbers),
        opted_out=opted_out,
        opted_out_stamp=stamp,
        loaded=now,
    )


def _identity(session: Any) -> str | None:
    """The entry this session authenticated as (see smtp.server), or None."""
    if not getattr(session, "authenticated", False):
        return None
    data = getattr(session, "auth_data", None)
    return data if isinstance(data, str) else None


def _numbers_for(directory: _Directory, entry: str | None) -> tuple[str | None, list[str]]:
    own = next((n for n, owner in directory.numbers if entry and owner == entry), None)
    pool = [n for n, owner in directory.numbers if owner is None]
    return own, pool


_MAX_HEADER_BLOCK = 16 * 1024


def _header_block(raw: bytes) -> str:
    """The raw header section (capped), kept for bounces (RFC 3464 part 3)."""
    end = raw.find(b"\r\n\r\n")
    block = raw[: end if end >= 0 else len(raw)][:_MAX_HEADER_BLOCK]
    return block.decode("ascii", "replace")


def _header_text(msg: EmailMessage, name: str) -> str | None:
    """The first ``name`` field as text: decoded (RFC 2047) and unfolded.
    Read like the text engine reads it (a plain ASCII Subject without the
    header registry's parse, see mailsms.text.mime.field_value)."""
    value = field_value(msg, name)
    if value is None:
        return None
    return " ".join(str(value).split()) or None


def _raw_header(msg: EmailMessage, name: str) -> str | None:
    """The first ``name`` field unfolded, without the header registry's
    parse: Message-ID and References are kept and compared as text, and
    parsing them costs more than the rest of the header block."""
    raw = _first_raw(msg, name)
    if raw is None:
        return None
    if not raw.isascii():
        # 8-bit bytes arrive as surrogate escapes: let the registry decode
        # them as it does for every other header.
        return _header_text(msg, name)
    return " ".join(raw.split()) or None


def _first_raw(msg: EmailMessage, name: str) -> str | None:
    """The first ``name`` field's value as it was parsed, still folded."""
    wanted = name.lower()
    for field_name, value in msg.raw_items():
        if field_name.lower() == wanted:
            return str(value)
    return None


def _peer(session: Any) -> str | None:
    peer = getattr(session, "peer", None)
    if isinstance(peer, tuple) and peer:
        return f"{peer[0]}:{peer[1]}" if len(peer) > 1 else str(peer[0])
    return None if peer is None else str(peer)


def _peer_ip(session: Any) -> str | None:
    peer = getattr(session, "peer", None)
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return None


def trust_config(settings: Settings) -> TrustConfig:
    """The handler's trust settings, read once from the typed settings."""
    return TrustConfig(
        default_policy=settings.sender_policy,
        trusted_networks=parse_networks(settings.trusted_networks),
        authserv_id=settings.authserv_id or settings.domain,
        resolver=ResolverConfig(
            nameservers=tuple(n for n in settings.dns_nameservers.split(",") if n),
            timeout=settings.dns_timeout,
            # A whole SPF evaluation may chain several lookups (RFC 7208
            # section 4.6.4); each DKIM/DMARC lookup is bounded by timeout.
            total_timeout=max(4 * settings.dns_timeout, settings.dns_timeout + 1),
        ),
        destinations=DestinationPolicy(
            countries=parse_countries(settings.allowed_countries, settings.default_region),
            allow_fixed_line=settings.allow_fixed_line,
        ),
        limits=Limits(
            per_minute=settings.sender_rate_per_minute,
            per_day=settings.sender_daily_quota,
            per_phone_hour=settings.destination_per_hour,
        ),
        max_hops=settings.max_hops,
    )
