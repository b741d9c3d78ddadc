"""The ceiling: a bare aiosmtpd server whose handler only answers 250.

Started the way mailsms starts its listener (``loop.create_server`` with an
``aiosmtpd.smtp.SMTP`` protocol factory, same options), in its own process
(``python -m tests.bench.baseline_server``); prints ``READY <port>``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.smtp import SMTP

from tests.bench.serving import main, serve_until_signalled


class AcceptAll:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 OK"


async def run(port: int) -> None:
    await serve(AcceptAll(), port)


async def serve(handler: object, port: int) -> None:
    """Serve ``handler`` the way mailsms serves its own, until signalled."""
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=10 * 1024 * 1024,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname="sms.localhost",
            ident="baseline ESMTP",
            timeout=300,
            loop=loop,
        )

    # mailsms listens with a backlog of 1024 (mailsms.app.LISTEN_BACKLOG).
    server = await loop.create_server(factory, host="127.0.0.1", port=port, backlog=1024)
    await serve_until_signalled(server)


if __name__ == "__main__":
    main(run)
