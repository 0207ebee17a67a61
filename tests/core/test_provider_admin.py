"""Provider rows: encrypted at rest, decrypted on load, key rotation, env registration."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.errors import Forbidden, InvalidInput
from app.models import Caller, Role
from app.services import provider_admin
from app.services.providers import provider_set, register_env_providers
from tests.core.helpers import ADMIN

KEY = "0123456789abcdef0123456789abcdef"


async def test_config_is_encrypted_at_rest_and_used_decrypted(make_rt: Any) -> None:
    rt = await make_rt(encrypt_config=True, encryption_key=KEY)
    await provider_admin.upsert(
        rt, ADMIN, "primary", "email", 10, {"provider": "test", "api_key": "re_secret"}
    )
    raw = await rt.db.fetchval("SELECT config FROM notification_providers WHERE name = 'primary'")
    assert "re_secret" not in json.dumps(raw) and set(raw) == {"encrypted"}
    chain = await provider_set(rt).for_channel(rt, "email")
    assert [name for name, _ in chain] == ["primary"]
    assert chain[0][1].config["api_key"] == "re_secret"
    audit = await rt.db.fetchval(
        "SELECT count(*) FROM notification_audit_log WHERE action = $1", "provider.upsert"
    )
    assert audit == 1


async def test_key_rotation(make_rt: Any) -> None:
    rt = await make_rt(encrypt_config=True, encryption_key=KEY)
    await provider_admin.upsert(rt, ADMIN, "primary", "email", 10, {"provider": "test", "k": "v"})
    new_key = "n" * 32
    assert await provider_admin.rotate_key(rt, ADMIN, KEY, new_key) == 1
    rotated = await make_rt(encrypt_config=True, encryption_key=new_key)
    chain = await provider_set(rotated).for_channel(rotated, "email")
    assert chain[0][1].config["k"] == "v"
    with pytest.raises(InvalidInput):
        await provider_admin.rotate_key(rt, ADMIN, KEY, "m" * 32)  # the old key no longer fits


async def test_only_admins_and_known_providers(rt: Any) -> None:
    user = Caller(role=Role.USER, user_id=None)
    with pytest.raises(Forbidden):
        await provider_admin.upsert(rt, user, "resend", "email")
    with pytest.raises(InvalidInput):
        await provider_admin.upsert(rt, ADMIN, "pigeon", "email")


async def test_env_configured_provider_gets_a_health_row(make_rt: Any) -> None:
    rt = await make_rt(email_enabled=True, email_provider="resend", email_api_key="re_x")
    await register_env_providers(rt)
    rows = await rt.db.fetch("SELECT name, channel FROM notification_provider_health")
    assert [(r["name"], r["channel"]) for r in rows] == [("resend", "email")]
    chain = await provider_set(rt).for_channel(rt, "email")
    assert [name for name, _ in chain] == ["resend"] and chain[0][1].config["api_key"] == "re_x"
