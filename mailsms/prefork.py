"""``mailsms serve`` with ``MAILSMS_WORKERS`` > 1: a pre-fork supervisor.

One Python process runs one core, so N worker processes serve together:
the supervisor checks the settings, migrates the database and binds the
listening sockets once, then forks N workers that each run a whole gateway
(SMTP, dispatcher, HTTP) on its own event loop, accepting from the shared
sockets; the kernel hands each new connection to one of them.  They share
nothing else but the database: the group commit, the lease claims of the
dispatcher and the guarded updates of the other queues were built for
several instances on one database, so N workers are N instances.

The supervisor forwards SIGTERM and SIGINT, waits for every worker to shut
down cleanly, and restarts a worker that dies; a worker that keeps dying
right after it started (a broken configuration) stops the whole service.
It holds no threads, event loop or database connection when it forks.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

QUICK_DEATH = 5.0
"""A worker that exits within this many seconds of its start failed to start."""
MAX_QUICK_DEATHS = 3
"""Quick deaths in a row after which the supervisor gives up."""
RESTART_DELAY = 1.0


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _stop_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM to this worker when the supervisor dies
    (SIGKILL, OOM), so no worker keeps serving unsupervised (Linux only)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            log.warning("cannot ask to be stopped with the supervisor (prctl)")
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def pin_to_cpu(index: int) -> int | None:
    """Keep this process, and the threads it starts from now on, on one of
    the CPUs it may use: the ``index``-th, round robin.  The CPU, or None
    where there is nothing to choose (one CPU allowed, or no
    ``sched_setaffinity``: Linux only).

    Why: a worker's event loop and its database thread take turns at one
    GIL.  Each hand-over wakes the other thread; when the kernel runs the
    two on different CPUs, every hand-over is a cross-CPU wake-up, and each
    waits for a CPU the other workers, the database server or the clients
    may be using.  On one CPU the hand-over is a switch between two threads
    that share a cache.  Measured with make bench on 2 CPUs, 2 workers:
    accept +10%, end to end +15-20%, end to end on PostgreSQL +7-25%.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    cpu = allowed[index % len(allowed)]
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        # A CPU that went offline since, a policy that forbids it: the
        # worker runs unpinned rather than not at all.
        log.warning("worker %d cannot be kept on CPU %d: %s", index, cpu, exc)
        return None
    return cpu


def supervise(count: int, run_worker: Callable[[int], int]) -> int:
    """Fork ``count`` workers running ``run_worker(index)`` (its return value
    is the worker's exit status) and supervise them until a signal stops
    them; the exit status: 0 after a clean stop, else the first failure."""
    children: dict[int, tuple[int, float]] = {}  # pid -> (index, started)
    stopping = False
    status = 0
    quick_deaths = 0

    supervisor = os.getpid()

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _stop_with_parent(supervisor)
                code = run_worker(index)
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = (index, time.monotonic())
        log.info("worker %d started (pid %d)", index, pid)

    def stop_all(signum: int, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index in range(count):
            spawn(index)
        while children:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            if pid not in children:
                continue
            index, started = children.pop(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            if stopping:
                if code != 0:
                    log.warning("worker %d (pid %d) stopped with status %d", index, pid, code)
                    status = status or 1
                continue
            log.error("worker %d (pid %d) exited unexpectedly with status %d", index, pid, code)
            quick_deaths = quick_deaths + 1 if time.monotonic() - started < QUICK_DEATH else 0
            if quick_deaths >= MAX_QUICK_DEATHS:
                log.error("workers keep failing at start; stopping the service")
                status = code if code > 0 else 1
                stop_all(signal.SIGTERM)
                continue
            time.sleep(RESTART_DELAY)
            if not stopping:
                spawn(index)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
