"""The send path end to end: real PostgreSQL, real Redis, a real ARQ worker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from app.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited
from app.models import Caller, Role
from app.services import notifications, preferences, recovery
from app.services import templates as template_service
from tests.conftest import run_worker
from tests.core.helpers import ADMIN, add_test_provider, email_request, sent_ids, status_of


async def test_happy_path_send_deliver(rt: Any) -> None:
    await add_test_provider(rt)
    outcome = await notifications.send(rt, email_request(), ADMIN)
    assert outcome.success and outcome.status == "queued"
    queued = await rt.db.fetchrow(
        "SELECT job_id FROM notification_queue WHERE notification_id = $1", outcome.notification_id
    )
    assert queued["job_id"] == f"deliver:{outcome.notification_id}"
    await rt.settle()
    assert await rt.redis.exists(f"arq:job:deliver:{outcome.notification_id}")
    await run_worker(rt)
    row = await rt.db.fetchrow("SELECT * FROM notifications WHERE id = $1", outcome.notification_id)
    assert row["status"] == "sent" and row["provider"] == "primary"
    assert row["provider_id"] == f"test-{outcome.notification_id}"
    assert row["subject"] == "Hello Ada" and row["sent_at"] is not None
    assert await rt.db.fetchval("SELECT count(*) FROM notification_queue") == 0
    assert await sent_ids(rt) == [str(outcome.notification_id)]


async def test_user_may_only_send_to_itself(rt: Any) -> None:
    me = uuid4()
    caller = Caller(role=Role.USER, user_id=me)
    with pytest.raises(Forbidden):
        await notifications.send(rt, email_request(), caller)
    assert (await notifications.send(rt, email_request(me), caller)).success
    assert await rt.db.fetchval("SELECT count(*) FROM notifications") == 1


async def test_template_rendering_and_missing_variables(rt: Any) -> None:
    await template_service.create(
        rt,
        ADMIN,
        "welcome",
        {
            "subject": "Welcome {{user_name}} & co",
            "body_text": "Hi {{user_name}}",
            "body_html": "<p>Hi {{user_name}}</p>",
            "variables": ["user_name", "app?"],
            "category": "marketing",
        },
    )
    request = email_request(
        template="welcome", variables={"user_name": "<b>Tom</b>"}, subject=None, body=None
    )
    outcome = await notifications.send(rt, request, ADMIN)
    row = await rt.db.fetchrow("SELECT * FROM notifications WHERE id = $1", outcome.notification_id)
    assert row["subject"] == "Welcome <b>Tom</b> & co"
    assert row["body_html"] == "<p>Hi &lt;b&gt;Tom&lt;/b&gt;</p>"
    assert row["category"] == "marketing" and row["template_name"] == "welcome"
    with pytest.raises(InvalidInput, match="user_name"):
        await notifications.send(rt, email_request(template="welcome", variables={}), ADMIN)
    with pytest.raises(NotFound):
        await notifications.send(rt, email_request(template="nope"), ADMIN)
    with pytest.raises(InvalidInput, match="does not support channel sms"):
        await notifications.send(
            rt,
            email_request(
                template="welcome",
                channel="sms",
                to={"phone": "+14155550100"},
                variables={"user_name": "x"},
            ),
            ADMIN,
        )


async def test_idempotency_key(rt: Any) -> None:
    first = await notifications.send(rt, email_request(idempotency_key="k1"), ADMIN)
    again = await notifications.send(
        rt,
        email_request(user_id=None, idempotency_key="k1").model_copy(
            update={"user_id": (await rt.db.fetchval("SELECT user_id FROM notifications"))}
        ),
        ADMIN,
    )
    assert again.notification_id == first.notification_id
    with pytest.raises(Conflict):
        await notifications.send(rt, email_request(idempotency_key="k1", body="other"), ADMIN)
    assert await rt.db.fetchval("SELECT count(*) FROM notifications") == 1


async def test_dedup_window(rt: Any) -> None:
    user = uuid4()
    first = await notifications.send(rt, email_request(user), ADMIN)
    second = await notifications.send(rt, email_request(user), ADMIN)
    assert second.notification_id == first.notification_id and "dedup" in second.message
    other = await notifications.send(rt, email_request(user, variables={"name": "Bob"}), ADMIN)
    assert other.notification_id != first.notification_id
    assert await rt.db.fetchval("SELECT count(*) FROM notifications") == 2


async def test_preferences_suppress_batch_and_transactional_bypass(rt: Any) -> None:
    user = uuid4()
    await preferences.upsert(rt.db, ADMIN, user, "email", "marketing", {"enabled": False})
    await preferences.upsert(rt.db, ADMIN, user, "email", "social", {"frequency": "daily"})
    suppressed = await notifications.send(rt, email_request(user, category="marketing"), ADMIN)
    assert suppressed.status == "suppressed"
    batched = await notifications.send(rt, email_request(user, category="social"), ADMIN)
    assert batched.status == "batched"
    await preferences.upsert(rt.db, ADMIN, user, "email", None, {"enabled": False})
    bypass = await notifications.send(rt, email_request(user, category="transactional"), ADMIN)
    assert bypass.status == "queued"
    critical = await notifications.send(
        rt, email_request(user, priority="critical", body="c"), ADMIN
    )
    assert critical.status == "queued"
    reason = await rt.db.fetchval(
        "SELECT error FROM notifications WHERE id = $1", suppressed.notification_id
    )
    assert "opted out of email/marketing" in reason
    # suppressed and batched rows get no queue row and no job
    assert await rt.db.fetchval("SELECT count(*) FROM notification_queue") == 2


async def test_quiet_hours_defer_to_window_end(rt: Any) -> None:
    user = uuid4()
    now = datetime.now(UTC)
    start = (now - timedelta(hours=1)).strftime("%H:%M")
    end = (now + timedelta(hours=2)).strftime("%H:%M")
    await preferences.upsert(
        rt.db,
        ADMIN,
        user,
        "email",
        None,
        {"quiet_hours": {"start": start, "end": end, "timezone": "UTC"}},
    )
    outcome = await notifications.send(rt, email_request(user), ADMIN)
    assert outcome.status == "scheduled"
    due = await rt.db.fetchval(
        "SELECT next_retry_at FROM notification_queue WHERE notification_id = $1",
        outcome.notification_id,
    )
    expected = now.replace(second=0, microsecond=0) + timedelta(hours=2)
    assert abs((due - expected).total_seconds()) < 61


async def test_per_user_rate_limit(make_rt: Any) -> None:
    rt = await make_rt(user_sms_limit=2, dedup_window=0)
    user = uuid4()
    sms = {"channel": "sms", "to": {"phone": "+14155550100"}}
    for _ in range(2):
        assert (await notifications.send(rt, email_request(user, **sms), ADMIN)).success
    with pytest.raises(RateLimited) as info:
        await notifications.send(rt, email_request(user, **sms), ADMIN)
    assert 0 < info.value.retry_after <= 3600
    # another channel and another user are unaffected
    assert (await notifications.send(rt, email_request(user), ADMIN)).success
    assert (await notifications.send(rt, email_request(uuid4(), **sms), ADMIN)).success


async def test_transient_errors_retry_with_backoff_then_fail(make_rt: Any) -> None:
    rt = await make_rt(retry_attempts=3)
    await add_test_provider(rt, mode="transient")
    outcome = await notifications.send(rt, email_request(), ADMIN)
    await run_worker(rt)
    row = await rt.db.fetchrow("SELECT * FROM notifications WHERE id = $1", outcome.notification_id)
    assert row["status"] == "failed" and "gave up after 3 attempts" in row["error"]
    assert row["retry_count"] == 3
    assert await rt.db.fetchval("SELECT count(*) FROM notification_queue") == 0


async def test_transient_then_success(rt: Any) -> None:
    await add_test_provider(rt, fail_times=2)
    outcome = await notifications.send(rt, email_request(), ADMIN)
    await run_worker(rt)
    row = await rt.db.fetchrow("SELECT * FROM notifications WHERE id = $1", outcome.notification_id)
    assert row["status"] == "sent" and row["retry_count"] == 2


async def test_permanent_error_fails_at_once(rt: Any) -> None:
    await add_test_provider(rt, mode="permanent")
    await add_test_provider(rt, name="backup", priority=50)
    outcome = await notifications.send(rt, email_request(), ADMIN)
    await run_worker(rt)
    row = await rt.db.fetchrow("SELECT * FROM notifications WHERE id = $1", outcome.notification_id)
    assert row["status"] == "failed" and "invalid recipient" in row["error"]
    assert await sent_ids(rt, "backup") == []


async def test_failover_in_priority_order(rt: Any) -> None:
    await add_test_provider(rt, name="first", priority=100, mode="transient")
    await add_test_provider(rt, name="second", priority=90, mode="ratelimit")
    await add_test_provider(rt, name="third", priority=80)
    await add_test_provider(rt, name="fourth", priority=70)
    outcome = await notifications.send(rt, email_request(), ADMIN)
    await run_worker(rt)
    row = await rt.db.fetchrow("SELECT * FROM notifications WHERE id = $1", outcome.notification_id)
    assert row["provider"] == "third"
    assert await sent_ids(rt, "fourth") == []
    health = {r["name"]: r for r in await rt.db.fetch("SELECT * FROM notification_provider_health")}
    assert health["first"]["failure_count"] == 1 and health["third"]["last_success_at"] is not None


async def test_circuit_breaker_open_half_open_closed(make_rt: Any) -> None:
    rt = await make_rt(circuit_breaker_threshold=2, circuit_breaker_timeout=1, dedup_window=0)
    from app.services.delivery import breakers

    board = breakers(rt)
    await add_test_provider(rt, name="flaky", priority=100, mode="transient")
    await add_test_provider(rt, name="backup", priority=50)
    for _ in range(3):
        await notifications.send(rt, email_request(), ADMIN)
        await run_worker(rt)
    assert (await board.state("flaky"))["state"] == "open"
    calls_before = len(await sent_ids(rt, "backup"))
    assert calls_before == 3
    # open: the third send went straight to backup without trying flaky
    row = await rt.db.fetchrow("SELECT * FROM notification_providers WHERE name = 'flaky'")
    assert row["breaker_state"] == "open" and row["failure_count"] == 2
    await asyncio.sleep(1.1)
    # half-open: exactly one trial is granted, others are refused meanwhile
    assert await board.allow(["flaky", "flaky"]) == [True, False]
    await board.record("flaky", True)
    assert (await board.state("flaky"))["state"] == "closed"


async def test_two_workers_send_each_notification_once(make_rt: Any) -> None:
    rt = await make_rt(dedup_window=0)
    rt2 = await make_rt(dedup_window=0)
    await add_test_provider(rt, delay=0.001)
    requests = [email_request(body=f"n{i}") for i in range(500)]
    outcomes = await notifications.send_many(rt, requests, ADMIN)
    assert all(o.success for o in outcomes)
    # also enqueue a per-notification job for every row so both workers race for each
    from app.services import queueing

    jobs = [
        queueing.JobSpec("deliver", (str(o.notification_id),), f"race:{o.notification_id}")
        for o in outcomes
    ]
    await queueing.enqueue(rt.redis, jobs)
    rt2.name = "second-worker"
    await asyncio.gather(run_worker(rt), run_worker(rt2))
    sent = await sent_ids(rt)
    assert len(sent) == 500 and len(set(sent)) == 500
    assert await rt.db.fetchval("SELECT count(*) FROM notifications WHERE status = 'sent'") == 500


async def test_flushall_then_sweep_delivers_everything(rt: Any) -> None:
    await add_test_provider(rt)
    outcomes = await notifications.send_many(
        rt, [email_request(body=f"x{i}") for i in range(50)], ADMIN
    )
    await rt.settle()  # the jobs reached Redis...
    await rt.redis.flushdb()  # ...and Redis lost them
    await rt.db.execute("UPDATE notification_queue SET next_retry_at = NOW() - interval '1 minute'")
    assert await recovery.sweep(rt) == 50
    await run_worker(rt)
    assert sorted(await sent_ids(rt)) == sorted(str(o.notification_id) for o in outcomes)


async def test_scheduled_send_not_before_send_at(rt: Any) -> None:
    await add_test_provider(rt)
    send_at = datetime.now(UTC) + timedelta(seconds=3)
    outcome = await notifications.send(rt, email_request(send_at=send_at.isoformat()), ADMIN)
    assert outcome.status == "scheduled"
    from app.services import delivery

    early = await delivery.deliver_ids(rt, [outcome.notification_id])
    assert early.sent == [] and await status_of(rt, outcome.notification_id) == "scheduled"
    await asyncio.sleep(max(0.0, (send_at - datetime.now(UTC)).total_seconds()) + 0.1)
    await run_worker(rt)
    assert await status_of(rt, outcome.notification_id) == "sent"


async def test_postgres_backend_delivers_the_same_set(make_rt: Any) -> None:
    rt = await make_rt(queue_backend="postgres", dedup_window=0)
    await add_test_provider(rt)
    outcomes = await notifications.send_many(
        rt, [email_request(body=f"p{i}") for i in range(120)], ADMIN
    )
    assert await rt.redis.zcard("arq:queue") == 0
    from workers import pg_queue

    stop = asyncio.Event()
    task = asyncio.create_task(pg_queue.run(rt, stop, loops=2))
    for _ in range(100):
        if await rt.db.fetchval("SELECT count(*) FROM notification_queue") == 0:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert sorted(await sent_ids(rt)) == sorted(str(o.notification_id) for o in outcomes)


async def test_dry_run_records_rendered_content(make_rt: Any) -> None:
    rt = await make_rt(dry_run=True)
    outcome = await notifications.send(rt, email_request(), ADMIN)
    await run_worker(rt)
    row = await rt.db.fetchrow("SELECT * FROM notifications WHERE id = $1", outcome.notification_id)
    assert row["status"] == "sent" and row["provider"] == "dry-run"
    assert row["subject"] == "Hello Ada" and row["body"] == "Hi Ada"


async def test_cancel_before_delivery(rt: Any) -> None:
    await add_test_provider(rt)
    outcome = await notifications.send(rt, email_request(), ADMIN)
    cancelled = await notifications.cancel(rt, ADMIN, outcome.notification_id)
    assert cancelled.status == "cancelled"
    await run_worker(rt)
    assert await status_of(rt, outcome.notification_id) == "cancelled"
    assert await sent_ids(rt) == []
    with pytest.raises(Conflict):
        await notifications.cancel(rt, ADMIN, outcome.notification_id)


async def test_breaker_verdicts_survive_a_concurrent_state_change(rt: Any) -> None:
    """allow() awaits Redis for doubtful providers; another provider's breaker opening
    meanwhile (a record() in another coroutine) must not change the verdicts it expects."""
    import time

    from app.services.breaker import OPEN
    from app.services.delivery import breakers

    board = breakers(rt)
    for _ in range(rt.settings.circuit_breaker_threshold):
        await board.record("flaky", False)
    assert (await board.state("flaky"))["state"] == "open"
    await board.allow(["steady"])  # steady is known closed

    task = asyncio.create_task(board.allow(["flaky", "steady"]))
    await asyncio.sleep(0)  # allow() now waits for Redis on "flaky"
    board._view["steady"] = (time.monotonic(), OPEN, 10)  # steady opens meanwhile
    assert await task == [False, True]  # the verdicts of the moment allow() looked
