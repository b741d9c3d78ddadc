"""Twilio Programmable Messaging adapter, plus the helpers its webhooks need.

Role: turn one :class:`~mailsms.carriers.base.OutboundSms` into a single
``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` and translate every
way that can go wrong into :mod:`mailsms.errors`.  The adapter never retries:
retry state lives in the database and belongs to the dispatcher.

The module also holds pure functions for the inbound side (webhook signature
checks and payload parsing), so that everything Twilio-specific lives in one
place and the web layer only routes requests here.

Twilio references (as consulted when this was written):

* Message resource, create a message (form fields ``To``, ``From``, ``Body``,
  ``StatusCallback``; JSON answer with ``sid`` and ``status``):
  https://www.twilio.com/docs/messaging/api/message-resource
* Error answers (JSON with ``code``, ``message``, ``more_info``, ``status``)
  and the error dictionary: https://www.twilio.com/docs/usage/twilios-response,
  https://www.twilio.com/docs/api/errors
* Webhook signatures (``X-Twilio-Signature``, HMAC-SHA1 with the auth token):
  https://www.twilio.com/docs/usage/webhooks/webhooks-security
* Status callbacks (``MessageSid``, ``MessageStatus``, ``ErrorCode``):
  https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from mailsms.carriers.base import InboundSms, OutboundSms, SendResult, StatusReport
from mailsms.carriers.http import CarrierHttp, CarrierResponse, form_body
from mailsms.errors import PermanentFailure, TemporaryFailure

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TwilioCarrier",
    "compute_signature",
    "parse_inbound",
    "parse_status",
    "verify_signature",
]

logger = logging.getLogger(__name__)

API_VERSION: Final = "2010-04-01"

IDEMPOTENCY_HEADER: Final = "I-Twilio-Idempotency-Token"
"""Header carrying our sms id on every create request.

Twilio's docs describe ``I-Twilio-Idempotency-Token`` as the header Twilio
itself puts on the webhooks it sends (so receivers can drop retries).  We
could not confirm in the docs that the Messages *create* endpoint honours it
on requests we send; we send it anyway because it costs nothing, an unknown
header is ignored, and it makes our id visible in Twilio's request logs.  The
dispatcher must therefore not rely on Twilio de-duplicating a re-sent create.
"""

SIGNATURE_HEADER: Final = "X-Twilio-Signature"
"""Header in which Twilio sends the webhook signature (see verify_signature)."""

# Longest text taken over from an error body we could not parse as JSON, so a
# proxy's HTML error page does not end up whole in the status history.
_MAX_DETAIL: Final = 200

# Twilio MessageStatus -> ours.  Anything not listed here (queued, accepted,
# scheduled, sending, receiving, received, partially_delivered, or a value
# Twilio adds later) maps to "sending", which the caller reads as "no change".
_STATUS_MAP: Final[Mapping[str, str]] = MappingProxyType(
    {
        "sent": "sent",
        "delivered": "delivered",
        # A read receipt (WhatsApp/RCS) implies delivery; we have no "read".
        "read": "delivered",
        "undelivered": "undelivered",
        "failed": "failed",
        # A scheduled message that was canceled will never go out; for our
        # purposes it ended without delivery.
        "canceled": "failed",
    }
)
NO_CHANGE: Final = "sending"
"""The status parse_status reports for an intermediate Twilio status."""

# Delivery error codes that show up in status callbacks, with Twilio's short
# descriptions, so a bounce can say more than a number.  Others fall back to
# a link to the error dictionary.
_DELIVERY_ERRORS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "30001": "Queue overflow",
        "30002": "Account suspended",
        "30003": "Unreachable destination handset",
        "30004": "Message blocked",
        "30005": "Unknown destination handset",
        "30006": "Landline or unreachable carrier",
        "30007": "Message filtered by the carrier",
        "30008": "Unknown error",
    }
)


class TwilioCarrier:
    """Sends SMS through Twilio's Messages API.

    The HTTP client (:class:`mailsms.carriers.http.CarrierHttp`) is shared
    and owned by the application (created in its lifespan); this class never
    creates or closes one.  Timeouts are whatever that client was configured
    with.
    """

    name = "twilio"

    def __init__(
        self, *, account_sid: str, auth_token: str, api_url: str, http: CarrierHttp
    ) -> None:
        if not account_sid:
            raise ValueError("Twilio account_sid must not be empty")
        if not auth_token:
            raise ValueError("Twilio auth_token must not be empty")
        self._account_sid = account_sid
        # The Basic credentials as a ready header (RFC 7617), built once:
        # httpx's auth flow rebuilds it through a generator per request.
        basic = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode("ascii")
        self._authorization = f"Basic {basic}"
        # Kept only to scrub it from any text we build out of a response.
        self._auth_token = auth_token
        self._http = http
        # Parsed once, here: a URL httpx cannot parse fails at start-up,
        # not at every SMS.
        self._messages_url = httpx.URL(
            f"{api_url.rstrip('/')}/{API_VERSION}/Accounts/"
            f"{quote(account_sid, safe='')}/Messages.json"
        )

    def __repr__(self) -> str:
        # Never show the token, not even in a debugger or a crash dump.
        return f"TwilioCarrier(account_sid={self._account_sid!r}, url={self._messages_url!r})"

    async def send(self, sms: OutboundSms) -> SendResult:
        """Create one Message resource; see the module docstring for the API."""
        if not sms.from_:
            raise PermanentFailure(
                "no From number configured for the Twilio carrier; "
                "set the sender number before sending"
            )
        form = {"To": sms.to, "From": sms.from_, "Body": sms.text}
        if sms.status_callback:
            form["StatusCallback"] = sms.status_callback
        headers = {
            IDEMPOTENCY_HEADER: sms.sms_id,
            "Accept": "application/json",
            "Authorization": self._authorization,
            "Content-Type": "application/x-www-form-urlencoded",
        }

        try:
            response = await self._http.post(
                self._messages_url, content=form_body(form), headers=headers
            )
        except httpx.TimeoutException as exc:
            raise TemporaryFailure(f"Twilio did not answer in time ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            # Refused/reset connections, DNS failures, protocol errors: the
            # request may not have reached Twilio, so a later retry may work.
            raise TemporaryFailure(f"could not reach Twilio ({type(exc).__name__}: {exc})") from exc

        status = response.status_code
        if 200 <= status < 300:
            return self._accepted(sms, response)
        raise self._failure(response, status)

    def _accepted(self, sms: OutboundSms, response: CarrierResponse) -> SendResult:
        try:
            payload: Any = response.json()
        except ValueError:
            payload = None
        sid = payload.get("sid") if isinstance(payload, dict) else None
        if not isinstance(sid, str) or not sid:
            # Twilio may well have taken the message; without a sid we cannot
            # track it, so let the dispatcher decide on a retry.
            raise TemporaryFailure(
                f"Twilio answered HTTP {response.status_code} without a message sid"
            )
        twilio_status = payload.get("status")
        detail = f"twilio status {twilio_status}" if isinstance(twilio_status, str) else None
        logger.debug("twilio accepted sms %s as %s (%s)", sms.sms_id, sid, twilio_status)
        return SendResult(carrier_id=sid, status="sent", detail=detail)

    def _failure(
        self, response: CarrierResponse, status: int
    ) -> TemporaryFailure | PermanentFailure:
        code, text = self._error_fields(response)
        if status in (401, 403):
            return PermanentFailure(
                f"Twilio refused the credentials for account {self._account_sid} "
                f"(HTTP {status}: {text}); check the account SID and auth token",
                code=code,
            )
        if status == 429:
            return TemporaryFailure(
                f"Twilio rate limit hit (HTTP 429: {text})",
                code=code,
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500:
            return TemporaryFailure(
                f"Twilio server error (HTTP {status}: {text})",
                code=code,
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
        if status == 408:
            # Request Timeout is a 4xx that means "try again".
            return TemporaryFailure(f"Twilio timed out the request (HTTP 408: {text})", code=code)
        if 400 <= status < 500:
            return PermanentFailure(
                f"Twilio rejected the message (HTTP {status}: {text})", code=code
            )
        # 1xx/3xx: not something the Messages API answers; a proxy in the way?
        return TemporaryFailure(f"unexpected answer from Twilio (HTTP {status})", code=code)

    def _error_fields(self, response: CarrierResponse) -> tuple[str | None, str]:
        """Twilio's ``code`` and ``message`` from an error body, best effort."""
        try:
            payload: Any = response.json()
        except ValueError:
            payload = None
        code: str | None = None
        text = ""
        if isinstance(payload, dict):
            raw_code = payload.get("code")
            if (
                isinstance(raw_code, int | str)
                and not isinstance(raw_code, bool)
                and raw_code != ""
            ):
                code = str(raw_code)
            message = payload.get("message")
            if isinstance(message, str):
                text = message
        if not text:
            text = response.text.strip() or response.reason_phrase or "no detail"
        # Scrub before cutting, so a token straddling the cut cannot leak in part.
        return code, self._scrub(text)[:_MAX_DETAIL]

    def _scrub(self, text: str) -> str:
        # Twilio does not echo the token, but a misbehaving proxy might: make
        # sure it can never travel into a status history, a bounce or a log.
        return text.replace(self._auth_token, "[redacted]")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


# --- webhooks -----------------------------------------------------------------

Params = Mapping[str, str] | Iterable[tuple[str, str]]
"""POST parameters as a mapping, or as (name, value) pairs when a name repeats."""


def _pairs(params: Params) -> list[tuple[str, str]]:
    if isinstance(params, Mapping):
        return [(str(k), str(v)) for k, v in params.items()]
    return [(str(k), str(v)) for k, v in params]


def compute_signature(url: str, params: Params, auth_token: str) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a form-encoded webhook.

    Twilio's rule: take the full URL Twilio requested (scheme, host, path and
    query string, exactly as configured), append every POST parameter as
    name immediately followed by value, with no delimiters, in order of
    parameter name (case-sensitive, code-point order), HMAC-SHA1 the result
    keyed with the auth token, and base64-encode the digest.

    For a repeated name the values are taken in sorted order, and an
    identical (name, value) pair counts once; that is how Twilio's own
    validation helper (twilio-python's RequestValidator) handles multi-valued
    parameters, which the prose docs do not spell out.

    JSON-bodied webhooks (``bodySHA256`` in the query string) are not covered.
    """
    pairs = sorted(set(_pairs(params)))
    data = url + "".join(name + value for name, value in pairs)
    mac = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def verify_signature(url: str, params: Params, signature: str, auth_token: str) -> bool:
    """Whether ``signature`` is Twilio's signature for this request.

    Besides the URL as given, the URL without its port and (when it has none)
    with the scheme's default port are tried: Twilio's validation helpers do
    the same, because whether the port is part of the signed URL depends on
    how the webhook URL was configured and what a proxy in front passes on.
    Every candidate is compared in constant time.
    """
    if not signature:
        return False
    given = signature.strip().encode("utf-8")
    valid = False
    for candidate in _url_variants(url):
        expected = compute_signature(candidate, params, auth_token).encode("ascii")
        # Evaluate all candidates: no early exit that depends on the secret.
        valid = hmac.compare_digest(expected, given) or valid
    return valid


def _url_variants(url: str) -> list[str]:
    variants = [url]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return variants
    netloc = parts.netloc
    if not netloc:
        return variants
    if port is not None:
        variants.append(urlunsplit(parts._replace(netloc=netloc.rsplit(":", 1)[0])))
    else:
        default = {"https": 443, "http": 80}.get(parts.scheme.lower())
        if default is not None:
            variants.append(urlunsplit(parts._replace(netloc=f"{netloc}:{default}")))
    return variants


def _required(form: Mapping[str, str], *names: str, what: str) -> str:
    """The first of ``names`` present with a non-empty value, else ValueError."""
    for name in names:
        value = form.get(name)
        if value:
            return value
    fields = " or ".join(names)
    raise ValueError(f"Twilio {what} is missing the {fields} field")


def parse_inbound(form: Mapping[str, str], *, received_at: datetime | None = None) -> InboundSms:
    """An incoming-message webhook's form fields as an :class:`InboundSms`.

    Twilio's inbound payload carries no timestamp, so ``received_at`` is the
    time of parsing unless the caller passes the request's arrival time.
    Raises ValueError naming the first missing or malformed field.
    """
    what = "inbound message webhook"
    carrier_id = _required(form, "MessageSid", "SmsSid", what=what)
    from_ = _required(form, "From", what=what)
    to = _required(form, "To", what=what)
    # Body may legitimately be empty (an MMS with only a picture), but Twilio
    # always sends the field; its absence means this is not a message webhook.
    if "Body" not in form:
        raise ValueError(f"Twilio {what} is missing the Body field")
    text = form["Body"]

    raw_count = form.get("NumMedia", "0") or "0"
    try:
        count = int(raw_count)
    except ValueError:
        raise ValueError(f"Twilio {what} has a non-numeric NumMedia field: {raw_count!r}") from None
    if count < 0:
        raise ValueError(f"Twilio {what} has a negative NumMedia field: {count}")
    media = tuple(_required(form, f"MediaUrl{i}", what=what) for i in range(count))

    return InboundSms(
        carrier_id=carrier_id,
        from_=from_,
        to=to,
        text=text,
        received_at=received_at or datetime.now(UTC),
        media_urls=media,
    )


def parse_status(form: Mapping[str, str]) -> StatusReport:
    """A status-callback webhook's form fields as a :class:`StatusReport`.

    Twilio statuses map to ours: sent, delivered (also read), undelivered,
    failed (also canceled).  Intermediate ones (queued, accepted, scheduled,
    sending, ...) come back as ``"sending"``, meaning "no change".
    Raises ValueError naming the missing field.
    """
    what = "status callback"
    carrier_id = _required(form, "MessageSid", "SmsSid", what=what)
    twilio_status = _required(form, "MessageStatus", "SmsStatus", what=what).strip().lower()
    status = _STATUS_MAP.get(twilio_status, NO_CHANGE)

    error_code = (form.get("ErrorCode") or "").strip() or None
    error_text: str | None = None
    if error_code is not None:
        described = (form.get("ErrorMessage") or "").strip() or _DELIVERY_ERRORS.get(error_code)
        link = f"https://www.twilio.com/docs/api/errors/{error_code}"
        error_text = f"{described} (see {link})" if described else f"Twilio error, see {link}"
    elif status in ("undelivered", "failed"):
        error_text = f"Twilio reported the message {twilio_status}"

    return StatusReport(
        carrier_id=carrier_id, status=status, error_code=error_code, error_text=error_text
    )


class TwilioWebhooks:
    """Twilio's webhooks: ``X-Twilio-Signature`` over the public URL and the
    sorted form parameters (HMAC-SHA1 with the auth token)."""

    name = "twilio"
    # An empty TwiML document: Twilio sends no automatic reply of its own.
    inbound_ack = (
        b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>',
        "text/xml",
    )

    def __init__(self, auth_token: str) -> None:
        self._auth_token = auth_token

    def __repr__(self) -> str:
        return "TwilioWebhooks(auth_token=***)"

    def verify(
        self, url: str, form: Sequence[tuple[str, str]], headers: dict[str, str]
    ) -> bool:
        signature = headers.get(SIGNATURE_HEADER.lower(), "")
        return verify_signature(url, list(form), signature, self._auth_token)

    def parse_inbound(self, form: dict[str, str]) -> InboundSms:
        return parse_inbound(form)

    def parse_status(self, form: dict[str, str]) -> StatusReport:
        return parse_status(form)
