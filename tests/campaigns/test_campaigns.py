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
    assert progress["accepted"] == 2998  # the duplicate is accepted as the same notification
    assert progress["counts"] == {"queued": 2997}
    assert progress["state"] == "running" and not progress["done"]
    assert {e["index"] for e in progress["errors"]} == {10, 11, 12}
    assert seen[-1] == (3001, 2998, 3) and len(seen) >= 5
    row = await rt.db.fetchrow(
        "SELECT * FROM notifications WHERE campaign_id = $1 AND to_address = 'User5@example.com'",
        campaign_id,
    )
    assert row["subject"] == "u5, spring sale" and row["body"] == "Hi u5, 20% off"
    assert row["category"] == "marketing" and row["template_name"] == "spring_sale"
    # deliver_many jobs, 100 notifications each
    assert await rt.redis.zcard("arq:queue") == 30

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
    counts = (await campaigns.progress(rt, ADMIN, campaign_id))["counts"]
    assert counts == {"suppressed": 1, "batched": 1, "queued": 1}


async def test_cancel_midway(rt: Any) -> None:
    await add_test_provider(rt)
    campaign_id = await campaigns.create(
        rt, ADMIN, "inline", None, "email", _recipients(2000),
        subject="Hello {{name}}", body="Hi {{name}}",
    )  # fmt: skip
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
    holder: dict[str, Any] = {}

    def recipients() -> Any:
        for i, item in enumerate(_recipients(3000)):
            if i == 1500:  # the operator cancels while the list is still being read
                holder["cancel"] = True
            yield item

    async def watcher() -> None:
        import asyncio

        while "cancel" not in holder:
            await asyncio.sleep(0.001)
        row = await rt.db.fetchrow("SELECT id FROM notification_campaigns")
        await campaigns.cancel(rt, ADMIN, row["id"])

    import asyncio

    task = asyncio.create_task(watcher())
    campaign_id = await campaigns.create(
        rt, ADMIN, "stop", None, "email", recipients(), body="Hi", chunk=500
    )
    await task
    progress = await campaigns.progress(rt, ADMIN, campaign_id)
    assert progress["status"] == "cancelled"
    assert progress["total"] < 3000
    assert set(progress["counts"]) == {"cancelled"}
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
