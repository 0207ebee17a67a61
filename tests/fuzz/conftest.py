"""The real app (create_app) on the test database and Redis, every way in configured,
a small body limit so oversized bodies are cheap to send."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.main import create_app

ADMIN_SECRET = "fuzz-admin-secret-0123456789"
ACTION_SECRET = "fuzz-action-secret-0123456789"
API_KEY = "fuzz-api-key-0123456789abcdef"
MAX_BODY = 8192

ADMIN = {"X-Notifications-Admin-Secret": ADMIN_SECRET}
SERVICE = {"X-API-Key": API_KEY}
ACTION = {"X-Notifications-Action-Secret": ACTION_SECRET}


@pytest.fixture
async def client(clean: None, aiohttp_client: Any, db_settings: Callable[..., Any]) -> Any:
    settings = db_settings(
        admin_secret=ADMIN_SECRET,
        action_secret=ACTION_SECRET,
        api_keys=API_KEY,
        dry_run=True,
        dedup_window=0,
        api_rate_limit=0,
        max_body_size=MAX_BODY,
    )
    return await aiohttp_client(create_app(settings))


async def count_rows(client: Any) -> tuple[int, int]:
    """(notifications, notification_queue) rows."""
    from app.main import RUNTIME

    db = client.server.app[RUNTIME].db
    return (
        int(await db.fetchval("SELECT count(*) FROM notifications")),
        int(await db.fetchval("SELECT count(*) FROM notification_queue")),
    )
