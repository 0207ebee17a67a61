"""SQL over notification_templates."""

from __future__ import annotations

from typing import Any

import asyncpg

from app.store.notifications import Conn

COLUMNS = (
    "id, name, category, channels, subject, body_text, body_html, variables, active, "
    "created_at, updated_at"
)
EDITABLE = ("category", "channels", "subject", "body_text", "body_html", "variables", "active")


async def get(conn: Conn, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM notification_templates WHERE name = $1", name
    )


async def list_(conn: Conn, *, active: bool | None = None) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM notification_templates"
        " WHERE ($1::boolean IS NULL OR active = $1) ORDER BY name",
        active,
    )


async def insert(conn: Conn, name: str, fields: dict[str, Any]) -> asyncpg.Record | None:
    """None when the name is taken."""
    values = [fields.get(column) for column in EDITABLE]
    return await conn.fetchrow(
        f"""
        INSERT INTO notification_templates (name, {", ".join(EDITABLE)})
        VALUES ($1, $2, COALESCE($3, '["email"]'::jsonb), $4, $5, $6, COALESCE($7, '[]'::jsonb),
                COALESCE($8, TRUE))
        ON CONFLICT (name) DO NOTHING
        RETURNING {COLUMNS}
        """,
        name,
        *values,
    )


async def update(conn: Conn, name: str, fields: dict[str, Any]) -> asyncpg.Record | None:
    """Update only the given fields; bumps updated_at (the compile cache key)."""
    sets = [f"{column} = ${i + 2}" for i, column in enumerate(c for c in EDITABLE if c in fields)]
    values = [fields[c] for c in EDITABLE if c in fields]
    sets.append("updated_at = clock_timestamp()")
    return await conn.fetchrow(
        f"UPDATE notification_templates SET {', '.join(sets)} WHERE name = $1 RETURNING {COLUMNS}",
        name,
        *values,
    )


async def delete(conn: Conn, name: str) -> bool:
    result = await conn.execute("DELETE FROM notification_templates WHERE name = $1", name)
    return bool(result.endswith(" 1"))
