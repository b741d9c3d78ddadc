"""The application: builds everything from the settings in one lifespan
and owns the event loop (``mailsms serve``).

Resources (database engine, worker threads, the httpx client, the carrier)
are created here, passed explicitly to the parts that use them, and closed
here in reverse order.  No module keeps global state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from datetime import timedelta

import httpx
import uvicorn

from mailsms.carriers.registry import build_carrier
from mailsms.config import Settings
from mailsms.dispatcher import Dispatcher, utcnow
from mailsms.retry import RetryPolicy
from mailsms.smtp.handler import GatewayHandler, HandlerConfig
from mailsms.smtp.server import start_smtp
from mailsms.store import DbRunner, GroupCommitter, Store, make_engine, migrate
from mailsms.text import TextOptions
from mailsms.web.app import create_app

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The gateway cannot start (a port is taken, the database is down);
    the message is one line for the operator."""


def text_options(settings: Settings) -> TextOptions:
    return TextOptions(
        subject_policy=settings.subject_policy,
        transliterate=settings.transliterate,
        max_segments=settings.max_segments,
        length_policy=settings.length_policy,
    )


class Gateway:
    """A running gateway: SMTP listener, dispatcher and HTTP server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = contextlib.AsyncExitStack()
        self.smtp_server: asyncio.Server | None = None
        self.http_server: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self.dispatcher: Dispatcher | None = None
        self.runner: DbRunner | None = None

    @property
    def smtp_port(self) -> int:
        assert self.smtp_server is not None and self.smtp_server.sockets
        return int(self.smtp_server.sockets[0].getsockname()[1])

    @property
    def http_port(self) -> int:
        assert self.http_server is not None
        return int(self.http_server.servers[0].sockets[0].getsockname()[1])

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> None:
        settings = self.settings
        engine = make_engine(settings.database_url)
        self._stack.callback(engine.dispose)
        try:
            await asyncio.to_thread(migrate, engine)
        except Exception as exc:
            raise StartupError(
                f"cannot open the database ({type(exc).__name__}: {_first_line(exc)})"
            ) from exc

        runner = DbRunner(Store(engine))
        self.runner = runner
        self._stack.callback(runner.close)

        client = httpx.AsyncClient(timeout=settings.carrier_timeout)
        self._stack.push_async_callback(client.aclose)
        carrier = build_carrier(settings, client)

        dispatcher = Dispatcher(
            runner,
            carrier,
            batch=settings.dispatch_batch,
            concurrency=settings.dispatch_concurrency,
            poll_interval=settings.dispatch_poll_interval,
            lease=settings.dispatch_lease,
            send_timeout=settings.carrier_timeout,
            retry=RetryPolicy(settings.retry_initial_delay, settings.retry_max_delay),
            status_callback=(
                f"{settings.public_url}/webhooks/{carrier.name}/status"
                if settings.public_url
                else None
            ),
        )
        self.dispatcher = dispatcher
        committer = GroupCommitter(
            runner, on_commit=dispatcher.notify if settings.dispatcher_enabled else None
        )
        committer.start()
        self._stack.push_async_callback(committer.stop)
        if settings.dispatcher_enabled:
            dispatcher.start()
            self._stack.push_async_callback(dispatcher.stop)

        handler = GatewayHandler(
            HandlerConfig(
                domain=settings.domain,
                default_region=settings.default_region,
                max_recipients=settings.max_recipients,
                text=text_options(settings),
                retry_deadline=timedelta(seconds=settings.retry_deadline),
                default_from=settings.default_from,
            ),
            runner,
            committer,
            clock=utcnow,
        )
        try:
            self.smtp_server = await start_smtp(
                handler,
                host=settings.smtp_host,
                port=settings.smtp_port,
                hostname=settings.domain,
                data_size_limit=settings.max_message_size,
                idle_timeout=settings.smtp_timeout,
            )
        except OSError as exc:
            raise StartupError(
                f"cannot listen for SMTP on {settings.smtp_host}:{settings.smtp_port}: "
                f"{exc.strerror or exc}"
            ) from exc
        self._stack.push_async_callback(self._close_smtp)

        await self._start_http(runner)
        log.info(
            "mailsms listening: SMTP %s:%d, HTTP %s:%d, domain %s, carrier %s",
            settings.smtp_host,
            self.smtp_port,
            settings.http_host,
            self.http_port,
            settings.domain,
            carrier.name,
        )

    async def _start_http(self, runner: DbRunner) -> None:
        settings = self.settings
        try:
            sock = socket.create_server(
                (settings.http_host, settings.http_port),
                family=socket.AF_INET6 if ":" in settings.http_host else socket.AF_INET,
            )
        except OSError as exc:
            raise StartupError(
                f"cannot listen for HTTP on {settings.http_host}:{settings.http_port}: "
                f"{exc.strerror or exc}"
            ) from exc
        app = create_app(runner, listener_ready=self._smtp_listening)
        config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self.http_server = server
        self._http_task = asyncio.create_task(server.main_loop(), name="mailsms-http")

        async def close_http() -> None:
            server.should_exit = True
            if self._http_task is not None:
                await self._http_task
            await server.shutdown(sockets=[sock])
            sock.close()

        self._stack.push_async_callback(close_http)

    def _smtp_listening(self) -> bool:
        return self.smtp_server is not None and self.smtp_server.is_serving()

    async def _close_smtp(self) -> None:
        if self.smtp_server is not None:
            self.smtp_server.close()
            # Sessions in DATA finish their commit through the committer,
            # which is stopped after this (the exit stack runs in reverse).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.smtp_server.wait_closed(), timeout=5)

    async def stop(self) -> None:
        await self._stack.aclose()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly."""
    gateway = Gateway(settings)
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        await gateway.stop()
