"""CLI test helpers: run `notifications ...` (typer CliRunner) against the test database and Redis.

DATABASE_URL / REDIS_URL point the CLI at the session's test services, so no
embedded server starts. Tests are async (they seed through the real services);
the CLI runs in a worker thread with its own event loop, as it does in a shell.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from click.testing import Result
from typer.testing import CliRunner

from app.cli import app

# Provider selection from the developer's environment must not leak into tests.
NEUTRAL_ENV: dict[str, str | None] = {
    "NOTIFICATIONS_EMAIL_API_KEY": None,
    "NOTIFICATIONS_SMS_ACCOUNT_SID": None,
    "NOTIFICATIONS_SMS_AUTH_TOKEN": None,
    "NOTIFICATIONS_PUSH_API_KEY": None,
    "NOTIFICATIONS_DRY_RUN": None,
    "NOTIFICATIONS_QUEUE_BACKEND": None,
    "EDITOR": None,
    "VISUAL": None,
    "COLUMNS": "200",
}


class Cli:
    def __init__(self, env: dict[str, str | None]) -> None:
        self.env = env

    async def __call__(self, *args: str, input: str | None = None, **env: str | None) -> Result:
        runner = CliRunner()
        merged = {**self.env, **env}
        return await asyncio.to_thread(
            runner.invoke, app, list(args), input=input, env=merged, catch_exceptions=False
        )

    async def json(self, *args: str, **env: str | None) -> Any:
        result = await self(*args, "--json", **env)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def cli_env(database_url: str, redis_url: str, clean: None) -> dict[str, str | None]:
    return {**NEUTRAL_ENV, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "DATABASE_POOL_MIN": "1"}  # fmt: skip


@pytest.fixture
def cli(cli_env: dict[str, str | None]) -> Cli:
    return Cli(cli_env)


@pytest.fixture
async def db(database_url: str, clean: None) -> Any:
    conn = await asyncpg.connect(database_url)
    for typename in ("jsonb", "json"):
        await conn.set_type_codec(
            typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
    yield conn
    await conn.close()


async def seed_notification(conn: asyncpg.Connection, **fields: Any) -> UUID:
    """Insert one notification row as the store would leave it (defaults for the rest)."""
    row: dict[str, Any] = {
        "id": uuid4(), "user_id": uuid4(), "channel": "email", "template_name": None,
        "to_address": "someone@example.com", "recipient": {"email": "someone@example.com"},
        "subject": "Hello", "body": "Hi there", "variables": {"name": "Ada"}, "status": "sent",
        "provider": "resend", "created_at": datetime.now(UTC),
    }  # fmt: skip
    row.update(fields)
    columns = list(row)
    placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
    await conn.execute(
        f"INSERT INTO notifications ({', '.join(columns)}) VALUES ({placeholders})",
        *row.values(),
    )
    return UUID(str(row["id"]))


def hours_ago(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


SeedFn = Callable[..., Any]
