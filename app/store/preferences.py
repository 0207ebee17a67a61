"""SQL over notification_preferences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from app.store.notifications import Conn

COLUMNS = "id, user_id, channel, category, enabled, frequency, quiet_hours, reason, created_at, updated_at"


async def for_users(conn: Conn, user_ids: Sequence[UUID]) -> list[asyncpg.Record]:
    """Every preference row of these users: one query per intake batch."""
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM notification_preferences WHERE user_id = ANY($1::uuid[])",
        list(set(user_ids)),
    )


async def for_user(conn: Conn, user_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM notification_preferences WHERE user_id = $1"
        " ORDER BY channel, category NULLS FIRST",
        user_id,
    )


async def upsert(
    conn: Conn,
    user_id: UUID,
    channel: str,
    category: str | None,
    fields: dict[str, Any],
) -> asyncpg.Record:
    """Insert or update one (user, channel, category) row; only given fields change."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO notification_preferences
            (user_id, channel, category, enabled, frequency, quiet_hours, reason)
        VALUES ($1, $2, $3, COALESCE($4, TRUE), $5, $6, $7)
        ON CONFLICT (user_id, channel, category) DO UPDATE SET
            enabled = CASE WHEN $8 THEN EXCLUDED.enabled ELSE notification_preferences.enabled END,
            frequency = CASE WHEN $9 THEN EXCLUDED.frequency
                             ELSE notification_preferences.frequency END,
            quiet_hours = CASE WHEN $10 THEN EXCLUDED.quiet_hours
                               ELSE notification_preferences.quiet_hours END,
            reason = CASE WHEN $11 THEN EXCLUDED.reason ELSE notification_preferences.reason END,
            updated_at = NOW()
        RETURNING {COLUMNS}
        """,
        user_id,
        channel,
        category,
        fields.get("enabled"),
        fields.get("frequency"),
        fields.get("quiet_hours"),
        fields.get("reason"),
        "enabled" in fields,
        "frequency" in fields,
        "quiet_hours" in fields,
        "reason" in fields,
    )
    assert row is not None  # an upsert always returns its row
    return row


async def delete(conn: Conn, user_id: UUID, channel: str, category: str | None) -> bool:
    result = await conn.execute(
        "DELETE FROM notification_preferences"
        " WHERE user_id = $1 AND channel = $2 AND category IS NOT DISTINCT FROM $3",
        user_id,
        channel,
        category,
    )
    return bool(result.endswith(" 1"))
