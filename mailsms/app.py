"""The application: builds everything from the settings in one lifespan
and owns the event loop (``mailsms serve``).

Resources (database engine, worker threads, the carriers' HTTP client, the carrier)
are created here, passed explicitly to the parts that use them, and closed
here in reverse order.  No module keeps global state.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import signal
import socket
import ssl
from dataclasses import dataclass
from datetime import timedelta

import uvicorn

from mailsms.bounces import BounceNotifier
from mailsms.carriers.http import CarrierHttp
from mailsms.carriers.registry import build_carrier, build_webhooks
from mailsms.config import Settings, SettingsError
from mailsms.dispatcher import Dispatcher, utcnow
from mailsms.inbound import InboundConfig, InboundRouter
from mailsms.mail.dkim import DkimKeyError, load_signer
from mailsms.mail.queue import MailDispatcher
from mailsms.mail.transport import MailTransport, TransportConfig, make_transport
from mailsms.prefork import pin_to_cpu, supervise
from mailsms.retry import RetryPolicy
from mailsms.smtp.handler import GatewayHandler, HandlerConfig, trust_config
from mailsms.smtp.server import make_tls_context, start_smtp
from mailsms.store import DbRunner, GroupCommit, Store, make_engine, migrate
from mailsms.text import TextOptions
from mailsms.web.app import create_app
from mailsms.web.webhooks import WebhookContext
from mailsms.worker import Worker

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


# Pending connections the kernel holds per listener: a burst of sessions
# waits in the queue instead of being refused (asyncio's default is 100).
LISTEN_BACKLOG = 1024


@dataclass(frozen=True, slots=True)
class Listeners:
    """The bound listening sockets.  ``mailsms serve --workers N`` binds one
    set per worker before forking (see :func:`bind_worker_listeners`)."""

    smtp: socket.socket
    http: socket.socket
    submissions: socket.socket | None = None

    def close(self) -> None:
        for sock in (self.smtp, self.http, self.submissions):
            if sock is not None:
                sock.close()


def _bind(host: str, port: int, what: str, *, reuse_port: bool = False) -> socket.socket:
    try:
        return socket.create_server(
            (host, port),
            family=socket.AF_INET6 if ":" in host else socket.AF_INET,
            backlog=LISTEN_BACKLOG,
            reuse_port=reuse_port,
        )
    except OSError as exc:
        raise StartupError(
            f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc}"
        ) from exc


# Addresses that listen on every interface (compared with, not bound to).
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104


def _check_ports_differ(settings: Settings) -> None:
    """Each listener needs a port of its own.  On one port, SMTP and HTTP
    would not even fail to bind with SO_REUSEPORT (``--workers``): the
    kernel would hand SMTP clients to the HTTP server, where they wait for
    a greeting that never comes."""
    listeners = [
        ("MAILSMS_SMTP_PORT", settings.smtp_host, settings.smtp_port),
        ("MAILSMS_HTTP_PORT", settings.http_host, settings.http_port),
    ]
    if settings.submissions_port is not None:
        listeners.append(
            ("MAILSMS_SUBMISSIONS_PORT", settings.smtp_host, settings.submissions_port)
        )
    for (name, host, port), (other, other_host, other_port) in itertools.combinations(listeners, 2):
        shared_host = host == other_host or {host, other_host} & _WILDCARD_HOSTS
        if port and port == other_port and shared_host:
            raise StartupError(
                f"{name} and {other} are both {port}: each listener needs a port of its own"
            )


def bind_listeners(settings: Settings, *, reuse_port: bool = False) -> Listeners:
    """Bind every listener the settings ask for, or raise StartupError
    (closing what was already bound)."""
    _check_ports_differ(settings)
    bound: list[socket.socket] = []
    try:
        smtp = _bind(settings.smtp_host, settings.smtp_port, "SMTP", reuse_port=reuse_port)
        bound.append(smtp)
        submissions = None
        if settings.submissions_port is not None:
            submissions = _bind(
                settings.smtp_host,
                settings.submissions_port,
                "SMTP (implicit TLS)",
                reuse_port=reuse_port,
            )
            bound.append(submissions)
        http = _bind(settings.http_host, settings.http_port, "HTTP", reuse_port=reuse_port)
    except StartupError:
        for sock in bound:
            sock.close()
        raise
    return Listeners(smtp=smtp, http=http, submissions=submissions)


def bind_worker_listeners(settings: Settings, count: int) -> list[Listeners]:
    """One set of listeners per worker, all on the same ports.

    With one shared socket the worker whose event loop wakes first accepts
    every waiting connection (asyncio accepts up to the backlog per
    wake-up), so clients that keep their connections, like relays and
    load generators, all end up on one worker while the others idle.  With
    a socket per worker bound with SO_REUSEPORT (Linux 3.9+), the kernel
    spreads new connections across the workers.  The supervisor keeps every
    set open, so a replacement worker takes over its predecessor's socket
    and the connections queued on it.  Without SO_REUSEPORT the workers
    share one set.
    """
    if count == 1 or not hasattr(socket, "SO_REUSEPORT"):
        shared = bind_listeners(settings)
        return [shared] * count
    # SO_REUSEPORT would also let these sockets join another program's
    # (another mailsms started twice, say), which then silently shares the
    # connections: bind once without it first, so a taken port is an error.
    bind_listeners(settings).close()
    sets = [bind_listeners(settings, reuse_port=True)]
    try:
        # Port 0 asks for any free port: the other sets take the same one.
        first = sets[0]
        pinned = settings.model_copy(
            update={
                "smtp_port": first.smtp.getsockname()[1],
                "http_port": first.http.getsockname()[1],
                "submissions_port": (
                    first.submissions.getsockname()[1] if first.submissions else None
                ),
            }
        )
        sets.extend(bind_listeners(pinned, reuse_port=True) for _ in range(count - 1))
    except StartupError:
        for listeners in sets:
            listeners.close()
        raise
    return sets


class Gateway:
    """A running gateway: SMTP listener, dispatcher and HTTP server.

    ``listeners``: sockets bound by the caller (``serve --workers`` binds
    one set per worker); None binds them here from the settings.
    """

    def __init__(self, settings: Settings, listeners: Listeners | None = None) -> None:
        self.settings = settings
        self._listeners = listeners
        self._stack = contextlib.AsyncExitStack()
        self.smtp_server: asyncio.Server | None = None
        self.submissions_server: asyncio.Server | None = None
        self.http_server: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self.dispatcher: Dispatcher | None = None
        self.runner: DbRunner | None = None
        self.webhook_context: WebhookContext | None = None

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
        tls = _tls_context(settings)
        listeners = self._listeners
        if listeners is None:
            listeners = bind_listeners(settings)
            self._stack.callback(listeners.close)
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
        await runner.call(runner.store.prepare)

        http = CarrierHttp(settings.carrier_timeout)
        self._stack.push_async_callback(http.aclose)
        carrier = build_carrier(settings, http)

        committer = GroupCommit(runner)
        dispatcher = Dispatcher(
            committer,
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
        if settings.dispatcher_enabled:
            committer.on_enqueued = dispatcher.notify
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
                trust=trust_config(settings),
            ),
            runner,
            committer,
            clock=utcnow,
        )
        self._stack.push_async_callback(handler.aclose)
        self._start_two_way(runner, dispatcher, handler)
        self.smtp_server = await self._listen(
            handler,
            listeners.smtp,
            tls_context=tls,
            require_starttls=settings.require_starttls,
        )
        if listeners.submissions is not None and tls is not None:
            # RFC 8314 implicit TLS: a second listener on the same loop.
            self.submissions_server = await self._listen(
                handler, listeners.submissions, tls_context=tls, implicit_tls=True
            )

        await self._start_http(runner, listeners.http)
        log.info(
            "mailsms listening: SMTP %s:%d, HTTP %s:%d, domain %s, carrier %s",
            settings.smtp_host,
            self.smtp_port,
            settings.http_host,
            self.http_port,
            settings.domain,
            carrier.name,
        )

    def _start_two_way(
        self, runner: DbRunner, dispatcher: Dispatcher, handler: GatewayHandler
    ) -> None:
        """SMS to email: the inbound router, bounces and the mail queue."""
        settings = self.settings
        deadline = timedelta(seconds=settings.retry_deadline)
        signer = None
        if settings.dkim_selector and settings.dkim_key_file:
            try:
                signer = load_signer(
                    settings.domain, settings.dkim_selector, settings.dkim_key_file
                )
            except DkimKeyError as exc:
                raise SettingsError(f"invalid setting MAILSMS_DKIM_KEY_FILE: {exc}") from None
        elif settings.dkim_selector or settings.dkim_key_file:
            raise SettingsError(
                "invalid setting MAILSMS_DKIM_SELECTOR: DKIM signing needs both "
                "MAILSMS_DKIM_SELECTOR and MAILSMS_DKIM_KEY_FILE"
            )
        transport = _mail_transport(settings)
        mail_queue = Worker(
            "mail-queue",
            MailDispatcher(
                runner,
                transport,
                signer=signer,
                retry=RetryPolicy(settings.retry_initial_delay, settings.retry_max_delay),
                lease=settings.dispatch_lease,
                clock=utcnow,
            ).round,
            poll_interval=settings.dispatch_poll_interval,
        )
        bounces = Worker(
            "bounces",
            BounceNotifier(
                runner,
                domain=settings.domain,
                deadline=deadline,
                clock=utcnow,
                on_mail=mail_queue.notify,
            ).round,
            poll_interval=settings.dispatch_poll_interval,
        )
        inbound = Worker(
            "inbound",
            InboundRouter(
                runner,
                InboundConfig(
                    domain=settings.domain,
                    catch_all=settings.catch_all,
                    stop_reply=settings.stop_reply,
                    start_reply=settings.start_reply,
                    help_reply=settings.help_reply,
                    deadline=deadline,
                ),
                clock=utcnow,
                on_mail=mail_queue.notify,
                on_sms=dispatcher.notify,
                on_opt_out=handler.forget_directory,
            ).round,
            poll_interval=settings.dispatch_poll_interval,
        )
        for worker in (mail_queue, bounces, inbound):
            worker.start()
            self._stack.push_async_callback(worker.stop)
        self.webhook_context = WebhookContext(
            runner=runner,
            adapters=build_webhooks(settings),
            public_url=settings.public_url,
            clock=utcnow,
            on_inbound=inbound.notify,
            on_status=bounces.notify,
        )
        # A final failure recorded by the dispatcher leaves a bounce to send.
        dispatcher.on_final = bounces.notify

    async def _start_http(self, runner: DbRunner, sock: socket.socket) -> None:
        app = create_app(runner, listener_ready=self._smtp_listening, webhooks=self.webhook_context)
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

        self._stack.push_async_callback(close_http)

    def _smtp_listening(self) -> bool:
        return self.smtp_server is not None and self.smtp_server.is_serving()

    async def _listen(
        self,
        handler: GatewayHandler,
        sock: socket.socket,
        *,
        tls_context: ssl.SSLContext | None,
        require_starttls: bool = False,
        implicit_tls: bool = False,
    ) -> asyncio.Server:
        """Serve SMTP on one bound socket and stop serving at shutdown."""
        settings = self.settings
        server = await start_smtp(
            handler,
            sock=sock,
            hostname=settings.domain,
            data_size_limit=settings.max_message_size,
            idle_timeout=settings.smtp_timeout,
            tls_context=tls_context,
            require_starttls=require_starttls,
            implicit_tls=implicit_tls,
            backlog=LISTEN_BACKLOG,
        )

        async def close() -> None:
            server.close()
            # Sessions in DATA finish their commit through the committer,
            # which is stopped after this (the exit stack runs in reverse).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), timeout=5)

        self._stack.push_async_callback(close)
        return server

    async def stop(self) -> None:
        await self._stack.aclose()


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The listeners' TLS context (STARTTLS, RFC 3207; implicit TLS, RFC
    8314), or None when no certificate is configured.  Inconsistent settings
    raise SettingsError, unusable files StartupError: one line each."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None and key is None:
        if settings.submissions_port is not None:
            raise SettingsError(
                "invalid setting MAILSMS_SUBMISSIONS_PORT: implicit TLS needs "
                "MAILSMS_TLS_CERT_FILE and MAILSMS_TLS_KEY_FILE"
            )
        if settings.require_starttls:
            raise SettingsError(
                "invalid setting MAILSMS_REQUIRE_STARTTLS: STARTTLS needs "
                "MAILSMS_TLS_CERT_FILE and MAILSMS_TLS_KEY_FILE"
            )
        return None
    if cert is None or key is None:
        missing = "MAILSMS_TLS_CERT_FILE" if cert is None else "MAILSMS_TLS_KEY_FILE"
        raise SettingsError(f"invalid setting {missing}: TLS needs both a certificate and a key")
    try:
        return make_tls_context(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        # Never the file contents: only which files and the library's reason.
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or "unusable"
        raise StartupError(
            f"cannot load the TLS certificate {cert} and key {key}: {reason}"
        ) from None


def _mail_transport(settings: Settings) -> MailTransport:
    """The transport replies and bounces go out through; unusable relay
    settings raise SettingsError, in one line."""
    try:
        return make_transport(
            settings.mail_transport,
            TransportConfig(
                relay_host=settings.relay_host,
                relay_port=settings.relay_port,
                relay_security=settings.relay_security,
                relay_username=settings.relay_username,
                relay_password=(
                    settings.relay_password.get_secret_value() if settings.relay_password else None
                ),
                relay_timeout=settings.relay_timeout,
                relay_ca_file=settings.relay_ca_file,
                maildir_path=settings.maildir,
                helo_name=settings.domain,
            ),
        )
    except ValueError as exc:
        raise SettingsError(f"invalid relay settings (MAILSMS_RELAY_*): {exc}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


async def serve(settings: Settings, listeners: Listeners | None = None) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly."""
    gateway = Gateway(settings, listeners)
    await gateway.start()
    # What start-up made (modules, settings, caches, compiled statements)
    # lives as long as the process: leave it out of every later garbage
    # collection, whose pauses would otherwise scan it again and again.
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        await gateway.stop()


def serve_workers(settings: Settings) -> int:
    """``MAILSMS_WORKERS`` processes on shared listeners (mailsms.prefork);
    the exit status.  Settings, TLS files and the database are checked once,
    here, so a mistake is reported once, before any worker starts."""
    _tls_context(settings)  # raises on unusable TLS settings
    _mail_transport(settings)  # and on unusable relay settings
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
    except Exception as exc:
        raise StartupError(
            f"cannot open the database ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc
    finally:
        engine.dispose()  # no connection may cross the fork
    per_worker = bind_worker_listeners(settings, settings.workers)
    log.info(
        "mailsms starting %d workers: SMTP %s:%d, HTTP %s:%d",
        settings.workers,
        settings.smtp_host,
        per_worker[0].smtp.getsockname()[1],
        settings.http_host,
        per_worker[0].http.getsockname()[1],
    )

    def run_worker(index: int) -> int:
        own = per_worker[index]
        for other in per_worker:
            if other is not own:
                other.close()  # this process's copies; the supervisor keeps its own
        if settings.worker_cpu_affinity == "auto":
            # Before any thread starts: the threads inherit it.
            cpu = pin_to_cpu(index)
            if cpu is not None:
                log.info("worker %d runs on CPU %d", index, cpu)
        try:
            asyncio.run(serve(settings, own))
        except (StartupError, SettingsError) as exc:
            log.error("worker %d cannot start: %s", index, exc)
            return 1
        return 0

    try:
        return supervise(settings.workers, run_worker)
    finally:
        for listeners in {id(ls): ls for ls in per_worker}.values():
            listeners.close()
