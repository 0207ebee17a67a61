"""Templates: validated CRUD (admin only) and a per-process cache of active templates.

The cache keeps template rows for NOTIFICATIONS_TEMPLATE_CACHE_TTL seconds and
compiled templates by source (app.templating), so a send costs no query and no
compile. A change made anywhere bumps `notif:templates:version` in Redis; every
process checks that key at most once a second and drops its cache when it moved,
so an update is visible everywhere within about a second.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app import templating
from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.models import Caller, Channel, Role, find_nul
from app.runtime import Runtime
from app.services import audit
from app.store import templates as store

VERSION_KEY = "notif:templates:version"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")
SOURCES = ("subject", "body_text", "body_html")


@dataclass(frozen=True)
class Template:
    name: str
    category: str | None
    channels: tuple[str, ...]
    subject: str | None
    body_text: str | None
    body_html: str | None
    variables: tuple[templating.VariableSpec, ...]
    active: bool
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Template:
        return cls(
            name=row["name"],
            category=row["category"],
            channels=tuple(row["channels"] or ["email"]),
            subject=row["subject"],
            body_text=row["body_text"],
            body_html=row["body_html"],
            variables=tuple(templating.parse_variable_specs(row["variables"])),
            active=bool(row["active"]) if row["active"] is not None else True,
            updated_at=row["updated_at"],
        )


@dataclass
class TemplateCache:
    ttl: float
    entries: dict[str, tuple[float, Template | None]] = field(default_factory=dict)
    version: bytes | None = None
    version_checked: float = 0.0

    async def get(self, rt: Runtime, name: str) -> Template | None:
        await self._check_version(rt)
        now = time.monotonic()
        hit = self.entries.get(name)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        row = await store.get(rt.db, name)
        template = Template.from_row(row) if row else None
        self.entries[name] = (now, template)
        return template

    async def _check_version(self, rt: Runtime) -> None:
        now = time.monotonic()
        if now - self.version_checked < 1.0:
            return
        self.version_checked = now
        try:
            version = await rt.redis.get(VERSION_KEY)
        except Exception:  # Redis down: fall back to the TTL alone
            return
        if version != self.version:
            self.entries.clear()
            self.version = version

    def invalidate(self, name: str | None = None) -> None:
        if name is None:
            self.entries.clear()
        else:
            self.entries.pop(name, None)


def cache(rt: Runtime) -> TemplateCache:
    found = rt.state.get("templates")
    if found is None:
        found = TemplateCache(ttl=float(rt.settings.template_cache_ttl))
        rt.state["templates"] = found
    return found  # type: ignore[no-any-return]


async def get_active(rt: Runtime, name: str, channel: str) -> Template:
    """The template a send uses, or a clear error why it cannot."""
    template = await cache(rt).get(rt, name)
    if template is None:
        raise NotFound(f"template {name!r} does not exist", details={"template": name})
    if not template.active:
        raise InvalidInput(f"template {name!r} is not active", details={"template": name})
    if channel not in template.channels:
        raise InvalidInput(
            f"template {name!r} does not support channel {channel}"
            f" (it supports {', '.join(template.channels)})",
            details={"template": name},
        )
    return template


# --------------------------------------------------------------------------- CRUD


def _require_admin(caller: Caller) -> None:
    if caller.role not in (Role.ADMIN, Role.SERVICE):
        raise Forbidden("only admins may change templates")


def validate_fields(fields: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    clean = {k: v for k, v in fields.items() if k in store.EDITABLE}
    where = find_nul(clean)
    if where:
        raise InvalidInput(f"{where}: NUL characters are not allowed")
    if "channels" in clean and clean["channels"] is not None:
        channels = clean["channels"]
        if not isinstance(channels, list) or not channels:
            raise InvalidInput("channels must be a non-empty list of email, push, sms")
        for channel in channels:
            if channel not in {c.value for c in Channel}:
                raise InvalidInput(f"unknown channel {channel!r} (use email, push, sms)")
        clean["channels"] = list(dict.fromkeys(channels))
    if clean.get("variables") is not None and not isinstance(clean["variables"], list):
        raise InvalidInput("variables must be a list of names")
    for source in SOURCES:
        value = clean.get(source)
        if value is not None:
            if not isinstance(value, str):
                raise InvalidInput(f"{source} must be a string")
            templating.validate(value, field=source)
    if clean.get("subject") and re.search(r"[\r\n]", clean["subject"]):
        raise InvalidInput("subject must be a single line")
    if creating and not any(clean.get(s) for s in ("body_text", "body_html")):
        raise InvalidInput("a template needs body_text or body_html")
    return clean


async def _changed(rt: Runtime, name: str) -> None:
    cache(rt).invalidate(name)
    try:
        await rt.redis.incr(VERSION_KEY)
    except Exception:
        pass


async def create(rt: Runtime, caller: Caller, name: str, fields: dict[str, Any]) -> Any:
    _require_admin(caller)
    if not NAME_PATTERN.match(name or ""):
        raise InvalidInput("name: letters, digits, '_', '-', '.'; up to 255 characters")
    clean = validate_fields(fields, creating=True)
    async with rt.db.acquire() as conn, conn.transaction():
        row = await store.insert(conn, name, clean)
        if row is None:
            raise Conflict(f"template {name!r} already exists")
        await audit.record(conn, caller, "template.create", target_type="template", target_id=name)
    await _changed(rt, name)
    return row


async def update(rt: Runtime, caller: Caller, name: str, fields: dict[str, Any]) -> Any:
    _require_admin(caller)
    _check_name(name)
    clean = validate_fields(fields, creating=False)
    async with rt.db.acquire() as conn, conn.transaction():
        row = await store.update(conn, name, clean)
        if row is None:
            raise NotFound(f"template {name!r} does not exist")
        await audit.record(
            conn,
            caller,
            "template.update",
            target_type="template",
            target_id=name,
            details={"fields": sorted(clean)},
        )
    await _changed(rt, name)
    return row


async def delete(rt: Runtime, caller: Caller, name: str) -> None:
    _require_admin(caller)
    _check_name(name)
    async with rt.db.acquire() as conn, conn.transaction():
        if not await store.delete(conn, name):
            raise NotFound(f"template {name!r} does not exist")
        await audit.record(conn, caller, "template.delete", target_type="template", target_id=name)
    await _changed(rt, name)


def _check_name(name: str) -> None:
    if "\x00" in name:
        raise InvalidInput("name: NUL characters are not allowed")


async def get(rt: Runtime, name: str) -> Any:
    _check_name(name)
    row = await store.get(rt.db, name)
    if row is None:
        raise NotFound(f"template {name!r} does not exist")
    return row


async def list_all(rt: Runtime, active: bool | None = None) -> list[Any]:
    return list(await store.list_(rt.db, active=active))
