"""The HTTP client the carrier adapters share (HTTP/1.1, RFC 9112).

Adapters get a :class:`CarrierResponse` (the whole answer, read) and see
httpx's exceptions and timeouts.  The connections underneath are aiohttp's
(one ``aiohttp.ClientSession`` with its connection pool), driven directly.

Why aiohttp: httpcore's connection pool walks every pooled connection, and
asks each socket whether it is readable, for every request it queues, so at
the dispatcher's concurrency a hand-over cost 2.7 ms of CPU against 0.55 ms
over aiohttp's pool (measured against the benchmark's fake carrier;
encode/httpcore#1035 tracks the pool rewrite).

Why no httpx client or transport on top: ``httpx.AsyncClient``'s layers
(auth flows, redirects, the cookie jar, default headers merged per request,
event hooks) cost 0.25 ms of CPU per request, as much as the request
itself, and a carrier API needs none of them.  The ``httpx-aiohttp``
transport then still cost 80 us per request in building an
``httpx.Request`` only to take it apart again and in reading the answer
through two layers of async iterators, and an ``httpx.Response`` costs
20 us to build around an answer already read.  Credentials are a ready
header, a redirect from an API endpoint is an answer to report, not to
follow, and a cookie one response sets must not ride along on the next SMS.

aiohttp's exceptions blur what the adapters must tell apart (a refused
connection and a server that hangs up are both connection errors), so they
are mapped onto httpx's family here: every transport failure an adapter
sees is an ``httpx.TransportError``, and only a timeout is a
``TimeoutException``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import httpx
import yarl

from mailsms import __version__

__all__ = ["USER_AGENT", "CarrierHttp", "CarrierResponse", "form_body"]

USER_AGENT = f"mailsms/{__version__}"

# aiohttp exception -> httpx exception, most specific first.
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientError, httpx.NetworkError),
    (TimeoutError, httpx.TimeoutException),
)


@dataclass(frozen=True, slots=True)
class CarrierResponse:
    """A carrier's whole answer to one request."""

    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]
    """Looked up case-insensitively (aiohttp's ``CIMultiDictProxy``)."""
    content: bytes
    charset: str | None = None
    """From the Content-Type header, if it names one."""

    @property
    def text(self) -> str:
        """The body as text (its charset, else UTF-8; undecodable bytes
        replaced: it goes into error messages, never back to a carrier)."""
        try:
            return self.content.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` if it is not JSON."""
        return json.loads(self.content)


def form_body(fields: Mapping[str, str]) -> bytes:
    """``fields`` as an ``application/x-www-form-urlencoded`` body (UTF-8,
    space as ``+``), the form most carrier APIs take.

    Encoded by yarl's quoter (aiohttp's URL library, in C): urllib's
    ``urlencode`` quotes byte by byte in Python, 74 us for a 960-character
    SMS against 10 us.  yarl leaves the characters a query may carry
    literally (``/ ? : @ ! $ ' ( ) * ,``) as they are and encodes the ones
    that split a form (``& = + ; %`` and ``#``), so any form parser reads
    back exactly ``fields``."""
    return yarl.URL.build(query=fields).raw_query_string.encode("ascii")


def _translate(exc: BaseException, method: str, url: str) -> httpx.TransportError:
    """The httpx exception for an aiohttp failure (the request it names is
    built only here, on the error path)."""
    request = httpx.Request(method, url)
    for aiohttp_type, httpx_type in _ERRORS:
        if isinstance(exc, aiohttp_type):
            return httpx_type(f"{type(exc).__name__}: {exc}", request=request)
    return httpx.TransportError(f"{type(exc).__name__}: {exc}", request=request)


class CarrierHttp:
    """Sends the carrier adapters' requests: one connection pool, one
    timeout for each phase of a request (getting a connection, pooled or
    new, and each read of the answer).  The application owns it and closes
    it (``aclose``) at shutdown."""

    def __init__(self, timeout: float, max_connections: int = 100) -> None:
        self._max_connections = max_connections
        # Each phase: connecting (with the wait for a pooled connection),
        # and every read of the answer.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop it belongs to.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                keepalive_timeout=5.0,
                # Verified against certifi's CAs, as httpx would.
                ssl=httpx.create_ssl_context(),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> CarrierResponse:
        """Send one request and read its whole answer; any failure to get
        one is an ``httpx.TransportError``."""
        target = str(url)
        if self._closed:
            # A late hand-over during shutdown: no new pool that nobody
            # would close; the SMS is tried again after the restart.
            raise httpx.TransportError(
                "the carriers' HTTP client is closed", request=httpx.Request(method, target)
            )
        try:
            async with self._client().request(
                method,
                target,
                data=content or None,
                headers=headers,
                allow_redirects=False,
                compress=False,
                timeout=self._timeout,
            ) as answer:
                body = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc, method, target) from exc
        return CarrierResponse(
            answer.status, answer.reason or "", answer.headers, body, answer.charset
        )

    async def post(
        self, url: httpx.URL | str, *, content: bytes, headers: Mapping[str, str]
    ) -> CarrierResponse:
        return await self.request("POST", url, content=content, headers=headers)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> CarrierHttp:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
