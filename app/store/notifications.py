"""SQL over notifications and notification_queue. No rules here, only statements.

Bulk paths use `unnest` so a batch of any size is one statement and one round
trip (PERFORMANCE.md: unnest ~80k rows/s against ~2k/s for single-row commits).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from app import jsoncodec
from app.models import Status

Conn = asyncpg.Connection | asyncpg.Pool | PoolConnectionProxy


@dataclass
class NewNotification:
    """One row to insert; queued rows also get a queue row due at `due_at`."""

    id: UUID
    user_id: UUID
    channel: str
    template_name: str | None
    to_address: str
    recipient: dict[str, Any]
    subject: str | None
    body: str | None
    body_html: str | None
    variables: dict[str, Any]
    status: str
    category: str | None
    priority: int
    idempotency_key: str | None
    request_hash: str
    dedup_key: str | None
    scheduled_at: datetime | None
    metadata: dict[str, Any]
    error: str | None
    due_at: datetime | None
    max_attempts: int
    campaign_id: UUID | None = None
    job_id: str | None = None

    @property
    def needs_queue(self) -> bool:
        return self.status in (Status.QUEUED, Status.SCHEDULED)


# The batch arrives as ONE json document (orjson writes the NewNotification dataclasses
# directly): binding 23 arrays cost asyncpg ~13 Python-level type checks per value and
# every jsonb cell a json.dumps, which made the encoding the largest CPU cost of a batch.
_INSERT = """
WITH input AS (
    SELECT * FROM json_to_recordset($1::text::json) AS t(
        id uuid, user_id uuid, channel varchar, template_name varchar, to_address varchar,
        recipient jsonb, subject varchar, body text, body_html text, variables jsonb,
        status varchar, category varchar, priority int, idempotency_key varchar,
        request_hash varchar, dedup_key varchar, scheduled_at timestamptz, metadata jsonb,
        error text, due_at timestamptz, max_attempts int, campaign_id uuid, job_id varchar
    )
), inserted AS (
    INSERT INTO notifications (
        id, user_id, channel, template_name, to_address, recipient, subject, body, body_html,
        variables, status, category, priority, idempotency_key, request_hash, dedup_key,
        scheduled_at, metadata, error, campaign_id
    )
    SELECT id, user_id, channel, template_name, to_address, recipient, subject, body, body_html,
           variables, status, category, priority, idempotency_key, request_hash, dedup_key,
           scheduled_at, metadata, error, campaign_id
    FROM input
    ON CONFLICT DO NOTHING
    RETURNING id
), queued AS (
    INSERT INTO notification_queue (notification_id, priority, max_attempts, next_retry_at, job_id)
    SELECT i.id, i.priority, i.max_attempts, COALESCE(i.due_at, NOW()), i.job_id
    FROM input i JOIN inserted USING (id)
    WHERE i.status IN ('queued', 'scheduled')
    RETURNING notification_id
)
SELECT id FROM inserted
"""


async def insert_many(conn: Conn, rows: Sequence[NewNotification]) -> set[UUID]:
    """Insert notifications (+ queue rows) in one statement; return the ids inserted.

    Rows that hit the idempotency or dedup unique index are skipped (ON CONFLICT
    DO NOTHING); the caller resolves them with `find_conflicts`.
    """
    if not rows:
        return set()
    records = await conn.fetch(_INSERT, jsoncodec.dumps_text(rows))
    return {r["id"] for r in records}


async def find_conflicts(
    conn: Conn, idempotency_keys: Sequence[str], dedup_keys: Sequence[str]
) -> list[asyncpg.Record]:
    """Existing rows holding any of these idempotency or (live) dedup keys."""
    return await conn.fetch(
        """
        SELECT id, status, idempotency_key, request_hash, dedup_key FROM notifications
        WHERE idempotency_key = ANY($1::varchar[])
           OR (dedup_key = ANY($2::varchar[]) AND status NOT IN ('failed', 'cancelled'))
        """,
        list(idempotency_keys),
        list(dedup_keys),
    )


NOTIFICATION_COLUMNS = """
    n.id, n.user_id, n.channel, n.template_name, n.to_address, n.subject, n.body, n.body_html,
    n.variables, n.status, n.provider, n.provider_id, n.error, n.retry_count, n.sent_at,
    n.delivered_at, n.opened_at, n.clicked_at, n.created_at, n.updated_at, n.category,
    n.priority, n.idempotency_key, n.scheduled_at, n.metadata, n.recipient, n.campaign_id,
    n.failed_at, n.bounced_at
"""


async def get(conn: Conn, notification_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {NOTIFICATION_COLUMNS} FROM notifications n WHERE n.id = $1", notification_id
    )


async def list_(
    conn: Conn,
    *,
    user_id: UUID | None = None,
    status: str | None = None,
    channel: str | None = None,
    template_name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    campaign_id: UUID | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[asyncpg.Record]:
    """Filtered page, newest first. Filters are parameters, never pasted into SQL."""
    return await conn.fetch(
        f"""
        SELECT {NOTIFICATION_COLUMNS} FROM notifications n
        WHERE ($1::uuid IS NULL OR n.user_id = $1)
          AND ($2::varchar IS NULL OR n.status = $2)
          AND ($3::varchar IS NULL OR n.channel = $3)
          AND ($4::varchar IS NULL OR n.template_name = $4)
          AND ($5::timestamptz IS NULL OR n.created_at >= $5)
          AND ($6::timestamptz IS NULL OR n.created_at < $6)
          AND ($7::uuid IS NULL OR n.campaign_id = $7)
        ORDER BY n.created_at DESC, n.id DESC
        LIMIT $8 OFFSET $9
        """,
        user_id,
        status,
        channel,
        template_name,
        since,
        until,
        campaign_id,
        limit,
        offset,
    )


# --------------------------------------------------------------------------- worker side

_CLAIM = f"""
WITH claimed AS (
    UPDATE notification_queue q
    SET locked_at = NOW(), locked_by = $2, updated_at = NOW()
    WHERE q.notification_id = ANY($1::uuid[])
      AND (q.locked_at IS NULL OR q.locked_at < NOW() - make_interval(secs => $3))
      AND (q.next_retry_at IS NULL OR q.next_retry_at <= NOW() + interval '200 milliseconds')
    RETURNING q.notification_id, q.attempts, q.max_attempts, q.next_retry_at
)
SELECT {NOTIFICATION_COLUMNS}, c.attempts, c.max_attempts
FROM claimed c JOIN notifications n ON n.id = c.notification_id
ORDER BY n.priority DESC, n.created_at
"""


async def claim(
    conn: Conn, notification_ids: Sequence[UUID], worker: str, lock_timeout: float
) -> list[asyncpg.Record]:
    """Lock due, unlocked (or stale-locked) queue rows; two workers never get the same row."""
    return await conn.fetch(_CLAIM, list(notification_ids), worker, float(lock_timeout))


_CLAIM_DUE = f"""
WITH due AS (
    SELECT q.id FROM notification_queue q
    WHERE (q.locked_at IS NULL OR q.locked_at < NOW() - make_interval(secs => $2))
      AND (q.next_retry_at IS NULL OR q.next_retry_at <= NOW())
    ORDER BY q.priority DESC, q.next_retry_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE notification_queue q SET locked_at = NOW(), locked_by = $1, updated_at = NOW()
    FROM due WHERE q.id = due.id
    RETURNING q.notification_id, q.attempts, q.max_attempts
)
SELECT {NOTIFICATION_COLUMNS}, c.attempts, c.max_attempts
FROM claimed c JOIN notifications n ON n.id = c.notification_id
ORDER BY n.priority DESC, n.created_at
"""


async def claim_due(
    conn: Conn, worker: str, lock_timeout: float, limit: int
) -> list[asyncpg.Record]:
    """The postgres backend's poll: claim up to `limit` due rows, highest priority first."""
    return await conn.fetch(_CLAIM_DUE, worker, float(lock_timeout), limit)


_MARK_SENT = """
WITH sent AS (
    UPDATE notifications n SET status = 'sent', provider = t.provider,
        provider_id = t.provider_id, sent_at = NOW(), updated_at = NOW(), error = NULL,
        subject = COALESCE(t.subject, n.subject), body = COALESCE(t.body, n.body),
        body_html = COALESCE(t.body_html, n.body_html)
    FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::varchar[], $5::text[],
                $6::text[]) AS t(id, provider, provider_id, subject, body, body_html)
    WHERE n.id = t.id AND n.status IN ('queued', 'scheduled')
    RETURNING n.id
)
DELETE FROM notification_queue WHERE notification_id = ANY($1::uuid[])
"""


async def mark_sent(
    conn: Conn, results: Sequence[tuple[UUID, str, str | None, str | None, str | None, str | None]]
) -> None:
    """(id, provider, provider_id, subject, body, body_html): status sent, queue row gone.

    One statement (so one implicit transaction and one round trip, where BEGIN, two
    statements and COMMIT took four) for the whole batch: a crash leaves either both
    changes or neither (then the row is re-claimed after the lock timeout).
    """
    if not results:
        return
    await conn.execute(
        _MARK_SENT,
        [r[0] for r in results],
        [r[1] for r in results],
        [r[2] for r in results],
        [r[3] for r in results],
        [r[4] for r in results],
        [r[5] for r in results],
    )


async def mark_failed(
    conn: Conn, failures: Sequence[tuple[UUID, str | None, str]], *, attempts_done: bool = True
) -> None:
    """(id, provider, error): status failed for good, queue row gone."""
    if not failures:
        return
    ids = [f[0] for f in failures]
    async with transaction(conn) as tx:
        await tx.execute(
            """
            UPDATE notifications n SET status = 'failed', provider = COALESCE(t.provider, n.provider),
                error = t.error, failed_at = NOW(), updated_at = NOW(),
                retry_count = n.retry_count + CASE WHEN $4 THEN 1 ELSE 0 END
            FROM unnest($1::uuid[], $2::varchar[], $3::text[]) AS t(id, provider, error)
            WHERE n.id = t.id AND n.status IN ('queued', 'scheduled')
            """,
            ids,
            [f[1] for f in failures],
            [f[2] for f in failures],
            attempts_done,
        )
        await tx.execute(
            "DELETE FROM notification_queue WHERE notification_id = ANY($1::uuid[])", ids
        )


async def schedule_retry(
    conn: Conn, retries: Sequence[tuple[UUID, float, str, str | None]]
) -> None:
    """(id, delay seconds, error, job_id): attempts+1, due later, unlocked."""
    if not retries:
        return
    async with transaction(conn) as tx:
        await tx.execute(
            """
            UPDATE notification_queue q SET attempts = q.attempts + 1, locked_at = NULL,
                locked_by = NULL, last_error = t.error, updated_at = NOW(),
                next_retry_at = NOW() + make_interval(secs => t.delay),
                job_id = COALESCE(t.job_id, q.job_id)
            FROM unnest($1::uuid[], $2::float8[], $3::text[], $4::varchar[])
                 AS t(id, delay, error, job_id)
            WHERE q.notification_id = t.id
            """,
            [r[0] for r in retries],
            [r[1] for r in retries],
            [r[2] for r in retries],
            [r[3] for r in retries],
        )
        await tx.execute(
            """
            UPDATE notifications n SET retry_count = n.retry_count + 1, error = t.error,
                updated_at = NOW()
            FROM unnest($1::uuid[], $2::text[]) AS t(id, error) WHERE n.id = t.id
            """,
            [r[0] for r in retries],
            [r[2] for r in retries],
        )


async def release(conn: Conn, ids: Sequence[UUID], delay: float = 0.0) -> None:
    """Unlock claimed rows without counting an attempt (e.g. no provider can take them now)."""
    await conn.execute(
        """
        UPDATE notification_queue SET locked_at = NULL, locked_by = NULL, updated_at = NOW(),
            next_retry_at = GREATEST(COALESCE(next_retry_at, NOW()), NOW() + make_interval(secs => $2))
        WHERE notification_id = ANY($1::uuid[])
        """,
        list(ids),
        float(delay),
    )


async def drop_queue_rows(conn: Conn, ids: Sequence[UUID]) -> None:
    await conn.execute(
        "DELETE FROM notification_queue WHERE notification_id = ANY($1::uuid[])", list(ids)
    )


async def stuck_rows(
    conn: Conn, *, grace: float, lock_timeout: float, limit: int
) -> list[asyncpg.Record]:
    """Due for longer than `grace` and unlocked, or locked past the lock timeout."""
    return await conn.fetch(
        """
        SELECT notification_id, job_id, attempts, locked_at IS NOT NULL AS stale_lock
        FROM notification_queue
        WHERE (locked_at IS NULL AND next_retry_at <= NOW() - make_interval(secs => $1))
           OR (locked_at < NOW() - make_interval(secs => $2))
        ORDER BY priority DESC, next_retry_at
        LIMIT $3
        """,
        float(grace),
        float(lock_timeout),
        limit,
    )


async def set_job_ids(conn: Conn, ids: Sequence[UUID], job_id: str) -> None:
    await conn.execute(
        "UPDATE notification_queue SET job_id = $2 WHERE notification_id = ANY($1::uuid[])",
        list(ids),
        job_id,
    )


async def cancel(conn: Conn, notification_id: UUID) -> asyncpg.Record | None:
    """Cancel if not yet sent; the returned row says what the status is now."""
    async with transaction(conn) as tx:
        row = await tx.fetchrow(
            """
            UPDATE notifications SET status = 'cancelled', updated_at = NOW()
            WHERE id = $1 AND status IN ('queued', 'scheduled', 'batched')
            RETURNING id, status
            """,
            notification_id,
        )
        if row is not None:
            await tx.execute(
                "DELETE FROM notification_queue WHERE notification_id = $1 AND locked_at IS NULL",
                notification_id,
            )
        return row


@contextlib.asynccontextmanager
async def transaction(conn: Conn) -> AsyncIterator[Any]:
    """A transaction on one connection, taken from the pool when given a pool."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired, acquired.transaction():
            yield acquired
    else:
        async with conn.transaction():
            yield conn
