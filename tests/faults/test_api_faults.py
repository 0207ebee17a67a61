"""The API process under faults: PostgreSQL restarted mid-run, the API itself SIGKILLed.

Clients keep POSTing /api/notifications/send (and send-batch) from a few concurrent
loops while the fault happens; every answer is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from app.embedded import free_port
from tests.core.helpers import add_test_provider
from tests.faults.conftest import Proc, Stack, same_port, wait_for

pytestmark = pytest.mark.slow

API_KEY = "fault-key-0123456789abcdef"
HEADERS = {"X-API-Key": API_KEY}


def one(i: int) -> dict[str, Any]:
    return {
        "user_id": str(uuid.uuid4()),
        "channel": "email",
        "to": {"email": f"u{i}@example.com"},
        "subject": f"fault {i}",
        "body": f"body {i}",
    }


def batch_body(n: int, size: int) -> dict[str, Any]:
    return {
        "channel": "email",
        "subject": f"batch {n}",
        "body": "hello {{name}}",
        "recipients": [
            {
                "user_id": str(uuid.uuid4()),
                "to": {"email": f"b{n}-{k}@example.com"},
                "variables": {"name": f"n{k}"},
            }
            for k in range(size)
        ],
    }


@dataclass
class Load:
    """Concurrent senders; what every request got back."""

    base: str
    batch: int = 0  # > 0: also send-batch requests of this many items
    statuses: list[int] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # 5xx that is not a 503 problem
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    counter: int = 0

    async def _loop(self, session: aiohttp.ClientSession, use_batch: bool) -> None:
        while not self.stop.is_set():
            self.counter += 1
            n = self.counter
            if use_batch:
                url, body = "/api/notifications/send-batch", batch_body(n, self.batch)
            else:
                url, body = "/api/notifications/send", one(n)
            try:
                async with session.post(self.base + url, json=body, headers=HEADERS) as resp:
                    text = await resp.text()
                    self.statuses.append(resp.status)
                    self._record(resp, text)
            except (TimeoutError, aiohttp.ClientError):
                self.statuses.append(0)  # connection refused/reset: the process is gone
                await asyncio.sleep(0.05)

    def _record(self, resp: aiohttp.ClientResponse, text: str) -> None:
        import json

        if resp.status >= 500:
            ok_503 = (
                resp.status == 503
                and resp.content_type == "application/problem+json"
                and json.loads(text).get("code") == "UNAVAILABLE"
            )
            if not ok_503:
                self.bad.append((resp.status, resp.content_type, text[:300]))
            return
        if 200 <= resp.status < 300:
            data = json.loads(text)
            items = data.get("results") if isinstance(data, dict) and "results" in data else None
            for item in items if items is not None else [data]:
                if item.get("success") and item.get("notification_id"):
                    self.accepted.add(item["notification_id"])

    @contextlib.asynccontextmanager
    async def running(self, senders: int = 4) -> Any:
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tasks = [
                asyncio.create_task(self._loop(session, bool(self.batch) and i % 2 == 1))
                for i in range(senders)
            ]
            try:
                yield self
            finally:
                self.stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)


async def start_api(stack: Stack) -> tuple[Proc, str]:
    port = free_port()
    proc = stack.spawn("server", PORT=str(port), HOST="127.0.0.1", NOTIFICATIONS_API_KEYS=API_KEY)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:

        async def healthy() -> bool:
            if not proc.alive():
                pytest.fail("the API did not start:\n" + proc.output())
            async with session.get(base + "/health") as resp:
                return resp.status == 200

        await wait_for(healthy, 30, "the API's /health", stack)
    return proc, base


async def start_worker(stack: Stack) -> Proc:
    from redis.asyncio import Redis

    proc = stack.spawn("worker")
    client = Redis.from_url(stack.redis_url)
    try:

        async def ready() -> bool:
            if not proc.alive():
                pytest.fail("the worker did not start:\n" + proc.output())
            return bool(await client.exists("arq:queue:health-check"))

        await wait_for(ready, 30, "the worker's first health check", stack)
    finally:
        await client.aclose()
    return proc


async def status_of(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with session.request(method, url, **kw) as resp:
        return resp.status, resp.content_type, await resp.json(content_type=None)


async def test_postgres_restart_api_answers_503_and_nothing_is_lost(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt: Any = await stack.runtime()
    await add_test_provider(rt)
    await rt.close()  # its pool would only see the restart; checks use fresh connections
    stack.managers.clear()
    _, base = await start_api(stack)
    worker = await start_worker(stack)
    load = Load(base)  # single sends; send-batch: test_send_batch_while_postgres_is_down
    async with load.running(), aiohttp.ClientSession() as session:
        await wait_for(lambda: _true(len(load.accepted) >= 100), 30, "accepted sends", stack)
        port = stack.pg.port
        assert port is not None
        stack.pg.stop()
        down_at = len(load.statuses)
        await asyncio.sleep(1.0)
        health = await status_of(session, "GET", base + "/health")
        send = await status_of(
            session, "POST", base + "/api/notifications/send", json=one(-1), headers=HEADERS
        )
        await asyncio.sleep(1.0)
        during = load.statuses[down_at:]
        same_port(monkeypatch, port)
        stack.pg.start()
        assert stack.pg.port == port
        up_at = time.monotonic()

        async def accepting_again() -> bool:
            return 200 in load.statuses[down_at + len(during) :]

        await wait_for(accepting_again, 20, "the API to accept again after the restart", stack)
        recovered_in = time.monotonic() - up_at
        await asyncio.sleep(1.0)

    assert health[0] == 503 and health[2]["database"] != "ok", health
    assert send[0] == 503 and send[1] == "application/problem+json", send
    assert send[2]["code"] == "UNAVAILABLE", send
    assert 503 in during, sorted(set(during))
    if load.bad:  # never a 500 nor a non-UNAVAILABLE 5xx
        raise AssertionError(f"{len(load.bad)} bad 5xx answer(s): {load.bad[:2]}\n{stack.logs()}")
    assert recovered_in < 20

    conn = await stack.connect()
    try:
        accepted = [uuid.UUID(i) for i in load.accepted]

        async def all_sent() -> bool:
            left = await conn.fetchval("SELECT count(*) FROM notification_queue")
            return bool(left == 0)

        await wait_for(all_sent, 30, "the worker to deliver everything after the restart", stack)
        found = await conn.fetch(
            "SELECT id, status FROM notifications WHERE id = ANY($1::uuid[])", accepted
        )
        assert len(found) == len(accepted), "an accepted notification is missing from the table"
        assert {r["status"] for r in found} == {"sent"}
        assert worker.alive(), "the worker exited on the PostgreSQL restart:\n" + worker.output()
    finally:
        await conn.close()


async def _true(value: bool) -> bool:
    return value


async def test_api_sigkill_under_load_leaves_no_half_written_rows(stack: Stack) -> None:
    api, base = await start_api(stack)
    load = Load(base, batch=50)
    async with load.running(senders=6):
        await wait_for(lambda: _true(len(load.accepted) >= 300), 30, "accepted sends", stack)
        api.kill9()
        await asyncio.sleep(0.3)
    assert load.statuses.count(0) >= 1, "no request was cut off by the kill"
    assert not load.bad, load.bad[:3]

    conn = await stack.connect()
    try:
        orphans = await conn.fetchval(
            """
            SELECT count(*) FROM notification_queue q
            LEFT JOIN notifications n ON n.id = q.notification_id
            WHERE n.id IS NULL OR n.status NOT IN ('queued', 'scheduled')
            """
        )
        missing = await conn.fetchval(
            """
            SELECT count(*) FROM notifications n
            WHERE n.status IN ('queued', 'scheduled')
              AND (SELECT count(*) FROM notification_queue q WHERE q.notification_id = n.id) <> 1
            """
        )
        queued = await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE status IN ('queued', 'scheduled')"
        )
        queue_rows = await conn.fetchval("SELECT count(*) FROM notification_queue")
        stored = {str(r["id"]) for r in await conn.fetch("SELECT id FROM notifications")}
    finally:
        await conn.close()
    assert orphans == 0 and missing == 0
    assert queue_rows == queued >= len(load.accepted)
    assert load.accepted <= stored  # every 2xx answer is in the table


async def test_send_batch_while_postgres_is_down_answers_503(stack: Stack) -> None:
    _, base = await start_api(stack)
    stack.pg.stop()
    async with aiohttp.ClientSession() as session:
        single = await status_of(
            session, "POST", base + "/api/notifications/send", json=one(1), headers=HEADERS
        )
        batch = await status_of(
            session,
            "POST",
            base + "/api/notifications/send-batch",
            json=batch_body(1, 3),
            headers=HEADERS,
        )
    assert single[0] == 503 and single[2]["code"] == "UNAVAILABLE", single
    assert batch[0] == 503, batch
    assert batch[1] == "application/problem+json" and batch[2]["code"] == "UNAVAILABLE", batch
