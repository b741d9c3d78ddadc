"""The SMTP handler: decides at each step of the transaction (RFC 5321
section 3.3) and commits accepted mail before answering 250.

- MAIL: the envelope sender must be registered (the null reverse-path of a
  bounce is accepted, kept, and never texted).
- RCPT: the domain must be ours (we never relay) and the local part a valid
  phone number; past the recipient limit, 452 4.5.3.
- DATA: the From author must be registered too; automatic mail is kept but
  never texted; the body becomes SMS text; the email's metadata and one SMS
  per recipient are committed (group commit), and only then is 250 sent.

Nothing here calls a carrier: the dispatcher does, later.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from mailsms.addressing import ForeignDomain, InvalidNumber, parse_recipient
from mailsms.policy import (
    address_key,
    auto_reply_reason,
    check_author,
    check_envelope_sender,
    header_from_address,
)
from mailsms.smtp import codes
from mailsms.store.models import EmailDisposition
from mailsms.store.queries import AcceptedEmail, NewSms
from mailsms.store.runner import DbRunner, GroupCommitter
from mailsms.text import EmptyMessage, MessageTooLong, TextError, TextOptions, email_to_sms

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class _Directory:
    senders: frozenset[str]
    numbers: tuple[tuple[str, str | None], ...]
    """(number, owner entry or None) in registration order."""
    loaded: float


class GatewayHandler:
    """aiosmtpd handler hooks (``handle_MAIL``, ``handle_RCPT``, ...)."""

    def __init__(
        self,
        config: HandlerConfig,
        runner: DbRunner,
        committer: GroupCommitter,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self._runner = runner
        self._committer = committer
        self._clock = clock
        self._directory: _Directory | None = None

    # --- the allow-list snapshot -----------------------------------------
    async def _dir(self) -> _Directory:
        now = time.monotonic()
        current = self._directory
        if current is None or now - current.loaded > self.config.directory_ttl:
            senders = await self._runner.call(self._runner.store.sender_entries)
            numbers = await self._runner.call(self._runner.store.list_numbers)
            current = _Directory(
                senders=senders,
                numbers=tuple((row.number, row.sender) for row in numbers),
                loaded=now,
            )
            self._directory = current
        return current

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
            recipient = parse_recipient(address, self.config.domain, self.config.default_region)
        except ForeignDomain as exc:
            return codes.NOT_AUTHORIZED.reply(f"Relay access denied: {exc.reason}")
        except InvalidNumber as exc:
            return codes.BAD_MAILBOX.reply(f"No such mailbox: {exc.reason}")
        suppression = await self._runner.call(self._runner.store.suppression_for, recipient.e164)
        if suppression is not None:
            return codes.NOT_AUTHORIZED.reply(
                f"{recipient.e164} has opted out of SMS (replied {suppression.keyword} "
                f"to {suppression.number}); it must text START to opt back in"
            )
        if recipient.e164 in {r for _, r in getattr(envelope, "mailsms_numbers", [])}:
            # The same phone twice in one message is texted once.
            envelope.rcpt_tos.append(address)
            return codes.RECIPIENT_OK.reply(f"Recipient OK ({recipient.e164}, duplicate)")
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        numbers: list[tuple[str, str]] = getattr(envelope, "mailsms_numbers", [])
        numbers.append((address, recipient.e164))
        envelope.mailsms_numbers = numbers
        return codes.RECIPIENT_OK.reply(f"Recipient OK ({recipient.e164})")

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or b""
        received_at = self._clock()
        try:
            msg = BytesParser(policy=policy.default).parsebytes(raw)
            assert isinstance(msg, EmailMessage)
            subject = _header_text(msg, "Subject")
            message_id = _header_text(msg, "Message-ID")
        except Exception as exc:
            # Python's parser is lenient, but header folding or charset errors
            # can still raise; that is the sender's content, not our fault.
            log.info("unparsable message from %s: %s", session.peer, type(exc).__name__)
            return codes.CONTENT_REFUSED.reply("The message could not be parsed")

        numbers: list[tuple[str, str]] = getattr(envelope, "mailsms_numbers", [])
        item = AcceptedEmail(
            message_id=message_id or f"<{uuid.uuid4().hex}@mailsms.invalid>",
            mail_from="" if envelope.mail_from == "<>" else envelope.mail_from,
            from_address="",
            subject=subject,
            received_at=received_at,
            deadline_at=received_at + self.config.retry_deadline,
            peer=_peer(session),
            size=len(raw),
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
        item.from_address = address_key(from_address)

        auto = auto_reply_reason(msg)
        if auto is not None:
            return await self._keep_ignored(item, msg, f"automatic message ({auto})")

        try:
            conversion = email_to_sms(msg, self.config.text)
        except EmptyMessage as exc:
            return codes.CONTENT_REFUSED.reply(f"Nothing to send: {exc.reason}")
        except MessageTooLong as exc:
            return codes.MESSAGE_TOO_BIG.reply(f"Message too long for SMS: {exc.reason}")
        except TextError as exc:
            return codes.CONTENT_REFUSED.reply(exc.reason)

        own, pool = _numbers_for(directory, decision.entry)
        item.own_number, item.pool = own, tuple(pool)
        item.default_from = self.config.default_from
        item.attachments = ", ".join(conversion.attachments) or None
        item.thread_references = _header_text(msg, "References")
        item.headers = _header_block(raw)
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
        return await self._commit(item, f"{len(numbers)} SMS queued")

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
            outcome = await self._committer.submit(item)
        except Exception:
            log.exception("could not commit message %s", item.message_id)
            return codes.LOCAL_ERROR.reply("Temporary local problem, please try again later")
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
    value = msg.get(name)
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _peer(session: Any) -> str | None:
    peer = getattr(session, "peer", None)
    if isinstance(peer, tuple) and peer:
        return f"{peer[0]}:{peer[1]}" if len(peer) > 1 else str(peer[0])
    return None if peer is None else str(peer)
