"""Failures reach the sender as standard bounces.

When an SMS ends ``failed``, ``undelivered`` or ``expired``, the store marks
it ``bounce=pending`` in the same transaction.  This worker turns each
pending mark into an RFC 3464 delivery status notification to the original
envelope sender (null reverse-path, ``Auto-Submitted: auto-replied`` per
RFC 3834) and queues it, marking the SMS bounced in the same transaction:
exactly one DSN per failed SMS, even across crashes and instances.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from mailsms.addressing import number_address
from mailsms.mail.compose import message_to_bytes
from mailsms.mail.dsn import DSN_ENVELOPE_FROM, DsnReason, compose_dsn
from mailsms.store.models import InboundEmail, OutboundSms
from mailsms.store.queries import NewMail
from mailsms.store.runner import DbRunner

log = logging.getLogger(__name__)

# Carrier error codes that mean "this number can never get SMS" (Twilio's
# documented 21211 invalid To, 21614 not a mobile number, 30006 landline).
_INVALID_NUMBER_CODES = frozenset({"21211", "21614", "30006", "30005"})


class BounceNotifier:
    def __init__(
        self,
        runner: DbRunner,
        *,
        domain: str,
        deadline: timedelta,
        clock: Callable[[], datetime],
        on_mail: Callable[[], None] | None = None,
        batch: int = 50,
    ) -> None:
        self._runner = runner
        self._domain = domain
        self._deadline = deadline
        self._clock = clock
        self._on_mail = on_mail
        self._batch = batch

    async def round(self) -> int:
        store = self._runner.store
        pending = await self._runner.call(store.pending_bounces, self._batch)
        queued = 0
        for sms, email in pending:
            assert sms.id is not None
            now = self._clock()
            mail = self._dsn(sms, email, now)
            done = await self._runner.call(
                store.queue_bounce, sms.id, mail, now, now + self._deadline
            )
            if done and mail is not None:
                queued += 1
                log.info(
                    "bounce for SMS %s to %s queued to <%s>",
                    sms.uid,
                    sms.to_number,
                    mail.recipients[0],
                )
        if queued and self._on_mail is not None:
            self._on_mail()
        return len(pending)

    def _dsn(self, sms: OutboundSms, email: InboundEmail | None, now: datetime) -> NewMail | None:
        if email is None or not email.mail_from:
            return None  # a keyword answer, or mail that was itself a bounce
        reason: DsnReason | None = None
        if sms.error_code in _INVALID_NUMBER_CODES:
            reason = "invalid_number"
        elif sms.status == "expired":
            reason = "expired"
        message = compose_dsn(
            phone=sms.to_number,
            domain=self._domain,
            to=email.mail_from,
            original_subject=email.subject,
            original_message_id=email.message_id,
            sms_status=sms.status,
            error_code=sms.error_code,
            error_text=sms.error,
            arrival_date=email.received_at,
            now=now,
            unique=uuid.uuid4().hex,
            reason=reason,
            original_recipient=number_address(sms.to_number, self._domain),
            original_headers=email.headers,
        )
        return NewMail(
            kind="dsn",
            message_id=str(message["Message-ID"]),
            envelope_from=DSN_ENVELOPE_FROM,
            recipients=(email.mail_from,),
            message=message_to_bytes(message),
        )
