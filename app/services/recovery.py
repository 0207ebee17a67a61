"""The sweep: PostgreSQL is the truth, Redis may lose jobs.

Queue rows that are due (for longer than a grace period) and unlocked are
re-enqueued unless their ARQ job is still in Redis; rows locked past
NOTIFICATIONS_LOCK_TIMEOUT (their worker died) are re-enqueued in any case. Run by the worker's cron every
NOTIFICATIONS_SWEEP_INTERVAL seconds: after a FLUSHALL or a crash between commit
and enqueue, everything accepted is delivered within one interval.
"""

from __future__ import annotations

import logging
from uuid import UUID

from arq.constants import in_progress_key_prefix, job_key_prefix

from app import metrics
from app.runtime import Runtime
from app.services import queueing
from app.store import notifications as store

log = logging.getLogger(__name__)

GRACE_SECONDS = 5.0
SWEEP_LIMIT = 20_000


async def _jobs_alive(rt: Runtime, job_ids: list[str]) -> list[bool]:
    async with rt.redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.exists(job_key_prefix + job_id, in_progress_key_prefix + job_id)
        results = await pipe.execute()
    return [bool(r) for r in results]


async def sweep(rt: Runtime) -> int:
    """Re-enqueue lost work; return how many notifications were re-enqueued."""
    settings = rt.settings
    rows = await store.stuck_rows(
        rt.db, grace=GRACE_SECONDS, lock_timeout=settings.lock_timeout, limit=SWEEP_LIMIT
    )
    await update_queue_gauge(rt)
    if settings.queue_backend != "redis":
        return 0
    from app.services import campaigns

    await campaigns.reenqueue_pending(rt, grace=max(GRACE_SECONDS, 30.0))
    if not rows:
        return 0
    # A row locked past the lock timeout belongs to a dead worker: its ARQ job may still look
    # alive (arq keeps a killed job's in-progress key for the job timeout), so re-enqueue it
    # regardless; claim() takes the stale lock safely. Unlocked rows only need a job if theirs
    # is gone.
    with_job = [r for r in rows if r["job_id"] and not r["stale_lock"]]
    alive = await _jobs_alive(rt, [r["job_id"] for r in with_job]) if with_job else []
    alive_ids = {r["notification_id"] for r, ok in zip(with_job, alive, strict=True) if ok}
    lost: list[UUID] = [r["notification_id"] for r in rows if r["notification_id"] not in alive_ids]
    if not lost:
        return 0
    jobs, job_of = queueing.plan_jobs([], [])
    for start in range(0, len(lost), queueing.MANY_CHUNK):
        chunk = lost[start : start + queueing.MANY_CHUNK]
        job_id = queueing.deliver_many_job_id()
        jobs.append(queueing.JobSpec(queueing.DELIVER_MANY, ([str(n) for n in chunk],), job_id))
        await store.set_job_ids(rt.db, chunk, job_id)
    await queueing.enqueue(rt.redis, jobs)
    log.warning("sweep re-enqueued %d notification(s) whose jobs were lost", len(lost))
    del job_of
    return len(lost)


async def update_queue_gauge(rt: Runtime) -> int:
    size = int(await rt.db.fetchval("SELECT COUNT(*) FROM notification_queue"))
    metrics.notification_queue_size.set(size)
    return size
