"""`notifications stats ...`: the spec's statistics, tables or --json, and exports."""

from __future__ import annotations

import csv
import enum
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from app.commands.common import (
    JsonOption,
    _cell,
    _json_default,
    _plain,
    console,
    emit,
    err_console,
    fail,
    print_json,
    run,
)
from app.runtime import Runtime
from app.services import stats

# =========================================================================== stats

stats_app = typer.Typer(help="Delivery statistics (the spec's views, over a time window).",
                        no_args_is_help=True)  # fmt: skip


def _query(function: Callable[..., Awaitable[Any]], *args: Any) -> Any:

    async def work(rt: Runtime) -> Any:
        async with rt.db.acquire() as conn:
            return await function(conn, *args)

    return run(work)


def _positive(value: int, what: str) -> int:
    if value < 1:
        raise fail(f"{what} must be at least 1", 2)
    return value


@stats_app.command("overview")
def stats_overview(as_json: bool = JsonOption) -> None:
    """Totals by status, last 24 hours, queue backlog."""
    emit(_query(stats.overview), as_json, "overview")


@stats_app.command("delivery")
def stats_delivery(
    days: int = typer.Argument(30, help="window in days"), as_json: bool = JsonOption
) -> None:
    """Delivery rates per channel over the last DAYS days."""
    emit(_query(stats.delivery, days), as_json, f"delivery, last {days} days")


@stats_app.command("engagement")
def stats_engagement(
    days: int = typer.Argument(7, help="window in days"), as_json: bool = JsonOption
) -> None:
    """Email open and click rates per template over the last DAYS days."""
    emit(_query(stats.engagement, days), as_json, f"engagement, last {days} days")


@stats_app.command("providers")
def stats_providers(as_json: bool = JsonOption) -> None:
    """Provider health: failures, last success/failure, breaker state."""
    emit(_query(stats.providers), as_json, "providers")


@stats_app.command("queue")
def stats_queue(as_json: bool = JsonOption) -> None:
    """Queue backlog: pending, processing, oldest."""
    emit(_query(stats.queue), as_json, "queue")


@stats_app.command("templates")
def stats_templates(
    limit: int = typer.Argument(20, help="top N templates"), as_json: bool = JsonOption
) -> None:
    """Most used templates."""
    emit(_query(stats.templates_usage, limit), as_json, f"top {limit} templates")


@stats_app.command("failures")
def stats_failures(
    limit: int = typer.Argument(50, help="last N failures"), as_json: bool = JsonOption
) -> None:
    """Most recent failed and bounced notifications with their errors."""
    emit(_query(stats.failures, limit), as_json, f"last {limit} failures")


@stats_app.command("user")
def stats_user(user_id: UUID, as_json: bool = JsonOption) -> None:
    """One user's notification summary."""
    emit(_query(stats.user_summary, user_id), as_json, f"user {user_id}")


@stats_app.command("hourly")
def stats_hourly(
    hours: int = typer.Argument(24, help="window in hours"), as_json: bool = JsonOption
) -> None:
    """Hourly volume over the last HOURS hours, as a bar chart."""
    rows = _plain(_query(stats.hourly, hours))
    if as_json:
        print_json(rows)
        return
    console.print(hourly_chart(rows, f"hourly volume, last {hours} hours"))


def hourly_chart(rows: list[dict[str, Any]], title: str, width: int = 40) -> Table:
    """One bar per hour: the first column is the label, `total` (or the first count) the bar."""
    table = Table(title=title, title_justify="left", show_header=True, header_style="bold",
                  box=None, pad_edge=False)  # fmt: skip
    if not rows:
        table.add_column("no data")
        return table
    keys = list(rows[0])
    label = keys[0]
    numeric = [k for k in keys[1:] if isinstance(rows[0][k], int | float | Decimal)]
    value_key = "total" if "total" in numeric else (numeric[0] if numeric else keys[-1])
    extra = [k for k in numeric if k != value_key][:3]
    peak = max((float(r.get(value_key) or 0) for r in rows), default=0.0) or 1.0
    table.add_column(label)
    table.add_column(value_key, justify="right")
    table.add_column("")
    for key in extra:
        table.add_column(key, justify="right")
    for r in rows:
        value = float(r.get(value_key) or 0)
        bar = "█" * round(value / peak * width) or ("▏" if value else "")
        moment = r.get(label)
        shown = moment.strftime("%m-%d %H:00") if isinstance(moment, datetime) else _cell(moment)
        table.add_row(shown, _cell(r.get(value_key)), f"[cyan]{bar}[/]",
                      *(_cell(r.get(k)) for k in extra))  # fmt: skip
    return table


class ExportFormat(enum.StrEnum):
    JSON = "json"
    CSV = "csv"


@stats_app.command("export")
def stats_export(
    fmt: ExportFormat = typer.Argument(..., metavar="json|csv", help="output format"),
    file: Path = typer.Argument(..., help="output file"),
    days: int = typer.Option(30, "--days", help="notifications created in the last N days"),
) -> None:
    """Export notifications (and, for JSON, the summary stats) to a file, streaming rows."""
    _positive(days, "--days")
    written = run(lambda rt: _export(rt, fmt, file, days))
    err_console.print(f"wrote {written:,} notification(s) to {file}", highlight=False)


async def _export(rt: Runtime, fmt: ExportFormat, file: Path, days: int) -> int:
    from app.services import stats_extra

    async with rt.db.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                         readonly=True):  # fmt: skip
        total = await stats_extra.export_count(conn, days)
        summary: dict[str, Any] = {}
        if fmt is ExportFormat.JSON:
            summary["overview"] = await stats.overview(conn)
            summary["delivery"] = await stats.delivery(conn, min(days, stats.MAX_DAYS))
        try:
            handle = file.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            raise fail(f"cannot write {file}: {exc.strerror or exc}") from None
        with handle, _progress() as progress:
            task = progress.add_task(f"exporting {fmt.value}", total=total)
            rows = stats_extra.export_rows(conn, days)
            if fmt is ExportFormat.CSV:
                written = await _write_csv(handle, rows, lambda: progress.advance(task))
            else:
                written = await _write_json(handle, rows, summary, days,
                                            lambda: progress.advance(task))  # fmt: skip
    return written


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=err_console, transient=False,
    )  # fmt: skip


async def _write_csv(
    handle: Any, rows: AsyncIterator[dict[str, Any]], tick: Callable[[], None]
) -> int:
    from app.services.stats_extra import EXPORT_COLUMNS

    writer = csv.writer(handle)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    async for row in rows:
        writer.writerow(["" if row[c] is None else _json_default(row[c]) for c in EXPORT_COLUMNS])
        count += 1
        tick()
    return count


async def _write_json(handle: Any, rows: AsyncIterator[dict[str, Any]], summary: dict[str, Any],
                      days: int, tick: Callable[[], None]) -> int:  # fmt: skip
    head = {"generated_at": datetime.now(UTC).isoformat(), "days": days, **summary}
    handle.write(json.dumps(head, default=_json_default, indent=2)[:-2])
    handle.write(',\n  "notifications": [')
    count = 0
    async for row in rows:
        handle.write(("," if count else "") + "\n    " + json.dumps(row, default=_json_default))
        count += 1
        tick()
    handle.write("\n  ]\n}\n" if count else "]\n}\n")
    return count
