"""Audit log entries for changes that matter (templates, providers, admin preference edits, GDPR)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from app.models import Caller
from app.store.notifications import Conn


async def record(
    conn: Conn,
    caller: Caller,
    action: str,
    *,
    target_type: str,
    target_id: str,
    user_id: UUID | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    actor = (
        f"{caller.role}:{caller.user_id}" if caller.user_id else f"{caller.role}:{caller.source}"
    )
    await conn.execute(
        """
        INSERT INTO notification_audit_log
            (user_id, action, ip_address, user_agent, actor, target_type, target_id, details)
        VALUES ($1, $2, $3::inet, $4, $5, $6, $7, $8)
        """,
        user_id,
        action,
        caller.ip,
        caller.extra.get("user_agent"),
        actor,
        target_type,
        target_id,
        details or {},
    )
