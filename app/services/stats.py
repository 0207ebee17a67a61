"""Statistics over the spec's analytics views (and the same definitions over a time window).

Plain functions over a connection or pool, shared by GraphQL, REST and the CLI:

    delivery(conn, days)          per channel: total, sent, delivered, failed, bounced, rate
    engagement(conn, days)        per template (email, delivered): opened, clicked, rates
    providers(conn)               notification_provider_health
    queue(conn)                   notification_queue_backlog
    hourly(conn, hours)           per hour: total, sent, delivered, failed
    user_summary(conn, user_id)   notification_user_summary for one user
    overview(conn)                totals by status, last 24 h, queue backlog
    failures(conn, limit)         the most recent failed / bounced notifications
    templates_usage(conn, limit)  templates by number of notifications

`days=None` reads the spec's view as is (all time); a number applies the view's
definition to notifications created in the last `days` days.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from app.errors import Forbidden, InvalidInput
from app.models import Caller
from app.store.notifications import Conn

MAX_DAYS = 3650
MAX_HOURS = 24 * 31
MAX_LIMIT = 1000


def authorise(caller: Caller, user_id: UUID | None = None) -> None:
    """Service-wide statistics are for admin and service; a user may see its own summary."""
    if caller.is_privileged:
        return
    if user_id is None or caller.user_id != user_id:
        raise Forbidden("statistics are available to admin and service roles only")


def _range(value: int | None, name: str, upper: int) -> int | None:
    if value is not None and not 1 <= value <= upper:
        raise InvalidInput(f"{name} must be between 1 and {upper}", details={"field": name})
    return value


def _dicts(rows: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in rows]


async def delivery(conn: Conn, days: int | None = 30) -> list[dict[str, Any]]:
    days = _range(days, "days", MAX_DAYS)
    rows = await conn.fetch(
        """
        SELECT channel,
               COUNT(*) AS total,
               COUNT(*) FILTER (WHERE status IN ('sent', 'delivered')) AS sent,
               COUNT(*) FILTER (WHERE status = 'delivered') AS delivered,
               COUNT(*) FILTER (WHERE status = 'failed') AS failed,
               COUNT(*) FILTER (WHERE status = 'bounced') AS bounced,
               ROUND(COUNT(*) FILTER (WHERE status = 'delivered')::DECIMAL
                     / NULLIF(COUNT(*), 0) * 100, 2) AS delivery_rate_pct
        FROM notifications
        WHERE $1::int IS NULL OR created_at >= NOW() - make_interval(days => $1::int)
        GROUP BY channel ORDER BY channel
        """,
        days,
    )
    return _dicts(rows)


async def engagement(conn: Conn, days: int | None = 7) -> list[dict[str, Any]]:
    days = _range(days, "days", MAX_DAYS)
    rows = await conn.fetch(
        """
        SELECT template_name,
               COUNT(*) AS total_sent,
               COUNT(opened_at) AS opened,
               COUNT(clicked_at) AS clicked,
               ROUND(COUNT(opened_at)::DECIMAL / NULLIF(COUNT(*), 0) * 100, 2) AS open_rate_pct,
               ROUND(COUNT(clicked_at)::DECIMAL / NULLIF(COUNT(opened_at), 0) * 100, 2)
                   AS click_rate_pct
        FROM notifications
        WHERE channel = 'email' AND status = 'delivered'
          AND ($1::int IS NULL OR created_at >= NOW() - make_interval(days => $1::int))
        GROUP BY template_name
        ORDER BY total_sent DESC, template_name NULLS LAST
        """,
        days,
    )
    return _dicts(rows)


async def providers(conn: Conn) -> list[dict[str, Any]]:
    return _dicts(await conn.fetch("SELECT * FROM notification_provider_health"))


async def queue(conn: Conn) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT * FROM notification_queue_backlog")
    return (
        dict(row)
        if row
        else {"total_queued": 0, "processing": 0, "pending": 0, "oldest_queued_at": None}
    )


async def hourly(conn: Conn, hours: int = 24) -> list[dict[str, Any]]:
    """One row per hour (oldest first), including hours with no notifications."""
    hours = _range(hours, "hours", MAX_HOURS) or 24
    rows = await conn.fetch(
        """
        WITH buckets AS (
            SELECT generate_series(
                date_trunc('hour', NOW()) - make_interval(hours => $1::int - 1),
                date_trunc('hour', NOW()), interval '1 hour') AS hour
        )
        SELECT b.hour,
               COUNT(n.id) AS total,
               COUNT(n.id) FILTER (WHERE n.status IN ('sent', 'delivered')) AS sent,
               COUNT(n.id) FILTER (WHERE n.status = 'delivered') AS delivered,
               COUNT(n.id) FILTER (WHERE n.status IN ('failed', 'bounced')) AS failed
        FROM buckets b
        LEFT JOIN notifications n
          ON n.created_at >= b.hour AND n.created_at < b.hour + interval '1 hour'
        GROUP BY b.hour ORDER BY b.hour
        """,
        hours,
    )
    return _dicts(rows)


async def user_summary(conn: Conn, user_id: UUID) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT * FROM notification_user_summary WHERE user_id = $1", user_id)
    if row is None:
        return {
            "user_id": user_id,
            "total_notifications": 0,
            "email_count": 0,
            "push_count": 0,
            "sms_count": 0,
            "last_notification_at": None,
        }
    return dict(row)


async def overview(conn: Conn) -> dict[str, Any]:
    by_status = await conn.fetch(
        "SELECT status, COUNT(*) AS count FROM notifications GROUP BY status ORDER BY status"
    )
    last_day = await conn.fetchval(
        "SELECT COUNT(*) FROM notifications WHERE created_at >= NOW() - interval '24 hours'"
    )
    return {
        "total": sum(r["count"] for r in by_status),
        "by_status": {r["status"]: r["count"] for r in by_status},
        "last_24h": last_day,
        "queue": await queue(conn),
    }


async def failures(conn: Conn, limit: int = 50) -> list[dict[str, Any]]:
    limit = _range(limit, "limit", MAX_LIMIT) or 50
    rows = await conn.fetch(
        """
        SELECT id, user_id, channel, template_name, to_address, status, provider, error,
               retry_count, created_at, failed_at, bounced_at
        FROM notifications WHERE status IN ('failed', 'bounced')
        ORDER BY COALESCE(failed_at, bounced_at, created_at) DESC, id
        LIMIT $1
        """,
        limit,
    )
    return _dicts(rows)


async def templates_usage(conn: Conn, limit: int = 20) -> list[dict[str, Any]]:
    limit = _range(limit, "limit", MAX_LIMIT) or 20
    rows = await conn.fetch(
        """
        SELECT template_name,
               COUNT(*) AS total,
               COUNT(*) FILTER (WHERE status IN ('sent', 'delivered')) AS sent,
               COUNT(*) FILTER (WHERE status = 'delivered') AS delivered,
               COUNT(*) FILTER (WHERE status IN ('failed', 'bounced')) AS failed,
               MAX(created_at) AS last_used_at
        FROM notifications WHERE template_name IS NOT NULL
        GROUP BY template_name ORDER BY total DESC, template_name
        LIMIT $1
        """,
        limit,
    )
    return _dicts(rows)
