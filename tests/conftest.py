"""Shared fixtures: a real gateway on 127.0.0.1 ephemeral ports, backed by
a SQLite file in the test's temporary folder."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailsms.app import Gateway
from mailsms.config import Settings, load_settings
from mailsms.store import Store, make_engine, migrate

pytest_plugins = ["tests.fakes.twilio", "tests.fakes.smtp_sink", "tests.fakes.dns"]

DOMAIN = "sms.localhost"
SENDER = "alice@corp.example"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "domain": DOMAIN,
        "smtp_port": 0,
        "http_port": 0,
        "database_url": f"sqlite:///{tmp_path / 'mailsms.db'}",
        "console_outbox": tmp_path / "outbox.jsonl",
        "dispatch_poll_interval": 0.05,
        "retry_initial_delay": 0.05,
        "retry_max_delay": 0.2,
        "smtp_timeout": 30,
    }
    values.update(overrides)
    return load_settings(**values)


def prepare_store(settings: Settings, senders: tuple[str, ...] = (SENDER,)) -> Store:
    engine = make_engine(settings.database_url)
    migrate(engine)
    store = Store(engine)
    for sender in senders:
        store.add_sender(sender, datetime.now(UTC))
    return store


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def store(settings: Settings) -> Store:
    return prepare_store(settings)


@pytest.fixture
async def gateway(settings: Settings, store: Store) -> AsyncIterator[Gateway]:
    gw = Gateway(settings)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def read_outbox(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


async def wait_outbox(path: Path, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Wait (bounded) until the console outbox holds ``count`` SMS."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = read_outbox(path)
        if len(records) >= count:
            return records
        await asyncio.sleep(0.02)
    raise AssertionError(f"outbox has {len(read_outbox(path))} SMS, expected {count}")


async def wait_for_status(
    store: Store, status: str, count: int = 1, timeout: float = 10.0
) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await asyncio.to_thread(store.list_sms, status)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.02)
    seen = await asyncio.to_thread(store.count_by_status)
    raise AssertionError(f"expected {count} SMS {status}, have {seen}")
