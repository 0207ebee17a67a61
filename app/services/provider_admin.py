"""Managing notification_providers rows: add/update (config encrypted at rest when
NOTIFICATIONS_ENCRYPT_CONFIG=true), enable/disable, remove, and key rotation."""

from __future__ import annotations

from typing import Any

from app import security
from app.errors import Forbidden, InvalidInput, NotFound
from app.models import Caller, Channel, Role
from app.providers import registry
from app.runtime import Runtime
from app.services import audit
from app.services.providers import provider_set
from app.store import providers as store


def _require_admin(caller: Caller) -> None:
    if caller.role not in (Role.ADMIN, Role.SERVICE):
        raise Forbidden("only admins may change providers")


def _check(name: str, channel: str, config: dict[str, Any]) -> None:
    try:
        Channel(channel)
    except ValueError:
        raise InvalidInput("channel must be one of email, push, sms") from None
    kind = str(config.get("provider", name))
    try:
        registry.provider_class(kind)
    except registry.UnknownProvider as exc:
        raise InvalidInput(str(exc)) from None


async def upsert(
    rt: Runtime,
    caller: Caller,
    name: str,
    channel: str,
    priority: int = 0,
    config: dict[str, Any] | None = None,
    enabled: bool = True,
) -> Any:
    _require_admin(caller)
    config = dict(config or {})
    _check(name, channel, config)
    stored: Any = config
    if rt.settings.encrypt_config and config:
        assert rt.settings.encryption_key
        stored = security.encrypt_config(config, rt.settings.encryption_key)
    async with rt.db.acquire() as conn, conn.transaction():
        row = await store.upsert(conn, name, channel, priority, stored, enabled)
        await audit.record(
            conn,
            caller,
            "provider.upsert",
            target_type="provider",
            target_id=f"{name}/{channel}",
            details={"priority": priority, "enabled": enabled, "keys": sorted(config)},
        )
    provider_set(rt).invalidate()
    return row


async def remove(rt: Runtime, caller: Caller, name: str, channel: str) -> None:
    _require_admin(caller)
    async with rt.db.acquire() as conn, conn.transaction():
        result = await conn.execute(
            "DELETE FROM notification_providers WHERE name = $1 AND channel = $2", name, channel
        )
        if result.endswith(" 0"):
            raise NotFound(f"provider {name}/{channel} does not exist")
        await audit.record(
            conn, caller, "provider.remove", target_type="provider", target_id=f"{name}/{channel}"
        )
    provider_set(rt).invalidate()


async def rotate_key(rt: Runtime, caller: Caller, old_key: str | None, new_key: str) -> int:
    """Re-encrypt every provider config under `new_key` in one transaction; return the count.

    Plain configs get encrypted too, so rotation is also how an install switches
    NOTIFICATIONS_ENCRYPT_CONFIG on for rows written before it.
    """
    _require_admin(caller)
    if len(new_key) < 32:
        raise InvalidInput("the new key must be at least 32 characters")
    async with rt.db.acquire() as conn, conn.transaction():
        rows = await conn.fetch("SELECT id, config FROM notification_providers FOR UPDATE")
        count = 0
        for row in rows:
            if not row["config"]:
                continue
            try:
                sealed = security.rotate(row["config"], old_key, new_key)
            except security.ConfigDecryptionError as exc:
                raise InvalidInput(f"cannot rotate: {exc}") from None
            await conn.execute(
                "UPDATE notification_providers SET config = $2, updated_at = NOW() WHERE id = $1",
                row["id"],
                sealed,
            )
            count += 1
        await audit.record(
            conn,
            caller,
            "provider.rotate_key",
            target_type="provider",
            target_id="*",
            details={"rows": count},
        )
    provider_set(rt).invalidate()
    return count
