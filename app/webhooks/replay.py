"""Replay protection: a signed delivery is processed once.

The delivery's identity is the provider's own delivery id where it has one (Svix
`svix-id`, the SNS MessageId, the Mailgun token, the Plivo nonce, the Twilio
idempotency token) and otherwise a hash of the signature headers and the body.
`claim_many` sets the deliveries of a batch of concurrent requests in Redis (SET NX,
one script call for the batch) with a TTL longer than any provider's signature
tolerance, so a second identical request inside that window changes nothing. If
processing fails the claims are released, so the provider's retry is not mistaken
for a replay. Events are deduplicated again in PostgreSQL by
(provider, provider_event_id), which holds beyond the TTL.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence

from redis.asyncio import Redis

from app.settings import Settings

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


# SET NX EX for each key in order: 1 where this call set it (first sighting), else 0. A key
# twice in one batch is claimed by its first occurrence only.
_CLAIM = """
local claimed = {}
for i, key in ipairs(KEYS) do
    claimed[i] = redis.call('SET', key, '1', 'NX', 'EX', ARGV[1]) and 1 or 0
end
return claimed
"""


def ttl_for(settings: Settings) -> int:
    """Longer than any signature tolerance: a replay inside it is caught here."""
    return max(3600, 2 * settings.webhook_tolerance) + 60


async def claim_many(redis: Redis, keys: Sequence[str], ttl: int) -> list[bool]:
    """For each key, True the first time it is seen within `ttl` seconds (all True when
    Redis is down: the events are deduplicated in PostgreSQL anyway)."""
    if not keys:
        return []
    try:
        script = redis.register_script(_CLAIM)
        claimed = await script(keys=[PREFIX + key for key in keys], args=[ttl])
        return [bool(flag) for flag in claimed]
    except Exception as exc:
        log.warning("webhook replay cache unavailable (%s); relying on event dedup", exc)
        return [True] * len(keys)


async def release_many(redis: Redis, keys: Sequence[str]) -> None:
    if not keys:
        return
    try:
        await redis.delete(*(PREFIX + key for key in keys))
    except Exception:
        log.debug("could not release %d webhook claim(s)", len(keys), exc_info=True)
