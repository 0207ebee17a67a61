"""`notifications gdpr ...`: export or erase one user's data (audit-logged)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from uuid import UUID

import typer

from app.commands.common import (
    CLI_CALLER,
    JsonOption,
    _json_default,
    console,
    err_console,
    fail,
    print_json,
    run,
)

# =========================================================================== gdpr

gdpr_app = typer.Typer(help="GDPR: export or erase one user's data (audit-logged).",
                       no_args_is_help=True)  # fmt: skip


@gdpr_app.command("export")
def gdpr_export(
    user_id: UUID = typer.Argument(..., help="the user's id"),
    file: str = typer.Argument(..., help="output JSON file (- = stdout)"),
) -> None:
    """Write everything stored about a user (notifications, preferences, events) as JSON."""
    from app.services import gdpr

    data = run(lambda rt: gdpr.export_for(rt, CLI_CALLER, user_id))
    text = json.dumps(data, indent=2, default=_json_default) + "\n"
    if file == "-":
        sys.stdout.write(text)
        return
    try:
        Path(file).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {file}: {exc.strerror or exc}") from None
    err_console.print(
        f"exported {len(data['notifications'])} notification(s), "
        f"{len(data['preferences'])} preference(s), {len(data['events'])} event(s) to {file}",
        highlight=False,
    )


@gdpr_app.command("delete")
def gdpr_delete(
    user_id: UUID = typer.Argument(..., help="the user's id"),
    anonymise: bool = typer.Option(
        False, "--anonymise", "--anonymize", help="keep rows for statistics, redact personal data"
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
    as_json: bool = JsonOption,
) -> None:
    """Erase a user's notifications and preferences (or anonymise them), in one transaction."""
    from app.services import gdpr

    verb = "anonymise" if anonymise else "permanently delete"
    if not yes and not typer.confirm(f"{verb} all notification data of user {user_id}?"):
        raise fail("aborted", 1)
    summary = run(lambda rt: gdpr.delete(rt, CLI_CALLER, user_id, anonymise=anonymise))
    if as_json:
        print_json(summary)
        return
    console.print(
        f"{summary['mode']} user {user_id}: {summary['notifications']} notification(s), "
        f"{summary['events']} event(s), {summary['queue']} queue row(s), "
        f"{summary['preferences']} preference(s); recorded in the audit log",
        highlight=False,
    )
