"""What every command shares: the root Typer app, settings and services, error
mapping (`run`), and output (tables, --json).

Exit codes: 0 ok, 1 failure, 2 usage or bad input. An unreachable database or
Redis is one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import asyncpg
import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console
from rich.table import Table

from app.errors import InvalidInput, NotificationError
from app.models import Caller, Role
from app.runtime import Runtime, open_runtime
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
