"""Provider storms, in process (real PostgreSQL, Redis and ARQ worker): every provider
answering 5xx, 429 with Retry-After, or hanging past NOTIFICATIONS_PROVIDER_TIMEOUT."""

from __future__ import annotations

import time
from typing import Any

import pytest

from app.services import delivery, notifications
from tests.conftest import run_worker
from tests.core.helpers import ADMIN, add_test_provider, email_request, sent_ids

pytestmark = pytest.mark.slow


def _id(outcome: Any) -> Any:
    assert outcome.notification_id is not None
    return outcome.notification_id


async def _health(rt: Any) -> dict[str, Any]:
    rows = await rt.db.fetch("SELECT * FROM notification_provider_health")
    return {r["name"]: dict(r) for r in rows}


async def _breaker_states(rt: Any) -> dict[str, str]:
    rows = await rt.db.fetch("SELECT name, breaker_state FROM notification_providers")
    return {r["name"]: r["breaker_state"] for r in rows}


async def test_all_5xx_fails_over_retries_capped_then_failed(make_rt: Any) -> None:
    rt = await make_rt(retry_attempts=3, circuit_breaker_threshold=2, dedup_window=0)
    await add_test_provider(rt, name="first", priority=100, mode="transient")
    await add_test_provider(rt, name="second", priority=50, mode="transient")
    outcomes = await notifications.send_many(
        rt, [email_request(body=f"storm {i}") for i in range(5)], ADMIN
    )
    await run_worker(rt)

    rows = await rt.db.fetch("SELECT status, retry_count, error FROM notifications")
    assert len(rows) == len(outcomes) == 5
    for row in rows:
        assert row["status"] == "failed", dict(row)
        assert "gave up after 3 attempts" in row["error"]
        assert row["retry_count"] == 3  # capped at NOTIFICATIONS_RETRY_ATTEMPTS
    assert await rt.db.fetchval("SELECT count(*) FROM notification_queue") == 0
    assert await sent_ids(rt, "first") == [] and await sent_ids(rt, "second") == []
    health = await _health(rt)
    # failover: both were tried; the breakers opened at the threshold and then shielded them
    assert health["first"]["failure_count"] >= 2 and health["second"]["failure_count"] >= 2
    assert health["first"]["last_failure_at"] and health["second"]["last_failure_at"]
    assert health["first"]["last_success_at"] is None
    assert await _breaker_states(rt) == {"first": "open", "second": "open"}
    assert (await delivery.breakers(rt).state("first"))["state"] == "open"
    # the circuit-open attempts did not call the providers: far fewer failures than attempts
    assert health["first"]["failure_count"] < 5 * 3


async def test_429_fails_over_to_the_next_provider(make_rt: Any) -> None:
    rt = await make_rt(max_retry_delay=10_000)
    await add_test_provider(rt, name="limited", priority=100, mode="ratelimit", retry_after=2)
    await add_test_provider(rt, name="backup", priority=50)
    outcome = await notifications.send(rt, email_request(), ADMIN)
    await run_worker(rt)
    row = await rt.db.fetchrow("SELECT * FROM notifications WHERE id = $1", outcome.notification_id)
    assert row["status"] == "sent" and row["provider"] == "backup"
    assert (await _health(rt))["limited"]["failure_count"] == 1


async def test_429_retry_delay_respects_retry_after(make_rt: Any) -> None:
    # RETRY_DELAY 10 ms would retry at once; Retry-After 2.5 s must win (cap 10 s)
    rt = await make_rt(max_retry_delay=10_000, retry_delay=10)
    await add_test_provider(rt, name="limited", mode="ratelimit", retry_after=2.5)
    outcome = await notifications.send(rt, email_request(), ADMIN)
    before = time.time()
    result = await delivery.deliver_ids(rt, [_id(outcome)])
    assert result.sent == [] and len(result.retries) == 1
    assert result.retries[0][1] >= 2.5
    queued = await rt.db.fetchrow(
        "SELECT attempts, next_retry_at, locked_at, last_error FROM notification_queue"
        " WHERE notification_id = $1",
        outcome.notification_id,
    )
    assert queued["attempts"] == 1 and queued["locked_at"] is None
    assert "429" in queued["last_error"]
    assert queued["next_retry_at"].timestamp() >= before + 2.5 - 0.05
    assert queued["next_retry_at"].timestamp() <= time.time() + 10 + 0.05
    # not due: a second pass claims nothing and calls nobody
    again = await delivery.deliver_ids(rt, [_id(outcome)])
    assert again.sent == [] and again.retries == []


async def test_hang_past_timeout_fails_over(make_rt: Any) -> None:
    rt = await make_rt(provider_timeout=0.3, circuit_breaker_threshold=2, dedup_window=0)
    await add_test_provider(rt, name="hangs", priority=100, mode="timeout")
    await add_test_provider(rt, name="backup", priority=50)
    outcomes = await notifications.send_many(
        rt, [email_request(body=f"hang {i}") for i in range(3)], ADMIN
    )
    started = time.monotonic()
    for outcome in outcomes:  # one at a time, so the breaker sees them in order
        await delivery.deliver_ids(rt, [_id(outcome)])
    elapsed = time.monotonic() - started
    rows = await rt.db.fetch("SELECT status, provider FROM notifications")
    assert {(r["status"], r["provider"]) for r in rows} == {("sent", "backup")}
    assert await sent_ids(rt, "hangs") == []
    assert sorted(await sent_ids(rt, "backup")) == sorted(str(o.notification_id) for o in outcomes)
    # two waits of 0.3 s opened the breaker; the third send skipped the hanging provider
    assert elapsed < 0.3 * 3 + 0.5, elapsed
    health = await _health(rt)
    assert health["hangs"]["failure_count"] == 2 and health["backup"]["last_success_at"]
    states = await _breaker_states(rt)
    assert states["hangs"] == "open" and states["backup"] == "closed"


async def test_provider_health_view_shows_the_breaker(make_rt: Any) -> None:
    rt = await make_rt(circuit_breaker_threshold=1, retry_attempts=1)
    await add_test_provider(rt, name="down", mode="transient")
    await notifications.send(rt, email_request(), ADMIN)
    await run_worker(rt)
    assert (await _health(rt))["down"].get("breaker_state") == "open"
