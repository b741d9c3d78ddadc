"""Abuse limits: per-sender rate and daily quota, per-phone throttle (pure).

Counters live in the database (``abuse_counters``, see
:mod:`mailsms.store.abuse`), keyed by (scope, key, window start), so limits
hold across restarts and across several gateway instances sharing one
database.  Windows are fixed and aligned to UTC (the minute, the hour, the
day): simple, cheap and exact at the stated number; the cost is that a
burst straddling a boundary can reach twice the limit within one window's
length, which is acceptable for abuse damping.

What is counted, and what a refusal means (RFC 3463 / RFC 5321 sense):

================  ==================================  ======================
scope             counts                              over the limit
================  ==================================  ======================
``sender-min``    emails texted per author per minute ``451 4.7.1`` retry
``sender-day``    SMS per author per UTC day (one per ``550 5.7.1``: this
                  recipient and part)                 message is refused
``phone-hour``    emails to one phone per hour (any   ``451 4.7.1`` retry
                  sender)
================  ==================================  ======================

The daily quota is a permanent refusal on purpose: an SMS delivered a day
late is useless, and a compromised account's flood must bounce now rather
than sit in the client's queue until midnight.  A limit of 0 is unlimited.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

SENDER_MINUTE = "sender-min"
SENDER_DAY = "sender-day"
PHONE_HOUR = "phone-hour"

RETENTION_SECONDS = 2 * 86400
"""Counter rows older than this are deleted when their key is charged again."""


@dataclass(frozen=True, slots=True)
class Limits:
    per_minute: int = 60
    per_day: int = 1000
    per_phone_hour: int = 10


@dataclass(frozen=True, slots=True)
class Charge:
    """Add ``amount`` to one counter; over ``limit`` afterwards = refused."""

    scope: str
    key: str
    window_start: datetime
    amount: int
    limit: int


def window_start(scope: str, now: datetime) -> datetime:
    """The start of the fixed UTC window ``now`` falls in."""
    now = now.astimezone(UTC)
    if scope == SENDER_MINUTE:
        return now.replace(second=0, microsecond=0)
    if scope == PHONE_HOUR:
        return now.replace(minute=0, second=0, microsecond=0)
    if scope == SENDER_DAY:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"unknown limit scope {scope!r}")


def charges_for(
    sender: str, phones: Iterable[str], sms_count: int, now: datetime, limits: Limits
) -> list[Charge]:
    """The counters one accepted email adds to (limits of 0 are skipped)."""
    charges: list[Charge] = []
    if limits.per_minute > 0:
        charges.append(
            Charge(SENDER_MINUTE, sender, window_start(SENDER_MINUTE, now), 1, limits.per_minute)
        )
    if limits.per_day > 0 and sms_count > 0:
        charges.append(
            Charge(SENDER_DAY, sender, window_start(SENDER_DAY, now), sms_count, limits.per_day)
        )
    if limits.per_phone_hour > 0:
        start = window_start(PHONE_HOUR, now)
        charges.extend(
            Charge(PHONE_HOUR, phone, start, 1, limits.per_phone_hour)
            for phone in sorted(set(phones))
        )
    return charges


def exceeded(charges: Sequence[Charge], totals: Sequence[int]) -> Charge | None:
    """The first charge whose counter would pass its limit, given the
    counters' values after adding every charge."""
    for charge, total in zip(charges, totals, strict=True):
        if total > charge.limit:
            return charge
    return None


def is_permanent(charge: Charge) -> bool:
    """Only the daily quota refuses permanently (see the module doc)."""
    return charge.scope == SENDER_DAY


def describe(charge: Charge) -> str:
    """A human-readable refusal reason for an SMTP reply."""
    if charge.scope == SENDER_MINUTE:
        return (
            f"rate limit: {charge.key} may send at most {charge.limit} messages "
            "per minute; try again later"
        )
    if charge.scope == SENDER_DAY:
        return (
            f"daily quota exhausted: {charge.key} may send at most {charge.limit} SMS "
            "per day (UTC)"
        )
    return (
        f"{charge.key} has received {charge.limit} messages this hour, the most "
        "allowed; try again later"
    )
