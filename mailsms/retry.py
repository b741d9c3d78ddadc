"""Retry policy: when to try a temporary failure again.  Pure, no I/O.

Exponential backoff with "equal jitter": the delay doubles with each
attempt up to a ceiling, and half of it is randomised so that many messages
failing together (a carrier outage) do not retry in lock-step.  The random
number is passed in, so the policy is deterministic under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial: float
    """Delay after the first failed attempt, seconds."""
    maximum: float
    """Ceiling for one delay, seconds."""


def backoff(policy: RetryPolicy, attempts: int, random_unit: float) -> float:
    """Seconds to wait after ``attempts`` failed attempts (1 = first).

    ``random_unit`` is a number in [0, 1).  The result lies in
    ``[d/2, d)`` where ``d = min(maximum, initial * 2**(attempts-1))``.
    """
    exponent = max(0, attempts - 1)
    # Cap the exponent before the power so huge attempt counts cannot overflow.
    base = min(policy.maximum, policy.initial * float(2 ** min(exponent, 62)))
    return base / 2 + (base / 2) * random_unit


def next_attempt(
    policy: RetryPolicy,
    *,
    attempts: int,
    now: datetime,
    deadline: datetime,
    random_unit: float,
    retry_after: float | None = None,
) -> datetime | None:
    """When to try again, or None when the next try would pass the deadline."""
    delay = backoff(policy, attempts, random_unit)
    if retry_after is not None:
        # The peer told us when it can take more; never come back sooner.
        delay = max(delay, retry_after)
    when = now + timedelta(seconds=delay)
    return None if when > deadline else when
