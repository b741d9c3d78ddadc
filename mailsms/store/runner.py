"""Async access to the store: worker threads and group commit.

The event loop never blocks on the database.  Calls run in a small thread
pool; for SQLite the pool has one thread, because SQLite has one writer
anyway and queuing in Python is cheaper than spinning on its lock.

Group commit (the technique durable mail servers use): every email that
finishes DATA joins a queue; one committer takes everything waiting, writes
it in ONE durable transaction, and only then releases each waiter to answer
250.  Under load many messages share one fsync; alone, a message waits for
nobody.  The dispatcher's claims and outcomes join the same queue
(:class:`GroupCommit`): one transaction per round for everything the
process writes on its hot paths.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, ParamSpec, TypeVar

from mailsms.store.db import write_turn
from mailsms.store.queries import (
    AcceptedEmail,
    Claim,
    ClaimRequest,
    EnqueueOutcome,
    SmsOutcome,
    Store,
    Write,
    WriteResult,
)

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
    callers share one durable commit; alone, a caller waits for nobody.  A
    result that is an exception is raised to that item's caller alone.

    The batch is collected in the database thread once ``turn`` is held
    (the SQLite write gate, see :func:`mailsms.store.db.write_turn`): while
    another worker process writes, this one's items keep joining the batch
    they will share a commit with, instead of waiting for the next one.
    """

    def __init__(
        self,
        runner: DbRunner,
        fn: Callable[[list[T]], Sequence[R | Exception]],
        *,
        name: str,
        max_batch: int = 512,
        on_commit: Callable[[list[T]], None] | None = None,
        turn: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        self._runner = runner
        self._fn = fn
        self._name = name
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._turn = turn
        # Appended by the event loop, taken by the database thread (deque
        # appends and pops are atomic); the futures are only ever resolved
        # on the event loop.
        self._pending: collections.deque[tuple[T, asyncio.Future[R]]] = collections.deque()
        self._wakeup = asyncio.Event()
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
        while self._pending:
            _, future = self._pending.popleft()
            if not future.done():
                future.set_exception(RuntimeError("gateway is shutting down"))

    async def submit(self, item: T) -> R:
        """Return once ``item`` is committed; raise if it was not."""
        if self._task is None or self._task.done():
            raise RuntimeError(f"{self._name} is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wakeup.set()
        return await future

    def _take_turn(
        self,
    ) -> tuple[list[tuple[T, asyncio.Future[R]]], Sequence[R | Exception] | Exception]:
        """In the database thread: hold the turn, then take what is waiting
        and run ``fn`` on it; what was taken, and the results or the error."""
        taken: list[tuple[T, asyncio.Future[R]]] = []
        try:
            with self._turn():
                self._take(taken)
                return taken, self._fn([item for item, _ in taken]) if taken else []
        except Exception as exc:
            if not taken:
                # The turn itself failed (the lock file): the callers waiting
                # now get the error (a 451) rather than waiting for a turn
                # that may not come.
                self._take(taken)
            return taken, exc

    def _take(self, into: list[tuple[T, asyncio.Future[R]]]) -> None:
        while self._pending and len(into) < self._max_batch:
            into.append(self._pending.popleft())

    async def _run(self) -> None:
        while True:
            if not self._pending:
                await self._wakeup.wait()
            self._wakeup.clear()
            if not self._pending:
                # The wake-up came from an item the previous round already
                # took: an empty round would still wait for a turn of the
                # write gate, which another worker process may hold.
                continue
            call = asyncio.ensure_future(self._runner.call(self._take_turn))
            try:
                batch, outcome = await asyncio.shield(call)
            except asyncio.CancelledError:
                # Stopping: the turn in progress runs to its end in the
                # database thread; its callers get its real outcome.
                with contextlib.suppress(Exception):
                    self._settle(*await call)
                raise
            except Exception as exc:
                # The database thread itself is gone (shutting down): what
                # waits gets the error instead of waiting forever.
                waiting: list[tuple[T, asyncio.Future[R]]] = []
                self._take(waiting)
                self._settle(waiting, exc)
                continue
            self._settle(batch, outcome)

    def _settle(
        self,
        batch: list[tuple[T, asyncio.Future[R]]],
        outcome: Sequence[R | Exception] | Exception,
    ) -> None:
        """Hand each caller of a turn its result, or the turn's error."""
        if isinstance(outcome, Exception):
            log.error("%s: commit of %d items failed", self._name, len(batch), exc_info=outcome)
            for _, future in batch:
                if not future.done():
                    future.set_exception(outcome)
            return
        for (_, future), result in zip(batch, outcome, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        if batch and self._on_commit is not None:
            self._on_commit([item for item, _ in batch])


class GroupCommit:
    """The hot paths' writes of this process, committed together: accepted
    emails (the SMTP path's 250 waits for its commit), the outcomes of
    hand-overs to the carrier, and the dispatcher's claims, in one
    transaction per round (:meth:`Store.commit_writes`).

    Each kind used to commit on its own.  On SQLite every commit is a durable
    flush and a turn of the one write lock all worker processes share; end
    to end, that was three turns per SMS, and the lock was busy all the time.
    """

    def __init__(self, runner: DbRunner) -> None:
        self._runner = runner
        self._batcher: Batcher[Write, WriteResult] = Batcher(
            runner,
            self._commit,
            name="group-commit",
            on_commit=self._committed,
            turn=lambda: write_turn(runner.store.engine),
        )
        self.on_enqueued: Callable[[], None] | None = None
        """Called after a round that committed new emails (new SMS are due)."""

    def start(self) -> None:
        self._batcher.start()

    async def stop(self) -> None:
        await self._batcher.stop()

    async def enqueue(self, item: AcceptedEmail) -> EnqueueOutcome:
        """Return once the email and its SMS are committed; raise if not."""
        result = await self._batcher.submit(item)
        assert isinstance(result, EnqueueOutcome)
        return result

    async def record(self, outcome: SmsOutcome) -> None:
        """Return once what became of a hand-over is committed."""
        await self._batcher.submit(outcome)

    async def claim(self, request: ClaimRequest) -> Claim:
        """Lease due SMS for sending (see :meth:`Store.claim_due`)."""
        result = await self._batcher.submit(request)
        assert isinstance(result, Claim)
        return result

    def _commit(self, writes: list[Write]) -> list[WriteResult | Exception]:
        # Looked up per round, not bound once: tests wrap the store's methods.
        return self._runner.store.commit_writes(writes)

    def _committed(self, writes: list[Write]) -> None:
        if self.on_enqueued is not None and any(isinstance(w, AcceptedEmail) for w in writes):
            self.on_enqueued()
