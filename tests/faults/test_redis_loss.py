"""Redis loses everything mid-run (FLUSHALL, or a restart without persistence).

PostgreSQL is the truth: the worker's sweep re-enqueues every queue row whose
ARQ job vanished, so all accepted notifications end sent, within the sweep
interval plus 10 s of Redis being back (plus the little time delivery takes).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from app.providers.testing import sent_key
from app.services import notifications, queueing
from tests.core.helpers import ADMIN, add_test_provider, email_request, sent_ids
from tests.faults.conftest import FAST_ENV, Stack, same_port, wait_for

pytestmark = pytest.mark.slow

TOTAL = 1500
CONCURRENCY = 5
SWEEP_INTERVAL = int(FAST_ENV["NOTIFICATIONS_SWEEP_INTERVAL"])
DEADLINE = SWEEP_INTERVAL + 10 + 5  # the brief's bound, plus 5 s to deliver what is left
# the test provider itself writes to Redis, so sends during the outage fail transiently;
# enough attempts that an outage never exhausts them
ATTEMPTS = "20"


async def _seed(stack: Stack) -> tuple[Any, set[str]]:
    rt: Any = await stack.runtime()
    await add_test_provider(rt, delay=0.05)
    outcomes = await notifications.send_many(
        rt, [email_request(body=f"redis {i}") for i in range(TOTAL)], ADMIN
    )
    if not all(o.success for o in outcomes):
        pytest.fail("seeding failed")
    return rt, {str(o.notification_id) for o in outcomes}


async def _started(stack: Stack, rt: Any) -> None:
    async def some_sent() -> bool:
        assert all(p.alive() for p in stack.procs), stack.logs()
        return int(await rt.redis.llen(sent_key("primary"))) >= TOTAL // 5

    await wait_for(some_sent, 60, "a fifth to be delivered", stack)


async def _drained(stack: Stack, rt: Any) -> float:
    async def done() -> bool:
        return await rt.db.fetchval("SELECT count(*) FROM notification_queue") == 0

    return await wait_for(done, DEADLINE, "the queue to drain after Redis came back", stack)


async def test_flushall_mid_run_delivers_everything(stack: Stack) -> None:
    rt, ids = await _seed(stack)
    stack.spawn(
        "worker", WORKER_CONCURRENCY=str(CONCURRENCY), NOTIFICATIONS_RETRY_ATTEMPTS=ATTEMPTS
    )
    await _started(stack, rt)
    async with rt.redis.pipeline(transaction=True) as pipe:
        pipe.lrange(sent_key("primary"), 0, -1)
        pipe.flushall()
        before, _ = await pipe.execute()
    assert 0 < len(before) < TOTAL, "the run was not in progress at the flush"
    assert await rt.redis.zcard("arq:queue") == 0
    took = await _drained(stack, rt)

    statuses = {
        r[0]: r[1]
        for r in await rt.db.fetch("SELECT status, count(*) FROM notifications GROUP BY 1")
    }
    assert statuses == {"sent": TOTAL}, statuses
    sends = [b.decode() for b in before] + await sent_ids(rt)
    assert set(sends) == ids
    assert len(sends) - len(ids) <= CONCURRENCY * queueing.MANY_CHUNK
    assert took <= DEADLINE


async def test_redis_restart_mid_run_delivers_everything(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, ids = await _seed(stack)
    worker = stack.spawn(
        "worker", WORKER_CONCURRENCY=str(CONCURRENCY), NOTIFICATIONS_RETRY_ATTEMPTS=ATTEMPTS
    )
    await _started(stack, rt)
    port = stack.redis.port
    assert port is not None
    stack.redis.stop()
    await asyncio.sleep(2)  # an outage, not a blip
    same_port(monkeypatch, port)
    stack.redis.start()
    assert stack.redis.port == port
    back = time.monotonic()
    await asyncio.sleep(0.5)
    if not worker.alive():  # see test_worker_survives_redis_outage; compose restarts it
        stack.spawn(
            "worker", WORKER_CONCURRENCY=str(CONCURRENCY), NOTIFICATIONS_RETRY_ATTEMPTS=ATTEMPTS
        )
    await _drained(stack, rt)
    took = time.monotonic() - back

    statuses = {
        r[0]: r[1]
        for r in await rt.db.fetch("SELECT status, count(*) FROM notifications GROUP BY 1")
    }
    assert statuses == {"sent": TOTAL}, statuses
    assert set(await sent_ids(rt)) <= ids
    assert took <= DEADLINE + 1


async def test_worker_survives_redis_outage(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    rt: Any = await stack.runtime()
    worker = stack.spawn("worker")

    async def ready() -> bool:
        if not worker.alive():
            pytest.fail("worker did not start:\n" + worker.output())
        return bool(await rt.redis.exists("arq:queue:health-check"))

    await wait_for(ready, 30, "the worker's first health check", stack)
    port = stack.redis.port
    assert port is not None
    stack.redis.stop()
    await asyncio.sleep(2)
    same_port(monkeypatch, port)
    stack.redis.start()
    await asyncio.sleep(3)
    assert worker.alive(), "the worker exited on a 2 s Redis outage"
    await add_test_provider(rt)
    outcome = await notifications.send(rt, email_request(), ADMIN)

    async def delivered() -> bool:
        return await sent_ids(rt) == [str(outcome.notification_id)]

    await wait_for(delivered, 10, "a send after the outage", stack)
