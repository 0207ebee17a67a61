"""create_app(settings): the one aiohttp application (health, REST, GraphQL, Hasura
actions, webhooks, metrics). Its cleanup_ctx owns the Runtime: asyncpg pool, ARQ
Redis pool and one shared aiohttp ClientSession."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from app.auth import Authenticator
from app.runtime import Runtime, open_runtime
from app.settings import Settings

log = logging.getLogger(__name__)

RUNTIME = web.AppKey("runtime", Runtime)
SETTINGS = web.AppKey("settings", Settings)
AUTH = web.AppKey("auth", Authenticator)

HEALTH_TIMEOUT = 2.0


async def _check(coro: object) -> str:
    try:
        await asyncio.wait_for(coro, HEALTH_TIMEOUT)  # type: ignore[arg-type]
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}".strip()[:300]


async def health(request: web.Request) -> web.Response:
    """200 when PostgreSQL and Redis answer, 503 with details when either does not."""
    rt = request.app[RUNTIME]
    database = await _check(rt.db.fetchval("SELECT 1"))
    redis = await _check(rt.redis.ping())
    healthy = database == "ok" and redis == "ok"
    body = {
        "status": "ok" if healthy else "unavailable",
        "database": database,
        "redis": redis,
        "queue_backend": rt.settings.queue_backend,
        "dry_run": rt.settings.dry_run,
    }
    return web.json_response(body, status=200 if healthy else 503)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_size)
    app[SETTINGS] = settings
    app[AUTH] = Authenticator(settings)

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_runtime(settings) as rt:
            app[RUNTIME] = rt
            yield

    app.cleanup_ctx.append(runtime_ctx)
    app.router.add_get("/health", health)
    _mount_interfaces(app)
    return app


def _mount_interfaces(app: web.Application) -> None:
    """Each interface module exposes setup(app); import errors are real errors."""
    from app.graphql import routes as graphql_routes
    from app.rest import campaigns as campaign_routes
    from app.rest import routes as rest_routes
    from app.webhooks import routes as webhook_routes

    for module in (rest_routes, campaign_routes, graphql_routes, webhook_routes):
        module.setup(app)
