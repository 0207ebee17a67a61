"""Replay protection: a signed delivery is processed once.

The delivery's identity is the provider's own delivery id where it has one (Svix
`svix-id`, the SNS MessageId, the Mailgun token, the Plivo nonce, the Twilio
idempotency token) and otherwise a hash of the signature headers and the body.
`claim` sets it in Redis with SET NX and a TTL longer than any provider's
signature tolerance, so a second identical request inside that window changes
nothing. If processing fails the claim is released, so the provider's retry is
not mistaken for a replay. Events are deduplicated again in PostgreSQL by
(provider, provider_event_id), which holds beyond the TTL.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping

from redis.asyncio import Redis

log = logging.getLogger(__name__)

PREFIX = "notif:webhook:seen:"
SIGNATURE_HEADERS = (
    "svix-signature", "X-Twilio-Email-Event-Webhook-Signature",
    "X-Twilio-Email-Event-Webhook-Timestamp", "X-Twilio-Signature", "X-Plivo-Signature-V3",
    "X-Plivo-Signature-Ma-V3", "X-Plivo-Signature-V3-Nonce", "X-OneSignal-Webhook-Secret",
)  # fmt: skip


def delivery_id(provider: str, headers: Mapping[str, str], body: bytes) -> str:
    for header in ("svix-id", "I-Twilio-Idempotency-Token", "X-Plivo-Signature-V3-Nonce"):
        value = headers.get(header)
        if value:
            return f"{provider}:{header.lower()}:{value[:200]}"
    if provider in ("ses", "mailgun"):
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if isinstance(parsed, dict):
            if provider == "ses" and isinstance(parsed.get("MessageId"), str):
                return f"ses:sns:{parsed['MessageId'][:200]}"
            signature = parsed.get("signature")
            if provider == "mailgun" and isinstance(signature, dict) and signature.get("token"):
                return f"mailgun:token:{str(signature['token'])[:200]}"
    digest = hashlib.sha256()
    for header in SIGNATURE_HEADERS:
        digest.update(f"{header}={headers.get(header, '')}\n".encode())
    digest.update(body)
    return f"{provider}:sha256:{digest.hexdigest()}"


async def claim(redis: Redis, key: str, ttl: int) -> bool:
    """True the first time `key` is seen within `ttl` seconds (fails open if Redis is down)."""
    try:
        return bool(await redis.set(PREFIX + key, b"1", nx=True, ex=ttl))
    except Exception as exc:
        log.warning("webhook replay cache unavailable (%s); relying on event dedup", exc)
        return True


async def release(redis: Redis, key: str) -> None:
    try:
        await redis.delete(PREFIX + key)
    except Exception:
        log.debug("could not release webhook claim %s", key, exc_info=True)
