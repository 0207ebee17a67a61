"""Campaigns: one template (or inline content) sent to a recipient list of any size.

    create(rt, caller, name, template, channel, recipients, ...)  -> campaign id
    progress(rt, caller, id)   counts by status (notifications.campaign_id)
    stats(rt, caller, id)      progress plus engagement and timings
    cancel(rt, caller, id)     every not-yet-sent notification of it, in batches

Recipients ({user_id, to, variables}) are read lazily in chunks of CHUNK, so a
generator over a CSV of a million rows never sits in memory. Each chunk goes
through `notifications.accept_batch` (preferences, per-user limits, idempotency,
one unnest insert of notifications + queue rows, deliver_many jobs after commit)
while the next chunk is being prepared in a thread.

Preparing is the campaign's own fast path, because `SendRequest` validation
costs ~180 us a recipient (the email validator): the template is fetched and
checked once, an ASCII email address is checked and normalised by a regex with
the validator's result, anything else goes through the full `Recipient` model.
Each notification's idempotency key is (campaign, user, address): a recipient
listed twice gets one notification, and re-running a chunk sends nothing twice.

Only admin and service callers run campaigns.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from arq.constants import job_key_prefix
from asyncpg.pgproto.pgproto import UUID as PgUUID
from pydantic import ValidationError

from app import jsoncodec, templating
from app.errors import Conflict, Forbidden, InvalidInput, NotFound, NotificationError
from app.models import (
    NUL_ESCAPE,
    Caller,
    Channel,
    Recipient,
    SendRequest,
    Status,
    find_nul,
    is_plain_email,
)
from app.runtime import Runtime
from app.services import notifications, queueing
from app.services import templates as template_service

log = logging.getLogger(__name__)

CHUNK = 10_000  # recipients validated and COPYed at a time while accepting
EXPAND_CHUNK = 1000  # recipients per expansion job
EXPAND_JOB = "campaign_expand"
CLAIM_TIMEOUT = 300  # seconds before a claimed, unfinished chunk may be claimed again
CANCEL_BATCH = 5000
MAX_ERROR_SAMPLES = 100
PENDING = (Status.QUEUED.value, Status.SCHEDULED.value, Status.BATCHED.value)

ACCEPTING, RUNNING, CANCELLED = "accepting", "running", "cancelled"


Progress = Callable[[int, int, int], None]  # (read, accepted, rejected)


@dataclass
class Content:
    """What every recipient gets, checked once."""

    channel: Channel
    template: str | None
    subject: str | None
    body: str | None
    body_html: str | None
    category: str | None
    variable_specs: list[templating.VariableSpec]
    shared: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """Stored on the campaign, so expansion renders exactly what was accepted."""
        return {
            "subject": self.subject,
            "body": self.body,
            "body_html": self.body_html,
            "shared": self.shared,
            "variables": [
                {"name": v.name, "required": v.required, "default": v.default}
                for v in self.variable_specs
            ],
        }


@dataclass
class Counts:
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, index: int, message: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERROR_SAMPLES:
            self.errors.append({"index": index, "message": message})


def _require_privileged(caller: Caller) -> None:
    if not caller.is_privileged:
        raise Forbidden("campaigns are for admin and service callers")


# --------------------------------------------------------------------------- prepare


async def _content(
    rt: Runtime,
    channel: str,
    template: str | None,
    subject: str | None,
    body: str | None,
    body_html: str | None,
    category: str | None,
    variables: Mapping[str, Any] | None,
) -> Content:
    try:
        chan = Channel(channel)
    except ValueError:
        raise InvalidInput("channel must be one of email, push, sms") from None
    shared = dict(variables or {})
    templating.check_variables(shared, [])
    if template:
        found = await template_service.get_active(rt, template, chan.value)
        return Content(
            chan,
            template,
            subject or found.subject,
            found.body_text,
            found.body_html,
            category or found.category,
            list(found.variables),
            shared,
        )
    if not (body or body_html):
        raise InvalidInput("give a template, or inline body / body_html")
    for name, source in (("subject", subject), ("body", body), ("body_html", body_html)):
        if source is not None:
            templating.validate(source, field=name)
    if chan is not Channel.EMAIL and not (body or subject):
        raise InvalidInput(f"channel {chan} needs a text body")
    return Content(chan, None, subject, body, body_html, category, [], shared)


def _recipient(channel: Channel, raw: Any) -> tuple[dict[str, Any], str]:
    """(the `to` object, its address): a plain ASCII email address is checked with one
    regex and no model (~1 us instead of ~10), anything else with the full model."""
    if (
        channel is Channel.EMAIL
        and isinstance(raw, Mapping)
        and set(raw) <= {"email", "name"}
        and isinstance(raw.get("email"), str)
        and is_plain_email(raw["email"])
    ):
        local, _, domain = raw["email"].rpartition("@")
        address = f"{local}@{domain.lower()}"
        name = raw.get("name")
        if name is None:
            return {"email": address}, address
        if isinstance(name, str) and len(name) <= 200 and not _UNSAFE.search(name):
            return {"email": address, "name": name}, address
    recipient = Recipient.model_validate(raw)
    recipient.check_channel(channel)
    return recipient.model_dump(mode="json", exclude_none=True), recipient.address(channel)


_UNSAFE = re.compile(r"[\r\n\x00]")


def _render(source: str | None, variables: Mapping[str, Any], html: bool) -> str | None:
    if source is None or "{{" not in source:
        return source
    return templating.render(source, variables, html=html)


def _prepare_one(
    content: Content,
    campaign_id: UUID,
    item: Any,
    priority: int,
    send_at: datetime | None,
    max_attempts: int,
    metadata: dict[str, Any],
) -> notifications.Prepared:
    user_id, recipient, address, _, variables = _validate_item(content, item)
    to = (
        Recipient.model_validate(recipient)  # a nested Web Push subscription
        if "subscription" in recipient
        else Recipient.model_construct(**recipient)
    )
    subject = templating.single_line(_render(content.subject, variables, False))
    text = _render(content.body, variables, False)
    html = _render(content.body_html, variables, True)
    address_hash = hashlib.sha256(address.encode()).hexdigest()[:24]
    key = f"campaign:{campaign_id}:{user_id}:{address_hash}"
    request_hash = hashlib.sha256(jsoncodec.canonical([key, variables])).hexdigest()
    request = SendRequest.model_construct(
        user_id=user_id,
        channel=content.channel,
        to=to,
        template=content.template,
        variables=variables,
        subject=subject,
        body=text,
        body_html=html,
        category=content.category,
        priority=priority,
        idempotency_key=key,
        send_at=send_at,
        metadata=metadata,
        campaign_id=campaign_id,
    )
    row = notifications.new_row(
        request,
        request_hash=request_hash,
        dedup_key=None,
        max_attempts=max_attempts,
        recipient=recipient,
    )
    return notifications.Prepared(request, row)


def _prepare_chunk(
    content: Content,
    campaign_id: UUID,
    chunk: Sequence[tuple[int, Any]],
    priority: int,
    send_at: datetime | None,
    max_attempts: int,
) -> tuple[list[notifications.Prepared], list[tuple[int, str]]]:
    prepared: list[notifications.Prepared] = []
    rejected: list[tuple[int, str]] = []
    metadata = {"campaign": str(campaign_id)}
    for index, item in chunk:
        try:
            prepared.append(
                _prepare_one(content, campaign_id, item, priority, send_at, max_attempts, metadata)
            )
        except NotificationError as exc:
            rejected.append((index, exc.message))
    return prepared, rejected


# --------------------------------------------------------------------------- create


async def _chunks(
    recipients: Iterable[Any] | AsyncIterable[Any], size: int
) -> Any:  # AsyncIterator[list[tuple[int, Any]]]
    chunk: list[tuple[int, Any]] = []
    index = 0
    if isinstance(recipients, AsyncIterable):
        async for item in recipients:
            chunk.append((index, item))
            index += 1
            if len(chunk) >= size:
                yield chunk
                chunk = []
    else:
        for item in recipients:
            chunk.append((index, item))
            index += 1
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _stage_chunk(
    content: Content, part: Sequence[tuple[int, Any]], seen: set[tuple[UUID, str]]
) -> tuple[list[tuple[Any, ...]], list[tuple[int, str]], int]:
    """Validate recipients without rendering: (rows to COPY, rejected, duplicates).

    Rows are (user_id, recipient JSON, variables JSON); rendering waits for expansion.
    """
    rows: list[tuple[Any, ...]] = []
    rejected: list[tuple[int, str]] = []
    duplicates = 0
    for index, item in part:
        try:
            user_id, to, address, own, _ = _validate_item(content, item)
        except NotificationError as exc:
            rejected.append((index, exc.message))
            continue
        key = (user_id, address)
        if key in seen:
            duplicates += 1
            continue
        own_json = jsoncodec.dumps(own) if own else None
        if own_json is not None and NUL_ESCAPE in own_json:
            rejected.append((index, f"variables.{find_nul(own)}: NUL characters are not allowed"))
            continue
        seen.add(key)
        rows.append((user_id, jsoncodec.dumps_text(to), own_json.decode() if own_json else None))
    return rows, rejected, duplicates


def _validate_item(
    content: Content, item: Any
) -> tuple[UUID, dict[str, Any], str, dict[str, Any], dict[str, Any]]:
    """(user_id, `to`, address, its own variables, all variables with defaults) or
    InvalidInput. NUL characters in the variables are caught by `_stage_chunk` in the
    JSON it writes anyway (expansion only sees staged, checked recipients)."""
    if not isinstance(item, Mapping):
        raise InvalidInput("a recipient must be an object {user_id, to, variables}")
    try:
        user_id = item["user_id"] if isinstance(item["user_id"], UUID) else UUID(item["user_id"])
    except (KeyError, ValueError, TypeError, AttributeError):
        raise InvalidInput("user_id: a UUID is required") from None
    try:
        to, address = _recipient(content.channel, item.get("to"))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise InvalidInput(f"to{'.' + where if where else ''}: {message}") from None
    except ValueError as exc:
        raise InvalidInput(f"to: {exc}") from None
    own = item.get("variables") or {}
    if not isinstance(own, Mapping):
        raise InvalidInput("variables must be an object")
    merged = templating.check_variables({**content.shared, **own}, content.variable_specs)
    return user_id, to, address, dict(own), merged


async def _copy_staged(
    rt: Runtime, campaign_id: UUID, first_seq: int, rows: list[tuple[Any, ...]]
) -> None:
    # asyncpg's own UUID type is written as-is; a uuid.UUID costs a .bytes call per row
    cid = PgUUID(str(campaign_id))
    records = [(cid, first_seq + i, *row) for i, row in enumerate(rows)]
    async with rt.db.acquire() as conn:
        await conn.copy_records_to_table(
            "notification_campaign_recipients",
            records=records,
            columns=["campaign_id", "seq", "user_id", "recipient", "variables"],
        )


async def create(
    rt: Runtime,
    caller: Caller,
    name: str,
    template: str | None,
    channel: str,
    recipients: Iterable[Any] | AsyncIterable[Any],
    *,
    subject: str | None = None,
    body: str | None = None,
    body_html: str | None = None,
    variables: Mapping[str, Any] | None = None,
    category: str | None = None,
    priority: int = 0,
    send_at: datetime | None = None,
    chunk: int = CHUNK,
    on_progress: Progress | None = None,
) -> UUID:
    """Accept a campaign; return its id. Bad recipients are counted, never fatal.

    Accepting stages the validated recipients in PostgreSQL (a COPY per CHUNK) and
    records the expansion chunks; nothing is rendered yet. Once staged, the campaign
    is durable: workers expand each chunk into notifications (rendered, preferences
    and limits applied, queued) and the sweep re-enqueues any chunk whose job was lost.
    """
    _require_privileged(caller)
    if not name or len(name) > 255:
        raise InvalidInput("name: 1-255 characters")
    if send_at is not None and send_at.tzinfo is None:
        raise InvalidInput("send_at must include a timezone offset")
    if not -1000 <= priority <= 1000:
        raise InvalidInput("priority must be between -1000 and 1000")
    content = await _content(rt, channel, template, subject, body, body_html, category, variables)
    campaign_id = uuid4()
    await rt.db.execute(
        """
        INSERT INTO notification_campaigns (id, name, channel, template_name, category, status,
                                            created_by, content, priority, send_at)
        VALUES ($1, $2, $3, $4, $5, 'accepting', $6, $7, $8, $9)
        """,
        campaign_id,
        name,
        content.channel.value,
        content.template,
        content.category,
        f"{caller.role.value}:{caller.user_id or caller.source}",
        content.as_json(),
        priority,
        send_at,
    )
    counts = Counts()
    staged = duplicates = 0
    seen: set[tuple[UUID, str]] = set()
    writing: asyncio.Task[None] | None = None
    cancelled = False
    try:
        async for part in _chunks(recipients, chunk):
            counts.read += len(part)
            rows, rejected, dups = await asyncio.to_thread(_stage_chunk, content, part, seen)
            for index, message in rejected:
                counts.reject(index, message)
            duplicates += dups
            if writing is not None:
                await writing
                if on_progress:
                    on_progress(counts.read, staged, counts.rejected)
                if await _status(rt, campaign_id) == CANCELLED:
                    cancelled = True
                    break
            writing = asyncio.create_task(_copy_staged(rt, campaign_id, staged, rows))
            staged += len(rows)
        if writing is not None:
            await writing
            writing = None
    finally:
        if writing is not None and not writing.done():
            await asyncio.gather(writing, return_exceptions=True)
    counts.accepted = staged
    chunks = await _record_chunks(rt, campaign_id, counts, duplicates, cancelled)
    if on_progress:
        on_progress(counts.read, counts.accepted, counts.rejected)
    if chunks and rt.settings.queue_backend == "redis":
        await _enqueue_expansions(rt, campaign_id, chunks)
    if cancelled:
        await _cancel_pending(rt, campaign_id)
    return campaign_id


async def _record_chunks(
    rt: Runtime, campaign_id: UUID, counts: Counts, duplicates: int, cancelled: bool
) -> list[int]:
    """Expansion chunks and the final counts, in one transaction; return the chunk numbers."""
    staged = counts.accepted
    size = EXPAND_CHUNK
    chunks = [
        (campaign_id, k, k * size, min(staged, (k + 1) * size) - 1)
        for k in range((staged + size - 1) // size)
    ]
    async with rt.db.acquire() as conn, conn.transaction():
        if chunks and not cancelled:
            await conn.copy_records_to_table(
                "notification_campaign_chunks",
                records=chunks,
                columns=["campaign_id", "chunk", "first_seq", "last_seq"],
            )
        await conn.execute(
            """
            UPDATE notification_campaigns SET total = $2, accepted = $3, rejected = $4,
                errors = $5, duplicates = $6, updated_at = NOW(), accepted_at = NOW(),
                status = CASE WHEN status = 'accepting' THEN 'running' ELSE status END
            WHERE id = $1
            """,
            campaign_id,
            counts.read,
            staged,
            counts.rejected,
            counts.errors,
            duplicates,
        )
    return [] if cancelled else [c[1] for c in chunks]


async def _enqueue_expansions(rt: Runtime, campaign_id: UUID, chunks: Sequence[int]) -> None:
    jobs = [
        queueing.JobSpec(EXPAND_JOB, (str(campaign_id), k), f"{EXPAND_JOB}:{campaign_id}:{k}")
        for k in chunks
    ]
    try:
        await queueing.enqueue(rt.redis, jobs)
    except Exception as exc:  # staged in PostgreSQL: the sweep enqueues them again
        log.warning("could not enqueue campaign expansion (%s); the sweep will", exc)


# --------------------------------------------------------------------------- expand


def _content_from_row(row: Any) -> Content:
    data = row["content"] or {}
    return Content(
        channel=Channel(row["channel"]),
        template=row["template_name"],
        subject=data.get("subject"),
        body=data.get("body"),
        body_html=data.get("body_html"),
        category=row["category"],
        variable_specs=templating.parse_variable_specs(data.get("variables")),
        shared=dict(data.get("shared") or {}),
    )


async def expand_chunk(rt: Runtime, campaign_id: UUID, chunk: int) -> int:
    """Turn one staged chunk into notifications (idempotent); return how many were accepted."""
    claimed = await rt.db.fetchrow(
        """
        UPDATE notification_campaign_chunks SET claimed_at = NOW()
        WHERE campaign_id = $1 AND chunk = $2 AND expanded_at IS NULL
          AND (claimed_at IS NULL OR claimed_at < NOW() - make_interval(secs => $3))
        RETURNING first_seq, last_seq
        """,
        campaign_id,
        chunk,
        float(CLAIM_TIMEOUT),
    )
    if claimed is None:
        return 0
    campaign = await _campaign(rt, campaign_id)
    accepted = 0
    if campaign["status"] != CANCELLED:
        items = await rt.db.fetch(
            "SELECT seq, user_id, recipient, variables FROM notification_campaign_recipients"
            " WHERE campaign_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
            campaign_id,
            claimed["first_seq"],
            claimed["last_seq"],
        )
        content = _content_from_row(campaign)
        part = [
            (
                r["seq"],
                {
                    "user_id": r["user_id"],
                    "to": json.loads(r["recipient"]),
                    "variables": json.loads(r["variables"]) if r["variables"] else {},
                },
            )
            for r in items
        ]
        prepared, rejected = await asyncio.to_thread(
            _prepare_chunk,
            content,
            campaign_id,
            part,
            campaign["priority"],
            campaign["send_at"],
            rt.settings.retry_attempts,
        )
        outcomes = await notifications.accept_batch(rt, prepared) if prepared else []
        accepted = sum(1 for o in outcomes if o.success)
        if rejected:
            log.warning(
                "campaign %s chunk %s: %d recipient(s) rejected at expansion",
                campaign_id,
                chunk,
                len(rejected),
            )
    await rt.db.execute(
        "UPDATE notification_campaign_chunks SET expanded_at = NOW()"
        " WHERE campaign_id = $1 AND chunk = $2",
        campaign_id,
        chunk,
    )
    return accepted


async def pending_chunks(rt: Runtime, grace: float, limit: int = 1000) -> list[tuple[UUID, int]]:
    """Chunks not expanded although their job should have run (for the sweep and the
    postgres backend): older than `grace` and unclaimed, or claimed past the timeout."""
    rows = await rt.db.fetch(
        """
        SELECT campaign_id, chunk FROM notification_campaign_chunks
        WHERE expanded_at IS NULL AND created_at < NOW() - make_interval(secs => $1)
          AND (claimed_at IS NULL OR claimed_at < NOW() - make_interval(secs => $2))
        ORDER BY created_at, chunk
        LIMIT $3
        """,
        float(grace),
        float(CLAIM_TIMEOUT),
        limit,
    )
    return [(r["campaign_id"], r["chunk"]) for r in rows]


async def reenqueue_pending(rt: Runtime, grace: float) -> int:
    """The sweep's part: expansion jobs for chunks whose job Redis lost."""
    pending = await pending_chunks(rt, grace)
    if not pending:
        return 0
    async with rt.redis.pipeline(transaction=False) as pipe:  # jobs still waiting in Redis?
        for cid, k in pending:
            pipe.exists(f"{job_key_prefix}{EXPAND_JOB}:{cid}:{k}")
        waiting = await pipe.execute()
    pending = [p for p, alive in zip(pending, waiting, strict=True) if not alive]
    if not pending:
        return 0
    generation = int(time.time() // 60)
    jobs = [
        queueing.JobSpec(EXPAND_JOB, (str(cid), k), f"{EXPAND_JOB}:{cid}:{k}:{generation}")
        for cid, k in pending
    ]
    await queueing.enqueue(rt.redis, jobs)
    return len(jobs)


async def expand_due(rt: Runtime, grace: float = 0.0, limit: int = 10) -> int:
    """The postgres backend's part: expand pending chunks in this process."""
    total = 0
    for campaign_id, chunk in await pending_chunks(rt, grace, limit):
        total += await expand_chunk(rt, campaign_id, chunk)
    return total


async def _status(rt: Runtime, campaign_id: UUID) -> str | None:
    found = await rt.db.fetchval(
        "SELECT status FROM notification_campaigns WHERE id = $1", campaign_id
    )
    return found  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- read


async def _campaign(rt: Runtime, campaign_id: UUID) -> Any:
    row = await rt.db.fetchrow("SELECT * FROM notification_campaigns WHERE id = $1", campaign_id)
    if row is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return row


def _public(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "channel": row["channel"],
        "template": row["template_name"],
        "category": row["category"],
        "status": row["status"],
        "total": row["total"],
        "accepted": row["accepted"],
        "rejected": row["rejected"],
        "duplicates": row["duplicates"],
        "errors": row["errors"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "accepted_at": row["accepted_at"],
        "cancelled_at": row["cancelled_at"],
    }


async def progress(rt: Runtime, caller: Caller, campaign_id: UUID) -> dict[str, Any]:
    """The campaign and its notifications counted by status; `done` when none is pending."""
    _require_privileged(caller)
    row = await _campaign(rt, campaign_id)
    counts = {
        r["status"]: int(r["n"])
        for r in await rt.db.fetch(
            "SELECT status, count(*) AS n FROM notifications WHERE campaign_id = $1"
            " GROUP BY status",
            campaign_id,
        )
    }
    staged = int(
        await rt.db.fetchval(
            "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM notification_campaign_chunks"
            " WHERE campaign_id = $1 AND expanded_at IS NULL",
            campaign_id,
        )
    )
    pending = sum(counts.get(s, 0) for s in PENDING) + staged
    state = row["status"]
    if state == RUNNING and pending == 0:
        state = "completed"
    return {
        **_public(row),
        "state": state,
        "counts": counts,
        "staged": staged,  # accepted recipients not yet expanded into notifications
        "pending": pending,
        "done": row["status"] != ACCEPTING and pending == 0,
    }


async def stats(rt: Runtime, caller: Caller, campaign_id: UUID) -> dict[str, Any]:
    """Progress plus delivery and engagement figures."""
    data = await progress(rt, caller, campaign_id)
    agg = await rt.db.fetchrow(
        """
        SELECT count(*) FILTER (WHERE sent_at IS NOT NULL) AS sent,
               count(delivered_at) AS delivered, count(opened_at) AS opened,
               count(clicked_at) AS clicked, min(sent_at) AS first_sent_at,
               max(sent_at) AS last_sent_at
        FROM notifications WHERE campaign_id = $1
        """,
        campaign_id,
    )
    assert agg is not None
    sent, delivered = int(agg["sent"]), int(agg["delivered"])
    failed = data["counts"].get("failed", 0) + data["counts"].get("bounced", 0)

    def pct(part: int, whole: int) -> float | None:
        return round(part * 100 / whole, 2) if whole else None

    first, last = agg["first_sent_at"], agg["last_sent_at"]
    seconds = (last - first).total_seconds() if first and last else 0.0
    return {
        **data,
        "sent": sent,
        "delivered": delivered,
        "opened": int(agg["opened"]),
        "clicked": int(agg["clicked"]),
        "failed": failed,
        "delivery_rate_pct": pct(delivered, sent),
        "open_rate_pct": pct(int(agg["opened"]), delivered or sent),
        "click_rate_pct": pct(int(agg["clicked"]), int(agg["opened"])),
        "failure_rate_pct": pct(failed, sent + failed),
        "first_sent_at": first,
        "last_sent_at": last,
        "send_rate_per_s": round(sent / seconds, 1) if seconds > 0 else None,
    }


async def list_campaigns(rt: Runtime, caller: Caller, limit: int = 50) -> list[dict[str, Any]]:
    _require_privileged(caller)
    rows = await rt.db.fetch(
        "SELECT * FROM notification_campaigns ORDER BY created_at DESC LIMIT $1", limit
    )
    return [_public(r) for r in rows]


# --------------------------------------------------------------------------- cancel

_CANCEL_BATCH = """
WITH picked AS (
    SELECT id FROM notifications
    WHERE campaign_id = $1 AND status IN ('queued', 'scheduled', 'batched')
    LIMIT $2
), done AS (
    UPDATE notifications n SET status = 'cancelled', error = 'campaign cancelled',
        updated_at = NOW()
    FROM picked WHERE n.id = picked.id AND n.status IN ('queued', 'scheduled', 'batched')
    RETURNING n.id
), dropped AS (
    DELETE FROM notification_queue q USING done
    WHERE q.notification_id = done.id AND q.locked_at IS NULL
    RETURNING q.id
)
SELECT count(*) FROM done
"""


async def _cancel_pending(rt: Runtime, campaign_id: UUID, batch: int = CANCEL_BATCH) -> int:
    """Cancel not-yet-sent notifications in batches (short transactions); return how many.

    A row a worker has already claimed is left to it: delivery skips rows that are no
    longer deliverable, and a send already in flight at the provider may still complete.
    """
    total = 0
    while True:
        done = int(await rt.db.fetchval(_CANCEL_BATCH, campaign_id, batch))
        total += done
        if done == 0:
            return total


async def cancel(rt: Runtime, caller: Caller, campaign_id: UUID) -> dict[str, Any]:
    """Stop a campaign: no further recipients are accepted or expanded, and every
    not-yet-sent notification is cancelled; `cancelled` counts both."""
    _require_privileged(caller)
    row = await _campaign(rt, campaign_id)
    if row["status"] == CANCELLED:
        raise Conflict(
            f"campaign {campaign_id} is already cancelled", details={"status": CANCELLED}
        )
    await rt.db.execute(
        """
        UPDATE notification_campaigns SET status = 'cancelled', cancelled_at = NOW(),
            updated_at = NOW()
        WHERE id = $1
        """,
        campaign_id,
    )
    skipped = await rt.db.fetchval(
        """
        WITH skipped AS (
            UPDATE notification_campaign_chunks SET expanded_at = NOW()
            WHERE campaign_id = $1 AND expanded_at IS NULL
            RETURNING last_seq - first_seq + 1 AS size
        )
        SELECT COALESCE(SUM(size), 0) FROM skipped
        """,
        campaign_id,
    )
    cancelled = await _cancel_pending(rt, campaign_id) + int(skipped)
    data = await progress(rt, caller, campaign_id)
    return {**data, "cancelled": cancelled}
