"""The ASGI application (Starlette), served by uvicorn on the gateway's
own event loop: health checks and carrier webhooks.

Every answer is JSON, errors included (``{"error": ...}``), and no
traceback ever reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mailsms.store.runner import DbRunner
from mailsms.web.webhooks import WebhookContext, make_webhook_endpoint

log = logging.getLogger(__name__)


def create_app(
    runner: DbRunner,
    listener_ready: Callable[[], bool],
    webhooks: WebhookContext | None = None,
) -> Starlette:
    async def healthz(request: Request) -> Response:
        """Liveness: the process answers."""
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        """Readiness: the database answers and the SMTP listener is bound."""
        checks: dict[str, str] = {}
        try:
            await runner.call(runner.store.ping)
            checks["database"] = "ok"
        except Exception as exc:
            log.warning("readiness: database unreachable: %s", type(exc).__name__)
            checks["database"] = "unreachable"
        checks["smtp"] = "ok" if listener_ready() else "not listening"
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal error"}, status_code=500)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if webhooks is not None:
        routes.append(
            Route(
                "/webhooks/{carrier}/{kind}",
                make_webhook_endpoint(webhooks),
                methods=["POST"],
            )
        )
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
