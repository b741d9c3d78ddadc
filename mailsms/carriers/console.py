"""The ``console`` carrier: the development default, no account needed.

Each SMS becomes one JSON object on its own line in the outbox file
(JSON Lines), with the keys ``to``, ``from``, ``text``, ``encoding``,
``segments`` and ``message_id``, and one log line.  ``tail -f outbox.jsonl``
shows what a phone would receive.  It simulates the network as well: each
SMS is reported delivered at once, and ``mailsms simulate inbound`` plays
the phone's answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from mailsms.carriers.base import OutboundSms, SendResult
from mailsms.errors import TemporaryFailure

log = logging.getLogger(__name__)


class ConsoleCarrier:
    name = "console"

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        # Appends from concurrent sends must not interleave within a line.
        self._lock = asyncio.Lock()

    def _append(self, line: str) -> None:
        self.outbox.parent.mkdir(parents=True, exist_ok=True)
        with self.outbox.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()

    async def send(self, sms: OutboundSms) -> SendResult:
        record = {
            "to": sms.to,
            "from": sms.from_,
            "text": sms.text,
            "encoding": sms.encoding,
            "segments": sms.segments,
            "message_id": sms.sms_id,
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        try:
            async with self._lock:
                await asyncio.to_thread(self._append, line)
        except OSError as exc:
            raise TemporaryFailure(
                f"cannot write console outbox {self.outbox}: {exc.strerror}"
            ) from exc
        log.info(
            "console SMS %s to %s from %s: %d %s segment(s)",
            sms.sms_id,
            sms.to,
            sms.from_ or "-",
            sms.segments,
            sms.encoding,
        )
        # The console is the phone network too: what it "sends" is delivered.
        return SendResult(carrier_id=f"console-{sms.sms_id}", status="delivered")
