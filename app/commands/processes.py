"""Run and set up the service: init, migrate, server, worker, dev (`make run`)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from app.commands.common import (
    DEV_SECRET_NAMES,
    console,
    err_console,
    log,
    run_migrations,
    services,
    settings_or_exit,
)
from app.runtime import open_runtime
from app.settings import Settings

# --------------------------------------------------------------------------- commands


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


def server(
    port: int = typer.Option(None, help="HTTP port (default PORT or 3102)"),
    host: str = typer.Option(None, help="bind address (default HOST or 0.0.0.0)"),
    processes: int = typer.Option(
        1,
        min=1,
        max=64,
        envvar="NOTIFICATIONS_API_PROCESSES",
        help="API processes sharing the port (SO_REUSEPORT); one Python process tops out"
        " near one core",
    ),
    reuse_port: bool = typer.Option(False, hidden=True),
) -> None:
    """Start the HTTP server (REST, GraphQL, Hasura actions, webhooks, metrics)."""
    from aiohttp import web

    from app.main import create_app

    overrides = {k: v for k, v in {"port": port, "host": host}.items() if v is not None}
    settings = settings_or_exit(**overrides)
    with services(settings) as live:
        run_migrations(live)
        if processes > 1:
            env = {
                **os.environ,
                "DATABASE_URL": live.database_url or "",
                "REDIS_URL": live.redis_url or "",
                "NOTIFICATIONS_API_PROCESSES": "1",
                "PORT": str(live.port),
                "HOST": live.host,
            }
            one = [sys.executable, "-m", "app.cli", "server", "--reuse-port"]
            console.print(
                f"notifications API on http://{live.host}:{live.port} ({processes} processes)",
                highlight=False,
            )
            _supervise([one] * processes, env)
            return
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
            reuse_port=reuse_port or None,
        )


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
    """Run the ARQ worker; when Redis goes away (arq's worker then stops), wait and start a
    fresh one, so a Redis restart does not end the process (the sweep re-enqueues what a
    flushed Redis lost)."""
    from arq.worker import create_worker
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from workers.settings import build_worker_settings, shutdown

    _use_uvloop()
    worker_settings = build_worker_settings(settings)
    delay = 1.0
    while True:
        worker = create_worker(worker_settings)
        try:
            worker.run()
            return  # stopped by SIGINT/SIGTERM
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            worker.loop.run_until_complete(shutdown(worker.ctx))  # close() may not have
            log.warning("worker lost Redis (%s); starting again in %.0f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def _run_pg_worker(settings: Settings) -> None:
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
        command = [sys.executable, "-m", "app.cli"]
        _supervise([[*command, "server"], [*command, "worker"]], env)


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


def _supervise(commands: list[list[str]], env: dict[str, str]) -> None:
    """Run commands as children; stop all (by PID) when one ends or on a signal."""
    children = [subprocess.Popen(command, env=env) for command in commands]
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


def migrate_command() -> None:
    """Apply pending database migrations."""
    settings = settings_or_exit()
    with services(settings) as live:
        applied = run_migrations(live)
        console.print(f"applied: {', '.join(applied) or 'nothing (up to date)'}", highlight=False)
