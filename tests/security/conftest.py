"""Fixtures for the sender-trust and abuse tests: gateways with chosen
settings, trustme certificates, a raw-socket SMTP client and a frozen clock."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trustme

from mailsms.app import Gateway
from mailsms.config import Settings
from mailsms.store import Store
from tests.conftest import SENDER, make_settings, prepare_store


@dataclass
class Tls:
    ca: trustme.CA
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", "sms.localhost")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        with cert_file.open("ab") as handle:
            handle.write(extra.bytes())
    cert.private_key_pem.write_to_path(str(key_file))
    return Tls(ca, cert_file, key_file)


GatewayFactory = Callable[..., Any]


@pytest.fixture
def start_gateway(tmp_path: Path) -> Callable[..., Any]:
    """``async with start_gateway(senders=..., **settings) as (gw, settings, store)``."""

    @asynccontextmanager
    async def start(
        senders: tuple[str, ...] = (SENDER,),
        policies: dict[str, str] | None = None,
        passwords: dict[str, str] | None = None,
        fresh: bool = True,
        **overrides: Any,
    ) -> AsyncIterator[tuple[Gateway, Settings, Store]]:
        settings = make_settings(tmp_path, **overrides)
        store = prepare_store(settings, senders=senders if fresh else ())
        from mailsms.trust import hash_password

        for entry, policy in (policies or {}).items():
            store.set_sender_policy(entry, policy)
        for entry, password in (passwords or {}).items():
            store.set_sender_password(entry, hash_password(password))
        gateway = Gateway(settings)
        await gateway.start()
        try:
            yield gateway, settings, store
        finally:
            await gateway.stop()

    return start


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The SMTP handler's clock, fixed at the start of the current minute so
    a test's counting windows cannot roll over mid-test (the dispatcher keeps
    the real clock, and the frozen instant is never in its future)."""
    moment = datetime.now(UTC).replace(second=0, microsecond=0)
    monkeypatch.setattr("mailsms.app.utcnow", lambda: moment)
    return moment


class RawSmtp:
    """A byte-exact SMTP client: smtplib and aiosmtplib normalise line
    endings, which is exactly what the smuggling tests must not do."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> RawSmtp:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        code, _ = await client.reply()
        assert code == 220
        return client

    async def reply(self) -> tuple[int, str]:
        lines: list[str] = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), timeout=30)
            if not line:
                raise ConnectionError("server closed the connection")
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text[4:])
            if len(text) < 4 or text[3] != "-":
                return int(text[:3]), "\n".join(lines)

    async def command(self, line: bytes | str) -> tuple[int, str]:
        data = line.encode() if isinstance(line, str) else line
        self.writer.write(data + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def send_data(self, payload: bytes) -> tuple[int, str]:
        """DATA with ``payload`` sent as is, then CRLF.CRLF."""
        code, text = await self.command("DATA")
        assert code == 354, text
        self.writer.write(payload + b"\r\n.\r\n")
        await self.writer.drain()
        return await self.reply()

    async def close(self) -> None:
        with suppress(ConnectionError, OSError):
            await self.command("QUIT")
        self.writer.close()
