"""OneSignal push through its REST API (api.onesignal.com), plus its event webhooks.

Send ("Create message", the current API):

    POST {onesignal_base_url}/notifications
    Authorization: Key APP_API_KEY          (the scheme OneSignal's own SDKs send)
    {"app_id", "include_subscription_ids": [id]  | "include_aliases": {"external_id": [id]},
     "target_channel": "push", "headings": {"en"}, "contents": {"en"}, "data",
     "idempotency_key": <notification id>, "priority"}

`idempotency_key` makes a retried job return the first answer instead of
sending twice (OneSignal keeps keys for 30 days). The answer is polymorphic: a
200 with a non-empty `id` is a send; a 200 with `"id": ""` (or none) and an
`errors` field (`["All included players are not subscribed"]` or
`{"invalid_player_ids": [...]}`) means nothing was sent, which is a permanent
failure of this recipient. 400 `{"errors": [...]}` is permanent, 401/403 auth,
429 rate limited (Retry-After), 5xx transient.

`check()` lists one notification (`GET /notifications?app_id=...&limit=1`), the
cheapest read the app API key may make. (`GET /apps/{id}` needs the
*organization* key, so it would report a valid app key as broken.)

Configuration (a notification_providers row's config, or the environment):
    api_key        App API key (NOTIFICATIONS_PUSH_API_KEY)
    app_id         App id (NOTIFICATIONS_PUSH_APP_ID)
    target         "subscription" (default: to.device_token is a subscription id) or
                   "external_id" (to.device_token, else metadata external_id/user_id,
                   is your External ID alias)
    auth_scheme    "Key" (default); "Basic" for legacy REST API keys
    default_title, language ("en")

Webhooks: OneSignal signs none of its webhooks, so each request must carry a
shared secret - header `X-OneSignal-Webhook-Secret`, or `?secret=` in the URL for
senders that cannot set headers - equal to NOTIFICATIONS_ONESIGNAL_WEBHOOK_SECRET
(else NOTIFICATIONS_WEBHOOK_SECRET). No secret configured: every request is
rejected. See `OneSignalProvider.parse_webhook` for the accepted bodies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

from app.models import Channel
from app.providers.base import (
    EventType,
    OutboundMessage,
    PermanentProviderError,
    Provider,
    ProviderAuthError,
    ProviderCheck,
    ProviderContext,
    ProviderEvent,
    SendResult,
    TransientProviderError,
    WebhookInvalid,
    WebhookRejected,
    WebhookRequest,
    describe_body,
)

if TYPE_CHECKING:
    from app.settings import Settings

SECRET_HEADER = "X-OneSignal-Webhook-Secret"
SECRET_PARAM = "secret"
DEFAULT_TITLE = "Notification"

# Event Streams kinds (documentation.onesignal.com "Event Stream data reference").
STREAM_KINDS: dict[str, EventType] = {
    "message.push.received": EventType.DELIVERED,
    "message.push.clicked": EventType.CLICK,
    "message.push.failed": EventType.FAILED,
    "message.push.unsubscribed": EventType.UNSUBSCRIBE,
}
# Web Push webhooks of the OneSignal Web SDK ("notification.displayed" before v16).
WEB_SDK_EVENTS: dict[str, EventType] = {
    "notification.willDisplay": EventType.DELIVERED,
    "notification.displayed": EventType.DELIVERED,
    "notification.clicked": EventType.CLICK,
}
_UNSENT_KEYS = ("invalid_player_ids", "invalid_external_user_ids", "invalid_aliases")
_RECIPIENT_WORDS = ("not subscribed", "player_id", "subscription_id", "subscription id")


class OneSignalProvider(Provider):
    """One OneSignal app, addressed by subscription id or External ID alias."""

    name: ClassVar[str] = "onesignal"
    channel: ClassVar[Channel] = Channel.PUSH

    @classmethod
    def config_from_settings(cls, settings: Settings) -> dict[str, Any] | None:
        if settings.push_provider != cls.name:
            return None
        return {"api_key": settings.push_api_key, "app_id": settings.push_app_id}

    # ---- configuration --------------------------------------------------------

    def _credentials(self) -> tuple[str, str]:
        settings = self.ctx.settings
        api_key = self.config.get("api_key") or settings.push_api_key
        app_id = self.config.get("app_id") or settings.push_app_id
        if not api_key or not app_id:
            raise self.error(
                ProviderAuthError,
                "OneSignal needs api_key and app_id (NOTIFICATIONS_PUSH_API_KEY/_APP_ID)",
            )
        return str(api_key), str(app_id)

    def _headers(self, api_key: str) -> dict[str, str]:
        scheme = self.config.get("auth_scheme") or "Key"
        return {"Authorization": f"{scheme} {api_key}", "Accept": "application/json"}

    def _url(self, path: str) -> str:
        return self.ctx.settings.onesignal_base_url.rstrip("/") + path

    # ---- sending --------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        api_key, app_id = self._credentials()
        body = {"app_id": app_id, **self._target(message), **self._content(message)}
        status, headers, raw = await self.request(
            "POST", self._url("/notifications"), json=body, headers=self._headers(api_key)
        )
        if status == 400:
            raise self._rejected(raw, status)
        self.raise_for_status(status, headers, raw)
        return self._result(raw)

    def _target(self, message: OutboundMessage) -> dict[str, Any]:
        """include_subscription_ids, or include_aliases with the External ID."""
        token = message.to.device_token
        if token and self.config.get("target", "subscription") != "external_id":
            return {"include_subscription_ids": [token]}
        external_id = (
            token or message.metadata.get("external_id") or message.metadata.get("user_id")
        )
        if not external_id:
            raise self.error(
                PermanentProviderError,
                "OneSignal needs to.device_token (subscription id) or an external id",
                invalid_recipient=True,
            )
        return {"include_aliases": {"external_id": [str(external_id)]}, "target_channel": "push"}

    def _content(self, message: OutboundMessage) -> dict[str, Any]:
        language = self.config.get("language") or "en"
        title = message.subject or self.config.get("default_title") or DEFAULT_TITLE
        data = {str(k): str(v) for k, v in message.data.items()}
        data["notification_id"] = str(message.notification_id)
        content: dict[str, Any] = {
            "headings": {language: title},
            # OneSignal refuses a push without contents in English.
            "contents": {language: message.text or title},
            "data": data,
            "idempotency_key": message.idempotency_key,
        }
        if language != "en":
            content["headings"]["en"] = title
            content["contents"]["en"] = message.text or title
        if message.is_urgent:
            content["priority"] = 10
        return content

    def _result(self, raw: bytes) -> SendResult:
        """Read the polymorphic 200: an empty id means nothing was sent."""
        try:
            parsed = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise self.error(TransientProviderError, "OneSignal answered without JSON") from None
        if not isinstance(parsed, dict):
            raise self.error(TransientProviderError, "OneSignal answered with unexpected JSON")
        errors = parsed.get("errors")
        if not parsed.get("id"):
            raise self.error(
                PermanentProviderError,
                f"not sent: {_describe_errors(errors) or 'no notification created'}",
                invalid_recipient=_names_recipient(errors),
                status=200,
            )
        if isinstance(errors, dict) and any(errors.get(key) for key in _UNSENT_KEYS):
            # We target exactly one recipient, so a skipped recipient is this one.
            raise self.error(
                PermanentProviderError,
                f"recipient skipped: {_describe_errors(errors)}",
                invalid_recipient=True,
                status=200,
            )
        return SendResult(provider_message_id=str(parsed["id"]), raw=parsed)

    def _rejected(self, raw: bytes, status: int) -> PermanentProviderError:
        try:
            errors = json.loads(raw).get("errors")
        except (ValueError, UnicodeDecodeError, AttributeError):
            errors = None
        reason = _describe_errors(errors) or describe_body(raw) or "rejected"
        return PermanentProviderError(
            reason, invalid_recipient=_names_recipient(errors), provider=self.name, status=status
        )

    async def check(self) -> ProviderCheck:
        """List one notification: read-only, and allowed to the app API key."""
        try:
            api_key, app_id = self._credentials()
            status, _, raw = await self.request(
                "GET",
                self._url("/notifications"),
                params={"app_id": app_id, "limit": "1"},
                headers=self._headers(api_key),
            )
        except ProviderAuthError as exc:
            return ProviderCheck(reachable=False, authenticated=False, detail=str(exc))
        except TransientProviderError as exc:
            return ProviderCheck(reachable=False, authenticated=None, detail=str(exc))
        if status in (401, 403):
            return ProviderCheck(True, False, describe_body(raw) or f"HTTP {status}")
        if 200 <= status < 300:
            return ProviderCheck(True, True, f"app {app_id} readable")
        return ProviderCheck(True, None, describe_body(raw) or f"HTTP {status}")

    # ---- webhooks -------------------------------------------------------------

    @classmethod
    async def verify_webhook(cls, request: WebhookRequest, ctx: ProviderContext) -> None:
        """Accept only requests carrying the shared secret (OneSignal signs nothing)."""
        expected = ctx.settings.onesignal_webhook_secret or ctx.settings.webhook_secret
        if not expected:
            raise WebhookRejected("no OneSignal webhook secret configured")
        given = request.headers.get(SECRET_HEADER)
        if given is None:
            given = next(iter(parse_qs(urlsplit(request.url).query).get(SECRET_PARAM, [])), None)
        if not given:
            raise WebhookRejected(f"missing {SECRET_HEADER} header or ?{SECRET_PARAM}=")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise WebhookRejected("wrong OneSignal webhook secret")

    @classmethod
    def parse_webhook(cls, request: WebhookRequest) -> list[ProviderEvent]:
        """Normalise one event, or a JSON array of events, in either documented format.

        1. Event Streams (Data > Event Streams; the body is yours to define with
           Liquid). Configure it as the nested form of the documented fields::

               {"event": {"id": "{{ event.id }}", "kind": "{{ event.kind }}",
                          "timestamp": {{ event.timestamp }},
                          "subscription_id": "{{ event.subscription_id }}"},
                "message": {"id": "{{ message.id }}"}}

           kinds: message.push.received -> delivered, .clicked -> click,
           .failed -> failed, .unsubscribed -> unsubscribe; others are dropped.
           event_id = event.id, message_id = message.id (the id our send stored).
           `event.datetime` (ISO 8601) is read when `timestamp` is absent.

        2. Web SDK "Web Push Webhooks" (sent by the subscriber's browser)::

               {"event": "notification.clicked", "notificationId": "...",
                "heading", "content", "additionalData": {...}, "url", "actionId",
                "subscriptionId"}

           notification.willDisplay / .displayed -> delivered, .clicked -> click,
           .dismissed dropped. message_id = notificationId; our notification_id
           comes back in additionalData; there is no event id or time, so
           event_id is a sha256 of the event and occurred_at the receipt time.
           A browser can only carry the secret as `?secret=`, which anyone who
           reads the site's OneSignal configuration can see: treat these events
           as engagement signals, not as proof.
        """
        body = request.json()
        items = body if isinstance(body, list) else [body]
        events = []
        for item in items:
            if not isinstance(item, dict) or "event" not in item:
                raise WebhookInvalid("a OneSignal event is an object with an 'event' field")
            event = _stream_event(item) if isinstance(item["event"], dict) else _web_sdk_event(item)
            if event is not None:
                events.append(event)
        return events


# --------------------------------------------------------------------------- helpers


def _describe_errors(errors: Any) -> str:
    if isinstance(errors, str):
        return errors
    if isinstance(errors, list):
        return "; ".join(_describe_errors(e) for e in errors[:3] if e)
    if isinstance(errors, dict):
        return "; ".join(f"{key}: {value}" for key, value in list(errors.items())[:3])
    return ""


def _names_recipient(errors: Any) -> bool:
    """True when OneSignal's errors say the recipient itself is unknown or unsubscribed."""
    if isinstance(errors, dict):
        return any(errors.get(key) for key in _UNSENT_KEYS)
    text = _describe_errors(errors).lower()
    return any(word in text for word in _RECIPIENT_WORDS)


def _stable_id(item: Mapping[str, Any]) -> str:
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _as_uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _occurred_at(event: Mapping[str, Any]) -> datetime:
    stamp = event.get("timestamp")
    if stamp not in (None, ""):
        try:
            seconds = float(stamp)
        except (TypeError, ValueError):
            raise WebhookInvalid(f"event.timestamp is not a UNIX time: {stamp!r}") from None
        if seconds > 1e11:  # milliseconds
            seconds /= 1000
        return datetime.fromtimestamp(seconds, UTC)
    text = event.get("datetime")
    if isinstance(text, str) and text:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise WebhookInvalid(f"event.datetime is not ISO 8601: {text!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise WebhookInvalid("event has neither timestamp nor datetime")


def _stream_event(item: Mapping[str, Any]) -> ProviderEvent | None:
    event = item["event"]
    kind = event.get("kind")
    if not isinstance(kind, str) or not kind:
        raise WebhookInvalid("event.kind is missing")
    event_type = STREAM_KINDS.get(kind)
    if event_type is None:
        return None
    message = _object(item.get("message"))
    data = _object(item.get("data"))
    return ProviderEvent(
        provider=OneSignalProvider.name,
        event_id=str(event.get("id") or _stable_id(item)),
        type=event_type,
        occurred_at=_occurred_at(event),
        message_id=str(message["id"]) if message.get("id") else None,
        notification_id=_as_uuid(data.get("notification_id")),
        recipient=event.get("subscription_id") or None,
        reason=kind if event_type is EventType.FAILED else None,
        payload=dict(item),
    )


def _web_sdk_event(item: Mapping[str, Any]) -> ProviderEvent | None:
    name = item["event"]
    if not isinstance(name, str):
        raise WebhookInvalid("'event' must be a string or an object")
    event_type = WEB_SDK_EVENTS.get(name)
    if event_type is None:
        return None
    notification = item.get("notificationId")
    if not notification:
        raise WebhookInvalid("notificationId is missing")
    extra = _object(item.get("additionalData"))
    return ProviderEvent(
        provider=OneSignalProvider.name,
        event_id=_stable_id(item),
        type=event_type,
        occurred_at=datetime.now(UTC),
        message_id=str(notification),
        notification_id=_as_uuid(extra.get("notification_id")),
        recipient=item.get("subscriptionId") or None,
        payload=dict(item),
    )
