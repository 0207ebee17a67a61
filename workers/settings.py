"""ARQ WorkerSettings: `arq workers.settings.WorkerSettings` or `notifications worker`.

Default queue name and key prefixes, the default pickle serializer, results kept
for an hour and a health check every 60 s, so `arq --check`, arq-dashboard and
arq-ui see our jobs and workers as they see any ARQ worker's.
"""

from __future__ import annotations

import logging
from typing import Any

from arq import cron

from app.runtime import open_runtime, redis_settings
from app.services.providers import register_env_providers
from app.settings import Settings, load_settings
from workers import campaign_tasks, tasks

log = logging.getLogger(__name__)


def _sweep_schedule(interval: int) -> dict[str, Any]:
    if interval < 60:
        return {"second": set(range(0, 60, max(1, interval)))}
    return {"minute": set(range(0, 60, max(1, interval // 60))), "second": 0}


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx.get("settings") or load_settings()
    manager = open_runtime(settings, min_size=1)
    rt = await manager.__aenter__()
    ctx["rt"], ctx["_rt_manager"] = rt, manager
    await register_env_providers(rt)
    _start_metrics_server(settings.worker_metrics_port)
    log.info("worker %s ready (concurrency %s)", rt.name, settings.worker_concurrency)


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close the runtime (once: the CLI calls it again when Redis vanished mid-close)."""
    manager = ctx.pop("_rt_manager", None)
    ctx.pop("rt", None)
    if manager is not None:
        await manager.__aexit__(None, None, None)


_metrics_started = False


def _start_metrics_server(port: int) -> None:
    global _metrics_started
    if not port or _metrics_started:
        return
    from prometheus_client import start_http_server

    try:
        start_http_server(port)
        _metrics_started = True
        log.info("worker metrics on :%s/metrics", port)
    except OSError as exc:
        log.warning("worker metrics port %s unavailable: %s", port, exc)


def build_worker_settings(settings: Settings) -> type:
    """A WorkerSettings class bound to these settings (tests and the CLI use this)."""

    class WorkerSettings:
        functions = [
            tasks.deliver,
            tasks.deliver_many,
            tasks.cleanup,
            campaign_tasks.digest_tick,
            campaign_tasks.campaign_expand,
        ]
        cron_jobs = [
            cron(
                tasks.sweep,
                run_at_startup=True,
                unique=True,
                timeout=120,
                **_sweep_schedule(settings.sweep_interval),
            ),
            cron(tasks.cleanup, minute={17}, second=0, unique=True, timeout=600),
            *campaign_tasks.cron_jobs(),
        ]
        on_startup = startup
        on_shutdown = shutdown
        redis_settings = _redis_settings(settings)
        max_jobs = settings.worker_concurrency
        job_timeout = settings.job_timeout
        max_tries = 1000  # attempts are counted in PostgreSQL (NOTIFICATIONS_RETRY_ATTEMPTS)
        keep_result = 3600
        health_check_interval = 60
        poll_delay = settings.worker_poll_interval / 1000
        ctx = {"settings": settings}

    return WorkerSettings


def _redis_settings(settings: Settings) -> Any:
    return redis_settings(settings)


try:
    WorkerSettings = build_worker_settings(load_settings())
except Exception as exc:  # importable even with a bad environment; the CLI reports it
    log.debug("WorkerSettings not built at import: %s", exc)
