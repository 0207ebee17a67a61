"""Mailgun: form-encoded `POST /v3/{domain}/messages`, HMAC-signed JSON webhooks.

API: https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Messages/
  basic auth api:KEY; answers {"id": "<...@domain>", "message": "Queued. Thank you."};
  errors {"message": "..."} (401 is a plain "Forbidden").
Webhooks: https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks
  {"signature": {"timestamp", "token", "signature"}, "event-data": {...}};
  signature = hex HMAC-SHA256(webhook signing key, timestamp + token).

Message ids: the send answer wraps the id in <>, webhook headers do not; we store
and match the bare form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
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
    ProviderEvent,
    SendResult,
    TransientProviderError,
    WebhookInvalid,
    WebhookRejected,
    WebhookRequest,
    describe_body,
)
from app.providers.email import mime_helpers as mh

if TYPE_CHECKING:
    from app.settings import Settings

REGION_URLS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}

EVENTS: dict[str, EventType] = {
    "delivered": EventType.DELIVERED,
    "failed": EventType.BOUNCE,  # permanent only; temporary failures are retried by Mailgun
    "opened": EventType.OPEN,
    "clicked": EventType.CLICK,
    "complained": EventType.COMPLAINT,
    "unsubscribed": EventType.UNSUBSCRIBE,
}


def bare_id(value: str | None) -> str | None:
    """`<id@domain>` -> `id@domain`, the form webhook headers carry."""
    if not value:
        return None
    return value.strip().removeprefix("<").removesuffix(">") or None


class MailgunProvider(Provider):
    name: ClassVar[str] = "mailgun"
    channel: ClassVar[Channel] = Channel.EMAIL

    @classmethod
    def config_from_settings(cls, settings: Settings) -> dict[str, Any] | None:
        config = mh.base_settings_config(settings, cls.name)
        if config is not None:
            config["domain"] = settings.mailgun_domain
            config["region"] = settings.mailgun_region
        return config

    # ---- sending ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Explicit base URL (config, then env) wins; otherwise the region's API host."""
        settings = self.ctx.settings
        explicit = self.config.get("base_url") or settings.mailgun_base_url
        if explicit:
            return str(explicit).rstrip("/")
        region = str(self.config.get("region") or settings.mailgun_region).lower()
        return REGION_URLS.get(region, REGION_URLS["us"])

    @property
    def domain(self) -> str:
        domain = self.config.get("domain") or self.ctx.settings.mailgun_domain
        if not domain:
            raise self.error(ProviderAuthError, "no sending domain configured")
        return str(domain)

    def _headers(self) -> dict[str, str]:
        """HTTP basic auth with the fixed user "api" and the API key as password."""
        key = self.config.get("api_key")
        if not key:
            raise self.error(ProviderAuthError, "no API key configured")
        token = base64.b64encode(f"api:{key}".encode()).decode()
        return {"Authorization": f"Basic {token}", "User-Agent": "hasura-notifications"}

    def build_form(self, message: OutboundMessage) -> list[tuple[str, str]]:
        """The form fields of /messages (h: headers, v: user variables, o: options)."""
        mh.require_body(message, self.name)
        form = [
            ("from", mh.sender(message, self.config, self.ctx.settings)),
            ("to", mh.recipient(message, self.name)),
            ("subject", message.subject or ""),
            # echoed in every event's user-variables
            ("v:notification_id", str(message.notification_id)),
        ]
        if message.text:
            form.append(("text", message.text))
        if message.html:
            form.append(("html", message.html))
        if reply := mh.reply_to(message, self.config, self.ctx.settings):
            form.append(("h:Reply-To", reply))
        form.extend((f"h:{name}", value) for name, value in mh.unsubscribe_headers(message).items())
        if message.category:
            form.append(("o:tag", message.category[:128]))
        return form

    async def send(self, message: OutboundMessage) -> SendResult:
        status, headers, body = await self.request(
            "POST",
            f"{self.base_url}/v3/{self.domain}/messages",
            data=self.build_form(message),
            headers=self._headers(),
        )
        self.classify(status, headers, body)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {}
        message_id = parsed.get("id") if isinstance(parsed, dict) else None
        return SendResult(provider_message_id=bare_id(message_id), raw=parsed or None)

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        if 200 <= status < 300:
            return
        reason = describe_body(body) or f"HTTP {status}"
        if status == 404:
            # unknown domain (or wrong region's API): configuration, not the message
            raise self.error(ProviderAuthError, reason, status=status)
        if status == 400:
            bad_to = "'to'" in reason or "recipient" in reason.lower()
            raise PermanentProviderError(
                reason, invalid_recipient=bad_to, provider=self.name, status=status
            )
        self.raise_for_status(status, headers, body)

    async def check(self) -> ProviderCheck:
        """GET /v3/domains/{domain}: read-only; proves key, region and domain together."""
        try:
            url = f"{self.base_url}/v3/domains/{self.domain}"
            status, _, body = await self.request("GET", url, headers=self._headers())
        except ProviderAuthError as exc:
            return ProviderCheck(reachable=False, authenticated=False, detail=exc.reason)
        except TransientProviderError as exc:
            return ProviderCheck(reachable=False, authenticated=None, detail=exc.reason)
        if status == 200:
            try:
                state = json.loads(body).get("domain", {}).get("state", "unknown")
            except (ValueError, AttributeError):
                state = "unknown"
            return ProviderCheck(True, True, f"domain {self.domain} is {state}")
        detail = describe_body(body) or f"HTTP {status}"
        if status == 404:
            return ProviderCheck(True, False, f"domain {self.domain} not found: {detail}")
        return ProviderCheck(True, False if status in (401, 403) else None, detail)

    # ---- webhooks ---------------------------------------------------------------

    @classmethod
    async def verify_webhook(cls, request: WebhookRequest, ctx: ProviderContext) -> None:
        key = ctx.settings.mailgun_webhook_key or ctx.settings.webhook_secret
        if not key:
            raise WebhookRejected("no Mailgun webhook signing key configured")
        try:
            signature = json.loads(request.body).get("signature")
        except (ValueError, UnicodeDecodeError, AttributeError):
            raise WebhookRejected("body is not a signed Mailgun webhook") from None
        if not isinstance(signature, dict):
            raise WebhookRejected("missing Mailgun signature object")
        timestamp, token = signature.get("timestamp"), signature.get("token")
        # subaccount events also carry parent-signature, made with the parent's key
        given = [
            s.lower()
            for s in (signature.get("signature"), signature.get("parent-signature"))
            if isinstance(s, str)
        ]
        if not (timestamp and token and given):
            raise WebhookRejected("incomplete Mailgun signature")
        mh.require_fresh(timestamp, ctx.settings.webhook_tolerance)
        signed = f"{timestamp}{token}".encode()
        expected = hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(expected, candidate) for candidate in given):
            raise WebhookRejected("Mailgun signature does not match")

    @classmethod
    def parse_webhook(cls, request: WebhookRequest) -> list[ProviderEvent]:
        payload = request.json()
        data = payload.get("event-data") if isinstance(payload, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            raise WebhookInvalid("Mailgun webhook body has no event-data.event")
        event_type = EVENTS.get(data["event"])
        if event_type is None:
            return []
        if data["event"] == "failed" and data.get("severity") != "permanent":
            return []
        variables = data.get("user-variables")
        variables = variables if isinstance(variables, dict) else {}
        return [
            ProviderEvent(
                provider=cls.name,
                event_id=str(data.get("id") or mh.stable_event_id(data)),
                type=event_type,
                occurred_at=mh.from_unix(data.get("timestamp")),
                message_id=bare_id(_message_id(data)),
                notification_id=mh.as_uuid(variables.get("notification_id")),
                recipient=data.get("recipient"),
                reason=_reason(data),
                payload=data,
            )
        ]


def _message_id(data: Mapping[str, Any]) -> str | None:
    message = data.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    value = headers.get("message-id") if isinstance(headers, dict) else None
    return str(value) if value else None


def _reason(data: Mapping[str, Any]) -> str | None:
    status = data.get("delivery-status")
    if isinstance(status, dict):
        text = status.get("description") or status.get("message")
        if text:
            return str(text)
    return str(data["reason"]) if data.get("reason") else None
