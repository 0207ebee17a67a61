"""SQL over notification_providers."""

from __future__ import annotations

from typing import Any

import asyncpg

from app.store.notifications import Conn

COLUMNS = (
    "id, name, channel, priority, config, enabled, last_success_at, last_failure_at, "
    "failure_count, created_at, updated_at, last_error, breaker_state"
)


async def list_(conn: Conn, *, enabled_only: bool = False) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM notification_providers"
        " WHERE ($1::boolean = FALSE OR enabled) ORDER BY channel, priority DESC, name",
        enabled_only,
    )


async def upsert(
    conn: Conn, name: str, channel: str, priority: int, config: Any, enabled: bool = True
) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""
        INSERT INTO notification_providers (name, channel, priority, config, enabled)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (name, channel) DO UPDATE SET priority = EXCLUDED.priority,
            config = EXCLUDED.config, enabled = EXCLUDED.enabled, updated_at = NOW()
        RETURNING {COLUMNS}
        """,
        name,
        channel,
        priority,
        config,
        enabled,
    )
    assert row is not None  # an upsert always returns its row
    return row


async def record_outcome(
    conn: Conn, name: str, *, success: bool, breaker_state: str, error: str | None = None
) -> None:
    """Mirror a provider's health into its rows (the spec's provider_health view reads them)."""
    if success:
        await conn.execute(
            """
            UPDATE notification_providers SET last_success_at = NOW(), failure_count = 0,
                breaker_state = $2, updated_at = NOW()
            WHERE name = $1
            """,
            name,
            breaker_state,
        )
    else:
        await conn.execute(
            """
            UPDATE notification_providers SET last_failure_at = NOW(),
                failure_count = failure_count + 1, breaker_state = $2, last_error = $3,
                updated_at = NOW()
            WHERE name = $1
            """,
            name,
            breaker_state,
            error,
        )
