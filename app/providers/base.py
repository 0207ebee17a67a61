"""The provider interface: what every email, push and SMS provider implements.

A provider is one module (one class) that turns an `OutboundMessage` into the
provider's real API call and reads the answer as the provider means it:

    success                -> SendResult(provider_message_id=...)
    5xx, timeout, network  -> TransientProviderError   (try the next provider, retry later)
    429                    -> ProviderRateLimited       (transient, carries retry_after)
    401/403, bad config    -> ProviderAuthError         (transient for the message, counts
                                                          against the provider's breaker)
    invalid recipient,     -> PermanentProviderError    (failing over would not help: the
    invalid payload                                       notification fails at once)

Providers never return booleans and never swallow errors; the worker decides
what a failure means for the notification (app.services.delivery).
"""

from __future__ import annotations

import abc
import email.utils
import enum
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from uuid import UUID

import aiohttp

from app import jsoncodec
from app.models import CRITICAL_PRIORITY, TRANSACTIONAL, Channel, Recipient

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from app.settings import Settings


# --------------------------------------------------------------------------- errors


class ProviderError(Exception):
    """Base of provider failures. `reason` is what gets stored on the notification."""

    transient: ClassVar[bool] = True
    counts_against_provider: ClassVar[bool] = True

    def __init__(
        self,
        reason: str,
        *,
        provider: str = "",
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.provider = provider
        self.status = status
        self.code = code

    def __str__(self) -> str:
        prefix = f"{self.provider}: " if self.provider else ""
        status = f" (HTTP {self.status})" if self.status else ""
        return f"{prefix}{self.reason}{status}"


class TransientProviderError(ProviderError):
    """The provider could not take it now; another provider or a later retry may."""


class ProviderRateLimited(TransientProviderError):
    """HTTP 429 or the provider's own throttling; `retry_after` in seconds when known."""

    def __init__(self, reason: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(reason, **kw)
        self.retry_after = retry_after


class ProviderAuthError(TransientProviderError):
    """Bad credentials or configuration: the provider is unusable, the message is fine."""


class PermanentProviderError(ProviderError):
    """The message itself was rejected (invalid recipient, invalid content)."""

    transient = False
    counts_against_provider = False

    def __init__(self, reason: str, *, invalid_recipient: bool = False, **kw: Any) -> None:
        super().__init__(reason, **kw)
        self.invalid_recipient = invalid_recipient


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class OutboundMessage:
    """A rendered notification, ready for a provider."""

    notification_id: UUID
    channel: Channel
    to: Recipient
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    category: str | None = None
    priority: int = 0  # higher first; >= 100 is critical (push urgency, SMS type)
    from_address: str | None = None
    reply_to: str | None = None
    unsubscribe_url: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)  # push payload data
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        """Sent to providers that support it, so a retried job never sends twice."""
        return str(self.notification_id)

    @property
    def is_urgent(self) -> bool:
        """Transactional or critical: high push priority, transactional SMS type."""
        return (self.category or "").lower() in (TRANSACTIONAL, "critical") or (
            self.priority >= CRITICAL_PRIORITY
        )

    @property
    def is_marketing(self) -> bool:
        return (self.category or "").lower() == "marketing"


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str | None
    raw: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ProviderCheck:
    """What `notifications test providers` reports for one provider."""

    reachable: bool
    authenticated: bool | None  # None: the provider has no read-only call to try
    detail: str = ""


@dataclass
class ProviderContext:
    """What a provider may use: the app's shared HTTP session, settings, Redis."""

    http: aiohttp.ClientSession
    settings: Settings
    redis: Redis | None = None

    @property
    def timeout(self) -> float:
        return self.settings.provider_timeout


# --------------------------------------------------------------------------- base class


class Provider(abc.ABC):
    """One provider, built from its own config (never a shared client)."""

    name: ClassVar[str]
    channel: ClassVar[Channel]

    def __init__(self, config: Mapping[str, Any], ctx: ProviderContext) -> None:
        self.config = dict(config)
        self.ctx = ctx

    @classmethod
    def config_from_settings(cls, settings: Settings) -> dict[str, Any] | None:
        """The config this provider gets from environment variables, or None if unset."""
        return None

    @abc.abstractmethod
    async def send(self, message: OutboundMessage) -> SendResult:
        """Send one message through the provider's real API."""

    async def check(self) -> ProviderCheck:
        """Cheapest read-only call proving reachability and credentials."""
        return ProviderCheck(reachable=True, authenticated=None, detail="no read-only check")

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release resources the provider holds of its own (most hold none)."""

    # ---- helpers for HTTP providers -------------------------------------------

    def error(self, cls: type[ProviderError], reason: str, **kw: Any) -> ProviderError:
        return cls(reason, provider=self.name, **kw)

    async def request(
        self, method: str, url: str, **kwargs: Any
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One HTTP call on the shared session; network trouble becomes transient."""
        timeout = aiohttp.ClientTimeout(total=self.ctx.timeout)
        try:
            async with self.ctx.http.request(method, url, timeout=timeout, **kwargs) as resp:
                body = await resp.read()
                return resp.status, resp.headers, body
        except TimeoutError as exc:
            raise self.error(
                TransientProviderError, f"timed out after {self.ctx.timeout:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise self.error(TransientProviderError, f"connection error: {exc}") from exc

    def raise_for_status(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """Default classification of an HTTP error answer (2xx returns quietly)."""
        if 200 <= status < 300:
            return
        reason = describe_body(body)
        if status == 429:
            raise ProviderRateLimited(
                reason or "rate limited",
                retry_after=parse_retry_after(headers.get("Retry-After")),
                provider=self.name,
                status=status,
            )
        if status in (401, 403):
            raise self.error(ProviderAuthError, reason or "authentication failed", status=status)
        if status >= 500 or status in (408, 409, 425):
            raise self.error(TransientProviderError, reason or "server error", status=status)
        raise self.error(PermanentProviderError, reason or "rejected", status=status)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def describe_body(body: bytes, limit: int = 500) -> str:
    """A short human reason from an error body (JSON `message`/`error` fields or text)."""
    if not body:
        return ""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body[:limit].decode("utf-8", "replace").strip()
    return _find_message(parsed)[:limit] or body[:limit].decode("utf-8", "replace")


def _find_message(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        return "; ".join(filter(None, (_find_message(v) for v in value[:3])))
    if isinstance(value, dict):
        for key in ("message", "error_message", "error", "errors", "detail", "reason"):
            if value.get(key):
                return _find_message(value[key])
    return ""


# --------------------------------------------------------------------------- webhooks


class EventType(enum.StrEnum):
    """The spec's inbound event set; every provider's events are normalised to it."""

    DELIVERED = "delivery.succeeded"
    FAILED = "delivery.failed"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True)
class ProviderEvent:
    """One normalised provider event, ready to store and apply."""

    provider: str
    event_id: str  # the provider's unique id for the event (or a stable hash of it)
    type: EventType
    occurred_at: datetime
    message_id: str | None = None  # matches notifications.provider_id
    notification_id: UUID | None = None  # when the provider echoes our metadata back
    recipient: str | None = None
    reason: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookRequest:
    """What a webhook verifier and parser see of an inbound request."""

    url: str  # the full URL as the provider called it (Twilio and Plivo sign it)
    method: str
    headers: Mapping[str, str]  # case-insensitive (a CIMultiDictProxy in the app)
    body: bytes
    form: Mapping[str, str] | None = None  # parsed body for form-encoded posts
    remote: str | None = None

    def json(self) -> Any:
        try:
            return jsoncodec.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise WebhookInvalid(f"body is not valid JSON: {exc}") from None


class WebhookRejected(Exception):
    """Signature missing, wrong, or stale (answered 401; nothing is stored)."""


class WebhookInvalid(Exception):
    """The body is not in the provider's documented format (answered 400)."""


class WebhookParser(Protocol):
    """What a provider class offers for its webhooks (as classmethods)."""

    name: ClassVar[str]

    @classmethod
    async def verify_webhook(cls, request: WebhookRequest, ctx: ProviderContext) -> None:
        """Raise WebhookRejected unless the request is signed by the provider."""

    @classmethod
    def parse_webhook(cls, request: WebhookRequest) -> list[ProviderEvent]:
        """Normalise the body to events; events outside the spec's set are dropped."""
