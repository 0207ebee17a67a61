"""Circuit breakers per provider, shared by every worker through Redis.

    closed --(threshold consecutive failures)--> open --(timeout elapsed)--> half_open
    half_open --(the one trial send succeeds)--> closed
    half_open --(the trial fails)--------------> open (timer restarts)

Only one worker gets the half-open trial (an atomic state change in Lua). Each
process keeps a view of every breaker, refreshed at most once a second, so the
happy path (closed, no failures) costs no Redis round trip per send; anything
else goes through the atomic scripts. The
state is mirrored to notification_providers (failure_count, last_success_at,
last_failure_at, breaker_state) by the delivery service, so the spec's
provider_health view and `stats providers` show it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from redis.asyncio import Redis

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
VIEW_TTL = 1.0  # seconds a process trusts its view of a breaker

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


def _text(value: bytes | str) -> str:  # redis answers bytes
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
        self._view: dict[str, tuple[float, str, int]] = {}  # name -> (seen at, state, failures)
        self._refreshing = asyncio.Lock()

    def _fresh(self, provider: str, now: float) -> bool:
        seen = self._view.get(provider)
        return seen is not None and now - seen[0] < VIEW_TTL

    async def _refresh(self, providers: Sequence[str]) -> None:
        now = time.monotonic()
        if all(self._fresh(p, now) for p in providers):
            return
        async with self._refreshing:
            stale = [p for p in dict.fromkeys(providers) if not self._fresh(p, time.monotonic())]
            if not stale:
                return
            async with self.redis.pipeline(transaction=False) as pipe:
                for provider in stale:
                    pipe.hmget(_key(provider), ["state", "failures"])
                results = await pipe.execute()
            seen = time.monotonic()
            for provider, (state, failures) in zip(stale, results, strict=True):
                self._view[provider] = (seen, _text(state or CLOSED), int(failures or 0))

    async def allow(self, providers: Sequence[str], now: float | None = None) -> list[bool]:
        """Which providers may be tried now (claims the half-open trial when due)."""
        if not providers:
            return []
        await self._refresh(providers)
        # one snapshot: other coroutines may update the view while the script runs
        closed = [self._view[p][1] == CLOSED for p in providers]
        doubtful = [p for p, ok in zip(providers, closed, strict=True) if not ok]
        if not doubtful:
            return [True] * len(providers)
        now = time.time() if now is None else now
        keys = [_key(p) for p in doubtful]
        result = await self.redis.eval(  # type: ignore[misc,arg-type]
            _ALLOW, len(keys), *keys, str(now), str(self.timeout), str(self.trial_timeout)
        )
        verdicts = iter(bool(int(x)) for x in result)
        return [True if ok else next(verdicts) for ok in closed]

    async def record(
        self, provider: str, success: bool, now: float | None = None
    ) -> tuple[str, str]:
        """Count an outcome; return (state before, state after)."""
        seen = self._view.get(provider)
        if success and seen is not None and seen[1] == CLOSED and seen[2] == 0:
            return CLOSED, CLOSED  # nothing to reset
        now = time.time() if now is None else now
        before, after = await self.redis.eval(  # type: ignore[misc,arg-type]
            _RECORD, 1, _key(provider), "1" if success else "0", str(now), str(self.threshold)
        )
        failures = 0 if success else (seen[2] if seen else 0) + 1
        self._view[provider] = (time.monotonic(), _text(after), failures)
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
        self._view.pop(provider, None)
