"""A minimal fake carrier for the benchmark: answers every POST like Twilio's
Messages API (201 with a ``sid``), with no rate limit, and counts requests.

Run in its own process (``python -m tests.bench.fake_carrier``); it prints
``READY <port>`` once listening.  ``GET /stats`` returns the count and the
wall-clock times (``time.time()``) of the first and last message;
``POST /reset`` zeroes them.  Raw asyncio streams with HTTP/1.1 keep-alive:
it is much cheaper than the gateway it measures, so it never is the limit.
"""

from __future__ import annotations

import asyncio
import json
import time

from tests.bench.serving import main, serve_until_signalled


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0

    def hit(self) -> None:
        now = time.time()
        if self.count == 0:
            self.first = now
        self.count += 1
        self.last = now


def _response(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def serve_connection(
    counter: Counter, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            if path.startswith("/stats"):
                body = json.dumps(
                    {"count": counter.count, "first": counter.first, "last": counter.last}
                ).encode()
                writer.write(_response("200 OK", body))
            elif path.startswith("/reset"):
                counter.__init__()
                writer.write(_response("200 OK", b"{}"))
            elif method == "POST":
                counter.hit()
                sid = f"SM{counter.count:032x}"
                writer.write(
                    _response("201 Created", b'{"sid": "%s", "status": "queued"}' % sid.encode())
                )
            else:
                writer.write(_response("404 Not Found", b'{"code": 20404}'))
            await writer.drain()
    finally:
        writer.close()


async def run(port: int) -> None:
    counter = Counter()
    server = await asyncio.start_server(
        lambda r, w: serve_connection(counter, r, w), "127.0.0.1", port, backlog=1024
    )
    await serve_until_signalled(server)


if __name__ == "__main__":
    main(run)
