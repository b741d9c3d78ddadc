"""The carriers' HTTP client (mailsms.carriers.http) over real sockets on
127.0.0.1: requests arrive as httpx built them, and every way a carrier
can fail surfaces as the httpx exception the adapters tell apart."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from mailsms.carriers.http import carrier_client

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serve(behaviour: Behaviour) -> AsyncIterator[str]:
    server = await asyncio.start_server(behaviour, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    request_line, *lines = head.rstrip("\r\n").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return request_line, headers, body


async def test_a_request_arrives_as_httpx_built_it() -> None:
    seen: list[tuple[str, dict[str, str], bytes]] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):  # two requests on one kept-alive connection
            seen.append(await read_request(reader))
            body = b'{"sid": "SM1", "status": "queued"}'
            writer.write(
                b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
        writer.close()

    async with serve(answer) as url, carrier_client(5.0) as client:
        for text in ("hello wörld & more", "second"):
            response = await client.post(
                f"{url}/2010-04-01/Accounts/AC1/Messages.json",
                data={"To": "+14155551212", "Body": text},
                headers={"I-Twilio-Idempotency-Token": "sms-1"},
                auth=("AC1", "secret"),
            )
            assert response.status_code == 201
            assert response.json() == {"sid": "SM1", "status": "queued"}

    request_line, headers, body = seen[0]
    assert request_line == "POST /2010-04-01/Accounts/AC1/Messages.json HTTP/1.1"
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"AC1:secret").decode()
    assert headers["i-twilio-idempotency-token"] == "sms-1"
    assert body == b"To=%2B14155551212&Body=hello+w%C3%B6rld+%26+more"
    assert seen[1][2] == b"To=%2B14155551212&Body=second"


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.close()


async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"SMTP? 220 hello\r\n\r\n")
    await writer.drain()
    writer.close()


async def short_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
    await writer.drain()
    writer.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await asyncio.sleep(2)
    writer.close()


@pytest.mark.parametrize(
    ("behaviour", "expected", "timeout"),
    [
        (None, httpx.ConnectError, False),  # nothing listens
        (hang_up, httpx.RemoteProtocolError, False),  # closed without an answer
        (not_http, httpx.RemoteProtocolError, False),  # not an HTTP answer
        (short_body, httpx.ReadError, False),  # closed in the middle of the body
        (silent, httpx.ReadTimeout, True),  # never answers
    ],
)
async def test_failures_are_httpx_transport_errors(
    behaviour: Behaviour | None, expected: type[httpx.TransportError], timeout: bool
) -> None:
    async def attempt(url: str) -> None:
        async with carrier_client(0.3) as client:
            response = await client.post(f"{url}/x", data={"a": "b"})
            await response.aread()

    with pytest.raises(expected) as caught:
        if behaviour is None:
            await attempt(f"http://127.0.0.1:{closed_port()}")
        else:
            async with serve(behaviour) as url:
                await attempt(url)
    # Only a timeout reads as "did not answer in time" to the adapters.
    assert isinstance(caught.value, httpx.TimeoutException) == timeout
    assert isinstance(caught.value, httpx.TransportError)
