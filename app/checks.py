"""`notifications init`'s verification: can this install actually send?"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from rich.console import Console
from rich.table import Table

from app.runtime import create_redis
from app.settings import Settings

SPEC_TABLES = (
    "notification_templates",
    "notification_preferences",
    "notifications",
    "notification_queue",
    "notification_providers",
    "notification_batches",
)
SPEC_VIEWS = (
    "notification_delivery_rates",
    "notification_engagement",
    "notification_provider_health",
    "notification_user_summary",
    "notification_queue_backlog",
)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)


async def verify(settings: Settings) -> Report:
    report = Report()
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=5)
    except Exception as exc:
        report.checks.append(Check("PostgreSQL", False, f"unreachable: {exc}"))
        return report
    try:
        report.checks.append(Check("PostgreSQL", True, await conn.fetchval("SHOW server_version")))
        names = {
            r["relname"]
            for r in await conn.fetch("SELECT relname FROM pg_class WHERE relkind IN ('r', 'v')")
        }
        missing = [n for n in (*SPEC_TABLES, *SPEC_VIEWS) if n not in names]
        report.checks.append(Check("schema", not missing, _schema_detail(missing)))
        rows = await conn.fetch(
            "SELECT name, channel, enabled FROM notification_providers ORDER BY channel, priority DESC"
        )
    finally:
        await conn.close()
    try:
        redis = await create_redis(settings)
        await redis.ping()
        await redis.aclose()
        report.checks.append(Check("Redis", True, settings.redis_url or ""))
    except Exception as exc:
        report.checks.append(
            Check("Redis", False, f"unreachable: {exc}", required=settings.queue_backend == "redis")
        )
    report.checks.extend(_provider_checks(settings, rows))
    return report


def _schema_detail(missing: list[str]) -> str:
    if missing:
        return "missing: " + ", ".join(missing)
    return f"{len(SPEC_TABLES)} tables, {len(SPEC_VIEWS)} views"


def _provider_checks(settings: Settings, rows: list[asyncpg.Record]) -> list[Check]:
    from app.services.providers import env_entries

    configured: dict[str, list[str]] = {"email": [], "push": [], "sms": []}
    for entry in env_entries(settings):
        configured[entry.channel].append(f"{entry.name} (env)")
    for row in rows:
        if row["enabled"] and f"{row['name']} (env)" not in configured[row["channel"]]:
            configured[row["channel"]].append(row["name"])
    checks = []
    for channel, names in configured.items():
        detail = ", ".join(names) if names else "no provider configured"
        if settings.dry_run:
            detail += " (dry run)"
        checks.append(
            Check(f"{channel} providers", bool(names) or settings.dry_run, detail, required=False)
        )
    return checks


def print_report(console: Console, report: Report, applied: list[str]) -> None:
    table = Table(title="notifications init")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    table.add_row("migrations", "[green]ok[/]", ", ".join(applied) or "up to date")
    for check in report.checks:
        status = (
            "[green]ok[/]"
            if check.ok
            else ("[red]FAIL[/]" if check.required else "[yellow]warn[/]")
        )
        table.add_row(check.name, status, check.detail)
    console.print(table)
