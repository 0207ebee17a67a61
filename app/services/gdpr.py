"""GDPR: a user's data export (Article 15) and erasure or anonymisation (Article 17).

    export(conn, user_id)                       -> JSON-ready dict (notifications, preferences,
                                                   events joined through notification_id)
    export_for(rt, caller, user_id)             the same, authorised and audit-logged
    delete(rt, caller, user_id, anonymise=...)  one transaction + an audit_log entry

Erasure deletes the user's notifications (their queue rows first, events cascade) and
preferences. Anonymisation keeps the rows for statistics but replaces every personal
field (address, recipient, subject, bodies, variables, metadata, provider event
payloads) with redacted values, cancels whatever was still waiting to be sent, and
deletes the preferences. The audit entry itself keeps the user id: it is the record
that the request was carried out.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from uuid import UUID

from app.errors import Forbidden
from app.models import Caller
from app.runtime import Runtime
from app.services import audit
from app.store.notifications import Conn

REDACTED = "[redacted]"
PENDING = ("queued", "scheduled", "batched")


def jsonable(value: Any) -> Any:
    """asyncpg values -> JSON values (UUID and timestamps as strings, numerics as floats)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


async def export(conn: Conn, user_id: UUID) -> dict[str, Any]:
    """Everything stored about one user."""
    notifications = await conn.fetch(
        "SELECT * FROM notifications WHERE user_id = $1 ORDER BY created_at DESC, id", user_id
    )
    preferences = await conn.fetch(
        "SELECT * FROM notification_preferences WHERE user_id = $1"
        " ORDER BY channel, category NULLS FIRST",
        user_id,
    )
    events = await conn.fetch(
        """
        SELECT e.* FROM notification_events e
        JOIN notifications n ON n.id = e.notification_id
        WHERE n.user_id = $1
        ORDER BY e.occurred_at, e.id
        """,
        user_id,
    )
    return {
        "user_id": str(user_id),
        "exported_at": dt.datetime.now(dt.UTC).isoformat(),
        "notifications": [jsonable(dict(r)) for r in notifications],
        "preferences": [jsonable(dict(r)) for r in preferences],
        "events": [jsonable(dict(r)) for r in events],
    }


def _authorise(caller: Caller, user_id: UUID) -> None:
    if not caller.is_privileged and caller.user_id != user_id:
        raise Forbidden("a user may only export or erase its own data")


async def export_for(rt: Runtime, caller: Caller, user_id: UUID) -> dict[str, Any]:
    """export() from one consistent snapshot, with an audit entry."""
    _authorise(caller, user_id)
    async with rt.db.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        data = await export(conn, user_id)
        await audit.record(
            conn,
            caller,
            "gdpr.export",
            target_type="user",
            target_id=str(user_id),
            user_id=user_id,
            details={k: len(data[k]) for k in ("notifications", "preferences", "events")},
        )
    return data


def _count(status: str) -> int:
    """'DELETE 3' / 'UPDATE 3' -> 3."""
    return int(status.rsplit(" ", 1)[-1])


async def delete(
    rt: Runtime, caller: Caller, user_id: UUID, anonymise: bool = False
) -> dict[str, Any]:
    """Erase (or anonymise) one user's data in one transaction; returns what was touched."""
    _authorise(caller, user_id)
    async with rt.db.acquire() as conn, conn.transaction():
        ids = "SELECT id FROM notifications WHERE user_id = $1"
        queue = _count(
            await conn.execute(
                f"DELETE FROM notification_queue WHERE notification_id IN ({ids})", user_id
            )
        )
        if anonymise:
            events = _count(
                await conn.execute(
                    f"""
                    UPDATE notification_events SET payload = '{{"redacted": true}}'::jsonb
                    WHERE notification_id IN ({ids})
                    """,
                    user_id,
                )
            )
            notifications = _count(
                await conn.execute(
                    """
                    UPDATE notifications SET
                        to_address = $2::text, recipient = '{"redacted": true}'::jsonb,
                        subject = CASE WHEN subject IS NULL THEN NULL ELSE $2::text END,
                        body = CASE WHEN body IS NULL THEN NULL ELSE $2::text END,
                        body_html = CASE WHEN body_html IS NULL THEN NULL ELSE $2::text END,
                        variables = '{}'::jsonb, metadata = '{}'::jsonb,
                        status = CASE WHEN status = ANY($3::varchar[]) THEN 'cancelled'
                                      ELSE status END,
                        updated_at = NOW()
                    WHERE user_id = $1
                    """,
                    user_id,
                    REDACTED,
                    list(PENDING),
                )
            )
        else:
            events = int(
                await conn.fetchval(
                    f"SELECT count(*) FROM notification_events WHERE notification_id IN ({ids})",
                    user_id,
                )
            )
            notifications = _count(
                await conn.execute("DELETE FROM notifications WHERE user_id = $1", user_id)
            )
        preferences = _count(
            await conn.execute("DELETE FROM notification_preferences WHERE user_id = $1", user_id)
        )
        summary = {
            "user_id": str(user_id),
            "mode": "anonymised" if anonymise else "deleted",
            "notifications": notifications,
            "events": events,
            "queue": queue,
            "preferences": preferences,
        }
        await audit.record(
            conn,
            caller,
            "gdpr.anonymise" if anonymise else "gdpr.delete",
            target_type="user",
            target_id=str(user_id),
            user_id=user_id,
            details={k: v for k, v in summary.items() if k != "user_id"},
        )
    return summary
