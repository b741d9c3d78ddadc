"""A fake Twilio Messages API: a real HTTP server on 127.0.0.1 for tests.

It runs ``http.server.ThreadingHTTPServer`` on an ephemeral port in a
background thread, so the same instance serves async tests in-process and a
gateway started as a subprocess (point its Twilio API URL at ``server.url``).

Each request is checked the way Twilio would check it: the path
``/2010-04-01/Accounts/{sid}/Messages.json``, POST, a form-urlencoded body,
HTTP basic auth with the configured SID and token, the fields ``To``,
``From`` and ``Body``, and ``To`` in E.164.  Answers mimic Twilio's JSON
(``sid``/``status`` on success; ``code``/``message``/``more_info``/``status``
on error).  Accepted requests are recorded; responses can be scripted:

    with FakeTwilio() as server:
        server.script(503, ScriptedResponse(400, code=21211, message="bad To"))
        ...  # first request gets 503, second the 400, later ones are real
        server.wait_for(1)

Or via the ``fake_twilio`` pytest fixture defined at the end of this module.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType, TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

__all__ = ["FakeTwilio", "RecordedRequest", "ScriptedResponse", "fake_twilio"]

API_VERSION = "2010-04-01"
_PATH = re.compile(rf"^/{API_VERSION}/Accounts/(?P<sid>[^/]+)/Messages\.json$")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


def _new_account_sid() -> str:
    return "AC" + secrets.token_hex(16)


def _new_message_sid() -> str:
    return "SM" + secrets.token_hex(16)


@dataclass(frozen=True)
class ScriptedResponse:
    """One canned answer, served before normal processing.

    ``code``/``message`` build a Twilio-style JSON error body; ``body``
    replaces the body entirely (e.g. ``b"not json"``); ``delay`` makes the
    server wait that many seconds before answering (for client timeouts).
    """

    status: int
    code: int | None = None
    message: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake accepted (and answered 201)."""

    sid: str
    """The message sid the fake answered with."""
    method: str
    path: str
    headers: Mapping[str, str]
    """Header names lower-cased."""
    fields: Mapping[str, str]
    """Form fields; for a repeated name the last value."""
    pairs: tuple[tuple[str, str], ...]
    """Form fields in order, repeats kept."""
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog of 5 resets connections when a
    # dispatcher opens 20 at once; a real API endpoint would not.
    request_queue_size = 128
    fake: FakeTwilio


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def do_PUT(self) -> None:
        self.server.fake._handle(self)

    def do_DELETE(self) -> None:
        self.server.fake._handle(self)


class FakeTwilio:
    """The fake server; see the module docstring."""

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self.account_sid = account_sid or _new_account_sid()
        self.auth_token = auth_token or "fake-auth-token-" + secrets.token_hex(8)
        self.delay = delay
        """Seconds to wait before every normal (unscripted) answer."""
        self._lock = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._attempts = 0
        self._script: deque[ScriptedResponse] = deque()
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------

    def start(self) -> FakeTwilio:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._closing.clear()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-twilio-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._closing.set()  # wake handlers sleeping on a delay
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- what tests use -----------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeTwilio is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, to pass as the carrier's ``api_url``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def messages_path(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the accepted requests, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def attempts(self) -> int:
        """Every request received, accepted, rejected or scripted."""
        with self._lock:
            return self._attempts

    def script(self, *responses: int | ScriptedResponse) -> None:
        """Queue answers for the next requests, before normal processing.

        A bare int is a status with a Twilio-like error body for that status.
        """
        items = [r if isinstance(r, ScriptedResponse) else ScriptedResponse(r) for r in responses]
        with self._lock:
            self._script.extend(items)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until ``n`` messages were accepted; return them (all, if more).

        Do not call this from the event loop that is doing the sending: use
        :meth:`wait_for_async` there.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._requests) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(self._shortfall(n, timeout))
                self._lock.wait(remaining)
            return list(self._requests)

    async def wait_for_async(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Like :meth:`wait_for`, without blocking the running event loop."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self._requests) >= n:
                    return list(self._requests)
            if time.monotonic() >= deadline:
                with self._lock:
                    raise TimeoutError(self._shortfall(n, timeout))
            await asyncio.sleep(0.01)

    def _shortfall(self, n: int, timeout: float) -> str:
        return (
            f"fake Twilio accepted {len(self._requests)} of {n} expected messages "
            f"within {timeout}s ({self._attempts} requests received in all)"
        )

    # --- request handling (server threads) ----------------------------------

    def _handle(self, h: _Handler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length > 0 else b""
        with self._lock:
            self._attempts += 1
            scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            self._answer_scripted(h, scripted)
            return

        path = urlsplit(h.path).path
        match = _PATH.match(path)
        if match is None or match["sid"] != self.account_sid:
            self._error(h, 404, 20404, f"The requested resource {path} was not found")
            return
        if h.command != "POST":
            self._error(h, 405, 20004, "Method not allowed")
            return
        if not self._authorized(h.headers.get("Authorization")):
            self._error(h, 401, 20003, "Authenticate")
            return

        content_type = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        # Twilio reads parameters only from a form body; anything else looks
        # to it like a request without parameters.
        pairs: list[tuple[str, str]] = []
        if content_type == "application/x-www-form-urlencoded":
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        fields = dict(pairs)

        if not fields.get("To"):
            self._error(h, 400, 21604, "A 'To' phone number is required.")
            return
        if not fields.get("From") and not fields.get("MessagingServiceSid"):
            self._error(h, 400, 21603, "A 'From' phone number is required.")
            return
        if not fields.get("Body") and not fields.get("MediaUrl"):
            self._error(h, 400, 21602, "Message body is required.")
            return
        if not _E164.match(fields["To"]):
            self._error(
                h, 400, 21211, f"The 'To' number {fields['To']} is not a valid phone number."
            )
            return

        if self.delay and self._closing.wait(self.delay):
            h.close_connection = True  # shutting down: drop it unanswered
            return
        sid = _new_message_sid()
        record = RecordedRequest(
            sid=sid,
            method=h.command,
            path=h.path,
            headers={k.lower(): v for k, v in h.headers.items()},
            fields=fields,
            pairs=tuple(pairs),
            body=body,
        )
        with self._lock:
            self._requests.append(record)
            self._lock.notify_all()
        self._send_json(h, 201, self._message_json(sid, fields))

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except ValueError:
            return False
        expected = f"{self.account_sid}:{self.auth_token}".encode()
        return hmac.compare_digest(decoded, expected)

    def _message_json(self, sid: str, fields: Mapping[str, str]) -> dict[str, Any]:
        now = formatdate(usegmt=True)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": fields.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": fields.get("From"),
            "messaging_service_sid": fields.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": fields["To"],
            "uri": uri,
        }

    def _answer_scripted(self, h: _Handler, r: ScriptedResponse) -> None:
        if r.delay and self._closing.wait(r.delay):
            h.close_connection = True  # shutting down: drop it unanswered
            return
        if r.body is not None:
            self._send(h, r.status, r.body, "application/json", r.headers)
            return
        if 200 <= r.status < 300:
            payload: dict[str, Any] = self._message_json(_new_message_sid(), {"To": "+10000000000"})
        else:
            payload = _error_body(r.status, r.code, r.message)
        self._send(h, r.status, json.dumps(payload).encode(), "application/json", r.headers)

    def _error(self, h: _Handler, status: int, code: int, message: str) -> None:
        self._send_json(h, status, _error_body(status, code, message))

    def _send_json(self, h: _Handler, status: int, payload: Mapping[str, Any]) -> None:
        self._send(h, status, json.dumps(payload).encode(), "application/json", {})

    def _send(
        self,
        h: _Handler,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str],
    ) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. a timeout test); nothing to do


# Codes used when a script gives only a status.  401/404/429 are Twilio's
# real codes for those cases; the others follow Twilio's 20xxx pattern and are
# placeholders: pass an explicit code when a test cares about it.
_DEFAULT_ERRORS: Mapping[int, tuple[int, str]] = MappingProxyType(
    {
        401: (20003, "Authenticate"),
        404: (20404, "The requested resource was not found"),
        429: (20429, "Too Many Requests"),
        500: (20500, "Internal Server Error"),
        503: (20503, "Service Unavailable"),
    }
)


def _error_body(status: int, code: int | None, message: str | None) -> dict[str, Any]:
    default_code, default_message = _DEFAULT_ERRORS.get(status, (20000 + status, "Error"))
    code = default_code if code is None else code
    return {
        "code": code,
        "message": default_message if message is None else message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    """A running :class:`FakeTwilio`, closed after the test."""
    with FakeTwilio() as server:
        yield server
