"""The spec's tables and views exist with the spec's columns; migrations are idempotent."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from pathlib import Path
from uuid import uuid4

import asyncpg

from app.store.migrate import discover, migrate

SPEC = Path(__file__).resolve().parents[3] / "shared" / "seed" / "notifications-plugin-spec.md"
if not SPEC.exists():  # CI lays shared/ beside the clone
    SPEC = (
        Path(__file__).resolve().parents[2].parent
        / "shared"
        / "seed"
        / "notifications-plugin-spec.md"
    )

SPEC_COLUMNS = {
    "notification_templates": [
        "id",
        "name",
        "category",
        "channels",
        "subject",
        "body_text",
        "body_html",
        "variables",
        "active",
        "created_at",
        "updated_at",
    ],
    "notification_preferences": [
        "id",
        "user_id",
        "channel",
        "category",
        "enabled",
        "frequency",
        "quiet_hours",
        "created_at",
        "updated_at",
    ],
    "notifications": [
        "id",
        "user_id",
        "channel",
        "template_name",
        "to_address",
        "subject",
        "body",
        "variables",
        "status",
        "provider",
        "provider_id",
        "error",
        "retry_count",
        "sent_at",
        "delivered_at",
        "opened_at",
        "clicked_at",
        "created_at",
    ],
    "notification_queue": [
        "id",
        "notification_id",
        "priority",
        "attempts",
        "max_attempts",
        "next_retry_at",
        "locked_at",
        "locked_by",
        "created_at",
    ],
    "notification_providers": [
        "id",
        "name",
        "channel",
        "priority",
        "config",
        "enabled",
        "last_success_at",
        "last_failure_at",
        "failure_count",
        "created_at",
    ],
    "notification_batches": [
        "id",
        "name",
        "category",
        "interval_seconds",
        "config",
        "last_sent_at",
        "created_at",
    ],
    "notification_delivery_rates": [
        "channel",
        "total",
        "delivered",
        "failed",
        "bounced",
        "delivery_rate_pct",
    ],
    "notification_engagement": [
        "template_name",
        "total_sent",
        "opened",
        "clicked",
        "open_rate_pct",
        "click_rate_pct",
    ],
    "notification_provider_health": [
        "name",
        "channel",
        "enabled",
        "priority",
        "failure_count",
        "last_success_at",
        "last_failure_at",
    ],
    "notification_user_summary": [
        "user_id",
        "total_notifications",
        "email_count",
        "push_count",
        "sms_count",
        "last_notification_at",
    ],
    "notification_queue_backlog": ["total_queued", "processing", "pending", "oldest_queued_at"],
}

SPEC_INDEXES = [
    "idx_notification_templates_name",
    "idx_notification_templates_category",
    "idx_notification_preferences_user_channel",
    "idx_notifications_user",
    "idx_notifications_status",
    "idx_notifications_channel",
    "idx_notifications_created",
    "idx_notification_queue_priority",
    "idx_notification_queue_retry",
]


def test_column_lists_match_the_spec_text() -> None:
    """Our expected lists are the spec's own CREATE TABLE columns (read from the spec)."""
    if not SPEC.exists():
        return
    text = SPEC.read_text()
    for table in ("notification_templates", "notifications", "notification_queue"):
        body = re.search(rf"CREATE TABLE {table} \((.*?)\n\);", text, re.S)
        assert body, table
        names = [line.split()[0] for line in body.group(1).strip().splitlines() if line.strip()]
        assert names == SPEC_COLUMNS[table]


async def test_every_spec_table_and_view_has_the_spec_columns(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for relation, expected in SPEC_COLUMNS.items():
            rows = await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = $1"
                " ORDER BY ordinal_position",
                relation,
            )
            columns = [r["column_name"] for r in rows]
            assert columns[: len(expected)] == expected, relation
        indexes = {r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes")}
        assert set(SPEC_INDEXES) <= indexes
        default = await conn.fetchval(
            "SELECT column_default FROM information_schema.columns"
            " WHERE table_name = 'notifications' AND column_name = 'id'"
        )
        assert "gen_random_uuid" in default
    finally:
        await conn.close()


async def test_migrations_are_idempotent_and_safe_concurrently(servers: tuple[str, str]) -> None:
    server_dsn, _ = servers
    name = f"notif_mig_{uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = server_dsn.rpartition("/")[0] + "/" + name
    try:
        results = await asyncio.gather(migrate(url), migrate(url), migrate(url))
        applied = [r for r in results if r]
        assert len(applied) == 1 and applied[0] == [m.version for m in discover()]
        assert applied[0][0] == "0001_init"
        assert await migrate(url) == []
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(discover())
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_views_compute_the_spec_figures(database_url: str, clean: None) -> None:
    conn = await asyncpg.connect(database_url)
    user_a, user_b = uuid4(), uuid4()
    rows = [
        (user_a, "email", "welcome", "delivered", True, True),
        (user_a, "email", "welcome", "delivered", True, False),
        (user_a, "email", "welcome", "delivered", False, False),
        (user_a, "email", "welcome", "failed", False, False),
        (user_b, "sms", None, "bounced", False, False),
        (user_b, "push", None, "queued", False, False),
    ]
    try:
        for user, channel, template, status, opened, clicked in rows:
            nid = await conn.fetchval(
                """INSERT INTO notifications (user_id, channel, template_name, status,
                   opened_at, clicked_at) VALUES ($1, $2, $3, $4,
                   CASE WHEN $5 THEN NOW() END, CASE WHEN $6 THEN NOW() END) RETURNING id""",
                user,
                channel,
                template,
                status,
                opened,
                clicked,
            )
            if status == "queued":
                await conn.execute(
                    "INSERT INTO notification_queue (notification_id) VALUES ($1)", nid
                )
        rates = {
            r["channel"]: r for r in await conn.fetch("SELECT * FROM notification_delivery_rates")
        }
        assert rates["email"]["total"] == 4 and rates["email"]["delivered"] == 3
        assert rates["email"]["failed"] == 1
        assert rates["email"]["delivery_rate_pct"] == Decimal("75.00")
        assert rates["sms"]["bounced"] == 1
        engagement = await conn.fetchrow("SELECT * FROM notification_engagement")
        assert engagement["total_sent"] == 3 and engagement["opened"] == 2
        assert engagement["open_rate_pct"] == Decimal("66.67")
        assert engagement["click_rate_pct"] == Decimal("50.00")
        summary = {
            r["user_id"]: r for r in await conn.fetch("SELECT * FROM notification_user_summary")
        }
        assert summary[user_a]["total_notifications"] == 4 and summary[user_a]["email_count"] == 4
        assert summary[user_b]["sms_count"] == 1 and summary[user_b]["push_count"] == 1
        backlog = await conn.fetchrow("SELECT * FROM notification_queue_backlog")
        assert backlog["total_queued"] == 1 and backlog["pending"] == 1
    finally:
        await conn.close()
