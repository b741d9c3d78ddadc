"""The HTTP client the carrier adapters share (HTTP/1.1, RFC 9112).

Adapters speak httpx (``httpx.Request``, ``httpx.Response``, httpx's
exceptions and timeouts) through :class:`CarrierHttp`; the connections
underneath are aiohttp's, through the ``httpx-aiohttp`` transport.  Why
aiohttp: httpcore's connection pool walks every pooled connection, and asks
each socket whether it is readable, for every request it queues, so at the
dispatcher's concurrency a hand-over cost 2.7 ms of CPU against 0.55 ms over
aiohttp's pool (measured against the benchmark's fake carrier;
encode/httpcore#1035 tracks the pool rewrite).

Why not ``httpx.AsyncClient``: its layers (auth flows, redirects, the cookie
jar, default headers merged per request, event hooks) cost 0.25 ms of CPU
per request against the fake carrier, as much as the request itself, and a
carrier API needs none of them.  Credentials are a ready header, a redirect
from an API endpoint is an answer to report, not to follow, and a cookie one
response sets must not ride along on the next SMS.  :class:`CarrierHttp`
hands a request straight to the transport.

The transport's own error mapping blurs what the adapters must tell apart
(a refused connection came out as ``ConnectTimeout``, a server that hung up
after our request as ``ConnectTimeout`` too, and a malformed answer as an
aiohttp exception), so :class:`CarrierTransport` maps aiohttp's exceptions
onto httpx's family itself: every transport failure an adapter sees is an
``httpx.TransportError``, and only a timeout is a ``TimeoutException``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from mailsms import __version__

__all__ = ["USER_AGENT", "CarrierHttp", "CarrierTransport"]

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


@contextlib.contextmanager
def _translated(request: httpx.Request) -> Iterator[None]:
    """Raise aiohttp's failures inside the block as httpx's (see _ERRORS);
    anything else passes through unchanged."""
    try:
        yield
    except (httpx.HTTPError, aiohttp.ClientError, TimeoutError) as exc:
        translated = _translate(exc, request)
        if translated is None:
            raise
        raise translated from exc


def _translate(exc: BaseException, request: httpx.Request) -> httpx.TransportError | None:
    """The httpx exception for an aiohttp failure (also when the library
    already wrapped it: the original is its ``__cause__``), else None."""
    cause = exc.__cause__ if isinstance(exc, httpx.HTTPError) else exc
    if cause is None:
        return None
    for aiohttp_type, httpx_type in _ERRORS:
        if isinstance(cause, aiohttp_type):
            return httpx_type(f"{type(cause).__name__}: {cause}", request=request)
    return None


class _TranslatedStream(httpx.AsyncByteStream):
    """A response body whose read errors are translated like the request's."""

    def __init__(self, inner: httpx.AsyncByteStream, request: httpx.Request) -> None:
        self._inner = inner
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _translated(self._request):
            async for chunk in self._inner:
                yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class CarrierTransport(AiohttpTransport):
    """``httpx-aiohttp``'s transport with exact httpx exceptions."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _translated(request):
            response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _TranslatedStream(response.stream, request)
        return response


class CarrierHttp:
    """Sends the carrier adapters' requests: one connection pool, one
    timeout for each phase of a request (connect, write, read, waiting for
    a pooled connection).  The application owns it and closes it
    (``aclose``) at shutdown."""

    def __init__(self, timeout: float, max_connections: int = 100) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=20)
        self._transport = CarrierTransport(limits=limits)
        self._timeout = httpx.Timeout(timeout).as_dict()

    async def request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request and read its whole answer; any failure to get
        one is an ``httpx.TransportError`` (see :class:`CarrierTransport`)."""
        request = httpx.Request(
            method,
            url,
            content=content,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            extensions={"timeout": self._timeout},
        )
        response = await self._transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def post(
        self, url: httpx.URL | str, *, content: bytes, headers: Mapping[str, str]
    ) -> httpx.Response:
        return await self.request("POST", url, content=content, headers=headers)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> CarrierHttp:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
