"""`notifications stats ...` over seeded rows: figures via --json, tables, chart and exports."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.cli.conftest import Cli, hours_ago, seed_notification

USER = UUID("11111111-1111-4111-8111-111111111111")


@pytest.fixture
async def seeded(db: Any) -> dict[str, UUID]:
    ids = {
        "opened_clicked": await seed_notification(
            db, user_id=USER, template_name="welcome", status="delivered",
            created_at=hours_ago(1), opened_at=hours_ago(0.9), clicked_at=hours_ago(0.8)),
        "opened": await seed_notification(
            db, user_id=USER, template_name="welcome", status="delivered",
            created_at=hours_ago(2), opened_at=hours_ago(1.5)),
        "failed": await seed_notification(
            db, template_name="welcome", status="failed", error="mailbox full",
            created_at=hours_ago(3), failed_at=hours_ago(2.9)),
        "sms": await seed_notification(
            db, user_id=USER, channel="sms", to_address="+14155550100",
            recipient={"phone": "+14155550100"}, status="sent", provider="twilio",
            created_at=hours_ago(1)),
        "bounced": await seed_notification(
            db, template_name="receipt", status="bounced", error="550 no such user",
            created_at=hours_ago(5), bounced_at=hours_ago(4.9)),
        "old": await seed_notification(
            db, template_name="welcome", status="delivered", created_at=hours_ago(40 * 24)),
        "queued": await seed_notification(db, status="queued", provider=None),
    }  # fmt: skip
    await db.execute("INSERT INTO notification_queue (notification_id) VALUES ($1)", ids["queued"])
    await db.execute(
        "INSERT INTO notification_providers (name, channel, priority, config, failure_count)"
        " VALUES ('resend', 'email', 5, '{}', 2), ('twilio', 'sms', 0, '{}', 0)"
    )
    return ids


async def test_overview(cli: Cli, seeded: dict[str, UUID]) -> None:
    data = await cli.json("stats", "overview")
    assert data["total"] == 7 and data["last_24h"] == 6
    assert data["by_status"] == {"bounced": 1, "delivered": 3, "failed": 1, "queued": 1, "sent": 1}
    assert data["queue"]["total_queued"] == 1 and data["queue"]["pending"] == 1
    table = await cli("stats", "overview")
    assert table.exit_code == 0 and "by_status" in table.stdout and "delivered" in table.stdout


async def test_delivery_and_engagement(cli: Cli, seeded: dict[str, UUID]) -> None:
    rows = {r["channel"]: r for r in await cli.json("stats", "delivery", "30")}
    assert rows["email"] == {
        "channel": "email", "total": 5, "sent": 2, "delivered": 2, "failed": 1, "bounced": 1,
        "delivery_rate_pct": 40.0,
    }  # fmt: skip
    assert rows["sms"]["total"] == 1 and rows["sms"]["sent"] == 1
    all_time = {r["channel"]: r for r in await cli.json("stats", "delivery", "365")}
    assert all_time["email"]["total"] == 6

    (welcome,) = await cli.json("stats", "engagement", "7")
    assert welcome["template_name"] == "welcome"
    assert (welcome["total_sent"], welcome["opened"], welcome["clicked"]) == (2, 2, 1)
    assert (welcome["open_rate_pct"], welcome["click_rate_pct"]) == (100.0, 50.0)

    bad = await cli("stats", "delivery", "0")
    assert bad.exit_code == 2 and "days must be between" in bad.stderr


async def test_templates_failures_providers_user(cli: Cli, seeded: dict[str, UUID]) -> None:
    usage = await cli.json("stats", "templates", "20")
    assert [(r["template_name"], r["total"], r["failed"]) for r in usage] == [
        ("welcome", 4, 1), ("receipt", 1, 1),
    ]  # fmt: skip
    failures = await cli.json("stats", "failures", "50")
    assert [f["id"] for f in failures] == [str(seeded["failed"]), str(seeded["bounced"])]
    assert failures[0]["error"] == "mailbox full"
    assert len(await cli.json("stats", "failures", "1")) == 1

    providers = await cli.json("stats", "providers")
    assert [(p["name"], p["failure_count"]) for p in providers] == [("resend", 2), ("twilio", 0)]
    summary = await cli.json("stats", "user", str(USER))
    assert (summary["total_notifications"], summary["email_count"], summary["sms_count"]) == (
        3,
        2,
        1,
    )
    table = await cli("stats", "failures")
    assert "mailbox full" in table.stdout


async def test_hourly_chart(cli: Cli, seeded: dict[str, UUID]) -> None:
    rows = await cli.json("stats", "hourly", "6")
    assert len(rows) == 6 and sum(r["total"] for r in rows) == 6
    chart = await cli("stats", "hourly", "6")
    assert chart.exit_code == 0, chart.output
    assert "█" in chart.stdout and "hourly volume, last 6 hours" in chart.stdout
    assert chart.stdout.count("\n") >= 7  # title, header, one line per hour


async def test_export_csv_and_json(cli: Cli, seeded: dict[str, UUID], tmp_path: Path) -> None:
    out = tmp_path / "notifications.csv"
    result = await cli("stats", "export", "csv", str(out), "--days", "30")
    assert result.exit_code == 0, result.output
    assert "wrote 6 notification(s)" in result.stderr
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["id"] for r in rows} == {str(v) for k, v in seeded.items() if k != "old"}
    by_id = {r["id"]: r for r in rows}
    assert by_id[str(seeded["sms"])]["to_address"] == "+14155550100"
    assert by_id[str(seeded["failed"])]["error"] == "mailbox full"
    assert by_id[str(seeded["queued"])]["provider"] == ""
    assert rows == sorted(rows, key=lambda r: r["created_at"])  # oldest first

    out_json = tmp_path / "stats.json"
    result = await cli("stats", "export", "json", str(out_json), "--days", "365")
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    assert data["days"] == 365 and data["overview"]["total"] == 7
    assert {r["channel"] for r in data["delivery"]} == {"email", "sms"}
    assert len(data["notifications"]) == 7
    assert {n["status"] for n in data["notifications"]} >= {"delivered", "failed", "queued"}


async def test_export_empty_and_bad_arguments(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "none.json"
    result = await cli("stats", "export", "json", str(path))
    assert result.exit_code == 0, result.output
    assert json.loads(path.read_text())["notifications"] == []
    csv_path = tmp_path / "none.csv"
    await cli("stats", "export", "csv", str(csv_path))
    assert csv_path.read_text().startswith("id,user_id,channel,")
    bad = await cli("stats", "export", "xml", str(path))
    assert bad.exit_code == 2
    unwritable = await cli("stats", "export", "csv", str(tmp_path / "no" / "dir.csv"))
    assert unwritable.exit_code == 1 and "cannot write" in unwritable.stderr
