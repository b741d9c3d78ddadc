"""The outbound mail queue's dispatcher: delivers queued email.

Replies, bounces and notices are committed to the ``mail_queue`` table
first; this loop claims due mail under a lease, DKIM-signs it at delivery
(RFC 6376: the signature covers the bytes that leave), hands it to the
configured transport, and records the outcome.  Temporary failures (relay
down, 4xx) are retried with backoff until the deadline; permanent ones
(5xx) end ``failed``.  Nothing is deleted.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from mailsms.errors import PermanentFailure, TemporaryFailure
from mailsms.mail.dkim import DkimSigner
from mailsms.mail.transport import MailTransport
from mailsms.retry import RetryPolicy, next_attempt
from mailsms.store.models import MailStatus, OutboundMail
from mailsms.store.runner import DbRunner

log = logging.getLogger(__name__)


class MailDispatcher:
    def __init__(
        self,
        runner: DbRunner,
        transport: MailTransport,
        *,
        signer: DkimSigner | None,
        retry: RetryPolicy,
        lease: float,
        clock: Callable[[], datetime],
        rng: random.Random | None = None,
        batch: int = 20,
    ) -> None:
        self._runner = runner
        self._transport = transport
        self._signer = signer
        self._retry = retry
        self._lease = timedelta(seconds=lease)
        self._clock = clock
        self._rng = rng or random.Random()
        self._batch = batch

    async def round(self) -> int:
        now = self._clock()
        rows = await self._runner.call(
            self._runner.store.claim_mail, now, self._batch, now + self._lease
        )
        for row in rows:
            await self._deliver(row)
        return len(rows)

    async def _deliver(self, row: OutboundMail) -> None:
        assert row.id is not None
        store = self._runner.store
        data = row.message
        if self._signer is not None:
            data = self._signer.sign(data)
        recipients = row.recipients.split("\n")
        try:
            await self._transport.deliver(row.envelope_from, recipients, data)
        except PermanentFailure as exc:
            log.warning("mail %s to %s failed: %s", row.message_id, recipients, exc)
            await self._runner.call(
                store.record_mail,
                row.id,
                status=MailStatus.FAILED,
                now=self._clock(),
                error=exc.message,
                code=exc.code,
            )
            return
        except TemporaryFailure as exc:
            await self._later(row, exc.message, exc.code)
            return
        except Exception as exc:
            log.exception("mail transport raised unexpectedly for %s", row.message_id)
            await self._later(row, f"internal error ({type(exc).__name__})", None)
            return
        log.info("mail %s (%s) delivered to %s", row.message_id, row.kind, ", ".join(recipients))
        await self._runner.call(
            store.record_mail, row.id, status=MailStatus.SENT, now=self._clock()
        )

    async def _later(self, row: OutboundMail, error: str, code: str | None) -> None:
        assert row.id is not None
        now = self._clock()
        when = next_attempt(
            self._retry,
            attempts=row.attempts,
            now=now,
            deadline=row.deadline_at,
            random_unit=self._rng.random(),
        )
        store = self._runner.store
        if when is None:
            log.warning(
                "mail %s expired after %d attempts: %s", row.message_id, row.attempts, error
            )
            await self._runner.call(
                store.record_mail,
                row.id,
                status=MailStatus.FAILED,
                now=now,
                error=f"gave up after {row.attempts} attempts: {error}",
                code=code,
            )
            return
        log.info(
            "mail %s: temporary failure (%s), retry at %s",
            row.message_id,
            error,
            when.isoformat(timespec="seconds"),
        )
        await self._runner.call(
            store.record_mail,
            row.id,
            status=MailStatus.QUEUED,
            now=now,
            error=error,
            code=code,
            next_attempt_at=when,
        )
