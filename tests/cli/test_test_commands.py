"""`notifications test email|template|providers` through the real send path and a real worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any

from click.testing import Result

from app.models import Caller
from app.services import templates
from tests.cli.conftest import Cli
from tests.conftest import run_worker
from tests.fakes.resend import API_KEY, FakeResend


async def with_worker(rt: Any, command: Awaitable[Result]) -> Result:
    """Run a CLI command while a real ARQ worker (burst mode, looped) delivers its jobs."""
    task = asyncio.ensure_future(command)
    while not task.done():
        await run_worker(rt)
        await asyncio.sleep(0.05)
    return await task


async def test_email_in_dry_run_is_sent_by_the_worker(cli: Cli, make_rt: Any, db: Any) -> None:
    rt = await make_rt(dry_run=True)
    result = await with_worker(
        rt,
        cli(
            "test",
            "email",
            "ops@example.com",
            "--wait",
            "20",
            "--json",
            NOTIFICATIONS_DRY_RUN="true",
        ),
    )
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "sent" and outcome["provider"] == "dry-run"
    assert outcome["dry_run"] is True
    row = await db.fetchrow("SELECT * FROM notifications WHERE id = $1::uuid",
                            outcome["notification_id"])  # fmt: skip
    assert row["to_address"] == "ops@example.com" and row["status"] == "sent"
    assert row["subject"] == "Test notification from the notifications CLI"
    assert await db.fetchval("SELECT count(*) FROM notification_queue") == 0

    again = await with_worker(rt, cli("test", "email", "ops@example.com",
                                      NOTIFICATIONS_DRY_RUN="true"))  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "sent via dry-run" in again.stdout
    assert await db.fetchval("SELECT count(*) FROM notifications") == 2  # no dedup of tests


async def test_email_without_a_worker_reports_queued(cli: Cli, db: Any) -> None:
    result = await cli("test", "email", "ops@example.com", "--wait", "0")
    assert result.exit_code == 0, result.output
    assert ": queued" in result.stdout
    waited = await cli("test", "email", "ops@example.com", "--wait", "0.3")
    assert waited.exit_code == 1 and "is a worker running?" in waited.stdout
    assert await db.fetchval("SELECT count(*) FROM notification_queue") == 2


async def test_email_rejects_a_bad_address(cli: Cli, db: Any) -> None:
    result = await cli("test", "email", "not-an-address")
    assert result.exit_code == 2 and "invalid email 'not-an-address'" in result.stderr
    assert await db.fetchval("SELECT count(*) FROM notifications") == 0


async def test_template_renders_variables(cli: Cli, make_rt: Any, db: Any) -> None:
    rt = await make_rt(dry_run=True)
    await templates.create(rt, Caller.system(), "welcome", {
        "subject": "Welcome {{name}}", "body_text": "Hi {{name}} from {{team}}",
        "variables": ["name", "team"],
    })  # fmt: skip
    result = await with_worker(
        rt,
        cli(
            "test",
            "template",
            "welcome",
            "new@example.com",
            "--var",
            "name=Ada",
            "--var",
            "team=Ops",
            "--json",
            NOTIFICATIONS_DRY_RUN="true",
        ),
    )
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    row = await db.fetchrow("SELECT * FROM notifications WHERE id = $1::uuid",
                            outcome["notification_id"])  # fmt: skip
    assert (row["subject"], row["body"]) == ("Welcome Ada", "Hi Ada from Ops")
    assert row["template_name"] == "welcome" and row["status"] == "sent"

    missing = await cli("test", "template", "welcome", "new@example.com", "--var", "name=Ada")
    assert missing.exit_code == 2 and "team" in missing.stderr
    unknown = await cli("test", "template", "nope", "new@example.com")
    assert unknown.exit_code == 1 and "does not exist" in unknown.stderr
    badvar = await cli("test", "template", "welcome", "new@example.com", "--var", "oops")
    assert badvar.exit_code == 2 and "key=value" in badvar.stderr


async def test_providers_checks_each_configured_provider(cli: Cli) -> None:
    fake = FakeResend()
    async with fake.running():
        env = {"NOTIFICATIONS_EMAIL_ENABLED": "true", "NOTIFICATIONS_EMAIL_PROVIDER": "resend",
               "NOTIFICATIONS_RESEND_BASE_URL": fake.url}  # fmt: skip
        result = await cli("test", "providers", "--json", NOTIFICATIONS_EMAIL_API_KEY=API_KEY,
                           **env)  # fmt: skip
        assert result.exit_code == 0, result.output
        (resend,) = json.loads(result.stdout)["providers"]
        assert resend["channel"] == "email" and resend["name"] == "resend"
        assert resend["reachable"] is True and resend["authenticated"] is True
        assert resend["breaker"] == "closed" and resend["failures"] == 0
        assert resend["rate_limit"] == {"requests": 10.0, "per_seconds": 1.0}

        table = await cli("test", "providers", NOTIFICATIONS_EMAIL_API_KEY=API_KEY, **env)
        assert table.exit_code == 0 and "resend" in table.stdout and "10/s" in table.stdout

        denied = await cli("test", "providers", "--json",
                           NOTIFICATIONS_EMAIL_API_KEY="re_not_a_key", **env)  # fmt: skip
        assert denied.exit_code == 1
        assert json.loads(denied.stdout)["providers"][0]["authenticated"] is False


async def test_providers_with_none_configured(cli: Cli) -> None:
    result = await cli("test", "providers", NOTIFICATIONS_DRY_RUN="true")
    assert result.exit_code == 0, result.output
    assert "no provider configured (dry run" in result.stdout
