"""Which provider sent a request to POST /webhooks/notifications (the spec's single URL).

An explicit `?provider=` wins; otherwise each provider's signature header names it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

WEBHOOK_PROVIDERS = ("resend", "sendgrid", "mailgun", "ses", "twilio", "plivo", "onesignal")

# header (case-insensitive) -> provider, checked in order
HEADERS: tuple[tuple[str, str], ...] = (
    ("svix-id", "resend"),
    ("X-Twilio-Email-Event-Webhook-Signature", "sendgrid"),
    ("x-amz-sns-message-type", "ses"),
    ("X-Twilio-Signature", "twilio"),
    ("X-Plivo-Signature-V3", "plivo"),
    ("X-Plivo-Signature-Ma-V3", "plivo"),
    ("X-OneSignal-Webhook-Secret", "onesignal"),
)


def detect(headers: Mapping[str, str], query: Mapping[str, str], body: bytes) -> str | None:
    explicit = query.get("provider")
    if explicit:
        return explicit.strip().lower()
    for header, provider in HEADERS:
        if headers.get(header) is not None:
            return provider
    return _from_body(body)


def _from_body(body: bytes) -> str | None:
    """Mailgun signs inside the body ({"signature": {...}, "event-data": {...}})."""
    if not body.lstrip().startswith(b"{"):
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(parsed, dict) and "event-data" in parsed and "signature" in parsed:
        return "mailgun"
    return None
