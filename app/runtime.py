"""The long-lived resources one process holds: DB pool, Redis, HTTP session, caches.

The API (aiohttp cleanup_ctx), the ARQ worker (on_startup/on_shutdown), the
postgres-queue worker and the CLI all open one `Runtime` and hand it to the
service layer, so every entry point runs the same rules on the same resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import BlockingConnectionPool

from app import jsoncodec
from app.settings import Settings

log = logging.getLogger(__name__)


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + jsoncodec.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    return jsoncodec.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    """JSON in and out as Python values; jsonb in binary format (version byte + text) so
    COPY (copy_records_to_table) can carry jsonb columns too."""
    await conn.set_type_codec(
        "jsonb",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        schema="pg_catalog",
        format="binary",
    )
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """Run when a connection goes back to the pool. asyncpg's default runs four statements
    (unlock advisory locks, CLOSE ALL, UNLISTEN, RESET ALL) every time, which halves the
    throughput of short queries; the app keeps no session state (migrations take their
    advisory lock on a connection of their own), so only an open transaction is undone."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_db_pool(settings: Settings, **overrides: Any) -> asyncpg.Pool:
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set (embedded services were not started)")
    options: dict[str, Any] = {
        "min_size": min(settings.database_pool_min, settings.database_pool_max),
        "max_size": settings.database_pool_max,
        "max_inactive_connection_lifetime": settings.database_pool_idle_timeout / 1000,
        "init": _init_connection,
        "reset": _reset_connection,
        "command_timeout": 60,
    }
    options.update(overrides)
    pool: asyncpg.Pool = await asyncpg.create_pool(settings.database_url, **options)
    return pool


def redis_settings(settings: Settings) -> RedisSettings:
    url = settings.redis_url or "redis://localhost:6379"
    rs = RedisSettings.from_dsn(url)
    rs.conn_timeout = 5
    rs.conn_retries = 3
    rs.max_connections = max(settings.redis_pool_max, 16)
    return rs


async def create_redis(settings: Settings) -> ArqRedis:
    """An ArqRedis on a *blocking* pool of REDIS_POOL_MAX connections: when all are busy a
    caller waits for one instead of failing with "Too many connections"."""
    url = settings.redis_url or "redis://localhost:6379"
    pool = BlockingConnectionPool.from_url(
        url, max_connections=settings.redis_pool_max, timeout=20, socket_connect_timeout=5
    )
    redis = ArqRedis(connection_pool=pool)
    try:
        await redis.ping()
    except Exception:
        await redis.aclose()
        raise
    return redis


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Runtime:
    settings: Settings
    db: asyncpg.Pool
    redis: ArqRedis
    http: aiohttp.ClientSession
    name: str = field(default_factory=worker_name)
    # per-process caches owned by services (templates, providers, intake batcher)
    state: dict[str, Any] = field(default_factory=dict)
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run after-commit work (an enqueue) without making a caller wait for it."""
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait for spawned work (shutdown, tests)."""
        if self.background:
            await asyncio.wait(set(self.background), timeout=timeout)

    async def close(self) -> None:
        await self.settle()
        for closer in list(self.state.values()):
            aclose = getattr(closer, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        await self.http.close()
        await self.redis.aclose()
        await self.db.close()


def tune_gc() -> None:
    """Long-lived servers allocate many short-lived objects per request and keep a large,
    stable heap (modules, schemas, compiled templates). Freezing the start-up heap and
    raising the young-generation threshold stops the collector from rescanning it on
    every few hundred allocations, which showed up as tail latency. 10,000 rather than
    more: compiling a template (pymeta's parser makes much cyclic garbage) ran twice as
    slow at 50,000, while request latency gains nothing above ~10,000."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, **pool_overrides: Any) -> AsyncIterator[Runtime]:
    db = await create_db_pool(settings, **pool_overrides)
    try:
        redis = await create_redis(settings)
    except Exception:
        await db.close()
        raise
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=200, limit_per_host=100),
        headers={"User-Agent": "hasura-notifications/0.1"},
        json_serialize=jsoncodec.dumps_text,  # provider request bodies (json=...) through orjson
    )
    runtime = Runtime(settings=settings, db=db, redis=redis, http=http)
    from app import templating

    templating.warm_up()
    tune_gc()
    try:
        yield runtime
    finally:
        await runtime.close()
