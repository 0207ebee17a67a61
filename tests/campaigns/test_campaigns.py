"""Campaigns: chunked acceptance, delivery by real ARQ workers, progress, cancel."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from app.errors import Forbidden, InvalidInput
from app.models import Caller, Role
from app.services import campaigns, delivery
from app.services import templates as template_service
from tests.campaigns.conftest import set_pref
from tests.conftest import run_worker
from tests.core.helpers import ADMIN, add_test_provider, sent_ids


async def _template(rt: Any) -> None:
    await template_service.create(
        rt, ADMIN, "spring_sale",
        {"subject": "{{name}}, spring sale", "body_text": "Hi {{name}}, {{discount}} off",
         "body_html": "<p>Hi {{name}}</p>", "variables": ["name", "discount"],
         "category": "marketing"},
    )  # fmt: skip


def _recipients(n: int) -> list[dict[str, Any]]:
    return [
        {
            "user_id": str(uuid4()),
            "to": {"email": f"User{i}@Example.COM"},
            "variables": {"name": f"u{i}"},
        }
        for i in range(n)
    ]


async def test_campaign_accepted_in_chunks_and_delivered(rt: Any) -> None:
    await add_test_provider(rt)
    await _template(rt)
    recipients = _recipients(3000)
    recipients[10]["to"] = {"email": "not-an-address"}
    recipients[11] = {"to": {"email": "a@example.com"}}  # no user_id
    recipients[12]["variables"] = {}  # missing required `name`
    recipients.append(dict(recipients[0]))  # listed twice: one notification
    seen: list[tuple[int, int, int]] = []
    campaign_id = await campaigns.create(
        rt, ADMIN, "spring", "spring_sale", "email", iter(recipients),
        variables={"discount": "20%"}, chunk=700, on_progress=lambda *a: seen.append(a),
    )  # fmt: skip
    progress = await campaigns.progress(rt, ADMIN, campaign_id)
    assert progress["total"] == 3001 and progress["rejected"] == 3
    assert progress["accepted"] == 2997 and progress["duplicates"] == 1  # listed twice: once
    assert progress["counts"] == {} and progress["staged"] == 2997  # staged, not yet expanded
    assert progress["state"] == "running" and not progress["done"]
    assert {e["index"] for e in progress["errors"]} == {10, 11, 12}
    assert seen[-1] == (3001, 2997, 3) and len(seen) >= 5
    # one expansion job per 1,000 staged recipients
    assert await rt.redis.zcard("arq:queue") == 3
    assert await campaigns.expand_chunk(rt, campaign_id, 0) == 1000
    assert await campaigns.expand_chunk(rt, campaign_id, 0) == 0  # expanding twice is a no-op
    progress = await campaigns.progress(rt, ADMIN, campaign_id)
    assert progress["counts"] == {"queued": 1000} and progress["staged"] == 1997
    # deliver_many jobs, 100 notifications each, beside the two remaining expansions
    await rt.settle()
    assert await rt.redis.zcard("arq:queue") == 3 + 10
    row = await rt.db.fetchrow(
        "SELECT * FROM notifications WHERE campaign_id = $1 AND to_address = 'User5@example.com'",
        campaign_id,
    )
    assert row["subject"] == "u5, spring sale" and row["body"] == "Hi u5, 20% off"
    assert row["category"] == "marketing" and row["template_name"] == "spring_sale"

    await run_worker(rt, max_jobs=10)
    stats = await campaigns.stats(rt, ADMIN, campaign_id)
    assert stats["counts"] == {"sent": 2997} and stats["done"] and stats["state"] == "completed"
    assert stats["sent"] == 2997 and stats["pending"] == 0
    delivered = await sent_ids(rt)
    assert len(delivered) == len(set(delivered)) == 2997


async def test_campaign_applies_preferences(rt: Any) -> None:
    await _template(rt)
    recipients = _recipients(3)
    await set_pref(rt, recipients[0]["user_id"], "marketing", enabled=False)
    await set_pref(rt, recipients[1]["user_id"], "marketing", frequency="weekly")
    campaign_id = await campaigns.create(
        rt, ADMIN, "prefs", "spring_sale", "email", recipients, variables={"discount": "5%"}
    )
    assert await campaigns.expand_due(rt) == 3
    counts = (await campaigns.progress(rt, ADMIN, campaign_id))["counts"]
    assert counts == {"suppressed": 1, "batched": 1, "queued": 1}


async def test_cancel_midway(rt: Any) -> None:
    await add_test_provider(rt)
    campaign_id = await campaigns.create(
        rt, ADMIN, "inline", None, "email", _recipients(2000),
        subject="Hello {{name}}", body="Hi {{name}}",
    )  # fmt: skip
    assert await campaigns.expand_due(rt) == 2000
    first = [
        r["id"]
        for r in await rt.db.fetch(
            "SELECT id FROM notifications WHERE campaign_id = $1 ORDER BY id LIMIT 500",
            campaign_id,
        )
    ]
    await delivery.deliver_ids(rt, first)  # a worker got through a quarter of it
    result = await campaigns.cancel(rt, ADMIN, campaign_id)
    assert result["cancelled"] == 1500 and result["status"] == "cancelled"
    assert await rt.db.fetchval("SELECT count(*) FROM notification_queue") == 0
    await run_worker(rt)  # the remaining jobs find nothing to send
    counts = (await campaigns.progress(rt, ADMIN, campaign_id))["counts"]
    assert counts == {"sent": 500, "cancelled": 1500}
    assert len(await sent_ids(rt)) == 500
    with pytest.raises(Exception, match="already cancelled"):
        await campaigns.cancel(rt, ADMIN, campaign_id)


async def test_cancel_stops_acceptance(rt: Any) -> None:
    async def recipients() -> Any:
        for i, item in enumerate(_recipients(3000)):
            if i == 1500:  # the operator cancels while the list is still being read
                row = await rt.db.fetchrow("SELECT id FROM notification_campaigns")
                await campaigns.cancel(rt, ADMIN, row["id"])
            yield item

    campaign_id = await campaigns.create(
        rt, ADMIN, "stop", None, "email", recipients(), body="Hi", chunk=500
    )
    progress = await campaigns.progress(rt, ADMIN, campaign_id)
    assert progress["status"] == "cancelled"
    assert progress["total"] < 3000
    # nothing was expanded into notifications, and nothing will be
    assert progress["counts"] == {} and progress["staged"] == 0 and progress["done"]
    assert await campaigns.expand_due(rt) == 0
    assert await rt.db.fetchval("SELECT count(*) FROM notification_queue") == 0


async def test_only_privileged_callers_and_bad_content(rt: Any) -> None:
    user = Caller(role=Role.USER, user_id=uuid4())
    with pytest.raises(Forbidden):
        await campaigns.create(rt, user, "x", None, "email", [], body="Hi")
    with pytest.raises(InvalidInput):
        await campaigns.create(rt, ADMIN, "x", None, "fax", [], body="Hi")
    with pytest.raises(InvalidInput):
        await campaigns.create(rt, ADMIN, "x", None, "email", [], body="{{#if}")
    assert await rt.db.fetchval("SELECT count(*) FROM notification_campaigns") == 0


async def test_lost_expansion_jobs_are_recovered_by_the_sweep(rt: Any) -> None:
    from app.services import recovery

    await add_test_provider(rt)
    campaign_id = await campaigns.create(
        rt, ADMIN, "lost", None, "email", _recipients(1500), body="Hi {{name}}"
    )
    await rt.redis.flushdb()  # Redis loses the expansion jobs
    await rt.db.execute(
        "UPDATE notification_campaign_chunks SET created_at = NOW() - interval '1 hour'"
    )
    await recovery.sweep(rt)
    assert await rt.redis.zcard("arq:queue") == 2
    await run_worker(rt)
    stats = await campaigns.stats(rt, ADMIN, campaign_id)
    assert stats["counts"] == {"sent": 1500} and stats["done"]
    assert len(set(await sent_ids(rt))) == 1500


async def test_postgres_backend_expands_and_delivers(make_rt: Any) -> None:
    from workers import pg_queue

    rt = await make_rt(queue_backend="postgres")
    await add_test_provider(rt)
    campaign_id = await campaigns.create(
        rt, ADMIN, "pg", None, "email", _recipients(1200), body="Hi {{name}}"
    )
    assert await rt.redis.zcard("arq:queue") == 0  # no ARQ jobs with this backend
    for _ in range(200):
        if (await campaigns.progress(rt, ADMIN, campaign_id))["done"]:
            break
        await pg_queue.poll_once(rt)
    stats = await campaigns.stats(rt, ADMIN, campaign_id)
    assert stats["counts"] == {"sent": 1200}
