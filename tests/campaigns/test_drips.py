"""Drip sequences: steps scheduled at start + delay, opted-out steps skipped, cancel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from app.errors import Forbidden, NotFound
from app.models import Caller, Role
from app.services import drips
from app.store import notifications as store
from tests.campaigns.conftest import set_pref
from tests.core.helpers import ADMIN

STEPS = [
    {"day": 0, "subject": "Welcome!", "body": "Hi {{name}}", "variables": {"name": "Ada"}},
    {"day": 1, "subject": "Get started", "body": "Step 1"},
    {"delay_seconds": 3 * 86400, "subject": "Invite your team", "body": "Step 2",
     "category": "tips"},
    {"day": 14, "subject": "All set", "body": "Done"},
]  # fmt: skip


async def _steps(rt: Any, sequence_id: Any) -> list[Any]:
    return list(
        await rt.db.fetch(
            f"SELECT {store.NOTIFICATION_COLUMNS}, q.next_retry_at FROM notifications n"
            " LEFT JOIN notification_queue q ON q.notification_id = n.id"
            " WHERE n.metadata->>'sequence_id' = $1"
            " ORDER BY (n.metadata->>'sequence_step')::int",
            str(sequence_id),
        )
    )


async def test_steps_scheduled_at_start_plus_delay(rt: Any) -> None:
    user = uuid4()
    now = datetime.now(UTC).replace(microsecond=0)
    sequence_id = await drips.start(
        rt, ADMIN, user, {"email": "new@example.com"}, STEPS, "onboarding",
        category="onboarding", now=now,
    )  # fmt: skip
    steps = await _steps(rt, sequence_id)
    assert [s["status"] for s in steps] == ["queued", "scheduled", "scheduled", "scheduled"]
    offsets = [timedelta(0), timedelta(days=1), timedelta(days=3), timedelta(days=14)]
    assert [s["scheduled_at"] for s in steps] == [now + o for o in offsets]
    assert [s["next_retry_at"] for s in steps[1:]] == [now + o for o in offsets[1:]]
    assert steps[0]["body"] == "Hi Ada"
    assert [s["category"] for s in steps] == ["onboarding", "onboarding", "tips", "onboarding"]
    assert steps[2]["metadata"] == {
        "sequence_id": str(sequence_id), "sequence_step": 2, "sequence_name": "onboarding",
    }  # fmt: skip
    info = await drips.get(rt, Caller(role=Role.USER, user_id=user), sequence_id)
    assert info["steps"] == 4 and [i["step"] for i in info["items"]] == [0, 1, 2, 3]


async def test_opted_out_step_is_skipped_when_due(rt: Any) -> None:
    user = uuid4()
    sequence_id = await drips.start(rt, ADMIN, user, {"email": "x@example.com"}, STEPS, "onb")
    steps = await _steps(rt, sequence_id)
    await set_pref(rt, user, "tips", enabled=False)  # opted out of step 2's category
    # The clock reaches days 1 and 3: those queue rows are due and a worker claims them.
    await rt.db.execute(
        "UPDATE notification_queue SET next_retry_at = NOW() WHERE notification_id = ANY($1)",
        [steps[1]["id"], steps[2]["id"]],
    )
    claimed = await store.claim(rt.db, [steps[1]["id"], steps[2]["id"]], "w", 60)
    assert len(claimed) == 2
    wanted = await drips.filter_wanted(rt.db, claimed)
    assert [r["id"] for r in wanted] == [steps[1]["id"]]
    skipped = await rt.db.fetchrow("SELECT status, error FROM notifications WHERE id = $1",
                                   steps[2]["id"])  # fmt: skip
    assert skipped["status"] == "cancelled"
    assert skipped["error"] == "skipped: user opted out of email/tips"
    assert not await rt.db.fetchval(
        "SELECT count(*) FROM notification_queue WHERE notification_id = $1", steps[2]["id"]
    )
    assert await drips.still_wanted(rt.db, steps[1])
    assert not await drips.still_wanted(rt.db, {**dict(steps[3]), "category": "tips"})
    # Notifications outside a sequence are never touched by the hook.
    assert await drips.still_wanted(rt.db, {**dict(steps[2]), "metadata": {}})


async def test_cancel_remaining_steps(rt: Any) -> None:
    user = uuid4()
    owner = Caller(role=Role.USER, user_id=user)
    sequence_id = await drips.start(rt, owner, user, {"email": "y@example.com"}, STEPS, "onb")
    with pytest.raises(NotFound):
        await drips.cancel(rt, Caller(role=Role.USER, user_id=uuid4()), sequence_id)
    with pytest.raises(Forbidden):
        await drips.start(
            rt, Caller(role=Role.USER, user_id=uuid4()), user, {"email": "y@example.com"},
            STEPS, "onb",
        )  # fmt: skip
    assert await drips.cancel(rt, owner, sequence_id) == 4
    steps = await _steps(rt, sequence_id)
    assert {s["status"] for s in steps} == {"cancelled"}
    assert all(s["next_retry_at"] is None for s in steps)  # queue rows gone
    assert await drips.cancel(rt, owner, sequence_id) == 0
    # A cancelled sequence's step claimed late is skipped by the delivery hook too.
    assert not await drips.still_wanted(rt.db, steps[1])


async def test_bad_step_stores_nothing(rt: Any) -> None:
    steps = [{"day": 0, "body": "ok"}, {"day": 1, "template": "missing_template"}]
    with pytest.raises(NotFound):
        await drips.start(rt, ADMIN, uuid4(), {"email": "z@example.com"}, steps, "bad")
    assert await rt.db.fetchval("SELECT count(*) FROM notifications") == 0
    assert await rt.db.fetchval("SELECT count(*) FROM notification_sequences") == 0
