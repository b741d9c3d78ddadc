"""The carriers' HTTP client (mailsms.carriers.http) over real sockets on
127.0.0.1: requests arrive as the adapters built them, nothing rides along
from one request to the next, and every way a carrier can fail surfaces as
the httpx exception the adapters tell apart."""

from __future__ import annotations

import asyncio
import base64
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsms.carriers.http import USER_AGENT, CarrierHttp, form_body

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


def answer_with(*answers: bytes) -> tuple[Behaviour, list[tuple[str, dict[str, str], bytes]]]:
    """A server that answers one kept-alive connection's requests with
    ``answers`` in turn, and the requests it saw."""
    seen: list[tuple[str, dict[str, str], bytes]] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for head in answers:
            seen.append(await read_request(reader))
            body = b'{"sid": "SM1", "status": "queued"}'
            writer.write(head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    return answer, seen


CREATED = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"


async def test_a_request_arrives_as_the_adapter_built_it() -> None:
    answer, seen = answer_with(CREATED, CREATED)
    auth = "Basic " + base64.b64encode(b"AC1:secret").decode()
    async with serve(answer) as url, CarrierHttp(5.0) as http:
        for body in (b"To=%2B14155551212&Body=hello+w%C3%B6rld+%26+more", b"Body=second"):
            response = await http.post(
                f"{url}/2010-04-01/Accounts/AC1/Messages.json",
                content=body,
                headers={
                    "Authorization": auth,
                    "Content-Type": "application/x-www-form-urlencoded",
                    "I-Twilio-Idempotency-Token": "sms-1",
                },
            )
            assert response.status_code == 201
            assert response.json() == {"sid": "SM1", "status": "queued"}
            assert response.headers["content-type"] == "application/json"
            assert response.reason_phrase == "Created"

    request_line, headers, body = seen[0]
    assert request_line == "POST /2010-04-01/Accounts/AC1/Messages.json HTTP/1.1"
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["authorization"] == auth
    assert headers["i-twilio-idempotency-token"] == "sms-1"
    assert headers["user-agent"] == USER_AGENT
    assert body == b"To=%2B14155551212&Body=hello+w%C3%B6rld+%26+more"
    assert seen[1][2] == b"Body=second"


async def test_cookies_are_not_replayed_and_redirects_not_followed() -> None:
    # A carrier API is stateless: a cookie one answer sets must not ride
    # along on the next SMS, and a redirect is an answer to report.
    answer, seen = answer_with(
        CREATED + b"Set-Cookie: session=abc; Path=/\r\n",
        b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/elsewhere\r\n",
        CREATED,
    )
    async with serve(answer) as url, CarrierHttp(5.0) as http:
        statuses = [(await http.post(f"{url}/m", content=b"a=b", headers={})).status_code]
        statuses.append((await http.post(f"{url}/m", content=b"a=c", headers={})).status_code)
        statuses.append((await http.post(f"{url}/m", content=b"a=d", headers={})).status_code)
    assert statuses == [201, 302, 201]
    assert [request_line for request_line, _, _ in seen] == ["POST /m HTTP/1.1"] * 3
    assert all("cookie" not in headers for _, headers, _ in seen)


async def test_a_compressed_answer_is_read_decompressed() -> None:
    # aiohttp offers gzip (Accept-Encoding); an API that takes the offer
    # must still read as the JSON it sent.
    payload = gzip.compress(b'{"sid": "SM9", "status": "queued"}')
    seen: list[dict[str, str]] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers, _ = await read_request(reader)
        seen.append(headers)
        writer.write(
            CREATED
            + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )
        await writer.drain()
        writer.close()

    async with serve(answer) as url, CarrierHttp(5.0) as http:
        response = await http.post(f"{url}/m", content=b"a=b", headers={})
    assert "gzip" in seen[0]["accept-encoding"]
    assert response.json() == {"sid": "SM9", "status": "queued"}


async def test_after_aclose_a_request_fails_without_opening_a_new_pool() -> None:
    behaviour, seen = answer_with(CREATED)
    async with serve(behaviour) as url:
        http = CarrierHttp(5.0)
        await http.post(f"{url}/m", content=b"a=b", headers={})
        await http.aclose()
        with pytest.raises(httpx.TransportError, match="closed"):
            await http.post(f"{url}/m", content=b"a=b", headers={})
    assert len(seen) == 1
    assert http._session is None  # nothing left open to leak


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
        async with CarrierHttp(0.3) as http:
            await http.post(f"{url}/x", content=b"a=b", headers={})

    with pytest.raises(expected) as caught:
        if behaviour is None:
            await attempt(f"http://127.0.0.1:{closed_port()}")
        else:
            async with serve(behaviour) as url:
                await attempt(url)
    # Only a timeout reads as "did not answer in time" to the adapters.
    assert isinstance(caught.value, httpx.TimeoutException) == timeout
    assert isinstance(caught.value, httpx.TransportError)


@given(st.dictionaries(st.text(min_size=1), st.text(), min_size=1, max_size=5))
def test_form_bodies_read_back_as_the_fields(fields: dict[str, str]) -> None:
    # Any text, including & = + ; % # and non-ASCII: a form parser gets
    # back exactly the fields, in order.
    body = form_body(fields).decode("ascii")
    assert parse_qsl(body, keep_blank_values=True, strict_parsing=True) == list(fields.items())


def test_a_form_body_encodes_what_would_split_it() -> None:
    body = form_body({"To": "+14155551212", "Body": "a&b=c; 100% #1\nnew line, é"})
    assert body == (b"To=%2B14155551212&Body=a%26b%3Dc%3B+100%25+%231%0Anew+line,+%C3%A9")
