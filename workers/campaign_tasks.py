"""ARQ job functions for digests (and the cron schedule the WorkerSettings mounts).

campaign_expand  one staged chunk of a campaign -> notifications (idempotent)
digest_tick   cron, every 5 minutes: send the due daily/weekly digests (exactly once
              per user, channel and window, whatever the number of workers)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from arq import cron

from app.services import campaigns, digests


async def campaign_expand(ctx: dict[str, Any], campaign_id: str, chunk: int) -> int:
    """Turn one staged chunk of a campaign into queued notifications."""
    return await campaigns.expand_chunk(ctx["rt"], UUID(campaign_id), chunk)


async def digest_tick(ctx: dict[str, Any]) -> dict[str, int]:
    """Build and send every digest whose window is due now."""
    result = await digests.tick(ctx["rt"], datetime.now(UTC))
    return result.as_dict()


def cron_jobs() -> list[Any]:
    """What workers/settings.py adds to WorkerSettings.cron_jobs."""
    return [
        cron(
            digest_tick,
            minute=set(range(0, 60, 5)),
            second=30,
            unique=True,
            timeout=600,
            run_at_startup=False,
        )
    ]
