"""`notifications gdpr export|delete`: one user's data out, erased or anonymised, audit-logged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.cli.conftest import Cli, hours_ago, seed_notification

ALICE = UUID("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa")
BOB = UUID("bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb")


@pytest.fixture
async def people(db: Any) -> dict[str, UUID]:
    ids = {
        "alice_sent": await seed_notification(
            db, user_id=ALICE, to_address="alice@example.com", subject="Your invoice",
            body="Dear Alice", body_html="<p>Dear Alice</p>", variables={"name": "Alice"},
            recipient={"email": "alice@example.com"}, status="delivered",
            created_at=hours_ago(2)),
        "alice_queued": await seed_notification(
            db, user_id=ALICE, to_address="alice@example.com", status="queued", provider=None),
        "bob": await seed_notification(db, user_id=BOB, to_address="bob@example.com"),
    }  # fmt: skip
    await db.execute("INSERT INTO notification_queue (notification_id) VALUES ($1), ($2)",
                     ids["alice_queued"], ids["bob"])  # fmt: skip
    await db.execute(
        "INSERT INTO notification_events (notification_id, provider, provider_event_id,"
        " event_type, payload) VALUES ($1, 'resend', 'evt-1', 'delivered', $2),"
        " ($3, 'resend', 'evt-2', 'delivered', $4)",
        ids["alice_sent"],
        {"to": "alice@example.com"},
        ids["bob"],
        {"to": "bob@example.com"},
    )
    await db.execute(
        "INSERT INTO notification_preferences (user_id, channel, category, enabled)"
        " VALUES ($1, 'email', 'marketing', false), ($2, 'email', NULL, true)",
        ALICE,
        BOB,
    )
    return ids


async def audit(db: Any) -> list[Any]:
    return list(await db.fetch(
        "SELECT action, user_id, actor, target_type, target_id, details"
        " FROM notification_audit_log ORDER BY created_at"))  # fmt: skip


async def test_export(cli: Cli, db: Any, people: dict[str, UUID], tmp_path: Path) -> None:
    out = tmp_path / "alice.json"
    result = await cli("gdpr", "export", str(ALICE), str(out))
    assert result.exit_code == 0, result.output
    assert "exported 2 notification(s), 1 preference(s), 1 event(s)" in result.stderr
    data = json.loads(out.read_text())
    assert data["user_id"] == str(ALICE)
    assert {n["id"] for n in data["notifications"]} == {
        str(people["alice_sent"]), str(people["alice_queued"])}  # fmt: skip
    assert all(n["user_id"] == str(ALICE) for n in data["notifications"])
    assert data["preferences"][0]["category"] == "marketing"
    assert data["events"][0]["provider_event_id"] == "evt-1"
    assert data["events"][0]["payload"] == {"to": "alice@example.com"}

    stdout = await cli("gdpr", "export", str(ALICE), "-")
    assert json.loads(stdout.stdout)["user_id"] == str(ALICE)
    (entry, _) = await audit(db)
    assert entry["action"] == "gdpr.export" and entry["user_id"] == ALICE
    assert entry["actor"] == "admin:cli" and entry["target_id"] == str(ALICE)
    assert entry["details"] == {"notifications": 2, "preferences": 1, "events": 1}


async def test_delete(cli: Cli, db: Any, people: dict[str, UUID]) -> None:
    result = await cli("gdpr", "delete", str(ALICE), "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "user_id": str(ALICE), "mode": "deleted", "notifications": 2, "events": 1, "queue": 1,
        "preferences": 1,
    }  # fmt: skip
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE user_id = $1", ALICE) == 0
    assert await db.fetchval("SELECT count(*) FROM notification_preferences WHERE user_id = $1",
                             ALICE) == 0  # fmt: skip
    assert await db.fetchval("SELECT count(*) FROM notification_events") == 1  # Bob's
    assert await db.fetchval("SELECT count(*) FROM notification_queue") == 1  # Bob's
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE user_id = $1", BOB) == 1
    (entry,) = await audit(db)
    assert entry["action"] == "gdpr.delete" and entry["user_id"] == ALICE
    assert entry["details"]["notifications"] == 2

    again = await cli("gdpr", "delete", str(ALICE), "--yes")
    assert again.exit_code == 0 and "0 notification(s)" in again.stdout


async def test_anonymise(cli: Cli, db: Any, people: dict[str, UUID]) -> None:
    result = await cli("gdpr", "delete", str(ALICE), "--anonymise", input="y\n")
    assert result.exit_code == 0, result.output
    assert "anonymised user" in result.stdout
    rows = {r["id"]: r for r in await db.fetch(
        "SELECT * FROM notifications WHERE user_id = $1", ALICE)}  # fmt: skip
    assert len(rows) == 2  # kept for statistics
    sent = rows[people["alice_sent"]]
    assert sent["to_address"] == "[redacted]" and sent["recipient"] == {"redacted": True}
    assert (sent["subject"], sent["body"], sent["body_html"]) == ("[redacted]",) * 3
    assert sent["variables"] == {} and sent["status"] == "delivered"
    assert rows[people["alice_queued"]]["status"] == "cancelled"
    assert await db.fetchval(
        "SELECT payload FROM notification_events WHERE provider_event_id = 'evt-1'"
    ) == {"redacted": True}
    assert await db.fetchval(
        "SELECT payload FROM notification_events WHERE provider_event_id = 'evt-2'"
    ) == {"to": "bob@example.com"}
    assert await db.fetchval("SELECT count(*) FROM notification_queue") == 1  # Bob's only
    assert await db.fetchval("SELECT count(*) FROM notification_preferences") == 1
    bob = await db.fetchrow("SELECT * FROM notifications WHERE user_id = $1", BOB)
    assert bob["to_address"] == "bob@example.com"
    (entry,) = await audit(db)
    assert entry["action"] == "gdpr.anonymise" and entry["details"]["notifications"] == 2


async def test_refusal_and_bad_id(cli: Cli, db: Any, people: dict[str, UUID]) -> None:
    aborted = await cli("gdpr", "delete", str(ALICE), input="n\n")
    assert aborted.exit_code == 1
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE user_id = $1", ALICE) == 2
    assert await audit(db) == []
    bad = await cli("gdpr", "export", "not-a-uuid", "-")
    assert bad.exit_code == 2
