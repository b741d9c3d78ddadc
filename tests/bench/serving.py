"""What the benchmark's helper servers (the bare aiosmtpd baseline, the fake
carrier) share: announce ``READY <port>`` for :class:`procs.ReadyProcess`,
serve until SIGINT/SIGTERM, and a ``--port`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any


async def serve_until_signalled(server: asyncio.Server) -> None:
    """Print ``READY <port>`` and serve until SIGINT or SIGTERM."""
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(run: Callable[[int], Coroutine[Any, Any, None]]) -> None:
    """``python -m <module> [--port N]``: run the server on that port."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.port))
