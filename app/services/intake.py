"""Group commit for single sends: concurrent `send` calls share one insert and one enqueue.

PERFORMANCE.md measured a per-request transaction plus `enqueue_job` at ~2,200
req/s; coalescing concurrent requests into one `INSERT ... unnest` and one Redis
round trip doubles that and halves the tail (see app.services.coalesce).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app.errors import NotificationError, Unavailable, unavailable_from
from app.services.coalesce import Coalescer

if TYPE_CHECKING:
    from app.runtime import Runtime
    from app.services.notifications import Prepared, SendOutcome

log = logging.getLogger(__name__)

# A burst of this many prepared sends is flushed at once by the send that completes it
# (see app.services.coalesce): at 32 concurrent requests, two batches overlap. The rest
# of a burst goes at the end of the event-loop pass that prepared it (window 0): waiting
# longer for company only idles the process between bursts.
LEAD_AT = 16


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

        found = Coalescer(flush, on_error=_as_unavailable, window=0, lead_at=LEAD_AT)
        rt.state["intake"] = found
    return found  # type: ignore[no-any-return]
