"""The dispatcher's shutdown: what it claimed is handed over, not left leased."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailsms.carriers.base import OutboundSms, SendResult
from mailsms.dispatcher import Dispatcher
from mailsms.retry import RetryPolicy
from mailsms.store import AcceptedEmail, NewSms, Store, make_engine, migrate
from mailsms.store.models import SmsStatus
from mailsms.store.queries import ClaimRequest, Write, WriteResult
from mailsms.store.runner import DbRunner, GroupCommit


class Recording:
    """A carrier that takes every SMS."""

    name = "recording"

    def __init__(self) -> None:
        self.sent: list[OutboundSms] = []

    async def send(self, sms: OutboundSms) -> SendResult:
        self.sent.append(sms)
        return SendResult(carrier_id=f"R{len(self.sent)}")


async def test_a_claim_waiting_for_its_commit_at_shutdown_is_handed_over(
    tmp_path: Path,
) -> None:
    """Stopping used to cancel the dispatcher mid-claim: the claim still
    committed (it shares the group commit with other writes), so its SMS
    stayed leased and unsent until the lease ran out, two minutes by
    default, after the restart."""
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    migrate(engine)
    store = Store(engine)
    now = datetime.now(UTC)
    store.enqueue(
        [
            AcceptedEmail(
                message_id="<1@corp.example>",
                mail_from="a@corp.example",
                from_address="a@corp.example",
                subject="s",
                received_at=now,
                deadline_at=now + timedelta(days=1),
                default_from="+14155550100",
                sms=[NewSms(to_number="+14155551212", text="hi", encoding="GSM-7", segments=1)],
            )
        ]
    )
    # The claim's round waits until the test lets it commit.
    claiming, commit = threading.Event(), threading.Event()
    commit_writes = store.commit_writes

    def held(writes: Sequence[Write]) -> list[WriteResult | Exception]:
        if any(isinstance(w, ClaimRequest) for w in writes):
            claiming.set()
            commit.wait(10)
        return commit_writes(writes)

    store.commit_writes = held  # type: ignore[method-assign]
    runner = DbRunner(store)
    writes = GroupCommit(runner)
    writes.start()
    carrier = Recording()
    dispatcher = Dispatcher(
        writes,
        carrier,
        batch=10,
        concurrency=5,
        poll_interval=30.0,
        lease=120.0,
        send_timeout=5.0,
        retry=RetryPolicy(1.0, 60.0),
    )
    dispatcher.start()
    try:
        assert await asyncio.to_thread(claiming.wait, 10)
        stopping = asyncio.create_task(dispatcher.stop())
        await asyncio.sleep(0.05)  # the stop has begun, the claim not committed
        commit.set()
        await asyncio.wait_for(stopping, 15)
    finally:
        commit.set()
        await writes.stop()
        runner.close()
    assert [sms.to for sms in carrier.sent] == ["+14155551212"]
    [row] = store.list_sms()
    assert row.status == SmsStatus.SENT
    assert row.carrier_id == "R1"
