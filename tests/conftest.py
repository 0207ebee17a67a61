"""Shared fixtures. Real PostgreSQL and Redis (embedded unless DATABASE_URL/REDIS_URL
are set), started once per session; provider fakes are real local HTTP servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from app.providers.base import ProviderContext
from app.settings import Settings


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    """Settings from keyword overrides (Python field names), ignoring the real env file."""

    def build(**overrides: Any) -> Settings:
        return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]

    return build


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def provider_ctx(
    http_session: aiohttp.ClientSession, make_settings: Callable[..., Settings]
) -> Callable[..., ProviderContext]:
    """A ProviderContext factory: provider_ctx(resend_base_url=..., provider_timeout=2)."""

    def build(**overrides: Any) -> ProviderContext:
        return ProviderContext(http=http_session, settings=make_settings(**overrides))

    return build


# --------------------------------------------------------------------------- real services

import os  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import asyncpg  # noqa: E402
from arq.worker import Worker  # noqa: E402

from app.embedded import ensure_services  # noqa: E402
from app.runtime import Runtime, open_runtime  # noqa: E402
from app.settings import PROJECT_ROOT  # noqa: E402
from app.store.migrate import migrate  # noqa: E402

TABLES = (
    "notification_events",
    "notification_queue",
    "notifications",
    "notification_templates",
    "notification_preferences",
    "notification_providers",
    "notification_batches",
    "notification_audit_log",
    "notification_digest_runs",
    "notification_campaigns",
    "notification_sequences",
    "notification_campaign_recipients",
    "notification_campaign_chunks",
)


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[str, str]]:
    """(server DSN, redis URL): embedded unless DATABASE_URL / REDIS_URL are set."""
    data_dir = PROJECT_ROOT / ".data" / "test"
    with ensure_services(os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"), data_dir) as (
        db,
        redis,
        _,
    ):
        yield db, redis


def _with_database(dsn: str, name: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
async def database_url(servers: tuple[str, str]) -> AsyncIterator[str]:
    """A fresh database for this test session, migrated once."""
    server_dsn, _ = servers
    name = f"notif_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = _with_database(server_dsn, name)
    await migrate(url)
    yield url
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
def redis_url(servers: tuple[str, str]) -> Iterator[str]:
    """A Redis database of its own: concurrent test sessions on one server never meet."""
    import redis as sync_redis

    _, url = servers
    base, _, _ = url.rpartition("/")
    token = uuid.uuid4().hex
    for db in range(1, 16):
        client = sync_redis.Redis.from_url(f"{base}/{db}")
        if client.set("notif:test-session", token, nx=True, ex=3600):
            client.flushdb()
            client.set("notif:test-session", token, ex=3600)
            client.close()
            break
        client.close()
    else:
        raise RuntimeError("every Redis test database is taken by another test session")
    yield f"{base}/{db}"
    client = sync_redis.Redis.from_url(f"{base}/{db}")
    client.flushdb()
    client.close()


@pytest.fixture
async def clean(database_url: str, redis_url: str) -> None:
    """Every test starts with empty tables and an empty Redis database."""
    conn = await asyncpg.connect(database_url)
    await conn.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
    await conn.close()
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    await client.flushdb()
    await client.set("notif:test-session", "held", ex=3600)
    await client.aclose()


@pytest.fixture
def db_settings(
    database_url: str, redis_url: str, make_settings: Callable[..., Settings]
) -> Callable[..., Settings]:
    """Settings pointing at the test database and Redis, fast retries, plus overrides."""

    def build(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": redis_url,
            "retry_delay": 10,
            "max_retry_delay": 200,
            "database_pool_min": 1,
            "database_pool_max": 10,
            "worker_metrics_port": 0,
        }
        base.update(overrides)
        return make_settings(**base)

    return build


@pytest.fixture
async def make_rt(clean: None, db_settings: Callable[..., Settings]) -> AsyncIterator[Any]:
    """Open Runtimes (closed at teardown): rt = await make_rt(dry_run=True)."""
    stack: list[Any] = []

    async def build(**overrides: Any) -> Runtime:
        manager = open_runtime(db_settings(**overrides))
        rt = await manager.__aenter__()
        stack.append(manager)
        return rt

    yield build
    for manager in reversed(stack):
        await manager.__aexit__(None, None, None)


@pytest.fixture
async def rt(make_rt: Any) -> Runtime:
    runtime: Runtime = await make_rt()
    return runtime


async def run_worker(rt: Runtime, **options: Any) -> Worker:
    """A real ARQ worker in burst mode on the test Redis: runs every job, then returns."""
    from workers import campaign_tasks, tasks

    await rt.settle()  # enqueues run after commit, in the background
    worker = Worker(
        functions=[
            tasks.deliver,
            tasks.deliver_many,
            tasks.cleanup,
            campaign_tasks.campaign_expand,
        ],
        redis_pool=rt.redis,
        burst=True,
        poll_delay=0.01,
        max_jobs=options.pop("max_jobs", 20),
        handle_signals=False,
        ctx={"rt": rt},
        keep_result=60,
        max_tries=1000,
        **options,
    )
    await worker.main()
    return worker
