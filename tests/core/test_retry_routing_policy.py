"""Pure decisions: backoff, from-number choice, sender allow-list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_string, policy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsms.policy import (
    SenderError,
    auto_reply_reason,
    header_from_address,
    is_registered,
    normalise_sender_entry,
)
from mailsms.retry import RetryPolicy, backoff, next_attempt
from mailsms.routing import allocate_number

POLICY = RetryPolicy(initial=10, maximum=600)


def choose_from_number(
    own: str | None, pool: list[str], default_from: str | None, to_number: str
) -> str | None:
    """A sender's first SMS to a phone: no conversation history yet."""
    return allocate_number(
        sender="alice@corp.example",
        phone=to_number,
        own=own,
        pool=pool,
        default_from=default_from,
        conversations=(),
    )


@given(attempts=st.integers(min_value=1, max_value=10_000), unit=st.floats(0, 0.999999))
def test_backoff_stays_within_half_and_full_of_the_capped_exponential(
    attempts: int, unit: float
) -> None:
    full = min(600.0, 10.0 * 2 ** min(attempts - 1, 62))
    delay = backoff(POLICY, attempts, unit)
    assert full / 2 <= delay <= full


def test_backoff_doubles() -> None:
    assert [backoff(POLICY, n, 0.0) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]
    assert backoff(POLICY, 50, 0.0) == 300.0


def test_next_attempt_respects_retry_after_and_deadline() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    far = now + timedelta(days=1)
    assert next_attempt(
        POLICY, attempts=1, now=now, deadline=far, random_unit=0.0, retry_after=120
    ) == now + timedelta(seconds=120)
    assert (
        next_attempt(
            POLICY, attempts=1, now=now, deadline=now + timedelta(seconds=1), random_unit=0.0
        )
        is None
    )


def test_from_number_order() -> None:
    assert choose_from_number("+1own", ["+1a", "+1b"], "+1default", "+1x") == "+1own"
    assert choose_from_number(None, [], "+1default", "+1x") == "+1default"
    assert choose_from_number(None, [], None, "+1x") is None
    picks = {choose_from_number(None, ["+1a", "+1b"], None, f"+1415555{i:04d}") for i in range(50)}
    assert picks == {"+1a", "+1b"}
    # Stable: the same phone always gets the same pool number.
    assert (
        len({choose_from_number(None, ["+1a", "+1b", "+1c"], None, "+1x") for _ in range(5)}) == 1
    )


def test_sender_entries() -> None:
    entries = frozenset({"alice@corp.example", "@partner.example"})
    assert is_registered("Alice@CORP.example", entries)
    assert is_registered("<bob@partner.example>", entries)
    assert not is_registered("bob@corp.example", entries)
    assert not is_registered("bob@sub.partner.example", entries)
    assert not is_registered("", entries)
    assert normalise_sender_entry(" Alice@Corp.Example ") == "alice@corp.example"
    assert normalise_sender_entry("@Partner.Example") == "@partner.example"
    with pytest.raises(SenderError):
        normalise_sender_entry("nobody")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("From: a@x.example", "a@x.example"),
        ("From: Alice <a@x.example>", "a@x.example"),
        ("From: a@x.example, b@y.example", None),
        ("From: undisclosed", None),
    ],
)
def test_from_header_must_name_one_address(header: str, expected: str | None) -> None:
    msg = message_from_string(header + "\n\nbody", policy=policy.default)
    address, reason = header_from_address(msg)
    assert address == expected
    assert (reason is None) == (expected is not None)


def test_two_from_headers_are_refused() -> None:
    msg = message_from_string("From: a@x.example\nFrom: b@x.example\n\nbody")
    assert header_from_address(msg)[0] is None


@pytest.mark.parametrize(
    ("headers", "auto"),
    [
        ("Auto-Submitted: no", False),
        ("Auto-Submitted: auto-replied", True),
        ("Auto-Submitted: auto-notified", True),
        ("Precedence: bulk", True),
        ("Precedence: first-class", False),
        ("", False),
    ],
)
def test_auto_reply_detection(headers: str, auto: bool) -> None:
    msg = message_from_string(headers + "\nFrom: a@x.example\n\nbody")
    assert (auto_reply_reason(msg) is not None) == auto
