"""Rate limits in Redis: per-user sends per hour, and per-provider request rates.

Per-user (spec: email 100/h, push 200/h, sms 20/h): a fixed one-hour window
counter per (user, channel), checked and incremented for a whole intake batch by
one Lua script, so concurrent API processes never both take the last slot.

Per-provider (NOTIFICATIONS_<PROVIDER>_RATE_LIMIT in the spec's units): GCRA, a
token bucket stored as one "theoretical arrival time" per provider, shared by all
workers. A send near the limit reserves its slot and waits for it (up to
`max_wait`); further out it is refused so the worker fails over instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

USER_WINDOW = 3600

_USER_SCRIPT = """
local rejected = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[i])
  if limit > 0 then
    local n = redis.call('INCR', key)
    if n == 1 then redis.call('EXPIRE', key, tonumber(ARGV[#KEYS + 1])) end
    if n > limit then
      redis.call('DECR', key)
      table.insert(rejected, i)
    end
  end
end
return rejected
"""

_GCRA_SCRIPT = """
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', key) or now)
if tat < now then tat = now end
local wait = tat - (burst - 1) * interval - now
if wait < 0 then wait = 0 end
if wait > max_wait then return tostring(-wait) end
local new_tat = tat + interval
redis.call('SET', key, tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return tostring(wait)
"""


@dataclass(frozen=True)
class UserSlot:
    user_id: str
    channel: str
    limit: int


def _window(now: float) -> tuple[int, float]:
    start = int(now // USER_WINDOW) * USER_WINDOW
    return start, start + USER_WINDOW - now


async def take_user_slots(
    redis: Redis, slots: Sequence[UserSlot], now: float | None = None
) -> tuple[set[int], float]:
    """Count each slot; return (indices over their limit, seconds until the window resets)."""
    if not slots:
        return set(), 0.0
    now = time.time() if now is None else now
    start, retry_after = _window(now)
    keys = [f"notif:rl:user:{s.user_id}:{s.channel}:{start}" for s in slots]
    args = [str(s.limit) for s in slots] + [str(USER_WINDOW + 60)]
    rejected = await redis.eval(_USER_SCRIPT, len(keys), *keys, *args)  # type: ignore[misc,arg-type]
    return {int(i) - 1 for i in rejected}, retry_after


async def give_back_user_slots(
    redis: Redis, slots: Sequence[UserSlot], now: float | None = None
) -> None:
    """Undo counts for sends that turned out to be duplicates."""
    if not slots:
        return
    start, _ = _window(time.time() if now is None else now)
    async with redis.pipeline(transaction=False) as pipe:
        for s in slots:
            pipe.decr(f"notif:rl:user:{s.user_id}:{s.channel}:{start}")
        await pipe.execute()


async def reserve_provider_slot(
    redis: Redis,
    provider: str,
    limit: float,
    period: float,
    *,
    max_wait: float = 2.0,
    now: float | None = None,
) -> float:
    """Seconds to wait before sending (>= 0), or a negative number: refused, fail over.

    `limit` requests per `period` seconds; 0 means unlimited. Burst allowance is
    one second's worth of requests (at least one).
    """
    if limit <= 0:
        return 0.0
    interval = period / limit
    burst = max(1, int(limit / period))
    now = time.time() if now is None else now
    result = await redis.eval(  # type: ignore[misc,arg-type]
        _GCRA_SCRIPT,
        1,
        f"notif:rl:provider:{provider}",
        *map(str, (interval, burst, now, max_wait)),
    )
    return float(result)
