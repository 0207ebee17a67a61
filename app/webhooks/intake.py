"""Group commit for webhook deliveries: concurrent requests share one replay claim (one
Redis call) and one transaction (app.services.events.apply_groups).

A single-event provider such as Resend sends one request per event; claiming each
delivery with its own Redis round trip and applying it in its own transaction
capped the receiver near 1,100 events/s. Batched, a burst costs one script call
and one transaction, whatever its size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.providers.base import ProviderEvent
from app.services import events as event_service
from app.services.coalesce import BURST_LEAD, Coalescer
from app.webhooks import replay

if TYPE_CHECKING:
    from app.runtime import Runtime


@dataclass(frozen=True)
class Delivery:
    """One verified webhook request: its replay identity and its parsed events."""

    key: str
    events: Sequence[ProviderEvent]


Intake = Coalescer[Delivery, event_service.Counts | None]


def webhook_intake(rt: Runtime) -> Intake:
    """The process's intake; `submit` answers the request's Counts, or None for a replay."""
    found = rt.state.get("webhook_intake")
    if found is None:
        ttl = replay.ttl_for(rt.settings)

        async def flush(batch: list[Delivery]) -> list[event_service.Counts | None]:
            claimed = await replay.claim_many(rt.redis, [d.key for d in batch], ttl)
            fresh = [d for d, first in zip(batch, claimed, strict=True) if first]
            try:
                counts = iter(await event_service.apply_groups(rt, [d.events for d in fresh]))
            except BaseException:
                await replay.release_many(rt.redis, [d.key for d in fresh])
                raise
            return [next(counts) if first else None for first in claimed]

        found = Coalescer(flush, max_batch=200, window=0, lead_at=BURST_LEAD)  # as the send intake
        rt.state["webhook_intake"] = found
    return found  # type: ignore[no-any-return]
