"""`notifications provider ...`: rows with encrypted configs, listing without secrets, rotation."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

KEY = "0123456789abcdef0123456789abcdef"
NEW_KEY = "fedcba9876543210fedcba9876543210"


async def test_add_list_rotate_remove(cli: Any, database_url: str) -> None:
    env = {"NOTIFICATIONS_ENCRYPT_CONFIG": "true", "NOTIFICATIONS_ENCRYPTION_KEY": KEY}
    added = await cli(
        "provider",
        "add",
        "resend-eu",
        "--channel",
        "email",
        "--priority",
        "90",
        "--config",
        '{"provider": "resend", "api_key": "re_secret"}',
        **env,
    )
    assert added.exit_code == 0, added.output
    conn = await asyncpg.connect(database_url)
    try:
        raw = await conn.fetchval(
            "SELECT config FROM notification_providers WHERE name = 'resend-eu'"
        )
        assert "re_secret" not in raw and "encrypted" in json.loads(raw)
        listed = await cli.json("provider", "list", **env)
        assert listed[0]["name"] == "resend-eu" and listed[0]["priority"] == 90
        assert "re_secret" not in json.dumps(listed) and "api_key" in listed[0]["config"]
        rotated = await cli("provider", "rotate-key", "--new-key", NEW_KEY, **env)
        assert rotated.exit_code == 0 and "1 provider" in rotated.output
        after = await cli.json(
            "provider",
            "list",
            NOTIFICATIONS_ENCRYPT_CONFIG="true",
            NOTIFICATIONS_ENCRYPTION_KEY=NEW_KEY,
        )
        assert "api_key" in after[0]["config"]
        removed = await cli("provider", "remove", "resend-eu", "--channel", "email", **env)
        assert removed.exit_code == 0
        assert await conn.fetchval("SELECT count(*) FROM notification_providers") == 0
    finally:
        await conn.close()


async def test_bad_input_is_exit_2(cli: Any) -> None:
    bad_json = await cli("provider", "add", "resend", "--channel", "email", "--config", "{nope")
    assert bad_json.exit_code == 2 and "not JSON" in bad_json.output
    unknown = await cli("provider", "add", "pigeon", "--channel", "email")
    assert unknown.exit_code == 2 and "unknown provider" in unknown.output
    missing = await cli("provider", "remove", "nope", "--channel", "sms")
    assert missing.exit_code == 1
