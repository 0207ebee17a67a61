"""Circuit breakers per provider, shared by every worker through Redis.

    closed --(threshold consecutive failures)--> open --(timeout elapsed)--> half_open
    half_open --(the one trial send succeeds)--> closed
    half_open --(the trial fails)--------------> open (timer restarts)

Only one worker gets the half-open trial (an atomic state change in Lua). The
state is mirrored to notification_providers (failure_count, last_success_at,
last_failure_at, breaker_state) by the delivery service, so the spec's
provider_health view and `stats providers` show it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.asyncio import Redis

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

_ALLOW = """
local allowed = {}
local now = tonumber(ARGV[1])
local timeout = tonumber(ARGV[2])
local trial_timeout = tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  local state = redis.call('HGET', key, 'state') or 'closed'
  local ok = 1
  if state == 'open' then
    local opened = tonumber(redis.call('HGET', key, 'opened_at') or '0')
    if now - opened >= timeout then
      redis.call('HSET', key, 'state', 'half_open', 'trial_at', tostring(now))
    else
      ok = 0
    end
  elseif state == 'half_open' then
    local trial = tonumber(redis.call('HGET', key, 'trial_at') or '0')
    if now - trial >= trial_timeout then
      redis.call('HSET', key, 'trial_at', tostring(now))
    else
      ok = 0
    end
  end
  table.insert(allowed, ok)
end
return allowed
"""

_RECORD = """
local key = KEYS[1]
local success = ARGV[1] == '1'
local now = ARGV[2]
local threshold = tonumber(ARGV[3])
local state = redis.call('HGET', key, 'state') or 'closed'
if success then
  if state ~= 'closed' or redis.call('HGET', key, 'failures') ~= '0' then
    redis.call('HSET', key, 'state', 'closed', 'failures', '0')
  end
  return {state, 'closed'}
end
local failures = redis.call('HINCRBY', key, 'failures', 1)
if state == 'half_open' or (state == 'closed' and failures >= threshold) then
  redis.call('HSET', key, 'state', 'open', 'opened_at', now)
  return {state, 'open'}
end
return {state, state}
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _key(provider: str) -> str:
    return f"notif:breaker:{provider}"


class Breakers:
    """Breaker operations for one process, with the thresholds from settings."""

    def __init__(self, redis: Redis, threshold: int, timeout: float, trial_timeout: float):
        self.redis = redis
        self.threshold = threshold
        self.timeout = timeout
        self.trial_timeout = trial_timeout

    async def allow(self, providers: Sequence[str], now: float | None = None) -> list[bool]:
        """Which providers may be tried now (claims the half-open trial when due)."""
        if not providers:
            return []
        now = time.time() if now is None else now
        keys = [_key(p) for p in providers]
        result = await self.redis.eval(  # type: ignore[misc,arg-type]
            _ALLOW, len(keys), *keys, str(now), str(self.timeout), str(self.trial_timeout)
        )
        return [bool(int(x)) for x in result]

    async def record(
        self, provider: str, success: bool, now: float | None = None
    ) -> tuple[str, str]:
        """Count an outcome; return (state before, state after)."""
        now = time.time() if now is None else now
        before, after = await self.redis.eval(  # type: ignore[misc,arg-type]
            _RECORD, 1, _key(provider), "1" if success else "0", str(now), str(self.threshold)
        )
        return _text(before), _text(after)

    async def state(self, provider: str) -> dict[str, str]:
        raw = await self.redis.hgetall(_key(provider))  # type: ignore[misc,arg-type]
        decoded = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        decoded.setdefault("state", CLOSED)
        decoded.setdefault("failures", "0")
        return decoded

    async def reset(self, provider: str) -> None:
        await self.redis.delete(_key(provider))
