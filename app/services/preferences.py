"""User preferences: opt-out, frequency and quiet hours, and what they mean for a send.

Resolution per (user, channel, category): the row for that exact category wins,
then the channel-wide row (category NULL), then the defaults (enabled,
immediate, no quiet hours). Category `transactional` and priority `critical`
bypass opt-out, frequency and quiet hours: a password reset is never held.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.errors import Forbidden, InvalidInput
from app.models import Caller, Channel, Status, find_nul
from app.store import preferences as store
from app.store.notifications import Conn

FREQUENCIES = ("immediate", "daily", "weekly", "disabled")
DIGEST = "digest"  # the category of digest notifications themselves
_CLOCK = re.compile(r"^(\d{1,2})(?::(\d{2}))?$")


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    zone: ZoneInfo

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> QuietHours:
        """{"start": "22:00" | 22, "end": "07:00" | 7, "timezone": "Europe/Paris"}."""
        try:
            zone = ZoneInfo(str(raw.get("timezone") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(
                f"quiet_hours.timezone: unknown time zone {raw.get('timezone')!r}"
            ) from None
        return cls(_clock(raw.get("start"), "start"), _clock(raw.get("end"), "end"), zone)

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone).time()
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # the window crosses midnight

    def window_end(self, moment: datetime) -> datetime:
        """The first instant at or after `moment` outside the window (its end)."""
        local = moment.astimezone(self.zone)
        end_today = datetime.combine(local.date(), self.end, tzinfo=self.zone)
        end = end_today if end_today > local else end_today + timedelta(days=1)
        return end.astimezone(moment.tzinfo)

    def as_dict(self) -> dict[str, str]:
        return {
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "timezone": self.zone.key,
        }


def _clock(value: Any, field: str) -> time:
    match = _CLOCK.match(str(value).strip()) if value is not None else None
    if not match:
        raise InvalidInput(f"quiet_hours.{field}: use HH:MM (24h) or an hour 0-23")
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if hour > 23 or minute > 59:
        raise InvalidInput(f"quiet_hours.{field}: {value!r} is not a time of day")
    return time(hour, minute)


@dataclass(frozen=True)
class Decision:
    status: Status
    due_at: datetime | None = None
    reason: str | None = None


def resolve(
    rows: Iterable[Mapping[str, Any]], channel: str, category: str | None
) -> Mapping[str, Any] | None:
    exact = generic = None
    for row in rows:
        if row["channel"] != channel:
            continue
        if category is not None and row["category"] == category:
            exact = row
        elif row["category"] is None:
            generic = row
    return exact or generic


def decide(
    rows: Iterable[Mapping[str, Any]],
    channel: str,
    category: str | None,
    *,
    bypass: bool,
    now: datetime,
    send_at: datetime | None,
) -> Decision:
    """What happens to one send given the user's preference rows."""
    due = send_at if send_at is not None and send_at > now else now
    pref = None if bypass else resolve(rows, channel, category)
    if pref is not None:
        label = f"{channel}/{category}" if category else channel
        if pref["enabled"] is False or pref["frequency"] == "disabled":
            reason = pref.get("reason") if hasattr(pref, "get") else None
            return Decision(
                Status.SUPPRESSED,
                reason=f"user opted out of {label}" + (f" ({reason})" if reason else ""),
            )
        if pref["frequency"] in ("daily", "weekly") and category != DIGEST:
            # the digest is what a daily/weekly preference asks for: never hold it again
            return Decision(Status.BATCHED, reason=f"held for the {pref['frequency']} digest")
        if pref["quiet_hours"]:
            quiet = QuietHours.parse(pref["quiet_hours"])
            if quiet.contains(due):
                end = quiet.window_end(due)
                return Decision(Status.SCHEDULED, due_at=end, reason="quiet hours")
    if due > now:
        return Decision(Status.SCHEDULED, due_at=due)
    return Decision(Status.QUEUED, due_at=None)


# --------------------------------------------------------------------------- service


def _authorise(caller: Caller, user_id: UUID) -> None:
    if not caller.is_privileged and caller.user_id != user_id:
        raise Forbidden("a user may only read or change its own preferences")


def validate_fields(fields: dict[str, Any]) -> dict[str, Any]:
    clean = dict(fields)
    where = find_nul(clean)
    if where:
        raise InvalidInput(f"{where}: NUL characters are not allowed")
    if clean.get("frequency") is not None and clean["frequency"] not in FREQUENCIES:
        raise InvalidInput(f"frequency must be one of {', '.join(FREQUENCIES)}")
    if clean.get("quiet_hours") is not None:
        if not isinstance(clean["quiet_hours"], Mapping):
            raise InvalidInput("quiet_hours must be an object {start, end, timezone}")
        clean["quiet_hours"] = QuietHours.parse(clean["quiet_hours"]).as_dict()
    return clean


async def get_for_user(conn: Conn, caller: Caller, user_id: UUID) -> list[Any]:
    _authorise(caller, user_id)
    return list(await store.for_user(conn, user_id))


async def upsert(
    conn: Conn,
    caller: Caller,
    user_id: UUID,
    channel: str,
    category: str | None,
    fields: dict[str, Any],
) -> Any:
    _authorise(caller, user_id)
    try:
        Channel(channel)
    except ValueError:
        raise InvalidInput("channel must be one of email, push, sms") from None
    if category is not None and (not (0 < len(category) <= 100) or "\x00" in category):
        raise InvalidInput("category must be 1-100 characters")
    return await store.upsert(conn, user_id, channel, category, validate_fields(fields))
