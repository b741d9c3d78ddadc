"""SMS to email: route each committed inbound SMS and act on it.

For every pending inbound SMS (already committed by the webhook, so the
carrier got its 2xx), in one transaction per SMS:

- STOP-type keywords add (phone, number) to the suppression list, answer
  once with ``MAILSMS_STOP_REPLY`` and tell the conversation's sender by
  email; START-type keywords remove it; HELP/INFO answer with the help text
  (mailsms.keywords, CTIA messaging principles).
- Anything else becomes a reply email to whoever the conversation belongs to
  (mailsms.store route_for): threaded under the sender's latest email, From
  the phone's address on our domain so that Reply texts back (RFC 5322
  section 3.6.4 threading).
- With nobody to send it to, the SMS is kept as ``unrouted`` with a reason
  and shown by ``mailsms messages list``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailsms.addressing import display_number
from mailsms.keywords import Keyword, classify
from mailsms.mail.compose import compose_reply, message_to_bytes
from mailsms.store.models import InboundSms, InboundStatus
from mailsms.store.queries import NewMail, NewSms, Route
from mailsms.store.runner import DbRunner
from mailsms.text import analyse

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InboundConfig:
    domain: str
    catch_all: str | None
    stop_reply: str
    start_reply: str
    help_reply: str
    deadline: timedelta


class InboundRouter:
    def __init__(
        self,
        runner: DbRunner,
        config: InboundConfig,
        *,
        clock: Callable[[], datetime],
        on_mail: Callable[[], None] | None = None,
        on_sms: Callable[[], None] | None = None,
        on_opt_out: Callable[[], None] | None = None,
        batch: int = 50,
    ) -> None:
        self._runner = runner
        self._config = config
        self._clock = clock
        self._on_mail = on_mail
        self._on_sms = on_sms
        self._on_opt_out = on_opt_out
        """Called after a STOP or START changed the opt-out list (the SMTP
        listener drops its snapshot, so the change counts at once)."""
        self._batch = batch

    async def round(self) -> int:
        store = self._runner.store
        rows = await self._runner.call(store.pending_inbound, self._batch)
        for row in rows:
            route = await self._runner.call(
                store.route_for, row.from_phone, row.to_number, self._config.catch_all
            )
            await self._handle(row, route)
        return len(rows)

    async def _handle(self, row: InboundSms, route: Route | None) -> None:
        assert row.id is not None
        now = self._clock()
        keyword = classify(row.text)
        mails: list[NewMail] = []
        replies: list[NewSms] = []
        suppress: str | None = None
        unsuppress = False
        phone = display_number(row.from_phone)
        if keyword is not None:
            kind, word = keyword
            status = InboundStatus.KEYWORD
            routed_to = None
            if kind is Keyword.STOP:
                suppress = word
                reason = f"{word}: opted out of SMS from {row.to_number}"
                answer = self._config.stop_reply
                notice = (
                    f"{phone} replied {word}. It will receive no more SMS from this gateway "
                    "until it texts START; emails to this number are refused until then."
                )
            elif kind is Keyword.START:
                unsuppress = True
                reason = f"{word}: opted back in"
                answer = self._config.start_reply
                notice = f"{phone} replied {word} and can receive SMS again."
            else:
                reason = f"{word}: help requested"
                answer = self._config.help_reply
                notice = None
            if answer.strip():
                part = analyse(answer)
                replies.append(
                    NewSms(
                        to_number=row.from_phone,
                        from_number=row.to_number,
                        text=answer,
                        encoding=part.encoding,
                        segments=part.segments,
                    )
                )
            if notice is not None and route is not None:
                routed_to = route.to
                mails.append(
                    self._reply_mail(row, route, f"{row.text.strip()}\n\n[mailsms] {notice}")
                )
        elif route is None:
            status, routed_to = InboundStatus.UNROUTED, None
            reason = (
                f"nobody to deliver to: no conversation with {row.from_phone} on "
                f"{row.to_number}, the number has no owner and no catch-all address "
                "(MAILSMS_CATCH_ALL) is set"
            )
        else:
            status, routed_to = InboundStatus.ROUTED, route.to
            reason = f"replied by email to {route.to} ({route.via})"
            mails.append(self._reply_mail(row, route, row.text))
        done = await self._runner.call(
            self._runner.store.complete_inbound,
            row.id,
            status=status,
            routed_to=routed_to,
            reason=reason,
            now=now,
            deadline=now + self._config.deadline,
            mails=mails,
            replies=replies,
            suppress=suppress,
            unsuppress=unsuppress,
        )
        if not done:
            return  # another instance handled it
        log.info(
            "inbound SMS %s from %s to %s: %s",
            row.carrier_id,
            row.from_phone,
            row.to_number,
            reason,
        )
        if mails and self._on_mail is not None:
            self._on_mail()
        if replies and self._on_sms is not None:
            self._on_sms()
        if (suppress is not None or unsuppress) and self._on_opt_out is not None:
            self._on_opt_out()

    def _reply_mail(self, row: InboundSms, route: Route, text: str) -> NewMail:
        message = compose_reply(
            phone=row.from_phone,
            domain=self._config.domain,
            to=route.to,
            original_subject=route.subject,
            original_message_id=route.message_id,
            references=route.thread_references,
            text=text,
            media_urls=tuple((row.media_urls or "").split()),
            received_at=row.received_at,
            unique=uuid.uuid4().hex,
        )
        return NewMail(
            kind="reply",
            message_id=str(message["Message-ID"]),
            envelope_from=str(message["From"].addresses[0].addr_spec),
            recipients=(route.to,),
            message=message_to_bytes(message),
        )
