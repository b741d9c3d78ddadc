"""Async access to the store: worker threads and group commit.

The event loop never blocks on the database.  Calls run in a small thread
pool; for SQLite the pool has one thread, because SQLite has one writer
anyway and queuing in Python is cheaper than spinning on its lock.

Group commit (the technique durable mail servers use): every email that
finishes DATA joins a queue; one committer takes everything waiting, writes
it in ONE durable transaction, and only then releases each waiter to answer
250.  Under load many messages share one fsync; alone, a message waits for
nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from mailsms.store.queries import AcceptedEmail, EnqueueOutcome, Store

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class DbRunner:
    """Runs store calls off the event loop."""

    def __init__(self, store: Store, threads: int | None = None) -> None:
        self.store = store
        if threads is None:
            threads = 1 if store.engine.dialect.name == "sqlite" else 4
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mailsms-db")

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class GroupCommitter:
    """Commits accepted emails in groups; each caller waits for its commit."""

    def __init__(
        self,
        runner: DbRunner,
        *,
        max_batch: int = 512,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._runner = runner
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._queue: asyncio.Queue[tuple[AcceptedEmail, asyncio.Future[EnqueueOutcome]]] = (
            asyncio.Queue()
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mailsms-group-commit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # Anyone still waiting gets an error (a 451), never a silent 250.
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("gateway is shutting down"))

    async def submit(self, item: AcceptedEmail) -> EnqueueOutcome:
        """Return once ``item`` is durably committed; raise if it was not."""
        if self._task is None or self._task.done():
            raise RuntimeError("group committer is not running")
        future: asyncio.Future[EnqueueOutcome] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                outcomes = await self._runner.call(
                    self._runner.store.enqueue, [item for item, _ in batch]
                )
            except asyncio.CancelledError:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(RuntimeError("gateway is shutting down"))
                raise
            except Exception as exc:
                log.exception("commit of %d accepted emails failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)
            if self._on_commit is not None:
                self._on_commit()
