"""Retention: delete old rows in small batches that never hold a lock for long.

NOTIFICATIONS_RETENTION_DAYS (0 = keep forever) bounds notifications and their
events; NOTIFICATIONS_QUEUE_RETENTION (seconds, the spec's) bounds queue rows
left behind for notifications that reached a final status.
"""

from __future__ import annotations

import logging

from app.runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 1000


async def _delete_in_batches(rt: Runtime, sql: str, *args: object) -> int:
    total = 0
    while True:
        result = await rt.db.execute(sql, *args, BATCH)
        count = int(result.split()[-1])
        total += count
        if count < BATCH:
            return total


async def cleanup(rt: Runtime) -> dict[str, int]:
    settings = rt.settings
    removed = {"queue": 0, "events": 0, "notifications": 0}
    if not settings.auto_cleanup:
        return removed
    removed["queue"] = await _delete_in_batches(
        rt,
        """
        DELETE FROM notification_queue WHERE id IN (
            SELECT q.id FROM notification_queue q JOIN notifications n ON n.id = q.notification_id
            WHERE n.status NOT IN ('queued', 'scheduled')
              AND q.created_at < NOW() - make_interval(secs => $1)
            LIMIT $2)
        """,
        float(settings.queue_retention),
    )
    if settings.retention_days > 0:
        removed["events"] = await _delete_in_batches(
            rt,
            """
            DELETE FROM notification_events WHERE id IN (
                SELECT id FROM notification_events
                WHERE created_at < NOW() - make_interval(days => $1) LIMIT $2)
            """,
            settings.retention_days,
        )
        removed["notifications"] = await _delete_in_batches(
            rt,
            """
            DELETE FROM notifications WHERE id IN (
                SELECT n.id FROM notifications n
                WHERE n.created_at < NOW() - make_interval(days => $1)
                  AND n.status NOT IN ('queued', 'scheduled', 'batched')
                  AND NOT EXISTS (SELECT 1 FROM notification_queue q WHERE q.notification_id = n.id)
                LIMIT $2)
            """,
            settings.retention_days,
        )
    if any(removed.values()):
        log.info("retention removed %s", removed)
    return removed
