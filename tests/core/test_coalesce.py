"""Group commit (app.services.coalesce): batching, the burst leader, errors, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from app.services.coalesce import Coalescer


class Recorder:
    """A flush that records its batches and the order of events."""

    def __init__(self, delay: float = 0.01) -> None:
        self.batches: list[list[int]] = []
        self.events: list[str] = []
        self.delay = delay

    async def __call__(self, batch: list[int]) -> list[int]:
        self.batches.append(list(batch))
        self.events.append(f"flush{len(self.batches)}-start")
        await asyncio.sleep(self.delay)
        return [item * 10 for item in batch]


async def _burst(coalescer: Coalescer[int, int], items: range, events: list[str]) -> list[int]:
    async def one(item: int) -> int:
        events.append(f"submit{item}")
        return await coalescer.submit(item)

    return await asyncio.gather(*(one(i) for i in items))


async def test_a_burst_without_a_leader_is_one_batch() -> None:
    flush = Recorder()
    results = await _burst(Coalescer(flush), range(8), flush.events)
    assert results == [i * 10 for i in range(8)]
    assert flush.batches == [list(range(8))]


async def test_the_leader_flushes_before_the_rest_of_the_burst_is_submitted() -> None:
    flush = Recorder()
    results = await _burst(Coalescer(flush, lead_at=4), range(10), flush.events)
    assert results == [i * 10 for i in range(10)]
    assert flush.batches[:2] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert sorted(item for batch in flush.batches for item in batch) == list(range(10))
    # the first batch's flush started before item 4 was even submitted
    assert flush.events.index("flush1-start") < flush.events.index("submit4")


async def test_no_leader_when_every_slot_is_busy() -> None:
    flush = Recorder(delay=0.05)
    coalescer: Coalescer[int, int] = Coalescer(flush, lead_at=2, parallel=1)
    results = await _burst(coalescer, range(6), flush.events)
    assert results == [i * 10 for i in range(6)]
    # the first pair leads; the rest waits for the single slot and goes as one batch
    assert flush.batches == [[0, 1], [2, 3, 4, 5]]


async def test_a_failed_flush_fails_every_caller_of_the_batch() -> None:
    async def broken(batch: list[int]) -> list[int]:
        raise ConnectionError("database went away")

    coalescer: Coalescer[int, int] = Coalescer(
        broken, lead_at=3, on_error=lambda exc: RuntimeError(f"unavailable: {exc}")
    )
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "database went away" in str(r) for r in results)


async def test_a_cancelled_leader_releases_the_rest_of_its_batch() -> None:
    started = asyncio.Event()

    async def slow(batch: list[int]) -> list[int]:
        started.set()
        await asyncio.sleep(10)
        return batch

    coalescer: Coalescer[int, int] = Coalescer(slow, lead_at=3, on_error=lambda exc: exc)
    followers = [asyncio.create_task(coalescer.submit(i)) for i in range(2)]
    await asyncio.sleep(0)  # both are pending now
    leader = asyncio.create_task(coalescer.submit(2))
    await asyncio.wait_for(started.wait(), 1)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    for follower in followers:
        with pytest.raises(RuntimeError, match="interrupted"):
            await asyncio.wait_for(follower, 1)
    assert not coalescer._slots.locked()  # the slot was given back
