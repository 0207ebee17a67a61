"""Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payloads (RFC 8291).

There is no vendor API: the browser's subscription names the push service
endpoint (FCM, Mozilla autopush, Apple, ...), and every one of them speaks:

    POST {subscription.endpoint}
    TTL: seconds            Urgency: high | normal
    Content-Encoding: aes128gcm        Content-Type: application/octet-stream
    Authorization: vapid t=<ES256 JWT {aud: scheme://host of endpoint, exp, sub}>,k=<public key>
    <aes128gcm record: salt, rs, sender's ephemeral public key, ciphertext>

The payload is encrypted for the subscriber (its p256dh key and auth secret)
with http_ece, a fresh sender key pair and a random salt per message; the
service worker receives the JSON `{"title", "body", "data": {..., "notification_id"}}`.

Answers: 201 Created (the Location header, when given, is our provider id);
404/410 the subscription is gone (invalid recipient); 413 payload too large;
429 rate limited; 5xx transient; 400/401/403 mean the VAPID signature or key was
refused (a provider configuration problem).

Configuration (a notification_providers row's config, or the environment):
    vapid_private_key  PEM, or base64url raw 32-byte / DER key (NOTIFICATIONS_VAPID_PRIVATE_KEY)
    vapid_subject      mailto: or https: contact (NOTIFICATIONS_VAPID_SUBJECT)
    ttl                seconds the push service keeps an undelivered message (86400)
    default_title      title when the notification has no subject
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import http_ece
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException

from app.models import Channel, WebPushSubscription
from app.providers.base import (
    OutboundMessage,
    PermanentProviderError,
    Provider,
    ProviderAuthError,
    ProviderCheck,
    ProviderContext,
    ProviderRateLimited,
    SendResult,
    TransientProviderError,
    describe_body,
    parse_retry_after,
)

if TYPE_CHECKING:
    from app.settings import Settings

DEFAULT_TTL = 86400
DEFAULT_TITLE = "Notification"
MAX_RECORD = 4096  # RFC 8030 §7.2: push services must accept at least 4096 payload bytes
VAPID_LIFETIME = 12 * 3600  # RFC 8292 caps exp at 24 h; 12 h leaves room for clock skew
VAPID_REUSE_MARGIN = 3600  # re-sign an audience's JWT when less than this remains


def b64url_decode(value: str) -> bytes:
    """Decode base64url (or standard base64) with or without padding."""
    text = value.strip().replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_vapid_key(value: str) -> Vapid02:
    """A VAPID signer from a PEM key, or a base64url raw (32 bytes) or DER key."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            vapid = Vapid02(serialization.load_pem_private_key(text.encode(), password=None))
        else:
            vapid = Vapid02.from_string(text)
    except (ValueError, TypeError, UnsupportedAlgorithm, VapidException) as exc:
        raise ValueError(f"invalid VAPID private key: {exc}") from None
    key = vapid.private_key
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("invalid VAPID private key: VAPID keys are EC P-256 keys")
    return vapid


def audience(endpoint: str) -> str:
    """The VAPID `aud`: the origin (scheme://host[:port]) of the push endpoint."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"push endpoint is not an http(s) URL: {endpoint!r}")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def encrypt_payload(payload: bytes, p256dh: bytes, auth: bytes) -> bytes:
    """RFC 8291 aes128gcm: one record, a fresh sender key and salt per message."""
    sender = ec.generate_private_key(ec.SECP256R1())
    encrypted: bytes = http_ece.encrypt(
        payload,
        salt=os.urandom(16),
        private_key=sender,
        dh=p256dh,
        auth_secret=auth,
        version="aes128gcm",
    )
    return encrypted


class WebPushProvider(Provider):
    """Sends to any RFC 8030 push service with our VAPID identity."""

    name: ClassVar[str] = "webpush"
    channel: ClassVar[Channel] = Channel.PUSH

    def __init__(self, config: Mapping[str, Any], ctx: ProviderContext) -> None:
        super().__init__(config, ctx)
        self._vapid: Vapid02 | None = None
        self._jwt_cache: dict[str, tuple[str, float]] = {}  # aud -> (Authorization, exp)

    @classmethod
    def config_from_settings(cls, settings: Settings) -> dict[str, Any] | None:
        if settings.push_provider != cls.name:
            return None
        return {
            "vapid_private_key": settings.vapid_private_key,
            "vapid_subject": settings.vapid_subject,
        }

    # ---- VAPID ----------------------------------------------------------------

    def vapid(self) -> Vapid02:
        if self._vapid is None:
            key = self.config.get("vapid_private_key") or self.ctx.settings.vapid_private_key
            if not key:
                raise self.error(
                    ProviderAuthError, "no VAPID key (NOTIFICATIONS_VAPID_PRIVATE_KEY)"
                )
            try:
                self._vapid = load_vapid_key(str(key))
            except ValueError as exc:
                raise self.error(ProviderAuthError, str(exc)) from None
        return self._vapid

    def public_key(self) -> str:
        """The applicationServerKey browsers must subscribe with (base64url)."""
        raw = self.vapid().public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def authorization(self, aud: str) -> str:
        """`vapid t=JWT,k=KEY` for one push service, re-used while it stays fresh."""
        now = time.time()
        cached = self._jwt_cache.get(aud)
        if cached and cached[1] - now > VAPID_REUSE_MARGIN:
            return cached[0]
        subject = self.config.get("vapid_subject") or self.ctx.settings.vapid_subject
        exp = int(now) + VAPID_LIFETIME
        try:
            header = self.vapid().sign({"aud": aud, "sub": subject, "exp": exp})["Authorization"]
        except VapidException as exc:
            raise self.error(ProviderAuthError, f"VAPID claims refused: {exc}") from None
        self._jwt_cache[aud] = (header, exp)
        return header

    # ---- sending --------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        subscription = message.to.subscription
        if subscription is None:
            raise self.error(
                PermanentProviderError, "Web Push needs to.subscription", invalid_recipient=True
            )
        body, aud = self._encrypt(message, subscription)
        urgent = message.is_urgent
        headers = {
            "TTL": str(int(self.config.get("ttl", DEFAULT_TTL))),
            "Urgency": "high" if urgent else "normal",
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Authorization": self.authorization(aud),
        }
        status, resp_headers, raw = await self.request(
            "POST", subscription.endpoint, data=body, headers=headers
        )
        self._raise_for_push_status(status, resp_headers, raw)
        location = resp_headers.get("Location")
        return SendResult(
            provider_message_id=location or str(message.notification_id),
            raw={"status": status, "location": location},
        )

    def _encrypt(
        self, message: OutboundMessage, subscription: WebPushSubscription
    ) -> tuple[bytes, str]:
        try:
            aud = audience(subscription.endpoint)
            p256dh = b64url_decode(subscription.keys.p256dh)
            auth = b64url_decode(subscription.keys.auth)
            body = encrypt_payload(self._payload(message), p256dh, auth)
        except (ValueError, binascii.Error, http_ece.ECEException) as exc:
            raise self.error(
                PermanentProviderError, f"unusable subscription: {exc}", invalid_recipient=True
            ) from None
        if len(body) > MAX_RECORD:
            raise self.error(
                PermanentProviderError, f"payload too large ({len(body)} > {MAX_RECORD} bytes)"
            )
        return body, aud

    def _payload(self, message: OutboundMessage) -> bytes:
        data = {str(k): str(v) for k, v in message.data.items()}
        data["notification_id"] = str(message.notification_id)
        payload = {
            "title": message.subject or self.config.get("default_title") or DEFAULT_TITLE,
            "body": message.text or "",
            "data": data,
        }
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    def _raise_for_push_status(self, status: int, headers: Mapping[str, str], raw: bytes) -> None:
        if 200 <= status < 300:
            return
        reason = describe_body(raw)
        if status in (404, 410):
            raise self.error(
                PermanentProviderError,
                f"subscription gone{': ' + reason if reason else ''}",
                invalid_recipient=True,
                status=status,
            )
        if status == 413:
            raise self.error(PermanentProviderError, reason or "payload too large", status=status)
        if status == 429:
            raise ProviderRateLimited(
                reason or "rate limited",
                retry_after=parse_retry_after(headers.get("Retry-After")),
                provider=self.name,
                status=status,
            )
        if status in (400, 401, 403):
            raise self.error(
                ProviderAuthError, f"VAPID refused: {reason or 'no detail'}", status=status
            )
        if status >= 500 or status == 408:
            raise self.error(TransientProviderError, reason or "server error", status=status)
        raise self.error(PermanentProviderError, reason or "rejected", status=status)

    async def check(self) -> ProviderCheck:
        """Push services offer no read-only call; prove the VAPID key loads and signs."""
        try:
            self.authorization("https://push.example")
            key = self.public_key()
        except ProviderAuthError as exc:
            return ProviderCheck(reachable=True, authenticated=False, detail=str(exc))
        return ProviderCheck(
            reachable=True, authenticated=None, detail=f"VAPID key valid; public key {key}"
        )
