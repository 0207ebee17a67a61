"""`notifications test ...`: send test notifications and check providers."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import typer
from pydantic import ValidationError
from rich.table import Table

from app.commands.common import (
    CLI_CALLER,
    CLI_USER_ID,
    JsonOption,
    _run_on,
    console,
    fail,
    print_json,
    run,
    services,
    settings_or_exit,
)
from app.models import Channel, Recipient, SendRequest
from app.runtime import Runtime

# =========================================================================== test

test_app = typer.Typer(help="Send test notifications and check providers.", no_args_is_help=True)

WaitOpt = typer.Option(30.0, "--wait", min=0, help="seconds to wait for the outcome (0: don't)")
PENDING_STATUSES = ("queued", "scheduled", "batched")


def _recipient(channel: Channel, address: str) -> Recipient:
    key = {Channel.EMAIL: "email", Channel.SMS: "phone", Channel.PUSH: "device_token"}[channel]
    try:
        return Recipient.model_validate({key: address})
    except ValidationError as exc:
        message = str(exc.errors()[0].get("msg", "invalid")).removeprefix("Value error, ")
        raise fail(f"invalid {key} {address!r}: {message}", 2) from None


def _send_request(**fields: Any) -> SendRequest:
    try:
        return SendRequest(user_id=CLI_USER_ID, priority="critical", category="transactional",
                           idempotency_key=f"cli-test-{uuid4()}", **fields)  # fmt: skip
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise fail(f"{where + ': ' if where else ''}{message}", 2) from None


async def _send_and_wait(rt: Runtime, request: SendRequest, wait: float) -> dict[str, Any]:
    from app.services import notifications

    outcome = await notifications.send(rt, request, CLI_CALLER)
    result: dict[str, Any] = {
        "notification_id": str(outcome.notification_id), "status": outcome.status,
        "provider": None, "provider_id": None, "error": None, "dry_run": rt.settings.dry_run,
    }  # fmt: skip
    deadline = time.monotonic() + wait
    assert outcome.notification_id is not None
    while True:
        row = await notifications.get(rt, CLI_CALLER, outcome.notification_id)
        result.update(status=row["status"], provider=row["provider"],
                      provider_id=row["provider_id"], error=row["error"])  # fmt: skip
        if row["status"] not in PENDING_STATUSES or time.monotonic() >= deadline:
            return result
        await asyncio.sleep(0.2)


def _report_send(result: dict[str, Any], wait: float, as_json: bool) -> None:
    status = result["status"]
    if as_json:
        print_json(result)
    else:
        colour = {"sent": "green", "delivered": "green", "failed": "red", "bounced": "red"}.get(
            status, "yellow"
        )
        line = f"notification {result['notification_id']}: [{colour}]{status}[/]"
        if result["provider"]:
            line += f" via {result['provider']}"
        if result["provider_id"]:
            line += f" (id {result['provider_id']})"
        console.print(line, highlight=False)
        if result["error"]:
            console.print(f"  {result['error']}", highlight=False)
        if status in PENDING_STATUSES and wait > 0:
            console.print(f"  still {status} after {wait:g}s: is a worker running? "
                          "(`notifications worker`)", highlight=False)  # fmt: skip
    if status in ("failed", "bounced", "suppressed", "cancelled") or (
        status in PENDING_STATUSES and wait > 0
    ):
        raise typer.Exit(1)


@test_app.command("email")
def test_email(
    address: str = typer.Argument(..., help="recipient email address"),
    wait: float = WaitOpt,
    as_json: bool = JsonOption,
) -> None:
    """Send a test email through the normal send path and wait for its status.

    With NOTIFICATIONS_DRY_RUN=true nothing leaves the machine: the provider is
    recorded as `dry-run` and the status is `sent`.
    """
    recipient = _recipient(Channel.EMAIL, address)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    request = _send_request(
        channel=Channel.EMAIL, to=recipient,
        subject="Test notification from the notifications CLI",
        body=f"This is a test email sent by `notifications test email` at {stamp}.\n"
             "If you can read it, email delivery works.",
        body_html=f"<p>This is a test email sent by <code>notifications test email</code> at "
                  f"{stamp}.</p><p>If you can read it, email delivery works.</p>",
    )  # fmt: skip
    result = run(lambda rt: _send_and_wait(rt, request, wait))
    _report_send(result, wait, as_json)


def parse_vars(pairs: list[str]) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise fail(f"--var expects key=value, got {pair!r}", 2)
        variables[key.strip()] = value
    return variables


@test_app.command("template")
def test_template(
    name: str = typer.Argument(..., help="template name"),
    address: str = typer.Argument(..., help="email address, +E.164 phone, or device token"),
    var: list[str] = typer.Option([], "--var", help="template variable key=value (repeatable)"),
    vars_json: str | None = typer.Option(None, "--vars-json", help="variables as a JSON object"),
    channel: Channel = typer.Option(Channel.EMAIL, "--channel", help="channel to send on"),
    wait: float = WaitOpt,
    as_json: bool = JsonOption,
) -> None:
    """Render a template with variables and send it as a test."""
    variables: dict[str, Any] = {}
    if vars_json:
        try:
            variables = json.loads(vars_json)
        except json.JSONDecodeError as exc:
            raise fail(f"--vars-json: {exc}", 2) from None
        if not isinstance(variables, dict):
            raise fail("--vars-json must be a JSON object", 2)
    variables.update(parse_vars(var))
    request = _send_request(channel=channel, to=_recipient(channel, address), template=name,
                            variables=variables)  # fmt: skip
    result = run(lambda rt: _send_and_wait(rt, request, wait))
    _report_send(result, wait, as_json)


async def _check_providers(rt: Runtime, timeout: float) -> list[dict[str, Any]]:
    from app.services.delivery import breakers
    from app.services.providers import provider_set

    rows: list[dict[str, Any]] = []
    for channel in Channel:
        for name, provider in await provider_set(rt).for_channel(rt, channel):
            row: dict[str, Any] = {"channel": channel.value, "name": name, "kind": provider.name}
            try:
                check = await asyncio.wait_for(provider.check(), timeout)
                row.update(reachable=check.reachable, authenticated=check.authenticated,
                           detail=check.detail)  # fmt: skip
            except Exception as exc:  # a check must never abort the report
                row.update(reachable=False, authenticated=None,
                           detail=f"{type(exc).__name__}: {exc}"[:300])  # fmt: skip
            state = await breakers(rt).state(name)
            row["breaker"] = state.get("state", "closed")
            row["failures"] = int(state.get("failures", 0) or 0)
            limit, per = rt.settings.provider_rate(provider.name)
            row["rate_limit"] = {"requests": limit, "per_seconds": per} if limit else None
            rows.append(row)
    return rows


def _rate(value: dict[str, Any] | None) -> str:
    if not value:
        return "unlimited"
    unit = {1: "s", 60: "min", 3600: "h"}.get(int(value["per_seconds"]), f"{value['per_seconds']}s")
    return f"{value['requests']:g}/{unit}"


@test_app.command("providers")
def test_providers(
    timeout: float = typer.Option(10.0, help="seconds per provider check"),
    as_json: bool = JsonOption,
) -> None:
    """Check every configured provider: reachable, authenticated, breaker, rate limit."""
    settings = settings_or_exit()
    with services(settings) as live:
        rows = _run_on(live, lambda rt: _check_providers(rt, timeout))
    healthy = all(r["reachable"] and r["authenticated"] is not False for r in rows)
    if as_json:
        print_json({"dry_run": settings.dry_run, "providers": rows})
    elif not rows:
        console.print("no provider configured"
                      + (" (dry run: sends are recorded as dry-run)" if settings.dry_run else ""))  # fmt: skip
    else:
        table = Table(title="providers", title_justify="left", header_style="bold")
        for column in ("channel", "provider", "reachable", "authenticated", "breaker",
                       "rate limit", "detail"):  # fmt: skip
            table.add_column(column, overflow="fold")
        for r in rows:
            auth = "n/a" if r["authenticated"] is None else _mark(r["authenticated"])
            breaker = r["breaker"] + (f" ({r['failures']} fail)" if r["failures"] else "")
            name = r["name"] if r["name"] == r["kind"] else f"{r['name']} ({r['kind']})"
            table.add_row(r["channel"], name, _mark(r["reachable"]), auth, breaker,
                          _rate(r["rate_limit"]), r["detail"] or "")  # fmt: skip
        console.print(table)
        if settings.dry_run:
            console.print("[yellow]dry run[/]: sends do not reach these providers")
    if not healthy:
        raise typer.Exit(1)


def _mark(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"
