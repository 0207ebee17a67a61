"""Queries the CLI needs beyond app.services.stats: the streaming notification export.

`export_rows` runs a server-side cursor inside the caller's transaction, so an
export of millions of rows holds one batch in memory at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection = asyncpg.Connection | PoolConnectionProxy

EXPORT_COLUMNS = (
    "id",
    "user_id",
    "channel",
    "template_name",
    "category",
    "to_address",
    "subject",
    "status",
    "provider",
    "provider_id",
    "error",
    "retry_count",
    "priority",
    "created_at",
    "scheduled_at",
    "sent_at",
    "delivered_at",
    "opened_at",
    "clicked_at",
    "failed_at",
    "bounced_at",
)

_WHERE = "WHERE created_at >= NOW() - make_interval(days => $1)"


async def export_count(conn: Connection, days: int) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM notifications {_WHERE}", days))


async def export_rows(
    conn: Connection, days: int, prefetch: int = 1000
) -> AsyncIterator[dict[str, Any]]:
    """Notifications created in the last `days` days, oldest first. Needs a transaction."""
    query = (
        f"SELECT {', '.join(EXPORT_COLUMNS)} FROM notifications {_WHERE} ORDER BY created_at, id"
    )
    async for row in conn.cursor(query, days, prefetch=prefetch):
        yield dict(row)
