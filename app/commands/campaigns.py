"""`notifications campaign ...`: send a campaign from a CSV or JSON file, follow it, cancel it.

    campaign send FILE --name N --template T [--channel email] [--var k=v ...]
        FILE: .json (a list of {user_id, to, variables}) or .csv with a user_id column,
        the channel's address column (email, phone or device_token) and any other columns
        as variables. A rich progress bar (stderr) follows the accepted chunks.
    campaign status ID [--json]
    campaign cancel ID [--json]

Mounted by app.cli: `app.add_typer(campaign_app, name="campaign")`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import typer

campaign_app = typer.Typer(help="Campaigns: bulk sends to a recipient list.", no_args_is_help=True)

ADDRESS_COLUMNS = {"email": ("email", "name"), "sms": ("phone",), "push": ("device_token",)}


def _cli() -> Any:
    from app.commands import common

    return common


def read_recipients(path: Path, channel: str) -> Iterator[dict[str, Any]]:
    """Recipients from a JSON list or a CSV file, lazily for CSV."""
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError("a JSON recipient file holds a list of {user_id, to, variables}")
        yield from data
        return
    address_columns = ADDRESS_COLUMNS.get(channel, ())
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "user_id" not in reader.fieldnames:
            raise ValueError("the CSV needs a header row with a user_id column")
        for row in reader:
            to = {k: row[k] for k in address_columns if row.get(k)}
            variables = {
                k: v for k, v in row.items() if k not in address_columns and k != "user_id" and k
            }
            yield {"user_id": row["user_id"], "to": to, "variables": variables}


def _pairs(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _cli().fail(f"--var {item!r}: use NAME=VALUE", 2)
        out[key] = value
    return out


def _summary(data: dict[str, Any]) -> str:
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(data["counts"].items())) or "none"
    return (
        f"campaign {data['id']} ({data['name']}): {data['state']}; "
        f"{data['accepted']:,} accepted, {data['rejected']:,} rejected of {data['total']:,}; "
        f"{data.get('staged', 0):,} staged (not yet expanded); {counts}"
    )


@campaign_app.command("send")
def send(
    file: Path = typer.Argument(..., help="recipients: .json list or .csv", exists=True),
    name: str = typer.Option(..., "--name", help="campaign name"),
    template: str | None = typer.Option(None, "--template", help="template name"),
    channel: str = typer.Option("email", "--channel"),
    subject: str | None = typer.Option(None, "--subject", help="inline subject (no template)"),
    body: str | None = typer.Option(None, "--body", help="inline text body (no template)"),
    category: str | None = typer.Option(None, "--category"),
    var: list[str] = typer.Option([], "--var", help="shared variable NAME=VALUE (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print plain JSON"),
) -> None:
    """Accept a campaign; show progress while the chunks are written."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from app.services import campaigns

    cli = _cli()
    shared = _pairs(var)
    try:
        total = None if file.suffix.lower() == ".json" else _count_rows(file)
        recipients = read_recipients(file, channel)
    except (OSError, ValueError) as exc:
        raise cli.fail(f"cannot read {file}: {exc}", 2) from None

    async def work(rt: Any) -> dict[str, Any]:
        items = list(recipients) if total is None else recipients
        size = len(items) if isinstance(items, list) else total
        with Progress(
            TextColumn("[bold]accepting"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rejected]} rejected"),
            console=cli.err_console,
            transient=as_json,
        ) as bar:
            task = bar.add_task("accept", total=size, rejected=0)

            def advance(read: int, accepted: int, rejected: int) -> None:
                bar.update(task, completed=read, rejected=rejected)

            campaign_id = await campaigns.create(
                rt, cli.CLI_CALLER, name, template, channel, items, subject=subject,
                body=body, category=category, variables=shared, on_progress=advance,
            )  # fmt: skip
        return await campaigns.progress(rt, cli.CLI_CALLER, campaign_id)

    try:
        data = cli.run(work)
    except ValueError as exc:  # a malformed row met while streaming the CSV
        raise cli.fail(f"cannot read {file}: {exc}", 2) from None
    if as_json:
        cli.print_json(data)
    else:
        cli.console.print(_summary(data), highlight=False)


def _count_rows(path: Path) -> int:
    with path.open(encoding="utf-8") as handle:
        return max(0, sum(1 for _ in handle) - 1)


@campaign_app.command("status")
def status(
    campaign_id: UUID = typer.Argument(..., help="campaign id"),
    as_json: bool = typer.Option(False, "--json", help="print plain JSON"),
) -> None:
    """Counts by status, delivery and engagement figures."""
    from app.services import campaigns

    cli = _cli()
    data = cli.run(lambda rt: campaigns.stats(rt, cli.CLI_CALLER, campaign_id))
    if as_json:
        cli.print_json(data)
        return
    cli.console.print(_summary(data), highlight=False)
    if data.get("send_rate_per_s"):
        cli.console.print(f"send rate: {data['send_rate_per_s']:,}/s", highlight=False)


@campaign_app.command("cancel")
def cancel(
    campaign_id: UUID = typer.Argument(..., help="campaign id"),
    as_json: bool = typer.Option(False, "--json", help="print plain JSON"),
) -> None:
    """Cancel every notification of the campaign that is not sent yet."""
    from app.services import campaigns

    cli = _cli()
    data = cli.run(lambda rt: campaigns.cancel(rt, cli.CLI_CALLER, campaign_id))
    if as_json:
        cli.print_json(data)
        return
    cli.console.print(
        f"cancelled {data['cancelled']:,} notification(s); {_summary(data)}", highlight=False
    )
