"""Small builders shared by the core tests."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from app.models import Caller, Role, SendRequest
from app.providers.testing import sent_key
from app.runtime import Runtime
from app.store import providers as provider_store

ADMIN = Caller(role=Role.ADMIN, source="test")


def email_request(user_id: UUID | None = None, **overrides: Any) -> SendRequest:
    data: dict[str, Any] = {
        "user_id": str(user_id or uuid4()),
        "channel": "email",
        "to": {"email": "user@example.com"},
        "subject": "Hello {{name}}",
        "body": "Hi {{name}}",
        "variables": {"name": "Ada"},
    }
    data.update(overrides)
    return SendRequest.model_validate(data)


async def add_test_provider(
    rt: Runtime, name: str = "primary", channel: str = "email", priority: int = 100, **config: Any
) -> None:
    await provider_store.upsert(rt.db, name, channel, priority, {"provider": "test", **config})
    from app.services.providers import provider_set

    provider_set(rt).invalidate()


async def sent_ids(rt: Runtime, name: str = "primary") -> list[str]:
    raw = await rt.redis.lrange(sent_key(name), 0, -1)
    return [x.decode() if isinstance(x, bytes) else x for x in raw]


async def status_of(rt: Runtime, notification_id: UUID) -> str:
    return str(
        await rt.db.fetchval("SELECT status FROM notifications WHERE id = $1", notification_id)
    )
