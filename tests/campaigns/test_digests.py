"""Digests: grouping, windows in the user's time zone, exactly once across workers."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

from app.services import digests, notifications
from app.services import templates as template_service
from tests.campaigns.conftest import next_local, set_pref
from tests.conftest import run_worker
from tests.core.helpers import ADMIN, add_test_provider, email_request, sent_ids

NY = "America/New_York"
QUIET_NY = {"start": "00:00", "end": "00:00", "timezone": NY}  # a zone, no quiet window


async def _held(rt: Any, user_id: Any, category: str, subjects: list[str]) -> list[Any]:
    outcomes = await notifications.send_many(
        rt,
        [
            email_request(user_id, subject=s, body="b", category=category, variables={})
            for s in subjects
        ],
        ADMIN,
    )
    assert [o.status for o in outcomes] == ["batched"] * len(subjects)
    return [o.notification_id for o in outcomes]


async def test_daily_digest_groups_links_and_delivers(rt: Any) -> None:
    await add_test_provider(rt)
    user = uuid4()
    await set_pref(rt, user, "marketing", frequency="daily", quiet_hours=QUIET_NY)
    await set_pref(rt, user, "social", frequency="daily")
    items = await _held(rt, user, "marketing", ["Sale A", "Sale B"])
    items += await _held(rt, user, "social", ["New follower"])
    window = next_local(9, NY)

    early = await digests.tick(rt, window - timedelta(minutes=5))
    assert early.digests == 0
    assert await rt.db.fetchval("SELECT count(*) FROM notifications WHERE status = 'batched'") == 3

    result = await digests.tick(rt, window + timedelta(minutes=5))
    assert result.digests == 1 and result.items == 3
    digest = await rt.db.fetchrow("SELECT * FROM notifications WHERE category = 'digest'")
    assert digest["status"] == "queued" and digest["user_id"] == user
    assert digest["subject"] == "Your daily digest: 3 notifications"
    # one send_many: same created_at, so either order
    assert re.search(r"marketing \(2\):\n- Sale [AB]\n- Sale [AB]\n", digest["body"])
    assert "social (1):\n- New follower" in digest["body"]
    assert digest["idempotency_key"] == f"digest:{user}:email:daily:{int(window.timestamp())}"
    rows = await rt.db.fetch(
        "SELECT status, provider, batch_id, sent_at FROM notifications WHERE id = ANY($1)", items
    )
    assert {(r["status"], r["provider"], r["batch_id"]) for r in rows} == {
        ("sent", "digest", digest["id"])
    }
    batch = await rt.db.fetchrow("SELECT * FROM notification_batches WHERE user_id = $1", user)
    assert batch["frequency"] == "daily" and batch["interval_seconds"] == 86400
    assert batch["last_sent_at"] == window + timedelta(minutes=5)
    assert batch["config"] == {"group_by": "category", "max_items": 50}

    await run_worker(rt)
    assert await sent_ids(rt) == [str(digest["id"])]  # one email, not three
    # Items arriving after the window wait for the next one.
    later = await _held(rt, user, "social", ["Another follower"])
    again = await digests.tick(rt, window + timedelta(hours=2))
    assert again.digests == 0
    nxt = await digests.tick(rt, window + timedelta(days=1, minutes=1))
    assert nxt.digests == 1 and nxt.items == 1
    assert (
        await rt.db.fetchval("SELECT status FROM notifications WHERE id = $1", later[0]) == "sent"
    )


async def test_two_concurrent_ticks_send_each_window_once(make_rt: Any) -> None:
    rt_a, rt_b = await make_rt(), await make_rt()
    users = [uuid4() for _ in range(5)]
    for user in users:
        await set_pref(rt_a, user, None, frequency="daily")
        await _held(rt_a, user, "news", ["one", "two"])
    now = next_local(9, "UTC") + timedelta(minutes=1)
    a, b = await asyncio.gather(digests.tick(rt_a, now), digests.tick(rt_b, now))
    assert a.digests + b.digests == 5
    assert a.skipped + b.skipped + a.digests + b.digests >= 5
    digest_rows = await rt_a.db.fetch("SELECT * FROM notifications WHERE category = 'digest'")
    assert sorted(r["user_id"] for r in digest_rows) == sorted(users)
    # A channel-wide daily preference must not hold the digest itself for the next digest.
    assert {r["status"] for r in digest_rows} == {"queued"}
    assert await rt_a.db.fetchval("SELECT count(*) FROM notification_digest_runs") == 5
    third = await digests.tick(rt_b, now + timedelta(minutes=5))
    assert third.digests == 0
    assert (
        await rt_a.db.fetchval("SELECT count(*) FROM notifications WHERE status = 'batched'") == 0
    )


async def test_stale_claim_is_taken_over_without_a_second_digest(rt: Any) -> None:
    user = uuid4()
    await set_pref(rt, user, "news", frequency="daily")
    await _held(rt, user, "news", ["x"])
    now = next_local(9, "UTC") + timedelta(minutes=1)
    window = digests.window_at("daily", now, ZoneInfo("UTC"), 9)
    # A worker claimed the window and died before sending.
    await rt.db.execute(
        "INSERT INTO notification_digest_runs (user_id, channel, frequency, window_at, claimed_at)"
        " VALUES ($1, 'email', 'daily', $2, NOW() - interval '1 hour')",
        user,
        window,
    )
    result = await digests.tick(rt, now)
    assert result.digests == 1
    assert await rt.db.fetchval("SELECT count(*) FROM notifications WHERE category = 'digest'") == 1
    # A fresh claim by another (live) worker is respected.
    await _held(rt, user, "news", ["y"])
    await rt.db.execute(
        "INSERT INTO notification_digest_runs (user_id, channel, frequency, window_at)"
        " VALUES ($1, 'email', 'daily', $2)",
        user,
        window + timedelta(days=1),
    )
    skipped = await digests.tick(rt, now + timedelta(days=1))
    assert skipped.digests == 0 and skipped.skipped == 1


def test_windows_daily_weekly_and_time_zones() -> None:
    tokyo, ny = ZoneInfo("Asia/Tokyo"), ZoneInfo(NY)
    # Wednesday 2026-03-04 10:00 UTC = 19:00 Tokyo: today's 09:00 Tokyo window (00:00 UTC).
    now = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    assert digests.window_at("daily", now, tokyo, 9) == datetime(2026, 3, 4, 0, 0, tzinfo=UTC)
    # 10:00 UTC = 05:00 New York: yesterday's 09:00 New York (14:00 UTC, EST).
    assert digests.window_at("daily", now, ny, 9) == datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
    # Weekly: Monday 2026-03-02 09:00 New York.
    assert digests.window_at("weekly", now, ny, 9) == datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    # Before Monday's hour, the previous Monday.
    monday_early = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
    assert digests.window_at("weekly", monday_early, ny, 9) == datetime(
        2026, 2, 23, 14, 0, tzinfo=UTC
    )
    # DST (2026-03-08 in New York): 09:00 local is 13:00 UTC afterwards.
    after_dst = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)
    assert digests.window_at("daily", after_dst, ny, 9) == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
    # BATCH_INTERVAL below a day: windows every interval from the digest hour.
    assert digests.window_at("daily", now, ZoneInfo("UTC"), 9, 3600) == datetime(
        2026, 3, 4, 10, 0, tzinfo=UTC
    )


async def test_weekly_waits_for_monday_at_the_users_hour(rt: Any) -> None:
    user = uuid4()
    await set_pref(
        rt, user, "marketing", frequency="weekly",
        quiet_hours={"start": "00:00", "end": "00:00", "timezone": "Asia/Tokyo"},
    )  # fmt: skip
    await _held(rt, user, "marketing", ["weekly news"])
    monday = next_local(9, "Asia/Tokyo", weekday=0)
    assert (await digests.tick(rt, monday - timedelta(minutes=1))).digests == 0
    # A daily window that is not Monday sends nothing either.
    tuesday = next_local(9, "Asia/Tokyo", after=monday, weekday=1) + timedelta(minutes=1)
    result = await digests.tick(rt, monday + timedelta(minutes=1))
    assert result.digests == 1
    digest = await rt.db.fetchrow("SELECT * FROM notifications WHERE category = 'digest'")
    assert digest["subject"] == "Your weekly digest: 1 notification"
    assert (await digests.tick(rt, tuesday)).digests == 0


async def test_template_config_and_opt_out(rt: Any) -> None:
    await template_service.create(
        rt, ADMIN, "daily_digest",
        {"subject": "{{count}} updates", "body_text": "{{#each items}}[{{subject}}]{{/each}}"
         "{{#if more}} +{{more}}{{/if}}", "variables": ["count"]},
    )  # fmt: skip
    user, other = uuid4(), uuid4()
    for u in (user, other):
        await set_pref(rt, u, "news", frequency="daily")
    await _held(rt, user, "news", ["a", "b", "c"])
    await rt.db.execute(
        "INSERT INTO notification_batches (name, interval_seconds, config, user_id, channel,"
        " frequency) VALUES ('daily_digest', 86400, $2, $1, 'email', 'daily')",
        user,
        {"group_by": "template", "max_items": 2},
    )
    await _held(rt, other, "news", ["gone"])
    await set_pref(rt, other, "news", enabled=False)  # opted out after the items were held
    now = next_local(9, "UTC") + timedelta(minutes=1)
    result = await digests.tick(rt, now)
    assert result.digests == 1 and result.suppressed == 1
    digest = await rt.db.fetchrow("SELECT * FROM notifications WHERE category = 'digest'")
    assert digest["template_name"] == "daily_digest"
    # max_items 2: two subjects listed (one send: same created_at), the third counted.
    assert digest["subject"] == "3 updates"
    assert re.fullmatch(r"\[[abc]\]\[[abc]\] \+1", digest["body"])
    assert (
        await rt.db.fetchval("SELECT status FROM notifications WHERE user_id = $1", other)
        == "suppressed"
    )
