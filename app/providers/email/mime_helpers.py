"""Values the HTTP email providers (Resend, SendGrid, Mailgun) build the same way.

Each provider has its own wire format, but who the mail is from, where replies
go, the List-Unsubscribe header and webhook timestamp freshness are decided
once, here, so the three never disagree.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from app.providers.base import (
    OutboundMessage,
    PermanentProviderError,
    WebhookInvalid,
    WebhookRejected,
)

if TYPE_CHECKING:
    from app.settings import Settings


def sender(message: OutboundMessage, config: Mapping[str, Any], settings: Settings) -> str:
    """From: the message's own, else the provider row's, else NOTIFICATIONS_EMAIL_FROM."""
    return str(message.from_address or config.get("from") or settings.email_from)


def reply_to(message: OutboundMessage, config: Mapping[str, Any], settings: Settings) -> str | None:
    value = message.reply_to or config.get("reply_to") or settings.email_reply_to
    return str(value) if value else None


def recipient_email(message: OutboundMessage, provider: str) -> str:
    """The bare recipient address; a message without one can never be sent."""
    if not message.to.email:
        raise PermanentProviderError(
            "email message has no to.email", invalid_recipient=True, provider=provider
        )
    return message.to.email


def recipient(message: OutboundMessage, provider: str) -> str:
    """`Name <addr>` when the recipient has a name (RFC 5322 quoting), else the address."""
    address = recipient_email(message, provider)
    name = message.to.name
    if not name:
        return address
    if name.isascii():
        return email.utils.formataddr((name, address))
    # the APIs take UTF-8 and encode headers themselves; RFC 2047 here would be shown raw
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" <{address}>'


def split_address(value: str) -> tuple[str, str]:
    """`Name <addr>` -> (name, addr) for APIs that take the two apart (SendGrid)."""
    name, address = email.utils.parseaddr(value)
    return name, address or value


def require_body(message: OutboundMessage, provider: str) -> None:
    """Every provider rejects a body-less email; say so without a network call."""
    if not (message.text or message.html):
        raise PermanentProviderError("email message has no text or html body", provider=provider)


def unsubscribe_headers(message: OutboundMessage) -> dict[str, str]:
    """List-Unsubscribe for marketing mail (RFC 2369), so mailbox providers show the link."""
    if message.is_marketing and message.unsubscribe_url:
        return {"List-Unsubscribe": f"<{message.unsubscribe_url}>"}
    return {}


def base_settings_config(settings: Settings, name: str) -> dict[str, Any] | None:
    """Env config shared by the three: only for the selected provider, only with a key."""
    if settings.email_provider != name or not settings.email_api_key:
        return None
    return {
        "api_key": settings.email_api_key,
        "from": settings.email_from,
        "reply_to": settings.email_reply_to,
    }


def require_fresh(timestamp: str | int | float | None, tolerance: float) -> float:
    """Reject a signed timestamp outside +/- tolerance seconds (replay protection)."""
    try:
        value = float(timestamp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise WebhookRejected("missing or malformed signature timestamp") from None
    if abs(time.time() - value) > tolerance:
        raise WebhookRejected("signature timestamp outside the allowed tolerance")
    return value


def stable_event_id(event: Any) -> str:
    """For events without a provider id: the same event always hashes the same."""
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def from_unix(value: Any) -> datetime:
    """A provider's unix timestamp (seconds, maybe fractional) as an aware UTC datetime."""
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise WebhookInvalid(f"malformed event timestamp {value!r}") from None


def as_uuid(value: Any) -> UUID | None:
    """Our notification id echoed back by a provider, if it is one."""
    if not value:
        return None
    try:
        return UUID(str(value))
    except ValueError:
        return None
