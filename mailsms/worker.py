"""A background worker loop: do a batch, then sleep until woken or polled.

The inbound router, the bounce notifier and the mail queue share this
shape; their state lives in the database, so the loop itself only decides
when to look again.  An exception in one round is logged and the loop goes
on: a worker must never die silently and leave work pending forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self, name: str, round_: Callable[[], Awaitable[int]], *, poll_interval: float
    ) -> None:
        self.name = name
        self._round = round_
        self._poll_interval = poll_interval
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mailsms-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                done = await self._round()
            except Exception:
                log.exception("%s: round failed; trying again later", self.name)
                done = 0
            if done:
                continue  # more may be waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)
