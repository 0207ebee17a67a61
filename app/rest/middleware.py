"""aiohttp middlewares: metrics (outermost), problem+json errors, per-IP rate limit.

Errors are mapped for the REST, webhook and infrastructure routes; /graphql and
/hasura/actions answer in their own protocols and are left alone (they are still
counted in the HTTP metrics).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError

from app import metrics
from app.errors import NotificationError, unavailable_from
from app.rest import problems, ratelimit

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FOREIGN_PREFIXES = ("/graphql", "/hasura")
LIMITED_PREFIXES = ("/api/",)


def route_label(request: web.Request) -> str:
    """The route template (/api/notifications/{id}), never the raw path (label cardinality)."""
    match = request.match_info
    if match.http_exception is not None:
        return "unmatched"
    resource = match.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = route_label(request)
        metrics.labeled(metrics.http_requests_total, request.method, route, str(status)).inc()
        metrics.labeled(metrics.http_request_seconds, request.method, route).observe(
            time.perf_counter() - started
        )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(FOREIGN_PREFIXES):
        return await handler(request)
    try:
        return await handler(request)
    except NotificationError as exc:
        return problems.from_error(exc)
    except ValidationError as exc:
        return problems.from_validation(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 404 and request.match_info.http_exception is not None:
            detail = f"no route {request.method} {request.path}"
        if exc.status == 413:
            from app.main import SETTINGS

            limit = request.app[SETTINGS].max_body_size
            detail = f"request body is larger than the limit of {limit} bytes"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return problems.problem(exc.status, detail or exc.reason, headers=headers or None)
    except Exception as exc:
        unavailable = unavailable_from(exc)
        if unavailable is not None:
            log.warning("%s %s: %s", request.method, request.path, exc)
            return problems.from_error(unavailable)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problems.problem(500, "internal error", code="INTERNAL")


@web.middleware
async def ratelimit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(LIMITED_PREFIXES):
        return await handler(request)
    from app.main import RUNTIME, SETTINGS

    settings = request.app[SETTINGS]
    if settings.api_rate_limit <= 0 or RUNTIME not in request.app:
        return await handler(request)
    ip = request.remote or "unknown"
    verdict = await ratelimit.take(
        request.app[RUNTIME].redis, ip, settings.api_rate_limit, settings.api_burst_limit
    )
    if not verdict.allowed:
        metrics.api_rate_limited_total.inc()
        retry = max(1, int(verdict.retry_after + 0.999))
        return problems.problem(
            429,
            f"rate limit of {verdict.limit} requests per minute exceeded; retry in {retry}s",
            code="RATE_LIMITED",
            headers={"Retry-After": str(retry)},
            retry_after=retry,
        )
    return await handler(request)
