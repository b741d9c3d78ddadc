"""Fixtures for the two-way flow: a gateway using the fake Twilio as its
carrier and a local aiosmtpd sink as its smarthost, DKIM-signing replies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from mailsms.app import Gateway
from mailsms.carriers.twilio import compute_signature
from mailsms.config import Settings
from mailsms.mail.dkim import generate_key
from mailsms.store import Store
from tests.conftest import make_settings, prepare_store
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio import FakeTwilio

PUBLIC_URL = "https://gw.example.com"
DOMAIN = "sms.example.com"
SELECTOR = "s1"


@dataclass
class TwoWay:
    gateway: Gateway
    settings: Settings
    store: Store
    twilio: FakeTwilio
    sink: SmtpSink
    dkim_record: str

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.gateway.http_port}"

    def signed(self, path: str, form: dict[str, str]) -> dict[str, str]:
        signature = compute_signature(PUBLIC_URL + path, form, self.twilio.auth_token)
        return {"X-Twilio-Signature": signature}

    async def post(
        self, path: str, form: dict[str, str], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.http, timeout=10) as client:
            return await client.post(
                path, data=form, headers=self.signed(path, form) if headers is None else headers
            )

    async def phone_says(self, text: str, phone: str, number: str, sid: str) -> httpx.Response:
        form = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.twilio.account_sid,
            "From": phone,
            "To": number,
            "Body": text,
            "NumMedia": "0",
        }
        return await self.post("/webhooks/twilio/inbound", form)


def two_way_settings(
    tmp_path: Path, twilio: FakeTwilio, relay_port: int, **extra: Any
) -> tuple[Settings, str]:
    key_file = tmp_path / "dkim.pem"
    record = generate_key(SELECTOR, DOMAIN, key_file)
    settings = make_settings(
        tmp_path,
        domain=DOMAIN,
        carrier="twilio",
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=SecretStr(twilio.auth_token),
        twilio_api_url=twilio.url,
        public_url=PUBLIC_URL,
        mail_transport="smtp",
        relay_port=relay_port,
        dkim_selector=SELECTOR,
        dkim_key_file=key_file,
        **{"relay_host": "127.0.0.1", "relay_security": "none", **extra},
    )
    return settings, record


@pytest.fixture
async def two_way(
    tmp_path: Path, fake_twilio: FakeTwilio, smtp_sink: SmtpSink
) -> AsyncIterator[TwoWay]:
    settings, record = two_way_settings(tmp_path, fake_twilio, smtp_sink.port)
    store = prepare_store(settings, senders=("alice@corp.example", "bob@corp.example"))
    gateway = Gateway(settings)
    await gateway.start()
    try:
        yield TwoWay(gateway, settings, store, fake_twilio, smtp_sink, record)
    finally:
        await gateway.stop()


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` (bounded) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        await asyncio.sleep(0.03)
    raise AssertionError("condition not met in time")
