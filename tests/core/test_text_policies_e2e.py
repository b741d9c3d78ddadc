"""Length and subject policies as a sender sees them over SMTP."""

from __future__ import annotations

from pathlib import Path

import aiosmtplib
import pytest

from mailsms.app import Gateway
from mailsms.store.models import SmsStatus
from mailsms.text import TextOptions, analyse, text_to_sms
from tests.conftest import make_settings, prepare_store, wait_for_status, wait_outbox
from tests.core.test_smtp_gateway import simple_message

LONG = " ".join(f"word{i}" for i in range(200))  # 1,489 GSM-7 characters


async def start(tmp_path: Path, **overrides: object) -> tuple[Gateway, object]:
    settings = make_settings(tmp_path, max_segments=3, **overrides)
    store = prepare_store(settings)
    gateway = Gateway(settings)
    await gateway.start()
    return gateway, store


async def test_refuse_policy_answers_550_5_3_4_with_count_and_limit(tmp_path: Path) -> None:
    gateway, store = await start(tmp_path, length_policy="refuse")
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
            with pytest.raises(aiosmtplib.SMTPDataError) as info:
                await client.send_message(simple_message(LONG))
        assert info.value.code == 550
        assert info.value.message.startswith("5.3.4 ")
        needed = analyse(LONG).segments
        assert needed == 10
        assert f"needs {needed} SMS segments" in info.value.message
        assert "limit is 3" in info.value.message
        assert store.list_sms() == []  # type: ignore[attr-defined]
    finally:
        await gateway.stop()


async def test_truncate_policy_sends_one_sms_within_the_limit(tmp_path: Path) -> None:
    gateway, _ = await start(tmp_path, length_policy="truncate")
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
            await client.send_message(simple_message(LONG))
        [sms] = await wait_outbox(tmp_path / "outbox.jsonl", 1)
        assert sms["segments"] == 3
        assert sms["text"].endswith("...")
        assert LONG.startswith(sms["text"][:-3].rstrip())
    finally:
        await gateway.stop()


async def test_split_policy_stores_several_sms_each_with_encoding_and_segments(
    tmp_path: Path,
) -> None:
    gateway, store = await start(tmp_path, length_policy="split")
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
            await client.send_message(simple_message(LONG))
        parts = text_to_sms(LONG, TextOptions(max_segments=3, length_policy="split")).messages
        rows = await wait_for_status(store, SmsStatus.DELIVERED, count=len(parts))  # type: ignore[arg-type]
        assert len(rows) == len(parts) > 3  # word boundaries cost some room
        assert all(r.segments <= 3 and r.encoding == "GSM-7" for r in rows)
        assert " ".join(r.text for r in sorted(rows, key=lambda r: r.id or 0)) == LONG
    finally:
        await gateway.stop()


async def test_subject_prepend_policy(tmp_path: Path) -> None:
    gateway, _ = await start(tmp_path, subject_policy="prepend")
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gateway.smtp_port) as client:
            await client.send_message(simple_message("body text"))
        [sms] = await wait_outbox(tmp_path / "outbox.jsonl", 1)
        assert sms["text"] == "test: body text"
    finally:
        await gateway.stop()
