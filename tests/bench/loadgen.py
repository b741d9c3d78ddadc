"""Load generators.

- :func:`run_smtp_source`: Postfix's ``smtp-source`` (C, cheap on CPU).  Its
  default message already carries ``From: <sender>`` (the ``-f`` address),
  a unique ``Message-Id`` (pid.fd.counter) and ``-l`` bytes of body, so the
  gateway's header check passes when ``-f`` is a registered sender.
- :func:`blast`: the same load from asyncio sockets, used when smtp-source
  is missing (the smoke test).  One SMTP command at a time per connection,
  like smtp-source: aiosmtpd does not announce PIPELINING, so neither
  generator pipelines.
- :func:`paced`: an open-loop client that offers messages at a fixed rate
  over a pool of connections and timestamps the end of DATA (the ``.``
  line written) and the 250 read, for the accept-latency row.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field

SMTP_SOURCE_CANDIDATES = ("/usr/sbin/smtp-source", "/usr/bin/smtp-source")


def find_smtp_source() -> str | None:
    for path in SMTP_SOURCE_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("smtp-source")


_ids = itertools.count()


def make_message(sender: str, rcpt: str, size: int) -> bytes:
    """A message like smtp-source's: headers, then ``size`` bytes of body in
    80-column lines, CRLF line ends, dot-stuffing not needed (no leading dot)."""
    mid = f"<{os.getpid()}.{next(_ids)}.{time.monotonic_ns()}@bench.localhost>"
    headers = (
        f"From: <{sender}>\r\nTo: <{rcpt}>\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
        f"Message-Id: {mid}\r\nSubject: bench\r\n\r\n"
    )
    lines = []
    remaining = size
    n = 1
    while remaining > 0:
        line = (str(n) + "X" * 78)[: max(remaining - 2, 1)]
        lines.append(line)
        remaining -= len(line) + 2
        n += 1
    return headers.encode() + "\r\n".join(lines).encode() + b"\r\n.\r\n"


class SmtpError(Exception):
    pass


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> _Conn:
        reader, writer = await asyncio.open_connection(host, port)
        conn = cls(reader, writer)
        await conn.expect(b"220")
        await conn.command(b"EHLO bench.localhost\r\n", b"250")
        return conn

    async def reply(self) -> bytes:
        while True:
            line = await self.reader.readline()
            if not line:
                raise SmtpError("connection closed")
            if line[3:4] != b"-":
                return line

    async def expect(self, code: bytes) -> None:
        line = await self.reply()
        if not line.startswith(code):
            raise SmtpError(line.decode(errors="replace").strip())

    async def command(self, data: bytes, code: bytes) -> None:
        self.writer.write(data)
        await self.expect(code)

    async def send(self, sender: str, rcpt: str, message: bytes) -> float:
        """One transaction; returns seconds from the end of DATA to the 250."""
        await self.command(f"MAIL FROM:<{sender}>\r\n".encode(), b"250")
        await self.command(f"RCPT TO:<{rcpt}>\r\n".encode(), b"250")
        await self.command(b"DATA\r\n", b"354")
        self.writer.write(message)
        t0 = time.perf_counter()
        await self.expect(b"250")
        return time.perf_counter() - t0

    async def close(self) -> None:
        try:
            self.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self.reply(), 2)
        except (OSError, SmtpError, TimeoutError):
            pass
        self.writer.close()


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    late: int = 0
    """Paced mode: messages that could not start on time (all connections busy)."""


async def blast(
    host: str, port: int, *, sessions: int, messages: int, sender: str, rcpt: str, size: int
) -> LoadResult:
    """``messages`` in all over ``sessions`` connections, as fast as accepted."""
    result = LoadResult()
    todo = itertools.count()

    async def worker() -> None:
        conn = await _Conn.open(host, port)
        try:
            while next(todo) < messages:
                try:
                    await conn.send(sender, rcpt, make_message(sender, rcpt, size))
                    result.sent += 1
                except SmtpError as exc:
                    result.failed += 1
                    if len(result.errors) < 5:
                        result.errors.append(str(exc))
                    await conn.command(b"RSET\r\n", b"250")
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(sessions)))
    result.seconds = time.perf_counter() - t0
    return result


async def paced(
    host: str,
    port: int,
    *,
    rate: float,
    seconds: float,
    connections: int,
    sender: str,
    rcpt: str,
    size: int,
) -> LoadResult:
    """Offer messages at ``rate``/s for ``seconds`` (open loop) over a pool of
    connections.  When every connection is busy the next message waits (and
    counts as ``late``): an overloaded server gets less than ``rate``."""
    result = LoadResult()
    conns = [await _Conn.open(host, port) for _ in range(connections)]
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    for conn in conns:
        idle.put_nowait(conn)
    tasks: list[asyncio.Task[None]] = []

    async def one(conn: _Conn) -> None:
        try:
            result.latencies.append(await conn.send(sender, rcpt, make_message(sender, rcpt, size)))
            result.sent += 1
        except SmtpError as exc:
            result.failed += 1
            if len(result.errors) < 5:
                result.errors.append(str(exc))
            await conn.command(b"RSET\r\n", b"250")
        finally:
            idle.put_nowait(conn)

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in itertools.count():
        due = t0 + i / rate
        # Stop on the clock, not on the count: an overloaded server gets
        # fewer messages, and the run still ends after ``seconds``.
        if due - t0 >= seconds or loop.time() - t0 >= seconds:
            break
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if idle.empty():
            result.late += 1
        conn = await idle.get()
        tasks.append(asyncio.create_task(one(conn)))
    await asyncio.gather(*tasks)
    result.seconds = loop.time() - t0
    for conn in conns:
        await conn.close()
    return result


def run_smtp_source(
    binary: str,
    host: str,
    port: int,
    *,
    sessions: int,
    messages: int,
    sender: str,
    rcpt: str,
    size: int,
    timeout: float,
) -> LoadResult:
    """Run smtp-source; it aborts (exit != 0) on any reply that is not 2xx/3xx."""
    cmd = [
        binary,
        "-d",  # keep each session's connection for its next message
        "-s", str(sessions),
        "-m", str(messages),
        "-l", str(size),
        "-f", sender,
        "-t", rcpt,
        "-S", "bench",
        "-M", "bench.localhost",
        f"{host}:{port}",
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    result = LoadResult(seconds=time.perf_counter() - t0)
    if proc.returncode != 0:
        result.failed = messages
        result.errors.append((proc.stderr or proc.stdout).strip()[:300])
    else:
        result.sent = messages
    return result
