"""Drip sequences (the spec's onboarding drip): steps scheduled over days, skippable.

start(rt, caller, user_id, to, steps, name)  -> sequence id
    steps: [{"day": 1 | "delay_seconds": 3600, "template": ... | "subject"/"body",
             "variables": {...}, "category": ...}]
    Every step becomes a scheduled notification now (send_at = start + delay), so
    PostgreSQL holds the whole plan; metadata carries sequence_id / sequence_step.
    All steps are validated before any is stored.
cancel(rt, caller, sequence_id)              cancels the steps not yet sent
still_wanted(conn, row) / filter_wanted(conn, rows)
    the delivery-time check: a step whose sequence was cancelled, or whose user has
    opted out of that channel/category since it was scheduled, is not sent; it ends
    `cancelled` with the reason in `error` (scheduled -> cancelled is in the state
    machine). Rows without a sequence_id cost nothing.
"""

from __future__ import annotations

import time as clock
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from pydantic import ValidationError

from app.errors import Forbidden, InvalidInput, NotFound
from app.models import TRANSACTIONAL, Caller, SendRequest, Status
from app.runtime import Runtime
from app.services import notifications, preferences
from app.store import notifications as store
from app.store import preferences as preference_store
from app.store.notifications import Conn

MAX_STEPS = 100
MAX_DELAY = 366 * 86400
STEP_FIELDS = {"template", "subject", "body", "body_html", "variables", "category", "priority"}


def _authorise(caller: Caller, user_id: UUID) -> None:
    if not caller.is_privileged and caller.user_id != user_id:
        raise Forbidden("a user may only manage its own sequences")


def step_delay(step: Mapping[str, Any], index: int) -> float:
    """Seconds after the start: `delay_seconds`, or `day` (days)."""
    if "delay_seconds" in step and "day" in step:
        raise InvalidInput(f"steps[{index}]: give delay_seconds or day, not both")
    raw = step.get("delay_seconds", None)
    seconds = float(raw) if raw is not None else float(step.get("day", 0) or 0) * 86400
    if not 0 <= seconds <= MAX_DELAY:
        raise InvalidInput(f"steps[{index}]: the delay must be between 0 and 366 days")
    return seconds


def _requests(
    user_id: UUID,
    channel: str,
    to: Mapping[str, Any],
    steps: Sequence[Mapping[str, Any]],
    name: str,
    sequence_id: UUID,
    start: datetime,
    category: str | None,
) -> list[SendRequest]:
    requests = []
    for index, step in enumerate(steps):
        if not isinstance(step, Mapping):
            raise InvalidInput(f"steps[{index}]: must be an object")
        unknown = set(step) - STEP_FIELDS - {"delay_seconds", "day"}
        if unknown:
            raise InvalidInput(f"steps[{index}]: unknown field(s) {', '.join(sorted(unknown))}")
        send_at = start + timedelta(seconds=step_delay(step, index))
        data: dict[str, Any] = {k: v for k, v in step.items() if k in STEP_FIELDS}
        data.setdefault("category", category)
        data.update(
            user_id=user_id,
            channel=channel,
            to=dict(to),
            send_at=send_at,
            idempotency_key=f"drip:{sequence_id}:{index}",
            metadata={
                "sequence_id": str(sequence_id),
                "sequence_step": index,
                "sequence_name": name,
            },
        )
        try:
            requests.append(SendRequest.model_validate(data))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
            raise InvalidInput(f"steps[{index}].{where}: {message}") from None
    return requests


async def start(
    rt: Runtime,
    caller: Caller,
    user_id: UUID,
    to: Mapping[str, Any],
    steps: Sequence[Mapping[str, Any]],
    name: str,
    *,
    channel: str = "email",
    category: str | None = None,
    now: datetime | None = None,
) -> UUID:
    """Schedule every step; return the sequence id."""
    _authorise(caller, user_id)
    if not name or len(name) > 255:
        raise InvalidInput("name: 1-255 characters")
    if not steps or len(steps) > MAX_STEPS:
        raise InvalidInput(f"steps: 1-{MAX_STEPS} steps")
    start_at = now or datetime.now(UTC)
    sequence_id = uuid4()
    requests = _requests(user_id, channel, to, steps, name, sequence_id, start_at, category)
    prepared = [await notifications.prepare(rt, r, caller, clock.time()) for r in requests]
    await rt.db.execute(
        """
        INSERT INTO notification_sequences (id, name, user_id, channel, steps, started_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        sequence_id,
        name,
        user_id,
        requests[0].channel.value,
        len(requests),
        start_at,
    )
    outcomes = await notifications.accept_batch(rt, prepared)
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        await _cancel_steps(rt.db, sequence_id, "sequence start failed")
        await rt.db.execute(
            "UPDATE notification_sequences SET status = 'cancelled', cancelled_at = NOW()"
            " WHERE id = $1",
            sequence_id,
        )
        assert failed[0].error is not None
        raise failed[0].error
    return sequence_id


async def _sequence(rt: Runtime, caller: Caller, sequence_id: UUID) -> Any:
    row = await rt.db.fetchrow("SELECT * FROM notification_sequences WHERE id = $1", sequence_id)
    if row is None or (not caller.is_privileged and row["user_id"] != caller.user_id):
        raise NotFound(f"sequence {sequence_id} not found")
    return row


async def get(rt: Runtime, caller: Caller, sequence_id: UUID) -> dict[str, Any]:
    row = await _sequence(rt, caller, sequence_id)
    steps = await rt.db.fetch(
        """
        SELECT id, (metadata->>'sequence_step')::int AS step, status, scheduled_at, sent_at,
               template_name, error
        FROM notifications WHERE metadata->>'sequence_id' = $1
        ORDER BY (metadata->>'sequence_step')::int
        """,
        str(sequence_id),
    )
    return {**dict(row), "items": [dict(s) for s in steps]}


async def _cancel_steps(conn: Conn, sequence_id: UUID, reason: str) -> int:
    async with store.transaction(conn) as tx:
        done = await tx.fetch(
            """
            UPDATE notifications SET status = 'cancelled', error = $2, updated_at = NOW()
            WHERE metadata->>'sequence_id' = $1 AND metadata ? 'sequence_id'
              AND status IN ('queued', 'scheduled', 'batched')
            RETURNING id
            """,
            str(sequence_id),
            reason,
        )
        ids = [r["id"] for r in done]
        if ids:
            await tx.execute(
                "DELETE FROM notification_queue"
                " WHERE notification_id = ANY($1::uuid[]) AND locked_at IS NULL",
                ids,
            )
    return len(ids)


async def cancel(rt: Runtime, caller: Caller, sequence_id: UUID) -> int:
    """Cancel the remaining steps; return how many were cancelled."""
    await _sequence(rt, caller, sequence_id)
    await rt.db.execute(
        "UPDATE notification_sequences SET status = 'cancelled', cancelled_at = NOW()"
        " WHERE id = $1 AND status <> 'cancelled'",
        sequence_id,
    )
    return await _cancel_steps(rt.db, sequence_id, "sequence cancelled")


# --------------------------------------------------------------------------- delivery hook


def _sequence_of(row: Mapping[str, Any]) -> str | None:
    metadata = row["metadata"]
    if isinstance(metadata, Mapping) and metadata.get("sequence_id"):
        return str(metadata["sequence_id"])
    return None


def _bypasses(row: Mapping[str, Any]) -> bool:
    return (row["category"] or "") == TRANSACTIONAL or int(row["priority"] or 0) >= 100


async def skip_reasons(conn: Conn, rows: Sequence[Mapping[str, Any]]) -> dict[UUID, str]:
    """Why each sequence step among `rows` must not be sent now (absent: send it)."""
    steps = [r for r in rows if _sequence_of(r)]
    if not steps:
        return {}
    sequence_ids = list({UUID(s) for r in steps if (s := _sequence_of(r))})
    cancelled = {
        str(r["id"])
        for r in await conn.fetch(
            "SELECT id FROM notification_sequences WHERE id = ANY($1::uuid[])"
            " AND status = 'cancelled'",
            sequence_ids,
        )
    }
    prefs: dict[UUID, list[Any]] = {}
    for pref in await preference_store.for_users(conn, [r["user_id"] for r in steps]):
        prefs.setdefault(pref["user_id"], []).append(pref)
    now = datetime.now(UTC)
    reasons: dict[UUID, str] = {}
    for row in steps:
        if _sequence_of(row) in cancelled:
            reasons[row["id"]] = "skipped: sequence cancelled"
            continue
        decision = preferences.decide(
            prefs.get(row["user_id"], []),
            row["channel"],
            row["category"],
            bypass=_bypasses(row),
            now=now,
            send_at=None,
        )
        if decision.status is Status.SUPPRESSED:
            reasons[row["id"]] = f"skipped: {decision.reason}"
    return reasons


async def still_wanted(conn: Conn, row: Mapping[str, Any]) -> bool:
    """False when this (sequence step) notification must be skipped at delivery time."""
    return not await skip_reasons(conn, [row])


async def filter_wanted(conn: Conn, rows: Sequence[Any]) -> list[Any]:
    """The rows still wanted; the others end `cancelled` with the reason, queue rows gone.

    Meant for the top of delivery.deliver_rows: `rows = await drips.filter_wanted(rt.db, rows)`.
    """
    reasons = await skip_reasons(conn, rows)
    if not reasons:
        return list(rows)
    ids = list(reasons)
    async with store.transaction(conn) as tx:
        await tx.execute(
            """
            UPDATE notifications n SET status = 'cancelled', error = t.reason, updated_at = NOW()
            FROM unnest($1::uuid[], $2::text[]) AS t(id, reason)
            WHERE n.id = t.id AND n.status IN ('queued', 'scheduled')
            """,
            ids,
            [reasons[i] for i in ids],
        )
        await tx.execute(
            "DELETE FROM notification_queue WHERE notification_id = ANY($1::uuid[])", ids
        )
    return [r for r in rows if r["id"] not in reasons]
