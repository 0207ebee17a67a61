"""Group commit for single sends: concurrent `send` calls share one insert and one enqueue.

PERFORMANCE.md measured a per-request transaction plus `enqueue_job` at ~2,200
req/s; coalescing concurrent requests into one `INSERT ... unnest` and one Redis
round trip doubles that and halves the tail. The first request of an idle period
waits at most `window` seconds for company; under load, requests that arrive
while a batch is being written simply form the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.errors import Unavailable

if TYPE_CHECKING:
    from app.runtime import Runtime
    from app.services.notifications import Prepared, SendOutcome

log = logging.getLogger(__name__)


@dataclass
class Intake:
    rt: Runtime
    window: float = 0.001
    max_batch: int = 500
    _pending: list[tuple[Prepared, asyncio.Future[SendOutcome]]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def submit(self, prepared: Prepared) -> SendOutcome:
        future: asyncio.Future[SendOutcome] = asyncio.get_running_loop().create_future()
        self._pending.append((prepared, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        await asyncio.sleep(self.window)
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            await self._flush(batch)

    async def _flush(self, batch: list[tuple[Prepared, asyncio.Future[SendOutcome]]]) -> None:
        from app.services.notifications import accept_batch

        try:
            outcomes = await accept_batch(self.rt, [p for p, _ in batch])
        except Exception as exc:
            error = _as_unavailable(exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def aclose(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)


def _as_unavailable(exc: Exception) -> Exception:
    """Database/Redis trouble while accepting becomes a 503; nothing was committed."""
    from app.errors import NotificationError

    if isinstance(exc, NotificationError):
        return exc
    log.warning("accepting a batch failed: %r", exc)
    return Unavailable(f"the notification store is unavailable: {type(exc).__name__}")


def intake(rt: Runtime) -> Intake:
    found = rt.state.get("intake")
    if found is None:
        found = Intake(rt)
        rt.state["intake"] = found
    return found  # type: ignore[no-any-return]
