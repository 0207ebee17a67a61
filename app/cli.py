"""The `notifications` command (typer + rich). Thin: every command calls the services.

    init | migrate | server | worker | dev          run and set up the service
    template list | show | create | update | delete manage templates (admin caller "cli")
    test email | template | providers               send test notifications, check providers
    stats overview | delivery | engagement | ...    statistics; stats export json|csv FILE
    gdpr export | delete                            a user's data, audit-logged
    hasura export                                   write the Hasura metadata

Read commands take --json (plain JSON on stdout, for scripts). Progress bars and
notices go to stderr. Exit codes: 0 ok, 1 failure, 2 usage or bad input. An
unreachable database or Redis is one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import enum
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import asyncpg
import click
import typer
import yaml
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from app.errors import InvalidInput, NotificationError
from app.models import Caller, Channel, Recipient, Role, SendRequest
from app.runtime import Runtime, open_runtime
from app.services import stats
from app.settings import Settings, SettingsError, load_settings

app = typer.Typer(
    help="Multi-channel notification service: email, push and SMS, for Hasura apps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
log = logging.getLogger("notifications")

DEV_SECRET_NAMES = (
    "NOTIFICATIONS_ADMIN_SECRET",
    "NOTIFICATIONS_ACTION_SECRET",
    "NOTIFICATIONS_API_KEYS",
    "NOTIFICATIONS_JWT_SECRET",
)


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper().replace("WARN", "WARNING").replace("WARNINGING", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        raise fail(str(exc), 2) from None
    configure_logging(settings.log_level)
    return settings


@contextlib.contextmanager
def services(settings: Settings) -> Iterator[Settings]:
    """Settings with DATABASE_URL/REDIS_URL filled, starting embedded servers if unset."""
    from app.embedded import ensure_services

    try:
        with ensure_services(settings.database_url, settings.redis_url, settings.data_dir) as (
            db,
            redis,
            _,
        ):
            yield settings.model_copy(update={"database_url": db, "redis_url": redis})
    except typer.Exit:  # click's Exit is a RuntimeError: let a command's own exit through
        raise
    except RuntimeError as exc:
        raise fail(f"could not start embedded services: {exc}") from None


def run_migrations(settings: Settings) -> list[str]:
    from app.store.migrate import migrate

    assert settings.database_url
    try:
        return asyncio.run(migrate(settings.database_url))
    except (OSError, ConnectionError) as exc:
        raise fail(f"database unreachable ({settings.database_url}): {exc}") from None


# --------------------------------------------------------------------------- commands


@app.command()
def init() -> None:
    """Apply migrations and verify the install (database, Redis, tables, providers)."""
    from app.checks import print_report, verify

    settings = settings_or_exit()
    with services(settings) as live:
        applied = run_migrations(live)
        report = asyncio.run(verify(live))
        print_report(console, report, applied)
        if not report.ok:
            raise typer.Exit(1)


@app.command()
def server(
    port: int = typer.Option(None, help="HTTP port (default PORT or 3102)"),
    host: str = typer.Option(None, help="bind address (default HOST or 0.0.0.0)"),
) -> None:
    """Start the HTTP server (REST, GraphQL, Hasura actions, webhooks, metrics)."""
    from aiohttp import web

    from app.main import create_app

    overrides = {k: v for k, v in {"port": port, "host": host}.items() if v is not None}
    settings = settings_or_exit(**overrides)
    with services(settings) as live:
        run_migrations(live)
        _use_uvloop()
        console.print(f"notifications API on http://{live.host}:{live.port}", highlight=False)
        web.run_app(
            create_app(live),
            host=live.host,
            port=live.port,
            print=None,
            access_log=None,
            handle_signals=True,
            shutdown_timeout=10,
        )


@app.command()
def worker(
    concurrency: int = typer.Option(None, help="jobs at once (default WORKER_CONCURRENCY)"),
    poll_interval: int = typer.Option(None, help="poll interval in ms (WORKER_POLL_INTERVAL)"),
) -> None:
    """Start the delivery worker (ARQ on Redis, or the postgres queue backend)."""
    overrides = {
        k: v
        for k, v in {
            "worker_concurrency": concurrency,
            "worker_poll_interval": poll_interval,
        }.items()
        if v is not None
    }
    settings = settings_or_exit(**overrides)
    with services(settings) as live:
        run_migrations(live)
        if live.queue_backend == "postgres":
            _run_pg_worker(live)
        else:
            _run_arq_worker(live)


def _run_arq_worker(settings: Settings) -> None:
    from arq.worker import create_worker

    from workers.settings import build_worker_settings

    _use_uvloop()
    worker_settings = build_worker_settings(settings)
    create_worker(worker_settings).run()


def _run_pg_worker(settings: Settings) -> None:
    from app.runtime import open_runtime
    from app.services.providers import register_env_providers
    from workers import pg_queue

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with open_runtime(settings) as rt:
            await register_env_providers(rt)
            log.info("postgres-queue worker %s started", rt.name)
            await pg_queue.run(rt, stop)

    _use_uvloop()
    asyncio.run(main())


def _use_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass


@app.command()
def dev() -> None:
    """Embedded PostgreSQL and Redis, migrations, dev secrets, API and worker: `make run`."""
    settings = settings_or_exit()
    with services(settings) as live:
        run_migrations(live)
        env = dict(os.environ)
        env.update(
            DATABASE_URL=live.database_url or "",
            REDIS_URL=live.redis_url or "",
            NOTIFICATIONS_DEV_MODE="true",
        )
        env.update(dev_secrets(live.data_dir))
        if "NOTIFICATIONS_DRY_RUN" not in os.environ and not _any_provider(live):
            env["NOTIFICATIONS_DRY_RUN"] = "true"
        _print_banner(live, env)
        _supervise(env)


def dev_secrets(data_dir: Path) -> dict[str, str]:
    """Secrets unset in the environment are generated once and kept in .data/dev-secrets.env."""
    path = Path(data_dir) / "dev-secrets.env"
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep:
                stored[name.strip()] = value.strip().strip("'")
    generated = {
        "NOTIFICATIONS_ADMIN_SECRET": secrets.token_urlsafe(24),
        "NOTIFICATIONS_ACTION_SECRET": secrets.token_urlsafe(24),
        "NOTIFICATIONS_API_KEYS": "nk_" + secrets.token_urlsafe(24),
        "NOTIFICATIONS_JWT_SECRET": json.dumps({"type": "HS256", "key": secrets.token_hex(32)}),
    }
    for name in DEV_SECRET_NAMES:
        stored.setdefault(name, generated[name])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}='{v}'\n" for k, v in stored.items()))
    path.chmod(0o600)
    return {k: v for k, v in stored.items() if k not in os.environ}


def _any_provider(settings: Settings) -> bool:
    from app.services.providers import env_entries

    return bool(env_entries(settings))


def _print_banner(settings: Settings, env: dict[str, str]) -> None:
    key = env.get("NOTIFICATIONS_API_KEYS", "").split(",")[0]
    url = f"http://127.0.0.1:{settings.port}"
    console.print(f"[bold green]notifications dev[/] API {url}  (GraphiQL at {url}/graphql)")
    console.print(f"dev secrets in {Path(settings.data_dir) / 'dev-secrets.env'}", highlight=False)
    if env.get("NOTIFICATIONS_DRY_RUN") == "true":
        console.print("[yellow]dry run[/]: no provider configured, nothing leaves this machine")
    console.print(
        "try:\n  curl -s -X POST " + url + "/api/notifications/send \\\n"
        f"    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
        '    -d \'{"user_id": "123e4567-e89b-12d3-a456-426614174000", "channel": "email",'
        ' "to": {"email": "user@example.com"}, "subject": "Hello", "body": "Hi!"}\'',
        highlight=False,
    )


def _supervise(env: dict[str, str]) -> None:
    """Run API and worker as children; stop both (by PID) when either ends or on a signal."""
    command = [sys.executable, "-m", "app.cli"]
    children = [
        subprocess.Popen([*command, "server"], env=env),
        subprocess.Popen([*command, "worker"], env=env),
    ]
    code = 0
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        code = 1
        err_console.print("a child process stopped; shutting down")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    if code:
        raise typer.Exit(code)


@app.command("migrate")
def migrate_command() -> None:
    """Apply pending database migrations."""
    settings = settings_or_exit()
    with services(settings) as live:
        applied = run_migrations(live)
        console.print(f"applied: {', '.join(applied) or 'nothing (up to date)'}", highlight=False)


# =========================================================================== data commands
#
# Every command below opens one Runtime (app.runtime.open_runtime) inside asyncio.run,
# calls the service layer as an admin caller, and maps failures once, in `run`.

CLI_CALLER = Caller(role=Role.ADMIN, source="cli")
# The user id `test email` / `test template` send to (a fixed, recognisable UUID).
CLI_USER_ID = UUID("00000000-0000-4000-8000-00000000c11e")

T = TypeVar("T")

JsonOption = typer.Option(False, "--json", help="print plain JSON (for scripts)")


def run(work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Open a Runtime on the configured (or embedded) services, run `work`, map errors."""
    settings = settings_or_exit()
    with services(settings) as live:
        return _run_on(live, work)


def _run_on(settings: Settings, work: Callable[[Runtime], Awaitable[T]]) -> T:
    async def main() -> T:
        async with open_runtime(settings, min_size=1, max_size=4, timeout=10) as rt:
            return await work(rt)

    try:
        return asyncio.run(main())
    except typer.Exit:
        raise
    except InvalidInput as exc:
        raise fail(exc.message, 2) from None
    except NotificationError as exc:
        raise fail(exc.message, 1) from None
    except asyncpg.UndefinedTableError as exc:
        raise fail(f"database not initialised ({exc}); run `notifications init`") from None
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise fail(f"redis unreachable ({_redact(settings.redis_url)}): {exc}") from None
    except (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
            asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidCatalogNameError,
            asyncpg.InvalidPasswordError) as exc:  # fmt: skip
        reason = str(exc) or type(exc).__name__
        raise fail(f"database unreachable ({_redact(settings.database_url)}): {reason}") from None
    except asyncpg.PostgresError as exc:
        raise fail(f"database error: {type(exc).__name__}: {exc}") from None


def _redact(url: str | None) -> str:
    """A URL without its password, for error messages."""
    if not url:
        return "unset"
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# --------------------------------------------------------------------------- output helpers


def _json_default(value: Any) -> Any:
    from app.services.gdpr import jsonable

    return jsonable(value)


def print_json(data: Any) -> None:
    """Plain JSON on stdout: no colour, no wrapping, whatever the terminal."""
    sys.stdout.write(json.dumps(_plain(data), default=_json_default, indent=2) + "\n")
    sys.stdout.flush()


def _plain(data: Any) -> Any:
    """asyncpg Records (and lists of them) as dicts."""
    if isinstance(data, asyncpg.Record):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_plain(v) for v in data]
    return data


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | Decimal):
        return f"{float(value):,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{int(value):,}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=_json_default)
    return str(value)


def rows_table(
    rows: list[Any], title: str | None = None, columns: list[str] | None = None
) -> Table:
    """A rich table from dict-like rows (asyncpg Records or dicts)."""
    rows = [dict(r) for r in rows]
    columns = columns or (list(rows[0]) if rows else [])
    table = Table(title=title, title_justify="left", header_style="bold")
    for name in columns:
        numeric = bool(rows) and isinstance(rows[0].get(name), int | float | Decimal)
        table.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(name)) for name in columns))
    return table


def show(data: Any, title: str | None = None) -> None:
    """Render a stats result of any shape: list of rows, a dict (with nested sections), a scalar."""
    data = _plain(data)
    if isinstance(data, list):
        if not data:
            console.print(f"{title + ': ' if title else ''}no data", highlight=False)
        elif all(isinstance(r, dict) for r in data):
            console.print(rows_table(data, title))
        else:
            console.print(rows_table([{"value": v} for v in data], title))
    elif isinstance(data, dict):
        scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
        if scalars:
            table = Table(title=title, title_justify="left", show_header=False)
            table.add_column(style="bold")
            table.add_column(justify="right")
            for key, value in scalars.items():
                table.add_row(str(key), _cell(value))
            console.print(table)
        for key, value in data.items():
            if isinstance(value, dict | list):
                show(value, str(key))
    else:
        console.print(_cell(data), highlight=False)


def emit(data: Any, as_json: bool, title: str | None = None) -> None:
    if as_json:
        print_json(data)
    else:
        show(data, title)


# =========================================================================== template

template_app = typer.Typer(help="Manage templates (Handlebars subject, text and HTML bodies).",
                           no_args_is_help=True)  # fmt: skip
app.add_typer(template_app, name="template")

FILE_KEYS = {
    "name": "name", "category": "category", "channels": "channels", "subject": "subject",
    "body_text": "body_text", "body": "body_text", "text": "body_text",
    "body_html": "body_html", "html": "body_html", "variables": "variables", "active": "active",
}  # fmt: skip


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def read_template_file(path: str) -> dict[str, Any]:
    """A YAML or JSON template file (`-` reads stdin) -> template fields."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}", 2) from None
    return parse_template_document(text, source=path)


def parse_template_document(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise fail(f"{source}: not valid YAML/JSON{where}", 2) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise fail(f"{source}: expected a mapping of template fields", 2)
    unknown = sorted(str(k) for k in data if k not in FILE_KEYS)
    if unknown:
        raise fail(f"{source}: unknown field(s) {', '.join(unknown)}; "
                   f"use {', '.join(sorted(set(FILE_KEYS.values())))}", 2)  # fmt: skip
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("channels", "variables") and isinstance(value, str):
            value = _split(value)
        fields[FILE_KEYS[key]] = value
    return fields


def _flag_fields(**flags: Any) -> dict[str, Any]:
    fields = {k: v for k, v in flags.items() if v is not None}
    for key in ("channels", "variables"):
        if key in fields:
            fields[key] = _split(fields[key])
    return fields


EDITOR_HEADER = (
    "# Edit the template, save and close the editor. Lines starting with # are ignored.\n"
    "# Fields: name, category, channels, subject, body_text, body_html, variables, active\n"
)


def _edit(initial: dict[str, Any]) -> dict[str, Any]:
    """Open $EDITOR on a YAML document; an unchanged or empty result aborts."""
    document = EDITOR_HEADER + yaml.safe_dump(initial, sort_keys=False, allow_unicode=True)
    edited = click.edit(document, extension=".yaml", require_save=True)
    if edited is None or not edited.strip() or edited == document:
        raise fail("no changes: editor closed without saving", 1)
    return parse_template_document(edited, source="editor")


def _template_doc(row: Any) -> dict[str, Any]:
    return {
        "name": row["name"], "category": row["category"], "channels": list(row["channels"] or []),
        "subject": row["subject"], "body_text": row["body_text"], "body_html": row["body_html"],
        "variables": list(row["variables"] or []), "active": row["active"],
    }  # fmt: skip


def _variables_cell(raw: Any) -> str:
    return ", ".join(
        v if isinstance(v, str) else str(v.get("name")) for v in (raw or []) if v is not None
    )


@template_app.command("list")
def template_list(
    active: bool | None = typer.Option(None, "--active/--inactive", help="only (in)active ones"),
    as_json: bool = JsonOption,
) -> None:
    """List templates."""
    from app.services import templates

    rows = run(lambda rt: templates.list_all(rt, active=active))
    if as_json:
        print_json([_template_doc(r) | {"updated_at": r["updated_at"]} for r in rows])
        return
    if not rows:
        console.print("no templates yet: `notifications template create NAME ...`")
        return
    table = Table(title=f"{len(rows)} template(s)", title_justify="left", header_style="bold")
    for column in ("name", "category", "channels", "subject", "variables", "active", "updated"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r["name"], _cell(r["category"]), _cell(list(r["channels"] or [])),
            _cell(r["subject"]), _variables_cell(r["variables"]) or "-", _cell(r["active"]),
            _cell(r["updated_at"]),
        )  # fmt: skip
    console.print(table)


@template_app.command("show")
def template_show(name: str, as_json: bool = JsonOption) -> None:
    """Show one template with its sources."""
    from app.services import templates

    row = run(lambda rt: templates.get(rt, name))
    if as_json:
        print_json(_template_doc(row) | {"created_at": row["created_at"],
                                         "updated_at": row["updated_at"]})  # fmt: skip
        return
    head = Table(show_header=False, title=name, title_justify="left")
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    for key in ("category", "channels", "subject", "variables", "active", "created_at",
                "updated_at"):  # fmt: skip
        value = _variables_cell(row[key]) if key == "variables" else _cell(row[key])
        head.add_row(key, value or "-")
    console.print(head)
    for key in ("body_text", "body_html"):
        if row[key]:
            console.print(Panel(Text(row[key]), title=key, title_align="left"))


TemplateFile = typer.Option(
    None, "--file", "-f", help="YAML or JSON file with the fields (- = stdin)"
)
SubjectOpt = typer.Option(None, "--subject", help="subject (Handlebars)")
TextOpt = typer.Option(None, "--body-text", help="plain-text body (Handlebars)")
HtmlOpt = typer.Option(None, "--body-html", help="HTML body (Handlebars)")
ChannelsOpt = typer.Option(None, "--channels", help="comma-separated: email,push,sms")
CategoryOpt = typer.Option(None, "--category", help="e.g. transactional, marketing")
VariablesOpt = typer.Option(None, "--variables", help="comma-separated names; 'name?' = optional")
ActiveOpt = typer.Option(None, "--active/--inactive", help="enable or disable the template")


@template_app.command("create")
def template_create(
    name: str | None = typer.Argument(None, help="template name (or `name:` in the file)"),
    file: str | None = TemplateFile,
    subject: str | None = SubjectOpt,
    body_text: str | None = TextOpt,
    body_html: str | None = HtmlOpt,
    channels: str | None = ChannelsOpt,
    category: str | None = CategoryOpt,
    variables: str | None = VariablesOpt,
    active: bool | None = ActiveOpt,
    as_json: bool = JsonOption,
) -> None:
    """Create a template from flags, a file (--file), or in $EDITOR when given neither."""
    from app.services import templates

    flags = _flag_fields(subject=subject, body_text=body_text, body_html=body_html,
                         channels=channels, category=category, variables=variables,
                         active=active)  # fmt: skip
    fields: dict[str, Any] = read_template_file(file) if file else {}
    if not file and not flags:
        skeleton = {"name": name or "my_template", "category": "transactional",
                    "channels": ["email"], "subject": "Hello {{name}}",
                    "body_text": "Hi {{name}},\n", "body_html": None,
                    "variables": ["name"]}  # fmt: skip
        fields = _edit(skeleton)
    fields.update(flags)
    final_name = name or fields.pop("name", None)
    fields.pop("name", None)
    if not final_name:
        raise fail("give the template name: `notifications template create NAME ...`", 2)
    row = run(lambda rt: templates.create(rt, CLI_CALLER, str(final_name), fields))
    if as_json:
        print_json(_template_doc(row))
    else:
        console.print(f"created template [bold]{row['name']}[/]", highlight=False)


@template_app.command("update")
def template_update(
    name: str,
    file: str | None = TemplateFile,
    subject: str | None = SubjectOpt,
    body_text: str | None = TextOpt,
    body_html: str | None = HtmlOpt,
    channels: str | None = ChannelsOpt,
    category: str | None = CategoryOpt,
    variables: str | None = VariablesOpt,
    active: bool | None = ActiveOpt,
    as_json: bool = JsonOption,
) -> None:
    """Update a template: only the given fields change. No flags and no file opens $EDITOR."""
    from app.services import templates

    flags = _flag_fields(subject=subject, body_text=body_text, body_html=body_html,
                         channels=channels, category=category, variables=variables,
                         active=active)  # fmt: skip
    fields: dict[str, Any] = read_template_file(file) if file else {}
    if not file and not flags:
        current = run(lambda rt: templates.get(rt, name))
        fields = _edit(_template_doc(current))
    fields.update(flags)
    renamed = fields.pop("name", name)
    if renamed != name:
        raise fail(f"renaming is not supported (file says {renamed!r}, updating {name!r})", 2)
    if not fields:
        raise fail("nothing to update: give --subject, --body-text, ... or --file", 2)
    row = run(lambda rt: templates.update(rt, CLI_CALLER, name, fields))
    if as_json:
        print_json(_template_doc(row))
    else:
        console.print(f"updated template [bold]{name}[/]: {', '.join(sorted(fields))}",
                      highlight=False)  # fmt: skip


@template_app.command("delete")
def template_delete(
    name: str, yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation")
) -> None:
    """Delete a template."""
    from app.services import templates

    if not yes and not typer.confirm(f"delete template {name!r}?"):
        raise fail("aborted", 1)
    run(lambda rt: templates.delete(rt, CLI_CALLER, name))
    console.print(f"deleted template [bold]{name}[/]", highlight=False)


# =========================================================================== test

test_app = typer.Typer(help="Send test notifications and check providers.", no_args_is_help=True)
app.add_typer(test_app, name="test")

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


# =========================================================================== stats

stats_app = typer.Typer(help="Delivery statistics (the spec's views, over a time window).",
                        no_args_is_help=True)  # fmt: skip
app.add_typer(stats_app, name="stats")


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


# =========================================================================== gdpr

gdpr_app = typer.Typer(help="GDPR: export or erase one user's data (audit-logged).",
                       no_args_is_help=True)  # fmt: skip
app.add_typer(gdpr_app, name="gdpr")


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


# =========================================================================== hasura

hasura_app = typer.Typer(help="Hasura integration.", no_args_is_help=True)
app.add_typer(hasura_app, name="hasura")


@hasura_app.command("export")
def hasura_export(
    path: Path = typer.Argument(Path("hasura/metadata"), help="metadata directory to write"),
) -> None:
    """Write the Hasura metadata (actions generated from the GraphQL schema, tables)."""
    try:
        from app.graphql.hasura import write_metadata
    except ImportError as exc:
        raise fail(f"Hasura metadata export is not available in this build ({exc})") from None
    written = write_metadata(path)
    console.print(f"wrote Hasura metadata to {path}", highlight=False)
    for item in written or []:
        console.print(f"  {item}", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
