"""Carrier webhooks: ``POST /webhooks/{carrier}/inbound`` and ``/status``.

Every request is authenticated with the provider's own scheme before
anything is parsed or stored (invalid or missing signature: 403).  The
signed URL is rebuilt from ``MAILSMS_PUBLIC_URL`` because the gateway
usually sits behind a proxy that changes scheme, host and port.

Durability (ARCHITECTURE invariant 1): an inbound SMS is committed before
the 2xx; if the database cannot commit, the answer is 503 so the carrier
retries.  A retried delivery of the same carrier message id is
acknowledged and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailsms.carriers.base import WebhookAdapter
from mailsms.store.runner import DbRunner

log = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 64 * 1024
NO_CHANGE = "sending"  # a provider status that does not move ours


@dataclass(frozen=True)
class WebhookContext:
    runner: DbRunner
    adapters: Mapping[str, WebhookAdapter]
    public_url: str | None
    clock: Callable[[], datetime]
    on_inbound: Callable[[], None]
    on_status: Callable[[], None]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _public_url(request: Request, public_url: str | None) -> str:
    if public_url is None:
        return str(request.url)
    query = request.url.query
    return public_url + request.url.path + (f"?{query}" if query else "")


def make_webhook_endpoint(ctx: WebhookContext) -> Callable[[Request], Awaitable[Response]]:
    async def webhook(request: Request) -> Response:
        carrier = request.path_params["carrier"]
        kind = request.path_params["kind"]
        adapter = ctx.adapters.get(carrier)
        if adapter is None:
            return _error(404, f"no webhooks are configured for carrier {carrier!r}")
        if kind not in ("inbound", "status"):
            return _error(404, f"unknown webhook {kind!r}: use inbound or status")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return _error(415, "expected application/x-www-form-urlencoded")
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BODY:
            return _error(413, "webhook body too large")
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        headers = {name.lower(): value for name, value in request.headers.items()}
        if not adapter.verify(_public_url(request, ctx.public_url), pairs, headers):
            log.warning(
                "webhook %s/%s from %s: invalid or missing signature",
                carrier,
                kind,
                request.client.host if request.client else "?",
            )
            return _error(403, "invalid or missing signature")
        form = dict(pairs)
        if kind == "inbound":
            return await _inbound(ctx, adapter, form)
        return await _status(ctx, adapter, form)

    return webhook


async def _inbound(ctx: WebhookContext, adapter: WebhookAdapter, form: dict[str, str]) -> Response:
    try:
        sms = adapter.parse_inbound(form)
    except ValueError as exc:
        return _error(400, str(exc))
    try:
        inbound_id, duplicate = await ctx.runner.call(
            ctx.runner.store.save_inbound,
            carrier=adapter.name,
            carrier_id=sms.carrier_id,
            from_phone=sms.from_,
            to_number=sms.to,
            text=sms.text,
            media_urls=sms.media_urls,
            received_at=sms.received_at,
        )
    except Exception:
        log.exception("could not store inbound SMS %s", sms.carrier_id)
        return _error(503, "temporarily unable to store the message; retry later")
    if duplicate:
        log.info("inbound SMS %s already stored as %d (carrier retry)", sms.carrier_id, inbound_id)
    else:
        ctx.on_inbound()
    body, content_type = adapter.inbound_ack
    return Response(body, status_code=200, media_type=content_type)


async def _status(ctx: WebhookContext, adapter: WebhookAdapter, form: dict[str, str]) -> Response:
    try:
        report = adapter.parse_status(form)
    except ValueError as exc:
        return _error(400, str(exc))
    if report.status == NO_CHANGE:
        return JSONResponse({"status": "ignored"})
    try:
        known = await ctx.runner.call(
            ctx.runner.store.apply_status,
            carrier=adapter.name,
            carrier_id=report.carrier_id,
            status=report.status,
            error_code=report.error_code,
            error_text=report.error_text,
            now=ctx.clock(),
        )
    except Exception:
        log.exception("could not record status for %s", report.carrier_id)
        return _error(503, "temporarily unable to record the status; retry later")
    if not known:
        log.info(
            "status %s for unknown %s message %s", report.status, adapter.name, report.carrier_id
        )
        return JSONResponse({"status": "unknown message"})
    ctx.on_status()
    return JSONResponse({"status": "recorded"})
