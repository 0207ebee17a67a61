"""Provider events (webhooks): store once, match to a notification, apply monotonically.

    apply(rt, events)                     store + apply a batch; returns counts
    reconcile(rt, provider, message_id)   apply events that arrived before the send was recorded
    list_events(conn, caller, id)         the events of one notification (owner or privileged)

A batch costs a fixed number of statements whatever its size: lock the matched
notifications (one SELECT ... FOR UPDATE, ordered by id so concurrent batches
never deadlock), insert the events (one unnest INSERT ... ON CONFLICT DO NOTHING
RETURNING, so a redelivered event is stored once and applied once), then one
UPDATE of the changed notifications and one preference upsert.

Rules, per event type (the state machine is app.models.TRANSITIONS):

    delivery.succeeded  queued/sent -> delivered (+delivered_at)
    delivery.failed     queued/sent -> failed (+failed_at, error)
    bounce              queued/sent/delivered -> bounced (+bounced_at, error)
    open / click        opened_at / clicked_at keep the earliest time; an open or click
                        of a `sent` notification implies it was delivered
    complaint,          the user is opted out of the notification's (channel, category)
    unsubscribe         with reason "<type> via <provider>"

Events arrive late and out of order; each notification's new events are folded
in occurrence order over its current row, and a transition the state machine
does not allow is skipped (a late failure never overwrites `delivered`).
Events for unknown message ids are kept (notification_id NULL) and applied by
`reconcile` once the notification's provider_id is known.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from app import jsoncodec
from app.errors import NotFound
from app.models import Caller, Status, can_transition
from app.providers.base import EventType, ProviderEvent
from app.runtime import Runtime
from app.store.notifications import Conn

OPT_OUT = frozenset({EventType.COMPLAINT, EventType.UNSUBSCRIBE})
_FROM = {
    EventType.DELIVERED: {Status.QUEUED, Status.SENT},
    EventType.FAILED: {Status.QUEUED, Status.SENT},
    EventType.BOUNCE: {Status.QUEUED, Status.SENT, Status.DELIVERED},
}
_TO = {
    EventType.DELIVERED: Status.DELIVERED,
    EventType.FAILED: Status.FAILED,
    EventType.BOUNCE: Status.BOUNCED,
}


@dataclass
class Counts:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    matched: int = 0
    unmatched: int = 0
    changed: int = 0
    opted_out: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _State:
    """A notification row being folded over; `dirty` once an event changed it."""

    id: UUID
    user_id: UUID
    channel: str
    category: str | None
    status: str
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    bounced_at: datetime | None
    failed_at: datetime | None
    error: str | None
    dirty: bool = False
    opt_outs: list[tuple[str, str]] = field(default_factory=list)  # (type, provider)

    @classmethod
    def from_row(cls, row: Any) -> _State:
        return cls(
            **{
                k: row[k]
                for k in (
                    "id",
                    "user_id",
                    "channel",
                    "category",
                    "status",
                    "delivered_at",
                    "opened_at",
                    "clicked_at",
                    "bounced_at",
                    "failed_at",
                    "error",
                )
            }
        )


def _earliest(current: datetime | None, new: datetime) -> datetime:
    return new if current is None or new < current else current


def fold(
    state: _State, kind: EventType | str, at: datetime, reason: str | None, provider: str
) -> None:
    """Apply one event to a notification's state, monotonically."""
    kind = EventType(kind)
    status = Status(state.status)
    if kind in _TO:
        target = _TO[kind]
        if status in _FROM[kind] and can_transition(status, target):
            state.status = target.value
            state.dirty = True
            if target is Status.DELIVERED:
                state.delivered_at = _earliest(state.delivered_at, at)
            elif target is Status.FAILED:
                state.failed_at = at
                state.error = reason or f"delivery failed ({provider})"
            else:
                state.bounced_at = at
                state.error = reason or f"bounced ({provider})"
    elif kind in (EventType.OPEN, EventType.CLICK):
        column = "opened_at" if kind is EventType.OPEN else "clicked_at"
        before = getattr(state, column)
        after = _earliest(before, at)
        if after != before:
            setattr(state, column, after)
            state.dirty = True
        if status is Status.SENT:  # it was opened, so it was delivered
            state.status = Status.DELIVERED.value
            state.delivered_at = _earliest(state.delivered_at, at)
            state.dirty = True
    elif kind in OPT_OUT:
        state.opt_outs.append((kind.value, provider))


# --------------------------------------------------------------------------- SQL

_LOCK = """
SELECT id, user_id, channel, category, status, provider_id, delivered_at, opened_at, clicked_at,
       bounced_at, failed_at, error
FROM notifications
WHERE id = ANY($1::uuid[]) OR provider_id = ANY($2::varchar[])
ORDER BY id
FOR UPDATE
"""

# Batches travel as one json document each (as the send intake's insert does): binding
# eight arrays cost asyncpg a Python-level type check per value, the largest CPU cost of
# applying a batch of single-event webhooks.
_INSERT = """
INSERT INTO notification_events
    (notification_id, provider, provider_event_id, provider_message_id, event_type,
     occurred_at, payload, applied)
SELECT * FROM json_to_recordset($1::text::json) AS t(
    notification_id uuid, provider varchar, provider_event_id varchar,
    provider_message_id varchar, event_type varchar, occurred_at timestamptz, payload jsonb,
    applied boolean
)
ON CONFLICT (provider, provider_event_id) DO NOTHING
RETURNING provider, provider_event_id
"""

_UPDATE = """
UPDATE notifications n SET status = t.status, delivered_at = t.delivered_at,
    opened_at = t.opened_at, clicked_at = t.clicked_at, bounced_at = t.bounced_at,
    failed_at = t.failed_at, error = t.error, updated_at = NOW()
FROM json_to_recordset($1::text::json) AS t(
    id uuid, status varchar, delivered_at timestamptz, opened_at timestamptz,
    clicked_at timestamptz, bounced_at timestamptz, failed_at timestamptz, error text
)
WHERE n.id = t.id
"""

_OPT_OUT = """
INSERT INTO notification_preferences (user_id, channel, category, enabled, reason)
SELECT t.user_id, t.channel, t.category, FALSE, t.reason
FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::text[])
     AS t(user_id, channel, category, reason)
ON CONFLICT (user_id, channel, category) DO UPDATE SET
    enabled = FALSE, reason = EXCLUDED.reason, updated_at = NOW()
"""


_INSERT_COLUMNS = (
    "notification_id", "provider", "provider_event_id", "provider_message_id", "event_type",
    "occurred_at", "payload", "applied",
)  # fmt: skip
_UPDATE_COLUMNS = (
    "id", "status", "delivered_at", "opened_at", "clicked_at", "bounced_at", "failed_at", "error",
)  # fmt: skip


def _records(columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> str:
    """Rows as the json document json_to_recordset reads."""
    return jsoncodec.dumps_text([dict(zip(columns, row, strict=True)) for row in rows])


def _payload(event: ProviderEvent) -> dict[str, Any]:
    """The provider's payload (plus our normalised reason); written as JSON with the batch
    (values JSON cannot hold are written as text)."""
    data = dict(event.payload)
    if event.reason:
        data.setdefault("_reason", event.reason)
    if event.recipient:
        data.setdefault("_recipient", event.recipient)
    return data


async def _write_states(conn: Any, states: Iterable[_State]) -> tuple[int, int]:
    """Persist changed rows and opt-outs; (changed, opted_out)."""
    changed = [s for s in states if s.dirty]
    if changed:
        rows = [
            (s.id, s.status, s.delivered_at, s.opened_at, s.clicked_at, s.bounced_at,
             s.failed_at, s.error)
            for s in changed
        ]  # fmt: skip
        await conn.execute(_UPDATE, _records(_UPDATE_COLUMNS, rows))
    prefs: dict[tuple[UUID, str, str | None], str] = {}
    for s in states:
        for kind, provider in s.opt_outs:
            prefs[(s.user_id, s.channel, s.category)] = f"{kind} via {provider}"
    if prefs:
        keys = list(prefs)
        await conn.execute(
            _OPT_OUT,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [prefs[k] for k in keys],
        )
    return len(changed), len(prefs)


async def apply(rt: Runtime, events: Sequence[ProviderEvent]) -> Counts:
    """Store and apply one request's events."""
    return (await apply_groups(rt, [list(events)]))[0]


async def apply_groups(rt: Runtime, groups: Sequence[Sequence[ProviderEvent]]) -> list[Counts]:
    """Store and apply the events of several requests in one transaction and a fixed number
    of statements; return each request's counts."""
    counts = [Counts(received=len(g)) for g in groups]
    unique: dict[tuple[str, str], tuple[ProviderEvent, int]] = {}
    for index, events in enumerate(groups):
        for event in events:
            unique.setdefault((event.provider, event.event_id[:255]), (event, index))
    batch = [event for event, _ in unique.values()]
    owner = [index for _, index in unique.values()]
    if not batch:
        return counts
    ids = list({e.notification_id for e in batch if e.notification_id})
    message_ids = list({e.message_id[:255] for e in batch if e.message_id})
    async with rt.db.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_LOCK, ids, message_ids)
        by_id = {r["id"]: r for r in rows}
        by_message = {r["provider_id"]: r for r in rows if r["provider_id"]}
        targets: list[UUID | None] = []
        for e in batch:
            row = by_id.get(e.notification_id) if e.notification_id else None
            if row is None and e.message_id:
                row = by_message.get(e.message_id[:255])
            targets.append(row["id"] if row is not None else None)
        records = (
            (target, e.provider, e.event_id[:255], e.message_id[:255] if e.message_id else None,
             e.type.value, e.occurred_at, _payload(e), target is not None)
            for e, target in zip(batch, targets, strict=True)
        )  # fmt: skip
        inserted = await conn.fetch(_INSERT, _records(_INSERT_COLUMNS, records))
        new = {(r["provider"], r["provider_event_id"]) for r in inserted}
        states: dict[UUID, _State] = {}
        touched: list[set[UUID]] = [set() for _ in groups]
        fresh = [
            (e, t, g)
            for e, t, g in zip(batch, targets, owner, strict=True)
            if (e.provider, e.event_id[:255]) in new
        ]
        fresh.sort(key=lambda item: item[0].occurred_at)
        for event, target, group in fresh:
            counts[group].stored += 1
            if target is None:
                counts[group].unmatched += 1
                continue
            counts[group].matched += 1
            touched[group].add(target)
            state = states.get(target) or states.setdefault(target, _State.from_row(by_id[target]))
            fold(state, event.type, event.occurred_at, event.reason, event.provider)
        await _write_states(conn, states.values())
    for group, count in enumerate(counts):
        count.duplicates = count.received - count.stored
        count.changed = sum(1 for t in touched[group] if states[t].dirty)
        count.opted_out = sum(1 for t in touched[group] if states[t].opt_outs)
    return counts


async def reconcile(rt: Runtime, provider: str | None, message_id: str) -> int:
    """Apply stored, unmatched events for `message_id` now that a notification carries it.

    Called after a send is recorded (provider_id set); returns how many events were applied.
    """
    async with rt.db.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_LOCK, [], [message_id])
        if not rows:
            return 0
        row = rows[0]
        pending = await conn.fetch(
            """
            UPDATE notification_events SET notification_id = $1, applied = TRUE
            WHERE notification_id IS NULL AND provider_message_id = $2
              AND ($3::varchar IS NULL OR provider = $3)
            RETURNING provider, event_type, occurred_at, payload
            """,
            row["id"],
            message_id,
            provider,
        )
        if not pending:
            return 0
        state = _State.from_row(row)
        for event in sorted(pending, key=lambda r: r["occurred_at"]):
            payload = event["payload"] if isinstance(event["payload"], dict) else {}
            fold(
                state,
                event["event_type"],
                event["occurred_at"],
                payload.get("_reason"),
                event["provider"],
            )
        await _write_states(conn, [state])
        return len(pending)


async def list_events(conn: Conn, caller: Caller, notification_id: UUID) -> list[Any]:
    """The provider events of one notification, oldest first (owner or privileged)."""
    owner = await conn.fetchval("SELECT user_id FROM notifications WHERE id = $1", notification_id)
    if owner is None or (not caller.is_privileged and owner != caller.user_id):
        raise NotFound(f"notification {notification_id} not found")
    return list(
        await conn.fetch(
            """
            SELECT id, notification_id, provider, provider_event_id, provider_message_id,
                   event_type, occurred_at, payload, applied, created_at
            FROM notification_events WHERE notification_id = $1
            ORDER BY occurred_at, created_at
            """,
            notification_id,
        )
    )
