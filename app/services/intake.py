"""Group commit for single sends: concurrent `send` calls share one insert and one enqueue.

PERFORMANCE.md measured a per-request transaction plus `enqueue_job` at ~2,200
req/s; coalescing concurrent requests into one `INSERT ... unnest` and one Redis
round trip doubles that and halves the tail (see app.services.coalesce).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app.errors import NotificationError, Unavailable, unavailable_from
from app.services.coalesce import BURST_LEAD, Coalescer

if TYPE_CHECKING:
    from app.runtime import Runtime
    from app.services.notifications import Prepared, SendOutcome

log = logging.getLogger(__name__)

# A burst is flushed in parts by the sends that complete them (app.services.coalesce
# BURST_LEAD); the rest of a burst goes at the end of the event-loop pass that prepared
# it (window 0): waiting longer for company only idles the process between bursts.


def _as_unavailable(exc: Exception) -> Exception:
    """Database/Redis trouble while accepting becomes a 503; nothing was committed."""
    if isinstance(exc, NotificationError):
        return exc
    log.warning("accepting a batch failed: %r", exc)
    return unavailable_from(exc) or Unavailable(
        f"the notification store is unavailable: {type(exc).__name__}"
    )


def intake(rt: Runtime) -> Coalescer[Prepared, SendOutcome]:
    found = rt.state.get("intake")
    if found is None:
        from app.services.notifications import accept_batch

        async def flush(batch: list[Prepared]) -> list[SendOutcome]:
            return await accept_batch(rt, batch)

        found = Coalescer(flush, on_error=_as_unavailable, window=0, lead_at=BURST_LEAD)
        rt.state["intake"] = found
    return found  # type: ignore[no-any-return]
