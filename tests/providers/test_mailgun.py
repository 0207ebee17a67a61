"""Mailgun against a local fake of its API, and its HMAC-signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from app.models import Channel, Recipient
from app.providers.base import (
    EventType,
    OutboundMessage,
    PermanentProviderError,
    ProviderAuthError,
    ProviderContext,
    ProviderRateLimited,
    TransientProviderError,
    WebhookInvalid,
    WebhookRejected,
    WebhookRequest,
)
from app.providers.email.mailgun import MailgunProvider
from tests.fakes.mailgun import API_KEY, DOMAIN, FakeMailgun

SIGNING_KEY = "mailgun-webhook-signing-key-0123"


@pytest.fixture
async def fake() -> AsyncIterator[FakeMailgun]:
    server = FakeMailgun()
    async with server.running():
        yield server


@pytest.fixture
def provider(
    fake: FakeMailgun, provider_ctx: Callable[..., ProviderContext]
) -> Callable[..., MailgunProvider]:
    def build(api_key: str = API_KEY, domain: str = DOMAIN, **settings: Any) -> MailgunProvider:
        settings = {"mailgun_base_url": fake.url, "provider_timeout": 2, **settings}
        return MailgunProvider({"api_key": api_key, "domain": domain}, provider_ctx(**settings))

    return build


def message(**overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "notification_id": uuid4(),
        "channel": Channel.EMAIL,
        "to": Recipient(email="ada@example.org", name="Ada Lovelace"),
        "subject": "Hello",
        "text": "plain body",
        "html": "<p>html body</p>",
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


# --------------------------------------------------------------------------- send


async def test_send_posts_the_real_form_and_returns_the_bare_id(fake, provider) -> None:
    msg = message(category="marketing", unsubscribe_url="https://app.test/u/1", reply_to="h@x.io")
    result = await provider().send(msg)

    assert f"<{result.provider_message_id}>" == fake.ids[0]
    form = dict(fake.messages[0])
    assert form["from"] == "noreply@example.com"
    assert form["to"] == "Ada Lovelace <ada@example.org>"
    assert (form["subject"], form["text"], form["html"]) == (
        "Hello",
        "plain body",
        "<p>html body</p>",
    )
    assert form["h:Reply-To"] == "h@x.io"
    assert form["h:List-Unsubscribe"] == "<https://app.test/u/1>"
    assert form["v:notification_id"] == str(msg.notification_id)
    assert form["o:tag"] == "marketing"


async def test_invalid_recipient_is_permanent_and_flagged(provider) -> None:
    bad = Recipient.model_construct(email="not-an-address", name=None)
    with pytest.raises(PermanentProviderError) as err:
        await provider().send(message(to=bad))
    assert err.value.invalid_recipient
    assert err.value.status == 400


async def test_wrong_key_is_an_auth_error(provider) -> None:
    with pytest.raises(ProviderAuthError) as err:
        await provider(api_key="key-wrong").send(message())
    assert (err.value.status, err.value.reason) == (401, "Forbidden")


async def test_unknown_domain_is_a_provider_config_error(provider) -> None:
    with pytest.raises(ProviderAuthError) as err:
        await provider(domain="other.example.com").send(message())
    assert err.value.status == 404


async def test_missing_domain_or_key_fails_before_any_request(fake, provider) -> None:
    with pytest.raises(ProviderAuthError, match="domain"):
        await provider(domain="").send(message())
    with pytest.raises(ProviderAuthError, match="API key"):
        await provider(api_key="").send(message())
    assert fake.messages == []


async def test_429_honours_retry_after(fake, provider) -> None:
    fake.rate_limit(retry_after=5)
    with pytest.raises(ProviderRateLimited) as err:
        await provider().send(message())
    assert err.value.retry_after == 5


async def test_5xx_is_transient(fake, provider) -> None:
    fake.server_error()
    with pytest.raises(TransientProviderError) as err:
        await provider().send(message())
    assert not isinstance(err.value, (PermanentProviderError, ProviderAuthError))


async def test_hang_past_the_timeout_is_transient(fake, provider) -> None:
    fake.hang = True
    started = time.monotonic()
    with pytest.raises(TransientProviderError, match="timed out"):
        await provider(provider_timeout=0.5).send(message())
    assert time.monotonic() - started < 2


# --------------------------------------------------------------------------- check / config


async def test_check_reads_the_domain(provider) -> None:
    result = await provider().check()
    assert (result.reachable, result.authenticated) == (True, True)
    assert "active" in result.detail


async def test_check_bad_key_and_unknown_domain(provider) -> None:
    assert (await provider(api_key="key-wrong").check()).authenticated is False
    unknown = await provider(domain="other.example.com").check()
    assert (unknown.reachable, unknown.authenticated) == (True, False)
    assert "not found" in unknown.detail


@pytest.mark.parametrize(
    ("overrides", "url"),
    [
        ({}, "https://api.mailgun.net"),
        ({"mailgun_region": "eu"}, "https://api.eu.mailgun.net"),
        ({"mailgun_region": "eu", "mailgun_base_url": "http://127.0.0.1:1/"}, "http://127.0.0.1:1"),
    ],
)
def test_base_url_follows_region_unless_set(provider_ctx, overrides, url) -> None:
    assert MailgunProvider({"api_key": "k"}, provider_ctx(**overrides)).base_url == url


def test_config_from_settings_only_when_selected(make_settings) -> None:
    chosen = make_settings(
        email_provider="mailgun", email_api_key="key-x", mailgun_domain=DOMAIN, mailgun_region="eu"
    )
    config = MailgunProvider.config_from_settings(chosen)
    assert config is not None
    assert (config["api_key"], config["domain"], config["region"]) == ("key-x", DOMAIN, "eu")
    assert MailgunProvider.config_from_settings(make_settings(email_provider="ses")) is None


# --------------------------------------------------------------------------- webhooks


def signature(key: str = SIGNING_KEY, timestamp: int | None = None) -> dict[str, str]:
    """Signed as Mailgun signs: hex HMAC-SHA256(key, timestamp + token)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    token = secrets.token_hex(25)
    digest = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": ts, "token": token, "signature": digest}


def event_data(kind: str = "delivered", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"CPgfbmQMTCKtHW6uIWtuVe-{kind}",
        "timestamp": 1521472262.908181,
        "log-level": "info",
        "event": kind,
        "recipient": "ada@example.org",
        "message": {
            "headers": {
                "to": "Ada Lovelace <ada@example.org>",
                "message-id": f"20130503182626.18666.16540@{DOMAIN}",
                "from": "noreply@example.com",
                "subject": "Hello",
            }
        },
        "user-variables": {"notification_id": "0f8b4c1e-9d7a-4c2b-8a51-3f0e6d2b1c9a"},
        **extra,
    }


def webhook(data: Any, sig: dict[str, str] | None = None) -> WebhookRequest:
    body = json.dumps({"signature": sig or signature(), "event-data": data}).encode()
    return WebhookRequest("https://n.test/webhooks/mailgun", "POST", {}, body)


@pytest.fixture
def ctx(provider_ctx) -> ProviderContext:
    return provider_ctx(mailgun_webhook_key=SIGNING_KEY)


async def test_valid_signature_is_accepted(ctx) -> None:
    await MailgunProvider.verify_webhook(webhook(event_data()), ctx)


async def test_parent_signature_of_a_subaccount_is_accepted(ctx) -> None:
    sig = signature()
    sig["parent-signature"], sig["signature"] = sig["signature"], "0" * 64
    await MailgunProvider.verify_webhook(webhook(event_data(), sig), ctx)


async def test_forged_signature_is_rejected(ctx) -> None:
    sig = signature(key="someone-elses-key")
    with pytest.raises(WebhookRejected):
        await MailgunProvider.verify_webhook(webhook(event_data(), sig), ctx)


async def test_replayed_token_with_new_timestamp_is_rejected(ctx) -> None:
    sig = signature()
    sig["timestamp"] = str(int(sig["timestamp"]) + 1)
    with pytest.raises(WebhookRejected):
        await MailgunProvider.verify_webhook(webhook(event_data(), sig), ctx)


async def test_stale_timestamp_is_rejected(ctx) -> None:
    sig = signature(timestamp=int(time.time()) - 301)
    with pytest.raises(WebhookRejected, match="tolerance"):
        await MailgunProvider.verify_webhook(webhook(event_data(), sig), ctx)


@pytest.mark.parametrize(
    "body", [b'{"event-data": {}}', b"not json", b'{"signature": {"token": "t"}}']
)
async def test_unsigned_is_rejected(ctx, body: bytes) -> None:
    with pytest.raises(WebhookRejected):
        await MailgunProvider.verify_webhook(WebhookRequest("u", "POST", {}, body), ctx)


async def test_generic_secret_is_the_fallback_and_none_is_closed(provider_ctx) -> None:
    await MailgunProvider.verify_webhook(
        webhook(event_data()), provider_ctx(webhook_secret=SIGNING_KEY)
    )
    with pytest.raises(WebhookRejected, match="no Mailgun"):
        await MailgunProvider.verify_webhook(webhook(event_data()), provider_ctx())


@pytest.mark.parametrize(
    ("kind", "extra", "expected"),
    [
        ("delivered", {}, EventType.DELIVERED),
        ("failed", {"severity": "permanent", "reason": "bounce"}, EventType.BOUNCE),
        ("opened", {}, EventType.OPEN),
        ("clicked", {"url": "https://x.io"}, EventType.CLICK),
        ("complained", {}, EventType.COMPLAINT),
        ("unsubscribed", {}, EventType.UNSUBSCRIBE),
    ],
)
def test_events_are_normalised(kind: str, extra: dict[str, Any], expected: EventType) -> None:
    [event] = MailgunProvider.parse_webhook(webhook(event_data(kind, **extra)))
    assert event.type is expected
    assert event.event_id == f"CPgfbmQMTCKtHW6uIWtuVe-{kind}"
    assert event.message_id == f"20130503182626.18666.16540@{DOMAIN}"
    assert event.notification_id == UUID("0f8b4c1e-9d7a-4c2b-8a51-3f0e6d2b1c9a")
    assert event.recipient == "ada@example.org"
    assert event.occurred_at == datetime.fromtimestamp(1521472262.908181, tz=UTC)


def test_permanent_failure_reason_comes_from_delivery_status() -> None:
    status = {"code": 550, "description": "5.1.1 The email account does not exist"}
    data = event_data(
        "failed", severity="permanent", reason="bounce", **{"delivery-status": status}
    )
    [event] = MailgunProvider.parse_webhook(webhook(data))
    assert event.reason == "5.1.1 The email account does not exist"


@pytest.mark.parametrize(
    "data",
    [
        event_data("failed", severity="temporary"),
        event_data("accepted"),
        event_data("stored"),
    ],
)
def test_temporary_failures_and_other_events_are_dropped(data: dict[str, Any]) -> None:
    assert MailgunProvider.parse_webhook(webhook(data)) == []


@pytest.mark.parametrize(
    "body",
    [
        b"nope",
        b"[]",
        b'{"signature": {}}',
        b'{"event-data": {"event": "opened", "timestamp": "x"}}',
    ],
)
def test_malformed_bodies_are_invalid(body: bytes) -> None:
    with pytest.raises(WebhookInvalid):
        MailgunProvider.parse_webhook(WebhookRequest("u", "POST", {}, body))


async def test_send_then_webhook_matches_the_stored_id(fake, provider, ctx) -> None:
    msg = message()
    sent = await provider().send(msg)
    bare = fake.ids[0].strip("<>")  # Mailgun's webhook headers carry no angle brackets
    data = event_data("opened", message={"headers": {"message-id": bare}})
    data["user-variables"] = {"notification_id": dict(fake.messages[0])["v:notification_id"]}
    req = webhook(data)
    await MailgunProvider.verify_webhook(req, ctx)
    [event] = MailgunProvider.parse_webhook(req)
    assert event.message_id == sent.provider_message_id
    assert event.notification_id == msg.notification_id


async def test_non_ascii_names_are_quoted_not_encoded(fake, provider) -> None:
    await provider().send(message(to=Recipient(email="zoe@example.org", name="Zoë")))
    assert dict(fake.messages[0])["to"] == '"Zoë" <zoe@example.org>'
