"""Digests: notifications held by daily/weekly preferences, sent as one per user and channel.

A send whose preference says `daily` or `weekly` is stored as `batched`
(app.services.preferences decides that). The `digest_tick` cron calls `tick`:

    windows   daily: DIGEST_HOUR in the user's time zone, then every BATCH_INTERVAL
              seconds (86400: once a day); weekly: Mondays at DIGEST_HOUR.
              The zone is quiet_hours.timezone of the user's preference row, else UTC.
    items     a window at instant W takes the user's batched items created before W,
              grouped by category (or template) per notification_batches.config
              {group_by, max_items}; items created later wait for the next window.
    once      a notification_digest_runs row per (user, channel, frequency, window) is
              claimed with INSERT ... ON CONFLICT: two workers never both send a window.
              The digest's idempotency key comes from the same window, so a takeover of
              a stale claim (a worker died mid-way) still sends it once.
    send      through notifications.send_many as a system caller, category `digest`,
              template `daily_digest` / `weekly_digest` when it exists, else a built-in
              subject and body listing the items' subjects.
    link      items: status sent, provider `digest`, batch_id = the digest's id; the run
              and notification_batches.last_sent_at are updated in the same transaction.

If the user has since opted out of the channel, the items become `suppressed`.
Every function takes `now`, so tests drive the clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.errors import NotificationError
from app.models import Caller, Recipient, SendRequest, Status
from app.runtime import Runtime
from app.services import notifications, preferences
from app.services import templates as template_service
from app.store import notifications as store
from app.store import preferences as preference_store

log = logging.getLogger(__name__)

DAILY, WEEKLY = "daily", "weekly"
FREQUENCIES = (DAILY, WEEKLY)
DIGEST_CATEGORY = "digest"
DIGEST_PROVIDER = "digest"
WEEK = 7 * 86400
CLAIM_TIMEOUT = 300.0  # seconds before another worker may take over an unfinished window
DEFAULT_CONFIG: dict[str, Any] = {"group_by": "category", "max_items": 50}
TICK_CONCURRENCY = 8
TICK_LIMIT = 10_000  # (user, channel) pairs per tick; the next tick takes the rest

SYSTEM = Caller.system("digest")

DEFAULT_SUBJECT = "Your {{frequency}} digest: {{count}} notification{{#if plural}}s{{/if}}"
DEFAULT_BODY = (
    "Here is your {{frequency}} digest ({{count}} notification{{#if plural}}s{{/if}}).\n"
    "{{#each groups}}\n{{name}} ({{count}}):\n{{#each items}}- {{subject}}\n{{/each}}"
    "{{/each}}{{#if more}}\n...and {{more}} more.\n{{/if}}"
)


@dataclass
class TickResult:
    digests: int = 0
    items: int = 0
    suppressed: int = 0
    skipped: int = 0  # windows another worker claimed
    errors: int = 0
    digest_ids: list[UUID] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "digests": self.digests,
            "items": self.items,
            "suppressed": self.suppressed,
            "skipped": self.skipped,
            "errors": self.errors,
        }


# --------------------------------------------------------------------------- windows


def _zone(name: Any) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return None


def user_zone(rows: Sequence[Mapping[str, Any]], channel: str, category: str | None) -> ZoneInfo:
    """The zone of the preference row that applies, else of any of the user's rows, else UTC."""
    applying = preferences.resolve(rows, channel, category)
    ordered = [applying] if applying is not None else []
    ordered += [r for r in rows if r["channel"] == channel] + list(rows)
    for row in ordered:
        quiet = row["quiet_hours"]
        if isinstance(quiet, Mapping) and (zone := _zone(quiet.get("timezone"))):
            return zone
    return ZoneInfo("UTC")


def window_at(
    frequency: str, now: datetime, zone: ZoneInfo, hour: int, interval: int = 86400
) -> datetime:
    """The latest window start at or before `now` (UTC).

    Wall-clock arithmetic in the user's zone keeps DIGEST_HOUR right across DST changes.
    """
    local = now.astimezone(zone)
    anchor = datetime.combine(local.date(), time(hour), tzinfo=zone)
    if frequency == WEEKLY:
        anchor -= timedelta(days=local.weekday())
        if anchor > local:
            anchor -= timedelta(days=7)
        return anchor.astimezone(UTC)
    if anchor > local:
        anchor -= timedelta(days=1)
    start = anchor.astimezone(UTC)
    if 0 < interval < 86400:
        steps = int((now - start).total_seconds() // interval)
        start += timedelta(seconds=steps * interval)
    return start


def interval_for(frequency: str, batch_interval: int) -> int:
    return WEEK if frequency == WEEKLY else batch_interval


# --------------------------------------------------------------------------- items


_SUPPRESS = "suppress"


def frequency_of(item: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """daily, weekly, or `suppress` when the user has opted out since the item was held."""
    pref = preferences.resolve(rows, item["channel"], item["category"])
    if pref is not None:
        if pref["enabled"] is False or pref["frequency"] == "disabled":
            return _SUPPRESS
        if pref["frequency"] in FREQUENCIES:
            return str(pref["frequency"])
    # The preference changed back to immediate: flush with the next daily window,
    # unless it was held for the weekly one.
    return WEEKLY if WEEKLY in (item["error"] or "") else DAILY


_ITEMS = """
SELECT id, user_id, channel, category, template_name, subject, created_at, recipient,
       to_address, error
FROM notifications
WHERE user_id = $1 AND channel = $2 AND status = 'batched' AND created_at < $3
ORDER BY created_at, id
"""


async def _items(rt: Runtime, user_id: UUID, channel: str, before: datetime) -> list[Any]:
    return list(await rt.db.fetch(_ITEMS, user_id, channel, before))


def _group(items: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> dict[str, Any]:
    group_by = config.get("group_by") or "category"
    max_items = max(1, int(config.get("max_items") or DEFAULT_CONFIG["max_items"]))
    shown = items[-max_items:]  # the newest ones
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in shown:
        if group_by == "template":
            key = item["template_name"] or "other"
        else:
            key = item["category"] or "general"
        groups.setdefault(str(key), []).append(
            {
                "id": str(item["id"]),
                "subject": item["subject"] or item["template_name"] or "(no subject)",
                "template": item["template_name"],
                "category": item["category"],
                "created_at": item["created_at"].isoformat(),
            }
        )
    listed: list[dict[str, Any]] = [
        {"name": k, "count": len(v), "items": v} for k, v in groups.items()
    ]
    return {
        "count": len(items),
        "plural": len(items) != 1,
        "groups": listed,
        "categories": groups,
        "items": [i for v in groups.values() for i in v],
        "more": len(items) - len(shown),
    }


# --------------------------------------------------------------------------- claims


_CLAIM = """
INSERT INTO notification_digest_runs (user_id, channel, frequency, window_at, claimed_by)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (user_id, channel, frequency, window_at) DO UPDATE
    SET claimed_by = EXCLUDED.claimed_by, claimed_at = NOW()
    WHERE notification_digest_runs.status = 'claimed'
      AND notification_digest_runs.claimed_at < NOW() - make_interval(secs => $6)
RETURNING id
"""


async def claim(
    rt: Runtime, user_id: UUID, channel: str, frequency: str, window: datetime
) -> UUID | None:
    """The run id if this worker now owns the window, None if another has (or had) it."""
    run_id = await rt.db.fetchval(
        _CLAIM, user_id, channel, frequency, window, rt.name, CLAIM_TIMEOUT
    )
    return run_id  # type: ignore[no-any-return]


async def _config(rt: Runtime, user_id: UUID, channel: str, frequency: str) -> dict[str, Any]:
    raw = await rt.db.fetchval(
        "SELECT config FROM notification_batches"
        " WHERE user_id = $1 AND channel = $2 AND frequency = $3",
        user_id,
        channel,
        frequency,
    )
    return {**DEFAULT_CONFIG, **(raw if isinstance(raw, dict) else {})}


# --------------------------------------------------------------------------- one digest


async def _template_for(rt: Runtime, frequency: str, channel: str) -> str | None:
    name = f"{frequency}_digest"
    try:
        await template_service.get_active(rt, name, channel)
    except NotificationError:
        return None
    return name


def _recipient(item: Mapping[str, Any]) -> Recipient:
    raw = item["recipient"]
    if not raw:
        key = {"email": "email", "sms": "phone", "push": "device_token"}[item["channel"]]
        raw = {key: item["to_address"]}
    return Recipient.model_validate(raw)


def idempotency_key(user_id: UUID, channel: str, frequency: str, window: datetime) -> str:
    return f"digest:{user_id}:{channel}:{frequency}:{int(window.timestamp())}"


async def build_request(
    rt: Runtime,
    items: Sequence[Mapping[str, Any]],
    frequency: str,
    window: datetime,
    zone: ZoneInfo,
    config: Mapping[str, Any],
    priority: int = 0,
) -> SendRequest:
    first = items[-1]
    user_id, channel = first["user_id"], first["channel"]
    variables = {
        **_group(items, config),
        "frequency": frequency,
        "date": window.astimezone(zone).date().isoformat(),
        "window_at": window.isoformat(),
    }
    template = await _template_for(rt, frequency, channel)
    content: dict[str, Any] = (
        {"template": template} if template else {"subject": DEFAULT_SUBJECT, "body": DEFAULT_BODY}
    )
    return SendRequest.model_validate(
        {
            "user_id": user_id,
            "channel": channel,
            "to": _recipient(first),
            "variables": variables,
            "category": DIGEST_CATEGORY,
            "priority": priority,
            "idempotency_key": idempotency_key(user_id, channel, frequency, window),
            "metadata": {
                "digest": {
                    "frequency": frequency,
                    "window_at": window.isoformat(),
                    "items": len(items),
                }
            },
            **content,
        }
    )


async def _finish(
    rt: Runtime,
    run_id: UUID,
    item_ids: Sequence[UUID],
    digest_id: UUID | None,
    frequency: str,
    items: Sequence[Mapping[str, Any]],
    now: datetime,
    config: Mapping[str, Any],
    suppressed_reason: str | None = None,
) -> int:
    first = items[0]
    async with store.transaction(rt.db) as tx:
        if suppressed_reason is None:
            done = await tx.fetch(
                """
                UPDATE notifications SET status = 'sent', provider = $3, batch_id = $2::uuid,
                    provider_id = $2::uuid::text, sent_at = $4, updated_at = NOW(), error = NULL
                WHERE id = ANY($1::uuid[]) AND status = 'batched' RETURNING id
                """,
                list(item_ids),
                digest_id,
                DIGEST_PROVIDER,
                now,
            )
        else:
            done = await tx.fetch(
                """
                UPDATE notifications SET status = 'suppressed', error = $2, updated_at = NOW()
                WHERE id = ANY($1::uuid[]) AND status = 'batched' RETURNING id
                """,
                list(item_ids),
                suppressed_reason,
            )
        await tx.execute(
            """
            UPDATE notification_digest_runs SET notification_id = $2, item_count = $3,
                status = $4, done_at = NOW()
            WHERE id = $1
            """,
            run_id,
            digest_id,
            len(done),
            "sent" if suppressed_reason is None else "suppressed",
        )
        await tx.execute(
            """
            INSERT INTO notification_batches
                (name, category, interval_seconds, config, last_sent_at, user_id, channel,
                 frequency)
            VALUES ($1, NULL, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (user_id, channel, frequency) WHERE user_id IS NOT NULL DO UPDATE
                SET last_sent_at = EXCLUDED.last_sent_at, updated_at = NOW()
            """,
            f"{frequency}_digest",
            interval_for(frequency, rt.settings.batch_interval),
            dict(config),
            now,
            first["user_id"],
            first["channel"],
            frequency,
        )
    return len(done)


async def _existing_digest(rt: Runtime, key: str) -> UUID | None:
    found = await rt.db.fetchval("SELECT id FROM notifications WHERE idempotency_key = $1", key)
    return found  # type: ignore[no-any-return]


async def _run_window(
    rt: Runtime,
    user_id: UUID,
    channel: str,
    frequency: str,
    window: datetime,
    zone: ZoneInfo,
    prefs: Sequence[Mapping[str, Any]],
    now: datetime,
    result: TickResult,
) -> None:
    run_id = await claim(rt, user_id, channel, frequency, window)
    if run_id is None:
        result.skipped += 1
        return
    # Re-read under the claim: exactly the items still batched for this window.
    items = [
        i for i in await _items(rt, user_id, channel, window) if frequency_of(i, prefs) == frequency
    ]
    if not items:
        await rt.db.execute(
            "UPDATE notification_digest_runs SET status = 'sent', done_at = NOW() WHERE id = $1",
            run_id,
        )
        return
    config = await _config(rt, user_id, channel, frequency)
    decision = preferences.decide(
        prefs, channel, DIGEST_CATEGORY, bypass=False, now=now, send_at=None
    )
    ids = [i["id"] for i in items]
    if decision.status is Status.SUPPRESSED:
        result.suppressed += await _finish(
            rt, run_id, ids, None, frequency, items, now, config, decision.reason or "opted out"
        )
        return
    request = await build_request(rt, items, frequency, window, zone, config, 0)
    (outcome,) = await notifications.send_many(rt, [request], SYSTEM)
    digest_id = outcome.notification_id
    if digest_id is None and request.idempotency_key:
        digest_id = await _existing_digest(rt, request.idempotency_key)
    if digest_id is None:
        # Rate-limited or rejected: the claim goes stale and a later tick retries the window.
        log.warning("digest for %s/%s not accepted: %s", user_id, channel, outcome.message)
        result.errors += 1
        return
    if outcome.status == Status.SUPPRESSED.value:
        result.suppressed += await _finish(
            rt, run_id, ids, digest_id, frequency, items, now, config, "digest suppressed"
        )
        return
    result.items += await _finish(rt, run_id, ids, digest_id, frequency, items, now, config)
    result.digests += 1
    result.digest_ids.append(digest_id)


async def digest_user(
    rt: Runtime, user_id: UUID, channel: str, now: datetime, result: TickResult | None = None
) -> TickResult:
    """Send whatever digests of this user and channel are due at `now`."""
    result = result or TickResult()
    prefs: list[Any] = list(await preference_store.for_user(rt.db, user_id))
    items = await _items(rt, user_id, channel, now)
    by_frequency: dict[str, list[Any]] = {}
    opted_out: list[Any] = []
    for item in items:
        frequency = frequency_of(item, prefs)
        (opted_out if frequency == _SUPPRESS else by_frequency.setdefault(frequency, [])).append(
            item
        )
    if opted_out:
        status = await rt.db.execute(
            """
            UPDATE notifications SET status = 'suppressed', updated_at = NOW(),
                error = 'user opted out before the digest'
            WHERE id = ANY($1::uuid[]) AND status = 'batched'
            """,
            [i["id"] for i in opted_out],
        )
        result.suppressed += int(status.split()[-1])
    settings = rt.settings
    for frequency, held in by_frequency.items():
        zone = user_zone(prefs, channel, held[0]["category"])
        window = window_at(
            frequency,
            now,
            zone,
            settings.digest_hour,
            interval_for(frequency, settings.batch_interval),
        )
        if not any(i["created_at"] < window for i in held):
            continue
        await _run_window(rt, user_id, channel, frequency, window, zone, prefs, now, result)
    return result


async def tick(rt: Runtime, now: datetime | None = None) -> TickResult:
    """One pass over every (user, channel) with batched items: send the due digests."""
    now = now or datetime.now(UTC)
    pairs = await rt.db.fetch(
        """
        SELECT user_id, channel FROM notifications
        WHERE status = 'batched' AND created_at < $1
        GROUP BY user_id, channel LIMIT $2
        """,
        now,
        TICK_LIMIT,
    )
    result = TickResult()
    gate = asyncio.Semaphore(TICK_CONCURRENCY)

    async def one(user_id: UUID, channel: str) -> None:
        async with gate:
            try:
                await digest_user(rt, user_id, channel, now, result)
            except Exception:
                log.exception("digest for user %s (%s) failed", user_id, channel)
                result.errors += 1

    await asyncio.gather(*(one(p["user_id"], p["channel"]) for p in pairs))
    return result
