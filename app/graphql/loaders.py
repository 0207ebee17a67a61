"""Per-request DataLoaders: one query for a whole list instead of one per item."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from strawberry.dataloader import DataLoader

from app.runtime import Runtime
from app.store.notifications import Conn

EVENT_COLUMNS = (
    "id, notification_id, provider, provider_event_id, provider_message_id, event_type,"
    " occurred_at, payload, applied, created_at"
)


async def events_for(conn: Conn, notification_ids: Sequence[UUID]) -> dict[UUID, list[Any]]:
    """Provider events of these notifications, oldest first, grouped by notification."""
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM notification_events"
        " WHERE notification_id = ANY($1::uuid[]) ORDER BY occurred_at, created_at, id",
        list(set(notification_ids)),
    )
    grouped: dict[UUID, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row["notification_id"], []).append(row)
    return grouped


class Loaders:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.events: DataLoader[UUID, list[Any]] = DataLoader(load_fn=self._events)

    async def _events(self, keys: list[UUID]) -> list[list[Any]]:
        grouped = await events_for(self.rt.db, keys)
        return [grouped.get(k, []) for k in keys]
