"""SendGrid: `POST /v3/mail/send`, events from the Signed Event Webhook.

API: https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send
  202 with an empty body; the message id is the X-Message-Id response header.
  Errors: {"errors": [{"message", "field", "help"}]}; 429 carries X-RateLimit-Reset.
Webhooks: https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event
  ECDSA P-256 / SHA-256 signature (base64 DER) of timestamp + raw body, headers
  X-Twilio-Email-Event-Webhook-Signature / -Timestamp; the verification key is the
  base64 DER SubjectPublicKeyInfo shown in the dashboard (as sendgrid-python reads it).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

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
    ProviderRateLimited,
    SendResult,
    TransientProviderError,
    WebhookInvalid,
    WebhookRejected,
    WebhookRequest,
    parse_retry_after,
)
from app.providers.email import mime_helpers as mh

if TYPE_CHECKING:
    from app.settings import Settings

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

EVENTS: dict[str, EventType] = {
    "delivered": EventType.DELIVERED,
    "bounce": EventType.BOUNCE,
    "dropped": EventType.FAILED,
    "open": EventType.OPEN,
    "click": EventType.CLICK,
    "spamreport": EventType.COMPLAINT,
    "unsubscribe": EventType.UNSUBSCRIBE,
    "group_unsubscribe": EventType.UNSUBSCRIBE,
}


def _errors(body: bytes) -> list[dict[str, Any]]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _describe(errors: list[dict[str, Any]], body: bytes) -> str:
    parts = [
        f"{e.get('message')} ({e['field']})" if e.get("field") else str(e.get("message"))
        for e in errors[:3]
    ]
    return "; ".join(parts) or body[:300].decode("utf-8", "replace")


def _reset_delay(headers: Mapping[str, str]) -> float | None:
    """SendGrid's 429 says when the window resets (unix time), not Retry-After."""
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            pass
    return parse_retry_after(headers.get("Retry-After"))


class SendGridProvider(Provider):
    name: ClassVar[str] = "sendgrid"
    channel: ClassVar[Channel] = Channel.EMAIL

    @classmethod
    def config_from_settings(cls, settings: Settings) -> dict[str, Any] | None:
        return mh.base_settings_config(settings, cls.name)

    # ---- sending ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return str(self.config.get("base_url") or self.ctx.settings.sendgrid_base_url).rstrip("/")

    def _headers(self) -> dict[str, str]:
        key = self.config.get("api_key")
        if not key:
            raise self.error(ProviderAuthError, "no API key configured")
        return {"Authorization": f"Bearer {key}", "User-Agent": "hasura-notifications"}

    def build_payload(self, message: OutboundMessage) -> dict[str, Any]:
        """The JSON body of /v3/mail/send (text/plain must precede text/html)."""
        mh.require_body(message, self.name)
        to: dict[str, str] = {"email": mh.recipient_email(message, self.name)}
        if message.to.name:
            to["name"] = message.to.name
        payload: dict[str, Any] = {
            "personalizations": [{"to": [to]}],
            "from": _address(mh.sender(message, self.config, self.ctx.settings)),
            "subject": message.subject or "",
            "content": [],
            # echoed on every event, so webhooks find the notification even by id alone
            "custom_args": {"notification_id": str(message.notification_id)},
        }
        if message.text:
            payload["content"].append({"type": "text/plain", "value": message.text})
        if message.html:
            payload["content"].append({"type": "text/html", "value": message.html})
        if reply := mh.reply_to(message, self.config, self.ctx.settings):
            payload["reply_to"] = _address(reply)
        if headers := mh.unsubscribe_headers(message):
            payload["headers"] = headers
        if message.category:
            payload["categories"] = [message.category[:255]]
        return payload

    async def send(self, message: OutboundMessage) -> SendResult:
        status, headers, body = await self.request(
            "POST",
            f"{self.base_url}/v3/mail/send",
            json=self.build_payload(message),
            headers=self._headers(),
        )
        self.classify(status, headers, body)
        return SendResult(provider_message_id=headers.get("X-Message-Id"), raw=None)

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        if 200 <= status < 300:
            return
        errors = _errors(body)
        reason = _describe(errors, body) or f"HTTP {status}"
        if status == 429:
            raise ProviderRateLimited(
                reason, retry_after=_reset_delay(headers), provider=self.name, status=status
            )
        if status in (401, 403):
            # 403: unverified sender identity, missing scope or exhausted credits
            raise self.error(ProviderAuthError, reason, status=status)
        if status >= 500:
            raise self.error(TransientProviderError, reason, status=status)
        if status in (400, 413):
            fields = [str(e.get("field") or "") for e in errors]
            bad_to = any(f.startswith("personalizations") and ".to" in f for f in fields)
            raise PermanentProviderError(
                reason, invalid_recipient=bad_to, provider=self.name, status=status
            )
        self.raise_for_status(status, headers, body)

    async def check(self) -> ProviderCheck:
        """GET /v3/scopes: read-only; also tells whether the key may send mail."""
        try:
            status, _, body = await self.request(
                "GET", f"{self.base_url}/v3/scopes", headers=self._headers()
            )
        except ProviderAuthError as exc:
            return ProviderCheck(reachable=False, authenticated=False, detail=exc.reason)
        except TransientProviderError as exc:
            return ProviderCheck(reachable=False, authenticated=None, detail=exc.reason)
        if status == 200:
            try:
                scopes = json.loads(body).get("scopes") or []
            except (ValueError, AttributeError):
                scopes = []
            if "mail.send" not in scopes:
                return ProviderCheck(True, False, "API key lacks the mail.send scope")
            return ProviderCheck(True, True, f"{len(scopes)} scope(s) incl. mail.send")
        detail = _describe(_errors(body), body) or f"HTTP {status}"
        return ProviderCheck(True, False if status in (401, 403) else None, detail)

    # ---- webhooks ---------------------------------------------------------------

    @staticmethod
    def _public_key(value: str) -> ec.EllipticCurvePublicKey:
        """The dashboard's verification key: base64 DER (a PEM block is accepted too)."""
        try:
            if "BEGIN PUBLIC KEY" in value:
                key = serialization.load_pem_public_key(value.encode())
            else:
                key = serialization.load_der_public_key(base64.b64decode("".join(value.split())))
        except (ValueError, binascii.Error, TypeError):
            raise WebhookRejected("SendGrid webhook public key is not a valid key") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise WebhookRejected("SendGrid webhook public key is not an EC key")
        return key

    @classmethod
    async def verify_webhook(cls, request: WebhookRequest, ctx: ProviderContext) -> None:
        public_key = ctx.settings.sendgrid_webhook_public_key
        if not public_key:
            raise WebhookRejected("no SendGrid webhook public key configured")
        signature = request.headers.get(SIGNATURE_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        if not (signature and timestamp):
            raise WebhookRejected(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
        mh.require_fresh(timestamp, ctx.settings.webhook_tolerance)
        try:
            der = base64.b64decode(signature, validate=True)
            cls._public_key(public_key).verify(
                der, timestamp.encode() + request.body, ec.ECDSA(hashes.SHA256())
            )
        except (InvalidSignature, binascii.Error, ValueError):
            raise WebhookRejected("SendGrid signature does not verify") from None

    @classmethod
    def parse_webhook(cls, request: WebhookRequest) -> list[ProviderEvent]:
        payload = request.json()
        if not isinstance(payload, list):
            raise WebhookInvalid("SendGrid webhook body must be a JSON array of events")
        events = []
        for item in payload:
            if not isinstance(item, dict) or not isinstance(item.get("event"), str):
                raise WebhookInvalid("each SendGrid event must be an object with an event")
            if (event := _event(cls.name, item)) is not None:
                events.append(event)
        return events


def _event(provider: str, item: Mapping[str, Any]) -> ProviderEvent | None:
    event_type = EVENTS.get(item["event"])
    if event_type is None:
        return None
    if event_type is EventType.BOUNCE and item.get("type") == "blocked":
        # a block is the receiving server refusing our IP/content, not a dead mailbox
        event_type = EventType.FAILED
    sg_message_id = item.get("sg_message_id")
    return ProviderEvent(
        provider=provider,
        event_id=str(item.get("sg_event_id") or mh.stable_event_id(item)),
        type=event_type,
        occurred_at=mh.from_unix(item.get("timestamp")),
        # sg_message_id is "<X-Message-Id>.<filter/recv suffix>"; we stored the prefix
        message_id=str(sg_message_id).split(".", 1)[0] if sg_message_id else None,
        notification_id=mh.as_uuid(item.get("notification_id")),
        recipient=item.get("email"),
        reason=item.get("reason") or item.get("response"),
        payload=dict(item),
    )


def _address(value: str) -> dict[str, str]:
    name, address = mh.split_address(value)
    return {"email": address, "name": name} if name else {"email": address}
