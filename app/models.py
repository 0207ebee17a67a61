"""Domain types shared by every layer: channels, statuses, callers, send requests.

The notification state machine lives here, in one place (`TRANSITIONS`), and
every status change in the store is checked against it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)


class Channel(enum.StrEnum):
    EMAIL = "email"
    PUSH = "push"
    SMS = "sms"


class Status(enum.StrEnum):
    """Notification statuses: the spec's five plus the ones the send path needs."""

    QUEUED = "queued"  # accepted, waiting for a worker (or retrying)
    SCHEDULED = "scheduled"  # accepted, deliverable at send_at (scheduled or quiet hours)
    BATCHED = "batched"  # held for a daily/weekly digest
    SENT = "sent"  # a provider accepted it
    DELIVERED = "delivered"  # the provider reported delivery
    FAILED = "failed"  # gave up: permanent error or retries exhausted
    BOUNCED = "bounced"  # the recipient's server rejected it
    SUPPRESSED = "suppressed"  # not sent: user opted out / disabled
    CANCELLED = "cancelled"  # cancelled before it was sent


# The state machine. Webhook events may arrive late and out of order, so a
# transition not listed here is ignored rather than applied (delivered never
# goes back to sent).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset(
        {
            Status.SUPPRESSED,
            Status.SENT,
            Status.FAILED,
            Status.CANCELLED,
            Status.SCHEDULED,
            Status.DELIVERED,
            Status.BOUNCED,
        }
    ),
    Status.SCHEDULED: frozenset(
        {Status.QUEUED, Status.SENT, Status.FAILED, Status.CANCELLED, Status.SUPPRESSED}
    ),
    Status.BATCHED: frozenset({Status.SENT, Status.CANCELLED, Status.SUPPRESSED}),
    Status.SENT: frozenset({Status.DELIVERED, Status.FAILED, Status.BOUNCED}),
    Status.DELIVERED: frozenset({Status.BOUNCED}),
    Status.FAILED: frozenset(),
    Status.BOUNCED: frozenset(),
    Status.SUPPRESSED: frozenset(),
    Status.CANCELLED: frozenset(),
}

# Statuses a worker may still deliver from.
DELIVERABLE = frozenset({Status.QUEUED, Status.SCHEDULED})
FINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


def can_transition(current: Status | str, new: Status | str) -> bool:
    return Status(new) in TRANSITIONS[Status(current)]


# Named priorities; any integer is accepted too (higher goes first).
PRIORITY_NAMES = {"low": -10, "normal": 0, "high": 10, "critical": 100}
CRITICAL_PRIORITY = PRIORITY_NAMES["critical"]

TRANSACTIONAL = "transactional"

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_HEADER_UNSAFE = re.compile(r"[\r\n\x00]")


class Role(enum.StrEnum):
    ADMIN = "admin"
    SERVICE = "service"
    USER = "user"


@dataclass(frozen=True)
class Caller:
    """Who is asking. `user` may act only on its own user_id."""

    role: Role
    user_id: UUID | None = None
    source: str = "internal"
    ip: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_privileged(self) -> bool:
        return self.role in (Role.ADMIN, Role.SERVICE)

    @classmethod
    def system(cls, source: str = "system") -> Caller:
        return cls(role=Role.SERVICE, source=source)


def nul_path(value: Any, path: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    """Where a NUL character hides in decoded JSON (PostgreSQL text cannot hold one)."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                return (*path, key)
            if (found := nul_path(item, (*path, key))) is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if (found := nul_path(item, (*path, index))) is not None:
                return found
    return None


# JSON carries a NUL only as this escape; a body parsed from bytes without it has none.
NUL_ESCAPE = b"\\u0000"
# Validation context of a model built from such a body: its NUL walk is already done.
NUL_CHECKED = {"nul_checked": True}


def find_nul(value: Any) -> str | None:
    """nul_path as a dotted string ("value" for a bare string), or None."""
    path = nul_path(value)
    if path is None:
        return None
    return ".".join(str(p) for p in path) or "value"


# The common case of email_validator's syntax (plain ASCII local@domain), whose
# normalised form is local@domain.lower(); checking it with one regex is ~20x cheaper
# than the validator, which still handles everything else (unicode, quoting, IDNA).
_PLAIN_EMAIL = re.compile(
    r"^(?=.{3,254}$)(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
    r"(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]$"
)


def is_plain_email(value: str) -> bool:
    return bool(_PLAIN_EMAIL.match(value)) and ".." not in value


def normalise_email(value: str) -> str:
    if is_plain_email(value):
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"invalid email address: {exc}") from None


class WebPushKeys(BaseModel):
    p256dh: str = Field(min_length=16, max_length=200)
    auth: str = Field(min_length=8, max_length=100)


class WebPushSubscription(BaseModel):
    endpoint: str = Field(min_length=10, max_length=1000)
    keys: WebPushKeys

    @field_validator("endpoint")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("subscription endpoint must be an http(s) URL")
        return value


class Recipient(BaseModel):
    """The spec's `to` object: exactly what the channel needs."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=20)
    device_token: str | None = Field(None, min_length=8, max_length=4096)
    subscription: WebPushSubscription | None = None
    name: str | None = Field(None, max_length=200)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else normalise_email(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        compact = re.sub(r"[\s\-().]", "", value)
        if not E164.match(compact):
            raise ValueError("phone must be in E.164 form, e.g. +14155550100")
        return compact

    @field_validator("device_token", "name")
    @classmethod
    def _no_control_chars(cls, value: str | None) -> str | None:
        if value is not None and _HEADER_UNSAFE.search(value):
            raise ValueError("must not contain line breaks or NUL")
        return value

    def check_channel(self, channel: Channel) -> None:
        if channel is Channel.EMAIL and not self.email:
            raise ValueError("channel email needs to.email")
        if channel is Channel.SMS and not self.phone:
            raise ValueError("channel sms needs to.phone in E.164 form")
        if channel is Channel.PUSH and not (self.device_token or self.subscription):
            raise ValueError("channel push needs to.device_token or to.subscription")

    def address(self, channel: Channel) -> str:
        """The value stored in notifications.to_address."""
        if channel is Channel.EMAIL:
            return self.email or ""
        if channel is Channel.SMS:
            return self.phone or ""
        if self.device_token:
            return self.device_token[:500]
        assert self.subscription is not None
        return self.subscription.endpoint[:500]


class SendRequest(BaseModel):
    """One notification to send. Either `template` or inline `subject`/`body`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    user_id: UUID
    channel: Channel
    to: Recipient
    template: str | None = Field(None, min_length=1, max_length=255)
    variables: dict[str, Any] = Field(default_factory=dict)
    subject: str | None = Field(None, max_length=500)
    body: str | None = Field(None, max_length=100_000)
    body_html: str | None = Field(None, max_length=500_000)
    category: str | None = Field(None, min_length=1, max_length=100)
    priority: int = 0
    idempotency_key: str | None = Field(None, min_length=1, max_length=255)
    send_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    campaign_id: UUID | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is NUL_CHECKED:
            return data
        where = find_nul(data)
        if where:
            raise ValueError(f"{where}: NUL characters are not allowed")
        return data

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            if value.lower() not in PRIORITY_NAMES:
                raise ValueError(f"priority must be an integer or one of {sorted(PRIORITY_NAMES)}")
            return PRIORITY_NAMES[value.lower()]
        return value

    @field_validator("priority")
    @classmethod
    def _priority_range(cls, value: int) -> int:
        if not -1000 <= value <= 1000:
            raise ValueError("priority must be between -1000 and 1000")
        return value

    @field_validator("subject")
    @classmethod
    def _subject_single_line(cls, value: str | None) -> str | None:
        if value is not None and _HEADER_UNSAFE.search(value):
            raise ValueError("subject must not contain line breaks")
        return value

    @field_validator("send_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("send_at must include a timezone offset, e.g. 2026-01-01T09:00:00Z")
        return value

    @model_validator(mode="after")
    def _content_and_recipient(self) -> SendRequest:
        self.to.check_channel(self.channel)
        if not self.template and not (self.body or self.body_html):
            raise ValueError("give a template, or inline body / body_html")
        return self

    @property
    def is_critical(self) -> bool:
        return self.priority >= CRITICAL_PRIORITY


QuietHoursDict = dict[str, Any]
Frequency = Literal["immediate", "daily", "weekly", "disabled"]
