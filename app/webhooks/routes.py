"""Provider webhooks: POST /webhooks/{provider} and the spec's POST /webhooks/notifications.

    IP allow-list (NOTIFICATIONS_WEBHOOK_IP_WHITELIST)  -> 403
    body over NOTIFICATIONS_MAX_BODY_SIZE               -> 413
    signature (when NOTIFICATIONS_WEBHOOK_VERIFY=true)  -> 401 (WebhookRejected)
    body not in the provider's format                   -> 400 (WebhookInvalid)
    same signed delivery again                          -> 200 {"status": "duplicate"}, no change
    otherwise                                           -> 200, events stored and applied

Nothing is written before the request is verified and parsed. Verification and
parsing are the provider module's (app.providers.*): this file only shapes the
request, routes it and applies the events (app.services.events).
SES arrives through SNS: a verified SubscriptionConfirmation is confirmed by
fetching its SubscribeURL (restricted to sns.<region>.amazonaws.com).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from app import metrics
from app.errors import Forbidden, NotFound
from app.main import RUNTIME, SETTINGS
from app.models import NUL_ESCAPE
from app.providers.base import (
    ProviderContext,
    WebhookInvalid,
    WebhookRejected,
    WebhookRequest,
)
from app.providers.registry import provider_class
from app.rest import problems
from app.webhooks import replay
from app.webhooks.detect import WEBHOOK_PROVIDERS, detect
from app.webhooks.intake import Delivery, webhook_intake

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
NETWORKS = web.AppKey("webhook_networks", tuple)


def parse_networks(raw: str | None) -> tuple[Network, ...]:
    """CIDRs (or single addresses), comma- or space-separated; a bad entry fails start-up."""
    items = [part.strip() for part in (raw or "").replace(" ", ",").split(",") if part.strip()]
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def ip_allowed(remote: str | None, networks: tuple[Network, ...]) -> bool:
    if not networks:
        return True
    try:
        address = ipaddress.ip_address((remote or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def build_request(request: web.Request, body: bytes, public_url: str | None) -> WebhookRequest:
    """What the verifier sees: the URL the provider called (Twilio/Plivo sign it)."""
    # as sent (scheme, Host header, raw path and query), without building a yarl URL
    base = public_url.rstrip("/") if public_url else f"{request.scheme}://{request.host}"
    url = base + request.path_qs
    form = None
    if "application/x-www-form-urlencoded" in (request.content_type or ""):
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            form = None
    return WebhookRequest(
        url=url,
        method=request.method,
        headers=request.headers,
        body=body,
        form=form,
        remote=request.remote,
    )


async def confirm_subscription(http: aiohttp.ClientSession, url: str) -> int:
    """GET an SNS SubscribeURL (already checked to be an SNS host); returns the status."""
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=10), allow_redirects=False) as r:
        await r.read()
        return r.status


# A NUL, raw or JSON-escaped (or percent-encoded in a form body, which is decoded before
# it is stored): PostgreSQL text cannot hold it, and the events of concurrent requests are
# written together, so one such request is refused up front. "%00" inside a JSON string
# (a clicked URL, say) is only text and stays allowed.
NUL_MARKERS = (b"\x00", NUL_ESCAPE)
FORM_NUL = b"%00"


def _carries_nul(hook: WebhookRequest) -> bool:
    if any(marker in hook.body for marker in NUL_MARKERS):
        return True
    return hook.form is not None and FORM_NUL in hook.body


async def receive(request: web.Request, provider: str | None) -> web.Response:
    settings = request.app[SETTINGS]
    rt = request.app[RUNTIME]
    label = provider or "unknown"
    if not ip_allowed(request.remote, request.app[NETWORKS]):
        metrics.labeled(metrics.webhook_requests_total, label, "forbidden").inc()
        raise Forbidden(f"webhook source {request.remote} is not in the IP allow-list")
    body = await request.read()
    if provider is None:
        provider = detect(request.headers, request.query, body)
        if provider is None:
            metrics.labeled(metrics.webhook_requests_total, "unknown", "invalid").inc()
            return problems.problem(
                400,
                "cannot tell which provider sent this webhook; use /webhooks/{provider}"
                " or add ?provider=",
                code="BAD_REQUEST",
            )
    if provider not in WEBHOOK_PROVIDERS:
        raise NotFound(f"no webhook receiver for provider {provider!r}")
    label = provider
    cls: Any = provider_class(provider)
    hook = build_request(request, body, settings.public_url)
    try:
        if settings.webhook_verify:
            ctx = ProviderContext(http=rt.http, settings=settings, redis=rt.redis)
            await cls.verify_webhook(hook, ctx)
        events = cls.parse_webhook(hook)
        confirm_url = cls.subscription_confirm_url(hook) if provider == "ses" else None
    except WebhookRejected as exc:
        metrics.labeled(metrics.webhook_requests_total, label, "rejected").inc()
        log.info("rejected %s webhook from %s: %s", provider, request.remote, exc)
        return problems.problem(401, f"webhook rejected: {exc}", code="UNAUTHENTICATED")
    except WebhookInvalid as exc:
        metrics.labeled(metrics.webhook_requests_total, label, "invalid").inc()
        return problems.problem(400, f"malformed {provider} webhook: {exc}", code="BAD_REQUEST")
    if confirm_url:
        status = await confirm_subscription(rt.http, confirm_url)
        metrics.labeled(metrics.webhook_requests_total, label, "subscription").inc()
        if not 200 <= status < 300:
            return problems.problem(502, f"SNS SubscribeURL answered {status}", code="BAD_GATEWAY")
        return web.json_response({"status": "subscribed", "provider": provider})
    if _carries_nul(hook):
        metrics.labeled(metrics.webhook_requests_total, label, "invalid").inc()
        return problems.problem(
            400, f"{provider} webhook carries a NUL character, which cannot be stored",
            code="BAD_REQUEST",
        )  # fmt: skip
    delivery = Delivery(replay.delivery_id(provider, request.headers, body), events)
    counts = await webhook_intake(rt).submit(delivery)
    if counts is None:
        metrics.labeled(metrics.webhook_requests_total, label, "duplicate").inc()
        return web.json_response({"status": "duplicate", "provider": provider, "received": 0})
    metrics.labeled(metrics.webhook_requests_total, label, "accepted").inc()
    for event in events:
        metrics.labeled(metrics.webhook_events_total, provider, event.type.value, "received").inc()
    return web.json_response({"status": "ok", "provider": provider, **counts.as_dict()})


async def notifications_webhook(request: web.Request) -> web.Response:
    return await receive(request, None)


async def provider_webhook(request: web.Request) -> web.Response:
    return await receive(request, request.match_info["provider"].lower())


def setup(app: web.Application) -> None:
    """Register the webhook routes (the spec's single URL first, then per provider)."""
    app[NETWORKS] = parse_networks(app[SETTINGS].webhook_ip_whitelist)
    app.router.add_post("/webhooks/notifications", notifications_webhook)
    app.router.add_post("/webhooks/{provider}", provider_webhook)
