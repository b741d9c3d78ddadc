"""Starting the SMTP listener on the application's own event loop.

aiosmtpd's threaded ``Controller`` would run a second loop in a second
thread; the gateway instead hands ``loop.create_server`` a protocol factory,
so SMTP sessions, the dispatcher and the HTTP side share one loop and one
set of resources (RFC 5321 server, ESMTP SIZE per RFC 1870).
"""

from __future__ import annotations

import asyncio
from typing import AnyStr

from aiosmtpd.smtp import SMTP

from mailsms.smtp.codes import LIBRARY_REPLIES
from mailsms.smtp.handler import GatewayHandler


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP protocol with enhanced status codes on every reply."""

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            for prefix, replacement in LIBRARY_REPLIES:
                if status.startswith(prefix):
                    status = replacement
                    break
        await super().push(status)


async def start_smtp(
    handler: GatewayHandler,
    *,
    host: str,
    port: int,
    hostname: str,
    data_size_limit: int,
    idle_timeout: float,
) -> asyncio.Server:
    """Bind the listener; returns the server (its sockets tell the port)."""
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return GatewaySMTP(
            handler,
            data_size_limit=data_size_limit,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=hostname,
            ident="mailsms ESMTP",
            timeout=idle_timeout,
            loop=loop,
        )

    return await loop.create_server(factory, host=host, port=port)
