"""Abuse limits: exact at their numbers, durable across restarts, atomic
under concurrency; destination policy at RCPT."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
import phonenumbers
import pytest

from mailsms.destinations import DestinationPolicy, check_destination
from mailsms.limits import SENDER_MINUTE, Charge
from mailsms.store import AcceptedEmail, NewSms, Store, make_engine
from tests.conftest import DOMAIN, SENDER, make_settings, prepare_store
from tests.core.test_smtp_gateway import simple_message, smtp_reply

UNLIMITED = {"sender_rate_per_minute": 0, "sender_daily_quota": 0, "destination_per_hour": 0}


async def send_one(port: int, i: int, to: str = f"4155551212@{DOMAIN}") -> tuple[int, str]:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) as client:
        try:
            _, text = await client.send_message(simple_message(f"message {i}", to=to))
        except aiosmtplib.SMTPException as exc:
            return smtp_reply(exc)
    return 250, text


def phone(i: int) -> str:
    return f"41555501{i:02d}@{DOMAIN}"


@pytest.mark.parametrize(
    ("setting", "code", "enhanced", "words"),
    [
        ("sender_rate_per_minute", 451, "4.7.1", "per minute"),
        ("sender_daily_quota", 550, "5.7.1", "daily quota exhausted"),
    ],
)
async def test_sender_limit_trips_exactly_and_holds_across_a_restart(
    start_gateway: Any,
    frozen_clock: datetime,
    setting: str,
    code: int,
    enhanced: str,
    words: str,
) -> None:
    limits = {**UNLIMITED, setting: 3}
    async with start_gateway(**limits) as (gw, _settings, store):
        for i in range(3):  # the 3rd passes
            assert (await send_one(gw.smtp_port, i, to=phone(i)))[0] == 250
        refused = await send_one(gw.smtp_port, 3, to=phone(3))  # the 4th does not
        assert (refused[0], refused[1][:6]) == (code, enhanced + " "), refused
        assert words in refused[1]
        assert len(store.list_emails()) == 3
    async with start_gateway(fresh=False, **limits) as (gw, _settings, store):
        again = await send_one(gw.smtp_port, 4, to=phone(4))
        assert (again[0], again[1][:6]) == (code, enhanced + " "), again
        assert len(store.list_emails()) == 3


async def test_destination_throttle_refuses_at_rcpt(
    start_gateway: Any, frozen_clock: datetime
) -> None:
    async with start_gateway(**{**UNLIMITED, "destination_per_hour": 2}) as (gw, _s, store):
        assert (await send_one(gw.smtp_port, 0))[0] == 250
        assert (await send_one(gw.smtp_port, 1))[0] == 250
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.smtp_port) as client:
            await client.mail(SENDER)
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as info:
                await client.rcpt(f"4155551212@{DOMAIN}")
            assert (info.value.code, info.value.message[:6]) == (451, "4.7.1 ")
            assert "+14155551212" in info.value.message
            # Another phone is not affected.
            await client.rcpt(f"4155551213@{DOMAIN}")
        assert len(store.list_emails()) == 2


async def test_concurrent_sessions_never_exceed_the_rate(
    start_gateway: Any, frozen_clock: datetime
) -> None:
    async with start_gateway(**{**UNLIMITED, "sender_rate_per_minute": 5}) as (gw, _s, store):
        results = await asyncio.gather(*(send_one(gw.smtp_port, i, to=phone(i)) for i in range(12)))
        codes = sorted(code for code, _ in results)
        assert codes == [250] * 5 + [451] * 7
        assert len(store.list_emails()) == 5


def test_limits_are_atomic_with_the_enqueue_across_connections(tmp_path: Path) -> None:
    """Eight threads, each with its own engine (own connections), enqueue
    emails charged against one counter of 20: exactly 20 are stored, the
    others are refused and leave nothing behind, not even a count."""
    settings = make_settings(tmp_path)
    prepare_store(settings)
    window = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    charge = Charge(SENDER_MINUTE, SENDER, window, 1, 20)
    wins: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        store = Store(make_engine(settings.database_url))
        try:
            for i in range(10):
                item = AcceptedEmail(
                    message_id=f"<w{n}-{i}@corp.example>",
                    mail_from=SENDER,
                    from_address=SENDER,
                    subject=None,
                    received_at=window,
                    deadline_at=window + timedelta(days=1),
                    charges=(charge,),
                    sms=[NewSms(to_number="+14155551212", text="x", encoding="GSM-7", segments=1)],
                )
                [outcome] = store.enqueue([item])
                if outcome.refused is None:
                    with lock:
                        wins.append(1)
                else:
                    assert outcome.refused == charge
        finally:
            store.engine.dispose()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 20
    store = Store(make_engine(settings.database_url))
    assert store.counter_value(SENDER_MINUTE, SENDER, window) == 20
    assert len(store.list_emails(limit=1000)) == 20


async def test_premium_rate_and_foreign_numbers_are_refused_at_rcpt(start_gateway: Any) -> None:
    premium = phonenumbers.parse("+19005551234")
    assert phonenumbers.number_type(premium) == phonenumbers.PhoneNumberType.PREMIUM_RATE
    async with (
        start_gateway() as (gw, _settings, _store),
        aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.smtp_port) as client,
    ):
        await client.mail(SENDER)
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as info:
            await client.rcpt(f"+19005551234@{DOMAIN}")
        assert (info.value.code, info.value.message[:6]) == (550, "5.7.1 ")
        assert "premium-rate" in info.value.message
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as info:
            await client.rcpt(f"+33612345678@{DOMAIN}")
        assert (info.value.code, info.value.message[:6]) == (550, "5.7.1 ")
        assert "FR" in info.value.message and "allowed countries: US" in info.value.message
        await client.rcpt(f"4155551212@{DOMAIN}")  # still fine


async def test_all_countries_can_be_allowed(start_gateway: Any) -> None:
    async with (
        start_gateway(allowed_countries="*") as (gw, _settings, _store),
        aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.smtp_port) as client,
    ):
        await client.mail(SENDER)
        await client.rcpt(f"+33612345678@{DOMAIN}")


@pytest.mark.parametrize(
    ("number", "allowed"),
    [
        ("+14155551212", True),  # fixed-line-or-mobile (NANP)
        ("+447911123456", True),  # mobile
        ("+18005551234", True),  # toll-free
        ("+15005550006", True),  # personal
        ("+19005551234", False),  # premium-rate
        ("+442071234567", False),  # plain fixed line, off by default
    ],
)
def test_number_types(number: str, allowed: bool) -> None:
    policy = DestinationPolicy(countries=None)
    assert (check_destination(number, policy) is None) == allowed
    fixed_ok = DestinationPolicy(countries=None, allow_fixed_line=True)
    assert check_destination("+442071234567", fixed_ok) is None
