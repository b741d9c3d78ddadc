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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, ParamSpec, TypeVar

from mailsms.store.queries import AcceptedEmail, EnqueueOutcome, Store

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")


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


class Batcher(Generic[T, R]):
    """Runs ``fn`` on everything waiting, in one call; each caller waits for
    its own result.

    ``fn`` receives a list of items and returns one result per item, in
    order, doing its work in ONE transaction (group commit): under load many
    callers share one durable commit; alone, a caller waits for nobody.
    """

    def __init__(
        self,
        runner: DbRunner,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        name: str,
        max_batch: int = 512,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._runner = runner
        self._fn = fn
        self._name = name
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mailsms-{self._name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # Anyone still waiting gets an error (a 451), never a silent success.
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("gateway is shutting down"))

    async def submit(self, item: T) -> R:
        """Return once ``item`` is committed; raise if it was not."""
        if self._task is None or self._task.done():
            raise RuntimeError(f"{self._name} is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._runner.call(self._fn, [item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(RuntimeError("gateway is shutting down"))
                raise
            except Exception as exc:
                log.exception("%s: commit of %d items failed", self._name, len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            if self._on_commit is not None:
                self._on_commit()


GroupCommitter = Batcher[AcceptedEmail, EnqueueOutcome]
"""Accepted emails -> their committed outcome (the SMTP path's 250)."""


def group_committer(
    runner: DbRunner, *, on_commit: Callable[[], None] | None = None
) -> GroupCommitter:
    def enqueue(items: list[AcceptedEmail]) -> list[EnqueueOutcome]:
        return runner.store.enqueue(items)  # looked up per batch, not bound once

    return Batcher(runner, enqueue, name="group-commit", on_commit=on_commit)
