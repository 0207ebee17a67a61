"""`notifications init`: migrations applied once, and a readable report of the install."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.cli.conftest import Cli


async def test_init_reports_a_working_install(cli: Cli, database_url: str) -> None:
    result = await cli(
        "init",
        NOTIFICATIONS_EMAIL_ENABLED="true",
        NOTIFICATIONS_EMAIL_PROVIDER="resend",
        NOTIFICATIONS_EMAIL_API_KEY="re_x",
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    for line in (
        "migrations",
        "PostgreSQL",
        "schema",
        "6 tables, 5 views",
        "Redis",
        "email providers",
        "resend (env)",
        "sms providers",
        "no provider configured",
    ):
        assert line in out, line
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") >= 4
    finally:
        await conn.close()


async def test_init_fails_when_redis_is_required_and_down(cli: Cli) -> None:
    result = await cli("init", REDIS_URL="redis://127.0.0.1:1/0")
    assert result.exit_code == 1
    assert "Redis" in result.stdout and "FAIL" in result.stdout


async def test_init_accepts_a_down_redis_with_the_postgres_backend(cli: Any) -> None:
    result = await cli(
        "init", REDIS_URL="redis://127.0.0.1:1/0", NOTIFICATIONS_QUEUE_BACKEND="postgres"
    )
    assert result.exit_code == 0, result.output
    assert "warn" in result.stdout
