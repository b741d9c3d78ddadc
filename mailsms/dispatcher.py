"""The dispatcher: the only code that calls a carrier.

It claims due SMS from the store under a lease, hands each to the carrier,
and records the outcome: the carrier's id on success, a scheduled retry on
a temporary failure (until the deadline, then ``expired``), ``failed`` on a
permanent one.  All retry state lives in the database, so a restart, or
another instance sharing the database, carries on where this one stopped.
Claims and outcomes join the process's group commit with the accepted
emails (:class:`mailsms.store.runner.GroupCommit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from mailsms.carriers.base import Carrier, OutboundSms, SendResult
from mailsms.errors import PermanentFailure, TemporaryFailure
from mailsms.retry import RetryPolicy, next_attempt
from mailsms.store.models import OutboundSms as SmsRow
from mailsms.store.models import SmsStatus
from mailsms.store.queries import ClaimRequest, SmsOutcome
from mailsms.store.runner import GroupCommit

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    def __init__(
        self,
        writes: GroupCommit,
        carrier: Carrier,
        *,
        batch: int,
        concurrency: int,
        poll_interval: float,
        lease: float,
        send_timeout: float,
        retry: RetryPolicy,
        status_callback: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self._writes = writes
        self._carrier = carrier
        self._batch = batch
        self._concurrency = concurrency
        self._refill = max(1, concurrency // 2)
        self._poll_interval = poll_interval
        self._lease = timedelta(seconds=lease)
        self._send_timeout = send_timeout
        self._retry = retry
        self._status_callback = status_callback
        self._clock = clock
        self._rng = rng or random.Random()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self.on_final: Callable[[], None] | None = None
        """Called after an SMS ended failed or expired (a bounce is due)."""

    def notify(self) -> None:
        """New work was committed: look now instead of at the next poll."""
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mailsms-dispatcher")

    async def stop(self) -> None:
        """Stop claiming; let hand-overs in flight finish so their outcome is
        recorded (an unrecorded hand-over would be sent again after the
        lease).  The group commit is stopped after this, by its owner.

        A claim already waiting for its commit is not cancelled: its SMS
        are leased once it commits, and cancelling it would leave them
        leased, unsent, until the lease ran out after the restart.  They
        are handed over with the others in flight."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self._send_timeout + 5)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=self._send_timeout + 5)

    async def _run(self) -> None:
        while not self._stopping:
            free = self._concurrency - len(self._inflight)
            # Refill when half the slots are free (or all are): one claim
            # per SMS would cost a database round trip per hand-over.
            self._wakeup.clear()
            if free >= self._refill or (free > 0 and not self._inflight):
                try:
                    claimed = await self._claim(min(free, self._batch))
                except Exception:
                    log.exception("claiming due SMS failed; retrying after the poll interval")
                    claimed = 0
                if claimed and self._concurrency - len(self._inflight) >= self._refill:
                    continue  # there may be more due right now
            # Woken by new work (notify), by hand-overs freeing enough slots
            # (_done), or by the poll interval (retries falling due, other
            # instances' mail).  A wait on the event alone: waiting on the
            # set of tasks in flight cost O(concurrency) per hand-over.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wakeup.wait()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        free = self._concurrency - len(self._inflight)
        if free >= self._refill or not self._inflight:
            self._wakeup.set()

    async def _claim(self, limit: int) -> int:
        # The time is read when the claim runs, in the database thread: a
        # claim sharing a commit with new emails must find their SMS due.
        claim = await self._writes.claim(ClaimRequest(limit, self._lease, self._clock))
        if claim.opted_out:
            log.info("%d SMS not sent: the phone opted out after the email came", claim.opted_out)
            self._final()
        rows = claim.rows
        for row in rows:
            task = asyncio.create_task(self._deliver(row))
            self._inflight.add(task)
            task.add_done_callback(self._done)
        return len(rows) + claim.opted_out

    async def _deliver(self, row: SmsRow) -> None:
        assert row.id is not None
        sms = OutboundSms(
            sms_id=row.uid,
            to=row.to_number,
            from_=row.from_number,
            text=row.text,
            encoding=row.encoding,
            segments=row.segments,
            status_callback=self._status_callback,
        )
        try:
            # asyncio.timeout, not wait_for: no extra task per hand-over.
            async with asyncio.timeout(self._send_timeout):
                result = await self._carrier.send(sms)
        except PermanentFailure as exc:
            log.warning("SMS %s to %s failed: %s", row.uid, row.to_number, exc)
            await self._record(
                SmsOutcome.final(row.id, SmsStatus.FAILED, exc.message, exc.code, self._clock())
            )
            self._final()
        except (TemporaryFailure, TimeoutError) as exc:
            await self._retry_later(row, exc)
        except Exception as exc:
            # An adapter bug must not lose the message: treat it as temporary.
            log.exception("carrier %s raised unexpectedly for SMS %s", self._carrier.name, row.uid)
            await self._retry_later(row, exc)
        else:
            await self._sent(row, result)

    async def _sent(self, row: SmsRow, result: SendResult) -> None:
        assert row.id is not None
        # DEBUG: at full speed a line per SMS costs more than the hand-over.
        log.debug(
            "SMS %s to %s handed to %s as %s",
            row.uid,
            row.to_number,
            self._carrier.name,
            result.carrier_id,
        )
        await self._record(
            SmsOutcome.sent(
                row.id, self._carrier.name, result.carrier_id, result.status, self._clock()
            )
        )

    async def _retry_later(self, row: SmsRow, exc: BaseException) -> None:
        assert row.id is not None
        if isinstance(exc, TemporaryFailure):
            error, code, retry_after = exc.message, exc.code, exc.retry_after
        elif isinstance(exc, TimeoutError):
            error, code, retry_after = (
                f"carrier did not answer within {self._send_timeout:g}s",
                None,
                None,
            )
        else:
            error, code, retry_after = f"internal error ({type(exc).__name__})", None, None
        now = self._clock()
        when = next_attempt(
            self._retry,
            attempts=row.attempts,
            now=now,
            deadline=row.deadline_at,
            random_unit=self._rng.random(),
            retry_after=retry_after,
        )
        if when is None:
            log.warning(
                "SMS %s to %s expired after %d attempts: %s",
                row.uid,
                row.to_number,
                row.attempts,
                error,
            )
            await self._record(
                SmsOutcome.final(
                    row.id,
                    SmsStatus.EXPIRED,
                    f"gave up after {row.attempts} attempts: {error}",
                    code,
                    now,
                )
            )
            self._final()
            return
        log.info(
            "SMS %s to %s: temporary failure (%s), retry at %s",
            row.uid,
            row.to_number,
            error,
            when.isoformat(timespec="seconds"),
        )
        await self._record(SmsOutcome.retry(row.id, error, code, when, now))

    def _final(self) -> None:
        if self.on_final is not None:
            self.on_final()

    async def _record(self, outcome: SmsOutcome) -> None:
        try:
            await self._writes.record(outcome)
        except Exception:
            # The row keeps its lease; when it runs out the SMS is claimed
            # and sent again (at least once: a carrier that does not honour
            # the idempotency key, Twilio's API among them, sends it twice).
            log.exception("recording the outcome of an SMS failed")
