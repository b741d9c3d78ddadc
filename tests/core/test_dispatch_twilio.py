"""The dispatcher driving the Twilio adapter over real HTTP to a fake
Twilio server that checks Twilio's documented request format."""

from __future__ import annotations

import aiosmtplib
from pydantic import SecretStr

from mailsms.app import Gateway
from mailsms.config import Settings
from mailsms.store.models import SmsStatus
from tests.conftest import DOMAIN, prepare_store, wait_for_status
from tests.core.test_smtp_gateway import simple_message
from tests.fakes.twilio import FakeTwilio, ScriptedResponse


def twilio_settings(settings: Settings, fake: FakeTwilio, **extra: object) -> Settings:
    return settings.model_copy(
        update={
            "carrier": "twilio",
            "twilio_account_sid": fake.account_sid,
            "twilio_auth_token": SecretStr(fake.auth_token),
            "twilio_api_url": fake.url,
            "default_from": "+14155550100",
            **extra,
        }
    )


async def send_one(gw: Gateway, text: str = "Hello Twilio") -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.smtp_port) as client:
        await client.send_message(simple_message(text, to=f"4155551212@{DOMAIN}"))


async def test_sms_reaches_twilio_with_documented_fields(
    settings: Settings, fake_twilio: FakeTwilio
) -> None:
    configured = twilio_settings(settings, fake_twilio, public_url="https://gw.example.com")
    store = prepare_store(configured)
    gw = Gateway(configured)
    await gw.start()
    try:
        await send_one(gw)
        [request] = await fake_twilio.wait_for_async(1)
        sent = await wait_for_status(store, SmsStatus.SENT)
    finally:
        await gw.stop()
    assert request.path == f"/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json"
    assert request.fields["To"] == "+14155551212"
    assert request.fields["From"] == "+14155550100"
    assert request.fields["Body"] == "Hello Twilio"
    assert request.fields["StatusCallback"] == "https://gw.example.com/webhooks/twilio/status"
    assert sent[0].carrier_id == request.sid
    assert sent[0].carrier == "twilio"
    assert sent[0].attempts == 1


async def test_transient_503_is_retried_then_sent(
    settings: Settings, fake_twilio: FakeTwilio
) -> None:
    configured = twilio_settings(settings, fake_twilio)
    store = prepare_store(configured)
    fake_twilio.script(503, ScriptedResponse(429, headers={"Retry-After": "0"}))
    gw = Gateway(configured)
    await gw.start()
    try:
        await send_one(gw)
        [request] = await fake_twilio.wait_for_async(1)
        [row] = await wait_for_status(store, SmsStatus.SENT)
    finally:
        await gw.stop()
    assert fake_twilio.attempts == 3
    assert row.attempts == 3
    assert row.carrier_id == request.sid
    history = [e.status for e in store.sms_events(row.id or 0)]
    assert history == ["queued", "sending", "queued", "sending", "queued", "sending", "sent"]


async def test_400_ends_failed_with_the_carriers_error(
    settings: Settings, fake_twilio: FakeTwilio
) -> None:
    configured = twilio_settings(settings, fake_twilio)
    store = prepare_store(configured)
    fake_twilio.script(
        ScriptedResponse(400, code=21211, message="The 'To' number +14155551212 is not valid.")
    )
    gw = Gateway(configured)
    await gw.start()
    try:
        await send_one(gw)
        [row] = await wait_for_status(store, SmsStatus.FAILED)
    finally:
        await gw.stop()
    assert row.error_code == "21211"
    assert "is not valid" in (row.error or "")
    assert row.attempts == 1
    assert fake_twilio.requests == []


async def test_temporary_failures_end_expired_at_the_deadline(
    settings: Settings, fake_twilio: FakeTwilio
) -> None:
    configured = twilio_settings(settings, fake_twilio, retry_deadline=0.3)
    store = prepare_store(configured)
    fake_twilio.script(*([503] * 50))
    gw = Gateway(configured)
    await gw.start()
    try:
        await send_one(gw)
        [row] = await wait_for_status(store, SmsStatus.EXPIRED)
    finally:
        await gw.stop()
    assert row.attempts >= 2
    assert (row.error or "").startswith(f"gave up after {row.attempts} attempts")


async def test_missing_twilio_credentials_stop_startup(settings: Settings) -> None:
    import pytest

    from mailsms.config import SettingsError

    prepare_store(settings)
    gw = Gateway(settings.model_copy(update={"carrier": "twilio"}))
    with pytest.raises(SettingsError, match="MAILSMS_TWILIO_ACCOUNT_SID"):
        await gw.start()


async def test_a_carrier_that_does_not_answer_is_retried(
    settings: Settings, fake_twilio: FakeTwilio
) -> None:
    configured = twilio_settings(settings, fake_twilio, carrier_timeout=0.3)
    store = prepare_store(configured)
    fake_twilio.script(ScriptedResponse(201, delay=3.0))  # then answers at once
    gw = Gateway(configured)
    await gw.start()
    try:
        await send_one(gw)
        [row] = await wait_for_status(store, SmsStatus.SENT)
    finally:
        await gw.stop()
    assert row.attempts == 2
    events = store.sms_events(row.id or 0)
    assert [e.status for e in events] == ["queued", "sending", "queued", "sending", "sent"]
    assert "answer" in (events[2].detail or ""), events[2]
