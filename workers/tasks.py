"""ARQ job functions: thin wrappers over app.services."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from arq import Retry

from app.services import delivery, queueing, recovery, retention


async def deliver(ctx: dict[str, Any], notification_id: str) -> dict[str, int]:
    """Deliver one notification; a transient failure retries this same job via arq's Retry."""
    own_job_id = ctx.get("job_id")
    outcome = await delivery.deliver_ids(
        ctx["rt"], [UUID(notification_id)], job_id_for_retry=lambda _nid, _attempt: own_job_id
    )
    if outcome.retries:
        raise Retry(defer=outcome.retries[0][1])
    return {"sent": len(outcome.sent), "failed": len(outcome.failed)}


async def deliver_many(ctx: dict[str, Any], notification_ids: list[str]) -> dict[str, int]:
    """Deliver a chunk; each notification that must retry gets its own deferred job."""
    rt = ctx["rt"]
    outcome = await delivery.deliver_ids(rt, [UUID(n) for n in notification_ids])
    now = time.time()
    jobs = [
        queueing.JobSpec(
            queueing.DELIVER,
            (str(nid),),
            job_id or queueing.deliver_job_id(nid),
            defer_until=now + delay,
        )
        for nid, delay, job_id in outcome.retries
    ]
    if jobs:
        await queueing.enqueue(rt.redis, jobs)
    return {"sent": len(outcome.sent), "failed": len(outcome.failed), "retrying": len(jobs)}


async def sweep(ctx: dict[str, Any]) -> int:
    """Re-enqueue queue rows whose ARQ jobs were lost."""
    return await recovery.sweep(ctx["rt"])


async def cleanup(ctx: dict[str, Any]) -> dict[str, int]:
    """Retention: old notifications, events and queue leftovers, in small batches."""
    return await retention.cleanup(ctx["rt"])
