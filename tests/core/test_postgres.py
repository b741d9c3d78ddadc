"""The same gateway on PostgreSQL (127.0.0.1:5432, database ``test``), and
two instances sharing it: every SMS is sent exactly once."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest
import sqlalchemy as sa

from mailsms.app import Gateway
from tests.conftest import DOMAIN, make_settings, prepare_store, read_outbox
from tests.core.test_smtp_gateway import simple_message

PG_URL = os.environ.get("MAILSMS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A fresh schema for one test, dropped afterwards."""
    from mailsms.store.db import make_engine

    admin = make_engine(PG_URL)
    schema = f"mailsms_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL (Debian package postgresql) not reachable: {type(exc).__name__}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


async def test_two_instances_on_postgres_send_every_sms_exactly_once(
    tmp_path: Path, pg_schema_url: str
) -> None:
    first = make_settings(
        tmp_path, database_url=pg_schema_url, console_outbox=tmp_path / "outbox-1.jsonl"
    )
    second = first.model_copy(update={"console_outbox": tmp_path / "outbox-2.jsonl"})
    prepare_store(first)
    gateways = [Gateway(first), Gateway(second)]
    for gw in gateways:
        await gw.start()
    try:

        async def one(i: int) -> None:
            gw = gateways[i % 2]
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.smtp_port) as client:
                await client.send_message(simple_message(f"pg {i}", to=f"41555501{i:02d}@{DOMAIN}"))

        failures = [
            repr(r)
            for r in await asyncio.gather(*(one(i) for i in range(40)), return_exceptions=True)
            if isinstance(r, BaseException)
        ]
        assert failures == []
        for _ in range(600):
            records = read_outbox(first.console_outbox) + read_outbox(second.console_outbox)
            if len(records) >= 40:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        records = read_outbox(first.console_outbox) + read_outbox(second.console_outbox)
    finally:
        for gw in gateways:
            await gw.stop()
    texts = sorted(r["text"] for r in records)
    assert texts == sorted(f"pg {i}" for i in range(40))  # all sent, none twice
    assert len({r["message_id"] for r in records}) == 40
