"""GraphQL types: outputs built from store rows, inputs mapped to the domain models.

Inputs are plain Strawberry inputs; `to_request()` turns them into the domain's
pydantic `SendRequest`, whose validation errors become BAD_USER_INPUT naming the
GraphQL field (app.graphql.errors.invalid_input).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any
from uuid import UUID

import strawberry
from pydantic import ValidationError
from strawberry.scalars import JSON

from app import models
from app.errors import InvalidInput
from app.graphql.context import Info
from app.graphql.errors import invalid_input

Channel = strawberry.enum(models.Channel, name="Channel", description="Delivery channel")
NotificationStatus = strawberry.enum(
    models.Status, name="NotificationStatus", description="Notification status"
)


def _plain(value: Any) -> Any:
    """Strawberry input -> dict without unset/None fields (recursively)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is None or item is strawberry.UNSET:
                continue
            out[f.name] = _plain(item)
        return out
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _given(value: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """Only the fields the client sent (null included), for partial updates."""
    return {n: getattr(value, n) for n in names if getattr(value, n) is not strawberry.UNSET}


# --------------------------------------------------------------------------- inputs


@strawberry.input
class WebPushKeysInput:
    p256dh: str
    auth: str


@strawberry.input
class WebPushSubscriptionInput:
    endpoint: str
    keys: WebPushKeysInput


@strawberry.input(description="Recipient address; which field depends on the channel")
class RecipientInput:
    email: str | None = None
    phone: str | None = strawberry.field(default=None, description="E.164, e.g. +14155550100")
    device_token: str | None = strawberry.field(default=None, description="FCM/OneSignal token")
    subscription: WebPushSubscriptionInput | None = None
    name: str | None = None


@strawberry.input
class SendNotificationInput:
    user_id: UUID
    channel: Channel  # type: ignore[valid-type]
    to: RecipientInput
    template: str | None = None
    variables: JSON | None = None
    subject: str | None = None
    body: str | None = None
    body_html: str | None = None
    category: str | None = None
    priority: int | None = strawberry.field(
        default=None, description="higher goes first; 100 (critical) bypasses preferences"
    )
    idempotency_key: str | None = None
    send_at: datetime | None = None
    metadata: JSON | None = None
    campaign_id: UUID | None = None

    def to_request(self, prefix: str = "input") -> models.SendRequest:
        try:
            return models.SendRequest.model_validate(_plain(self))
        except ValidationError as exc:
            raise invalid_input(exc, prefix) from None


@strawberry.input
class BulkRecipientInput:
    user_id: UUID
    to: RecipientInput
    variables: JSON | None = strawberry.field(
        default=None, description="merged over the shared variables"
    )
    idempotency_key: str | None = None


@strawberry.input(description="One template (or inline content), many recipients")
class SendNotificationsInput:
    channel: Channel  # type: ignore[valid-type]
    recipients: list[BulkRecipientInput]
    template: str | None = None
    variables: JSON | None = None
    subject: str | None = None
    body: str | None = None
    body_html: str | None = None
    category: str | None = None
    priority: int | None = None
    send_at: datetime | None = None
    metadata: JSON | None = None
    campaign_id: UUID | None = None

    def shared(self) -> dict[str, Any]:
        data = _plain(self)
        data.pop("recipients", None)
        return data

    def to_request(self, shared: dict[str, Any], index: int) -> models.SendRequest:
        item = _plain(self.recipients[index])
        data = {**shared, "user_id": item["user_id"], "to": item["to"]}
        common, own = shared.get("variables") or {}, item.get("variables") or {}
        if not isinstance(common, dict):
            raise InvalidInput("input.variables must be an object", details={"field": "variables"})
        if not isinstance(own, dict):
            raise InvalidInput(
                f"input.recipients.{index}.variables must be an object",
                details={"field": f"recipients.{index}.variables"},
            )
        data["variables"] = {**common, **own}
        if "idempotency_key" in item:
            data["idempotency_key"] = item["idempotency_key"]
        try:
            return models.SendRequest.model_validate(data)
        except ValidationError as exc:
            raise invalid_input(exc, f"input.recipients.{index}") from None


@strawberry.input
class NotificationFilter:
    user_id: UUID | None = None
    status: NotificationStatus | None = None  # type: ignore[valid-type]
    channel: Channel | None = None  # type: ignore[valid-type]
    template: str | None = None
    campaign_id: UUID | None = None
    since: datetime | None = strawberry.field(default=None, description="created_at >= since")
    until: datetime | None = strawberry.field(default=None, description="created_at < until")


@strawberry.input
class PreferenceInput:
    user_id: UUID
    channel: Channel  # type: ignore[valid-type]
    category: str | None = None
    enabled: bool | None = strawberry.UNSET
    frequency: str | None = strawberry.field(
        default=strawberry.UNSET, description="immediate, daily, weekly or disabled"
    )
    quiet_hours: JSON | None = strawberry.field(
        default=strawberry.UNSET, description='{"start": "22:00", "end": "07:00", "timezone": ...}'
    )
    reason: str | None = strawberry.UNSET

    def fields(self) -> dict[str, Any]:
        return _given(self, ("enabled", "frequency", "quiet_hours", "reason"))


TEMPLATE_FIELDS = (
    "category",
    "channels",
    "subject",
    "body_text",
    "body_html",
    "variables",
    "active",
)


@strawberry.input
class TemplateInput:
    name: str
    channels: list[Channel] | None = None  # type: ignore[valid-type]
    category: str | None = None
    subject: str | None = None
    body_text: str | None = None
    body_html: str | None = None
    variables: JSON | None = None
    active: bool | None = None

    def fields(self) -> dict[str, Any]:
        data = {n: getattr(self, n) for n in TEMPLATE_FIELDS if getattr(self, n) is not None}
        if "channels" in data:
            data["channels"] = [c.value for c in data["channels"]]
        return data


@strawberry.input(description="Only the fields given change")
class TemplatePatch:
    channels: list[Channel] | None = strawberry.UNSET  # type: ignore[valid-type]
    category: str | None = strawberry.UNSET
    subject: str | None = strawberry.UNSET
    body_text: str | None = strawberry.UNSET
    body_html: str | None = strawberry.UNSET
    variables: JSON | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET

    def fields(self) -> dict[str, Any]:
        data = _given(self, TEMPLATE_FIELDS)
        if data.get("channels") is not None:
            data["channels"] = [c.value for c in data["channels"]]
        return data


# --------------------------------------------------------------------------- outputs


@strawberry.type
class SendNotificationPayload:
    success: bool
    notification_id: UUID | None
    status: str
    message: str

    @classmethod
    def from_outcome(cls, outcome: Any) -> SendNotificationPayload:
        return cls(
            success=outcome.success, notification_id=outcome.notification_id,
            status=outcome.status, message=outcome.message,
        )  # fmt: skip


@strawberry.type
class SendNotificationResult:
    index: int
    success: bool
    notification_id: UUID | None
    status: str
    message: str
    error_code: str | None


@strawberry.type
class SendNotificationsPayload:
    total: int
    accepted: int
    rejected: int
    results: list[SendNotificationResult]


@strawberry.type
class NotificationEvent:
    id: UUID
    notification_id: UUID | None
    provider: str
    event_type: str
    occurred_at: datetime
    payload: JSON | None
    created_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> NotificationEvent:
        return cls(
            id=row["id"], notification_id=row["notification_id"], provider=row["provider"],
            event_type=row["event_type"], occurred_at=row["occurred_at"], payload=row["payload"],
            created_at=row["created_at"],
        )  # fmt: skip


@strawberry.type
class Notification:
    id: UUID
    user_id: UUID
    channel: Channel  # type: ignore[valid-type]
    status: NotificationStatus  # type: ignore[valid-type]
    template_name: str | None
    to_address: str | None
    subject: str | None
    body: str | None
    body_html: str | None
    variables: JSON | None
    category: str | None
    priority: int
    provider: str | None
    provider_id: str | None
    error: str | None
    retry_count: int
    idempotency_key: str | None
    campaign_id: UUID | None
    metadata: JSON | None
    scheduled_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    failed_at: datetime | None
    bounced_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None

    @strawberry.field(description="Provider events (webhooks), oldest first")
    async def events(self, info: Info) -> list[NotificationEvent]:
        rows = await info.context.loaders.events.load(self.id)
        return [NotificationEvent.from_row(r) for r in rows]

    @classmethod
    def from_row(cls, row: Any) -> Notification:
        names = [f.name for f in dataclasses.fields(cls) if f.name != "events"]
        data = {n: row[n] for n in names}
        data["channel"] = models.Channel(row["channel"])
        data["status"] = models.Status(row["status"])
        data["retry_count"] = row["retry_count"] or 0
        return cls(**data)


@strawberry.type
class NotificationPage:
    items: list[Notification]
    limit: int
    offset: int
    has_more: bool


@strawberry.type
class Preference:
    id: UUID
    user_id: UUID
    channel: str
    category: str | None
    enabled: bool
    frequency: str | None
    quiet_hours: JSON | None
    reason: str | None
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Preference:
        data = {f.name: row[f.name] for f in dataclasses.fields(cls)}
        data["enabled"] = data["enabled"] is not False
        return cls(**data)


@strawberry.type
class Template:
    id: UUID
    name: str
    category: str | None
    channels: list[str]
    subject: str | None
    body_text: str | None
    body_html: str | None
    variables: JSON | None
    active: bool
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Template:
        data = {f.name: row[f.name] for f in dataclasses.fields(cls)}
        data["channels"] = list(row["channels"] or ["email"])
        data["active"] = row["active"] is not False
        return cls(**data)


@strawberry.type
class DeleteTemplatePayload:
    success: bool
    name: str


# --------------------------------------------------------------------------- stats


def _from_dict(cls: Any, data: dict[str, Any]) -> Any:
    return cls(**{f.name: data.get(f.name) for f in dataclasses.fields(cls)})


@strawberry.type
class DeliveryStats:
    channel: str
    total: int
    sent: int
    delivered: int
    failed: int
    bounced: int
    delivery_rate_pct: float | None


@strawberry.type
class EngagementStats:
    template_name: str | None
    total_sent: int
    opened: int
    clicked: int
    open_rate_pct: float | None
    click_rate_pct: float | None


@strawberry.type
class ProviderHealth:
    name: str
    channel: str
    enabled: bool | None
    priority: int | None
    failure_count: int | None
    last_success_at: datetime | None
    last_failure_at: datetime | None


@strawberry.type
class QueueBacklog:
    total_queued: int
    processing: int
    pending: int
    oldest_queued_at: datetime | None


@strawberry.type
class HourlyVolume:
    hour: datetime
    total: int
    sent: int
    delivered: int
    failed: int


@strawberry.type
class UserSummary:
    user_id: UUID
    total_notifications: int
    email_count: int
    push_count: int
    sms_count: int
    last_notification_at: datetime | None


def numeric(data: dict[str, Any], *names: str) -> dict[str, Any]:
    """Decimal -> float for the *_pct columns."""
    return {k: (float(v) if k in names and v is not None else v) for k, v in data.items()}


def to_stats(cls: Any, rows: list[dict[str, Any]]) -> list[Any]:
    pct = [f.name for f in dataclasses.fields(cls) if f.name.endswith("_pct")]
    return [_from_dict(cls, numeric(r, *pct)) for r in rows]


def to_stat(cls: Any, row: dict[str, Any]) -> Any:
    return _from_dict(cls, row)
