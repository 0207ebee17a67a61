"""Resend: `POST /emails` on the REST API, webhooks signed with Svix.

API: https://resend.com/docs/api-reference/emails/send-email
Errors: https://resend.com/docs/api-reference/errors ({"statusCode","name","message"})
Webhooks: https://resend.com/docs/webhooks (Svix: svix-id/-timestamp/-signature headers,
HMAC-SHA256 over "{id}.{timestamp}.{body}" keyed by the base64 part of "whsec_...").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from app.models import Channel
from app.providers.base import (
    EventType,
    OutboundMessage,
    PermanentProviderError,
    Provider,
    ProviderAuthError,
    ProviderCheck,
    ProviderContext,
    ProviderError,
    ProviderEvent,
    SendResult,
    TransientProviderError,
    WebhookInvalid,
    WebhookRejected,
    WebhookRequest,
)
from app.providers.email import mime_helpers as mh

if TYPE_CHECKING:
    from app.settings import Settings

EVENTS: dict[str, EventType] = {
    "email.delivered": EventType.DELIVERED,
    "email.bounced": EventType.BOUNCE,
    "email.complained": EventType.COMPLAINT,
    "email.opened": EventType.OPEN,
    "email.clicked": EventType.CLICK,
    "email.failed": EventType.FAILED,
}

# Resend tag names and values: ASCII letters, digits, underscores and dashes only.
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _tag(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": _TAG_UNSAFE.sub("_", value)[:256]}


def _error_fields(body: bytes) -> tuple[str, str]:
    """(name, message) of a Resend error body; empty strings when it is not one."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "", body[:300].decode("utf-8", "replace")
    if not isinstance(parsed, dict):
        return "", ""
    return str(parsed.get("name") or ""), str(parsed.get("message") or "")


class ResendProvider(Provider):
    name: ClassVar[str] = "resend"
    channel: ClassVar[Channel] = Channel.EMAIL

    @classmethod
    def config_from_settings(cls, settings: Settings) -> dict[str, Any] | None:
        return mh.base_settings_config(settings, cls.name)

    # ---- sending ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return str(self.config.get("base_url") or self.ctx.settings.resend_base_url).rstrip("/")

    def _headers(self) -> dict[str, str]:
        key = self.config.get("api_key")
        if not key:
            raise self.error(ProviderAuthError, "no API key configured")
        return {"Authorization": f"Bearer {key}", "User-Agent": "hasura-notifications"}

    def build_payload(self, message: OutboundMessage) -> dict[str, Any]:
        """The JSON body of POST /emails."""
        mh.require_body(message, self.name)
        payload: dict[str, Any] = {
            "from": mh.sender(message, self.config, self.ctx.settings),
            "to": [mh.recipient(message, self.name)],
            "subject": message.subject or "",
            "tags": [_tag("notification_id", str(message.notification_id))],
        }
        if message.category:
            payload["tags"].append(_tag("category", message.category))
        if message.html:
            payload["html"] = message.html
        if message.text:
            payload["text"] = message.text
        if reply := mh.reply_to(message, self.config, self.ctx.settings):
            payload["reply_to"] = reply
        if headers := mh.unsubscribe_headers(message):
            payload["headers"] = headers
        return payload

    async def send(self, message: OutboundMessage) -> SendResult:
        headers = self._headers()
        # Resend keeps the key 24 h: a retried job gets the first answer, not a 2nd email.
        headers["Idempotency-Key"] = message.idempotency_key
        status, resp_headers, body = await self.request(
            "POST", f"{self.base_url}/emails", json=self.build_payload(message), headers=headers
        )
        self.classify(status, resp_headers, body)
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = {}
        message_id = parsed.get("id") if isinstance(parsed, dict) else None
        return SendResult(provider_message_id=message_id, raw=parsed or None)

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """Resend-specific readings of an error; the generic rules cover the rest."""
        if 200 <= status < 300:
            return
        name, reason = _error_fields(body)
        reason = reason or name
        if "api key" in reason.lower() or name in ("missing_api_key", "invalid_api_key"):
            raise self.error(ProviderAuthError, reason, status=status, code=name or None)
        if status == 403:
            # unverified domain / testing-only account: the provider is misconfigured
            raise self.error(ProviderAuthError, reason, status=status, code=name or None)
        if name == "invalid_idempotent_request":
            # the key was already used with another payload: this notification was sent
            # (or is being sent); failing over would send it twice
            raise self.error(PermanentProviderError, reason, status=status, code=name)
        if status in (400, 422) and name == "validation_error":
            bad_to = "`to`" in reason or "'to'" in reason or "recipient" in reason.lower()
            raise PermanentProviderError(
                reason, invalid_recipient=bad_to, provider=self.name, status=status, code=name
            )
        try:
            self.raise_for_status(status, headers, body)
        except ProviderError as exc:
            exc.code = exc.code or name or None
            raise

    async def check(self) -> ProviderCheck:
        """GET /domains: read-only, needs a full-access key (a sending key gets 401)."""
        try:
            status, _, body = await self.request(
                "GET", f"{self.base_url}/domains", headers=self._headers()
            )
        except ProviderAuthError as exc:
            return ProviderCheck(reachable=False, authenticated=False, detail=exc.reason)
        except TransientProviderError as exc:
            return ProviderCheck(reachable=False, authenticated=None, detail=exc.reason)
        name, reason = _error_fields(body)
        if status == 200:
            try:
                count = len(json.loads(body).get("data") or [])
            except (ValueError, AttributeError):
                count = 0
            return ProviderCheck(True, True, f"{count} domain(s)")
        if name == "restricted_api_key":
            return ProviderCheck(True, True, "sending-only API key (cannot list domains)")
        if status in (400, 401, 403):
            return ProviderCheck(True, False, reason or name or f"HTTP {status}")
        return ProviderCheck(True, None, reason or f"HTTP {status}")

    # ---- webhooks ---------------------------------------------------------------

    @staticmethod
    def _secret_bytes(secret: str) -> bytes:
        """Svix secrets are "whsec_" + base64; a plain generic secret is used as is."""
        if secret.startswith("whsec_"):
            secret = secret[len("whsec_") :]
            try:
                return base64.b64decode(secret, validate=True)
            except (binascii.Error, ValueError):
                raise WebhookRejected("Resend webhook secret is not valid base64") from None
        try:
            return base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            return secret.encode()

    @classmethod
    async def verify_webhook(cls, request: WebhookRequest, ctx: ProviderContext) -> None:
        settings = ctx.settings
        secret = settings.resend_webhook_secret or settings.webhook_secret
        if not secret:
            raise WebhookRejected("no Resend webhook secret configured")
        msg_id = request.headers.get("svix-id")
        timestamp = request.headers.get("svix-timestamp")
        signatures = request.headers.get("svix-signature")
        if not (msg_id and timestamp and signatures):
            raise WebhookRejected("missing svix-id, svix-timestamp or svix-signature")
        mh.require_fresh(timestamp, settings.webhook_tolerance)
        signed = f"{msg_id}.{timestamp}.".encode() + request.body
        expected = hmac.new(cls._secret_bytes(secret), signed, hashlib.sha256).digest()
        for candidate in signatures.split(" "):
            version, _, value = candidate.partition(",")
            if version != "v1" or not value:
                continue
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                continue
            if hmac.compare_digest(expected, given):
                return
        raise WebhookRejected("no matching Resend signature")

    @classmethod
    def parse_webhook(cls, request: WebhookRequest) -> list[ProviderEvent]:
        payload = request.json()
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            raise WebhookInvalid("Resend webhook body must be an object with a type")
        data = payload.get("data")
        if not isinstance(data, dict):
            raise WebhookInvalid("Resend webhook body has no data object")
        event_type = EVENTS.get(payload["type"])
        if event_type is None:
            return []
        event_id = request.headers.get("svix-id") or mh.stable_event_id(payload)
        to = data.get("to")
        return [
            ProviderEvent(
                provider=cls.name,
                event_id=event_id,
                type=event_type,
                occurred_at=_parse_time(payload.get("created_at") or data.get("created_at")),
                message_id=data.get("email_id"),
                notification_id=mh.as_uuid(_tags(data.get("tags")).get("notification_id")),
                recipient=to[0] if isinstance(to, list) and to else to or None,
                reason=_reason(data),
                payload=payload,
            )
        ]


def _tags(value: Any) -> dict[str, Any]:
    """Resend echoes tags as {"name": "value"} (or the list form we sent)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {str(t.get("name")): t.get("value") for t in value if isinstance(t, dict)}
    return {}


def _reason(data: Mapping[str, Any]) -> str | None:
    for key, field in (("bounce", "message"), ("failed", "reason")):
        detail = data.get(key)
        if isinstance(detail, dict) and detail.get(field):
            return str(detail[field])
    return None


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str) or not value:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise WebhookInvalid(f"malformed created_at {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
