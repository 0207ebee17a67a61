"""A controllable provider for tests and benchmarks (any channel).

Its behaviour comes from its config (a notification_providers row, so separate
worker processes see it too):

    {"provider": "test", "mode": "ok" | "transient" | "permanent" | "timeout" | "ratelimit"
                                | "auth",
     "delay": 0.02,          # seconds per send (a provider that answers in 20 ms)
     "fail_times": 3,        # the first N sends fail transiently, then `mode` applies
     "retry_after": 1.5}     # for mode ratelimit

Every successful send is appended to the Redis list `test-provider:<name>:sent`
(the notification id), so tests count deliveries and duplicates across processes.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from app.models import Channel
from app.providers.base import (
    OutboundMessage,
    PermanentProviderError,
    Provider,
    ProviderAuthError,
    ProviderCheck,
    ProviderRateLimited,
    SendResult,
    TransientProviderError,
)


def sent_key(name: str) -> str:
    return f"test-provider:{name}:sent"


class TestProvider(Provider):
    __test__ = False  # not a pytest class
    name: ClassVar[str] = "test"
    channel: ClassVar[Channel] = Channel.EMAIL  # serves whichever channel its row names

    @property
    def instance_name(self) -> str:
        return str(self.config.get("name", self.name))

    async def send(self, message: OutboundMessage) -> SendResult:
        delay = float(self.config.get("delay", 0))
        if delay:
            await asyncio.sleep(delay)
        mode = str(self.config.get("mode", "ok"))
        fail_times = int(self.config.get("fail_times", 0))
        if fail_times and self.ctx.redis is not None:
            calls = await self.ctx.redis.incr(  # type: ignore[misc]
                f"test-provider:{self.instance_name}:calls"
            )
            if calls <= fail_times:
                mode = "transient"
        if mode == "transient":
            raise TransientProviderError(
                "503 service unavailable", provider=self.instance_name, status=503
            )
        if mode == "permanent":
            raise PermanentProviderError(
                "invalid recipient", provider=self.instance_name, status=400, invalid_recipient=True
            )
        if mode == "auth":
            raise ProviderAuthError("bad credentials", provider=self.instance_name, status=401)
        if mode == "ratelimit":
            raise ProviderRateLimited(
                "429 too many requests",
                provider=self.instance_name,
                status=429,
                retry_after=float(self.config.get("retry_after", 1)),
            )
        if mode == "timeout":
            await asyncio.sleep(self.ctx.timeout * 4)
        if self.ctx.redis is not None:
            await self.ctx.redis.rpush(  # type: ignore[misc]
                sent_key(self.instance_name), str(message.notification_id)
            )
        return SendResult(provider_message_id=f"test-{message.notification_id}")

    async def check(self) -> ProviderCheck:
        return ProviderCheck(reachable=True, authenticated=True, detail="test provider")
