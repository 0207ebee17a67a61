"""NOTIFICATIONS_QUEUE_BACKEND=postgres: poll notification_queue, no Redis queueing.

Each loop claims up to WORKER_BATCH_SIZE due rows with FOR UPDATE SKIP LOCKED
(so several loops and processes never share a row) and runs the same delivery
code as the ARQ jobs. Retries need no re-arming: the row's next_retry_at is the
schedule. Sweep and retention run on their intervals in the same process.
"""

from __future__ import annotations

import asyncio
import logging
import time

from app.runtime import Runtime
from app.services import campaigns, delivery, recovery, retention
from app.store import notifications as store

log = logging.getLogger(__name__)


async def poll_once(rt: Runtime) -> int:
    settings = rt.settings
    rows = await store.claim_due(rt.db, rt.name, settings.lock_timeout, settings.worker_batch_size)
    if rows:
        await delivery.deliver_rows(rt, rows)
        return len(rows)
    return await campaigns.expand_due(rt, limit=1)  # idle: expand staged campaign chunks


async def _loop(rt: Runtime, stop: asyncio.Event) -> None:
    idle = rt.settings.worker_poll_interval / 1000
    while not stop.is_set():
        try:
            claimed = await poll_once(rt)
        except Exception:
            log.exception("postgres queue poll failed; retrying")
            claimed = 0
        if not claimed:
            try:
                await asyncio.wait_for(stop.wait(), idle)
            except TimeoutError:
                pass


async def run(rt: Runtime, stop: asyncio.Event, loops: int | None = None) -> None:
    """Run `loops` pollers (default WORKER_CONCURRENCY, at most 8) until `stop` is set."""
    count = loops or min(rt.settings.worker_concurrency, 8)
    maintenance = asyncio.create_task(_maintenance(rt, stop))
    try:
        await asyncio.gather(*(_loop(rt, stop) for _ in range(count)))
    finally:
        maintenance.cancel()


async def _maintenance(rt: Runtime, stop: asyncio.Event) -> None:
    last_cleanup = time.monotonic()
    while not stop.is_set():
        try:
            await recovery.update_queue_gauge(rt)
            if time.monotonic() - last_cleanup > 3600:
                last_cleanup = time.monotonic()
                await retention.cleanup(rt)
        except Exception:
            log.exception("maintenance failed")
        try:
            await asyncio.wait_for(stop.wait(), rt.settings.sweep_interval)
        except TimeoutError:
            pass
