"""Per-IP API rate limit: a token bucket in Redis (one Lua call per request).

NOTIFICATIONS_API_RATE_LIMIT requests per minute are refilled continuously; the
bucket holds that many plus NOTIFICATIONS_API_BURST_LIMIT, so a client may burst
a little above its rate. A refused request gets 429 with Retry-After. If Redis
cannot be reached the request passes (the limit protects, it must not take the
API down with it).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV: capacity, refill per second, now, ttl -> {allowed, retry_after_ms}
_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return {allowed, retry}
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0
    limit: int = 0


async def take(redis: Redis, ip: str, per_minute: int, burst: int) -> Verdict:
    if per_minute <= 0:
        return Verdict(True)
    capacity = per_minute + max(burst, 0)
    rate = per_minute / 60.0
    ttl = max(60, math.ceil(capacity / rate) + 1)
    try:
        allowed, retry_ms = await redis.eval(  # type: ignore[misc]
            _BUCKET, 1, f"notif:api:rl:{ip}", str(capacity), repr(rate), repr(time.time()), str(ttl)
        )
    except Exception as exc:
        log.warning("API rate limit skipped, Redis unavailable: %s", exc)
        return Verdict(True, limit=per_minute)
    return Verdict(bool(int(allowed)), int(retry_ms) / 1000.0, per_minute)
