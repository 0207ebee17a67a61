"""Fixtures for digests, campaigns and drips: the tables of 0002 are emptied too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

OWN_TABLES = (
    "notification_digest_runs",
    "notification_campaigns",
    "notification_sequences",
)


@pytest.fixture(autouse=True)
async def clean_own(database_url: str, clean: None) -> None:
    conn = await asyncpg.connect(database_url)
    await conn.execute(f"TRUNCATE {', '.join(OWN_TABLES)}")
    await conn.close()


def next_local(
    hour: int, zone: str, after: datetime | None = None, weekday: int | None = None
) -> datetime:
    """The first `hour`:00 local (on `weekday`, 0 = Monday, if given) strictly after `after`."""
    tz = ZoneInfo(zone)
    local = (after or datetime.now(UTC)).astimezone(tz)
    candidate = datetime.combine(local.date(), datetime.min.time().replace(hour=hour), tzinfo=tz)
    while candidate <= local or (weekday is not None and candidate.weekday() != weekday):
        candidate = datetime.combine(
            (candidate + timedelta(days=1)).date(), candidate.time(), tzinfo=tz
        )
    return candidate.astimezone(UTC)


async def set_pref(rt: Any, user_id: Any, category: str | None, **fields: Any) -> None:
    from app.services import preferences
    from tests.core.helpers import ADMIN

    await preferences.upsert(rt.db, ADMIN, user_id, "email", category, fields)
