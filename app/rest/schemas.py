"""Request and response models of the REST API (the OpenAPI document is built from these).

The send body is app.models.SendRequest itself, so REST, GraphQL and the Hasura
action validate a notification the same way.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.models import Channel, Status

Frequency = Literal["immediate", "daily", "weekly", "disabled"]
_PERIOD = re.compile(r"^(\d{1,5})([hd])$")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --------------------------------------------------------------------------- send


class SendResponse(_Out):
    """The spec's `{success, notification_id, message}`, plus the resulting status."""

    success: bool
    notification_id: UUID | None
    message: str
    status: str


class ErrorInfo(BaseModel):
    code: str
    message: str


class BatchRecipient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # validated per item (as SendRequest.to), so one bad address fails only its own item
    to: dict[str, Any] = Field(
        description="the recipient, as SendRequest.to: {email} | {phone} | {device_token}"
        " | {subscription}"
    )
    variables: dict[str, Any] = Field(default_factory=dict)
    user_id: UUID | None = Field(None, description="defaults to the caller's own user id")
    idempotency_key: str | None = Field(None, min_length=1, max_length=255)


class BatchSendRequest(BaseModel):
    """The spec's send-batch body: one template (or inline content), many recipients."""

    model_config = ConfigDict(extra="forbid")

    template: str | None = Field(None, min_length=1, max_length=255)
    channel: Channel = Channel.EMAIL
    recipients: list[BatchRecipient] = Field(min_length=1, max_length=1000)
    subject: str | None = Field(None, max_length=500)
    body: str | None = Field(None, max_length=100_000)
    body_html: str | None = Field(None, max_length=500_000)
    category: str | None = Field(None, min_length=1, max_length=100)
    priority: int | str = 0
    send_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    campaign_id: UUID | None = None

    def item(self, recipient: BatchRecipient, user_id: UUID | None) -> dict[str, Any]:
        """The SendRequest input for one recipient (validated by the caller)."""
        data = self.model_dump(exclude={"recipients"}, exclude_none=True)
        data.update(
            user_id=user_id,
            to=recipient.to,
            variables=recipient.variables,
            idempotency_key=recipient.idempotency_key,
        )
        return data


class BatchItemResult(BaseModel):
    index: int
    success: bool
    notification_id: UUID | None = None
    status: str
    message: str
    error: ErrorInfo | None = None


class BatchSendResponse(BaseModel):
    success: bool
    total: int
    accepted: int
    failed: int
    results: list[BatchItemResult]


# --------------------------------------------------------------------------- notifications


class NotificationOut(_Out):
    id: UUID
    user_id: UUID
    channel: str
    template_name: str | None = None
    to_address: str | None = None
    subject: str | None = None
    body: str | None = None
    body_html: str | None = None
    variables: dict[str, Any] | None = None
    status: str
    provider: str | None = None
    provider_id: str | None = None
    error: str | None = None
    retry_count: int | None = None
    category: str | None = None
    priority: int | None = None
    idempotency_key: str | None = None
    metadata: dict[str, Any] | None = None
    campaign_id: UUID | None = None
    scheduled_at: datetime | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    opened_at: datetime | None = None
    clicked_at: datetime | None = None
    failed_at: datetime | None = None
    bounced_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class NotificationList(BaseModel):
    items: list[NotificationOut]
    limit: int
    offset: int
    count: int
    next_offset: int | None


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UUID | None = None
    status: Status | None = None
    channel: Channel | None = None
    template: str | None = Field(None, min_length=1, max_length=255)
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10_000_000)


class EventOut(_Out):
    id: UUID
    notification_id: UUID | None
    provider: str
    provider_event_id: str
    provider_message_id: str | None = None
    event_type: str
    occurred_at: datetime
    applied: bool
    created_at: datetime | None = None


class EventList(BaseModel):
    notification_id: UUID
    events: list[EventOut]


# --------------------------------------------------------------------------- templates


class TemplateOut(_Out):
    id: UUID
    name: str
    category: str | None = None
    channels: list[str]
    subject: str | None = None
    body_text: str | None = None
    body_html: str | None = None
    variables: list[Any] = Field(default_factory=list)
    active: bool
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @field_validator("channels", "variables", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class TemplateList(BaseModel):
    templates: list[TemplateOut]
    count: int


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: str | None = Field(None, max_length=100)
    channels: list[Channel] | None = Field(None, min_length=1)
    subject: str | None = Field(None, max_length=500)
    body_text: str | None = Field(None, max_length=100_000)
    body_html: str | None = Field(None, max_length=500_000)
    variables: list[str | dict[str, Any]] | None = None
    active: bool | None = None

    def fields(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class TemplateCreate(TemplateUpdate):
    name: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

    def fields(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True, exclude={"name"})


# --------------------------------------------------------------------------- preferences


class QuietHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str | int
    end: str | int
    timezone: str = Field("UTC", max_length=64)


class PreferenceIn(BaseModel):
    """One (user, channel, category) preference; only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    user_id: UUID
    channel: Channel
    category: str | None = Field(None, min_length=1, max_length=100)
    enabled: bool | None = None
    frequency: Frequency | None = None
    quiet_hours: QuietHoursIn | None = None

    def fields(self) -> dict[str, Any]:
        return self.model_dump(
            mode="json", exclude_unset=True, exclude={"user_id", "channel", "category"}
        )


class PreferenceOut(_Out):
    id: UUID
    user_id: UUID
    channel: str
    category: str | None = None
    enabled: bool | None = None
    frequency: str | None = None
    quiet_hours: dict[str, Any] | None = None
    reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class PreferenceList(BaseModel):
    user_id: UUID
    preferences: list[PreferenceOut]


# --------------------------------------------------------------------------- stats


class StatsQuery(BaseModel):
    """`?period=24h|7d|30d` (hours or days) or `?days=N`; the default is 30 days."""

    model_config = ConfigDict(extra="forbid")

    period: str | None = Field(None, pattern=r"^\d{1,5}[hd]$")
    days: int | None = Field(None, ge=1, le=3650)

    def as_days(self) -> int | None:
        """Days to look back; None when neither is given (the service default applies)."""
        if self.days is not None:
            return self.days
        if self.period:
            match = _PERIOD.match(self.period)
            assert match is not None
            amount, unit = int(match.group(1)), match.group(2)
            days = amount if unit == "d" else -(-amount // 24)
            return max(1, min(days, 3650))
        return None


class StatsResponse(BaseModel):
    """Rows of the spec's analytics views (or their time-filtered equivalents)."""

    days: int | None = None
    rows: list[dict[str, Any]]


class QueueStats(BaseModel):
    queue: dict[str, Any]


class HourlyQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hours: int = Field(24, ge=1, le=744)


# --------------------------------------------------------------------------- problems


class ProblemError(BaseModel):
    path: list[str | int]
    message: str
    type: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details; `code` is stable (app.errors)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[ProblemError] | None = None
