"""The durable ceiling: the bare aiosmtpd server of ``baseline_server``,
except that each message is appended to a file and on disk before its 250.

Messages that finish DATA while a flush runs share the next one (group
commit, the technique mailsms's store uses): one ``write`` and one
``fdatasync`` per round, in a worker thread so the event loop goes on.
Nothing is parsed or checked, so this is the most any durable
aiosmtpd-based server can do on this machine: it tells how much of
mailsms's distance to the bare server is the durability itself.  The file
lives in a temporary folder on the bench's file system and is removed at
exit.  Run as ``python -m tests.bench.durable_baseline``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import Any

from tests.bench.baseline_server import serve
from tests.bench.serving import main


class GroupCommittedFile:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._waiting: list[tuple[bytes, asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((envelope.original_content or b"", done))
        self._wakeup.set()
        await done
        return "250 2.0.0 OK"

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._waiting = self._waiting, []
            if not batch:
                continue
            try:
                await loop.run_in_executor(None, self._flush, [data for data, _ in batch])
            except OSError as exc:  # the client gets a 451 from aiosmtpd
                for _, done in batch:
                    done.set_exception(exc)
            else:
                for _, done in batch:
                    done.set_result(None)

    def _flush(self, messages: list[bytes]) -> None:
        os.write(self._fd, b"".join(messages))
        os.fdatasync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


async def run(port: int) -> None:
    with tempfile.TemporaryDirectory(prefix="mailsms-bench-durable-") as folder:
        sink = GroupCommittedFile(os.path.join(folder, "accepted.mbox"))
        flusher = asyncio.create_task(sink.run())
        try:
            await serve(sink, port)
        finally:
            flusher.cancel()
            sink.close()


if __name__ == "__main__":
    main(run)
