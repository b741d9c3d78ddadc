"""The carrier seam: what the dispatcher needs from an SMS provider.

A carrier needs exactly one operation, ``send``.  Adapters translate the
provider's transport errors into :mod:`mailsms.errors` (temporary or
permanent) and never retry by themselves: retry state lives in the database
and belongs to the dispatcher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OutboundSms:
    """One SMS as the dispatcher hands it to a carrier."""

    sms_id: str
    """Our own id; adapters pass it as the provider's idempotency key where
    the provider has one, so a retried hand-over is not sent twice."""
    to: str
    """Destination, E.164 (``+14155551212``)."""
    from_: str | None
    """Sender number, E.164, or None when nothing is configured."""
    text: str
    encoding: str
    """``GSM-7`` or ``UCS-2``, as the text engine decided."""
    segments: int
    status_callback: str | None = None
    """Absolute URL the provider should post delivery reports to, if any."""


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the provider answered when it took the message."""

    carrier_id: str
    """The provider's id for the message (Twilio's ``sid``)."""
    status: str = "sent"
    """Our status after the hand-over: ``sent``, or ``delivered`` when the
    carrier knows at once (the console carrier)."""
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class InboundSms:
    """An SMS a phone sent to one of our numbers, in the one internal form
    every provider's webhook payload is parsed into."""

    carrier_id: str
    from_: str
    """The phone, E.164."""
    to: str
    """Our number, E.164."""
    text: str
    received_at: datetime
    media_urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A delivery report: the provider's status mapped to ours."""

    carrier_id: str
    status: str
    """One of ``sent``, ``delivered``, ``undelivered``, ``failed``."""
    error_code: str | None = None
    error_text: str | None = None


class Carrier(Protocol):
    """An SMS provider adapter."""

    name: str

    async def send(self, sms: OutboundSms) -> SendResult:
        """Hand one SMS to the provider.

        Raises :class:`mailsms.errors.TemporaryFailure` when a later retry may
        succeed and :class:`mailsms.errors.PermanentFailure` when it cannot.
        """
        ...


class PayloadError(ValueError):
    """A webhook payload lacks a required field; the message names it."""


class WebhookAdapter(Protocol):
    """The webhook side of a provider: authenticate, then parse.

    ``url`` is the public URL the provider called (``MAILSMS_PUBLIC_URL`` +
    path + query), ``form`` the POST parameters in order, repeats kept.
    Parsers raise :class:`PayloadError` (or ``ValueError``) when a required
    field is missing.
    """

    name: str
    inbound_ack: tuple[bytes, str]
    """Body and content type of the 2xx answer to an inbound webhook."""

    def verify(
        self, url: str, form: Sequence[tuple[str, str]], headers: dict[str, str]
    ) -> bool: ...

    def parse_inbound(self, form: dict[str, str]) -> InboundSms: ...

    def parse_status(self, form: dict[str, str]) -> StatusReport: ...
