"""Resend against a local fake of its API, and its Svix-signed webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
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
from app.providers.email.resend import ResendProvider
from tests.fakes.resend import API_KEY, SENDING_ONLY_KEY, FakeResend

SECRET = "whsec_" + base64.b64encode(b"resend-test-signing-secret-32byt").decode()


@pytest.fixture
async def fake() -> AsyncIterator[FakeResend]:
    server = FakeResend()
    async with server.running():
        yield server


@pytest.fixture
def provider(
    fake: FakeResend, provider_ctx: Callable[..., ProviderContext]
) -> Callable[..., ResendProvider]:
    def build(api_key: str = API_KEY, **settings: Any) -> ResendProvider:
        settings = {"resend_base_url": fake.url, "provider_timeout": 2, **settings}
        return ResendProvider({"api_key": api_key}, provider_ctx(**settings))

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


async def test_send_posts_the_real_request_and_returns_the_id(fake, provider) -> None:
    msg = message(
        category="marketing", unsubscribe_url="https://app.test/u/1", reply_to="help@x.io"
    )
    result = await provider().send(msg)

    UUID(result.provider_message_id)  # Resend ids are UUIDs
    body, headers = fake.emails[0], fake.headers[0]
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert headers["Idempotency-Key"] == str(msg.notification_id)
    assert body["from"] == "noreply@example.com"
    assert body["to"] == ["Ada Lovelace <ada@example.org>"]
    assert (body["subject"], body["text"], body["html"]) == (
        "Hello",
        "plain body",
        "<p>html body</p>",
    )
    assert body["reply_to"] == "help@x.io"
    assert body["headers"] == {"List-Unsubscribe": "<https://app.test/u/1>"}
    assert {"name": "notification_id", "value": str(msg.notification_id)} in body["tags"]
    assert {"name": "category", "value": "marketing"} in body["tags"]


async def test_transactional_mail_has_no_list_unsubscribe(fake, provider) -> None:
    await provider().send(message(category="security", unsubscribe_url="https://app.test/u"))
    assert "headers" not in fake.emails[0]


async def test_retry_with_same_idempotency_key_does_not_send_twice(fake, provider) -> None:
    msg = message()
    first = await provider().send(msg)
    second = await provider().send(msg)
    assert first.provider_message_id == second.provider_message_id
    assert len(fake.emails) == 1


async def test_same_key_with_other_payload_is_permanent(fake, provider) -> None:
    msg = message()
    await provider().send(msg)
    with pytest.raises(PermanentProviderError) as err:
        await provider().send(message(notification_id=msg.notification_id, subject="changed"))
    assert err.value.code == "invalid_idempotent_request"
    assert err.value.status == 409


async def test_invalid_recipient_is_permanent_and_flagged(provider) -> None:
    bad = Recipient.model_construct(email="not-an-address", name=None)
    with pytest.raises(PermanentProviderError) as err:
        await provider().send(message(to=bad))
    assert err.value.invalid_recipient
    assert err.value.status == 422
    assert "`to`" in err.value.reason


async def test_body_less_email_fails_before_any_request(fake, provider) -> None:
    with pytest.raises(PermanentProviderError):
        await provider().send(message(text=None, html=None))
    assert fake.emails == []


@pytest.mark.parametrize(("key", "status"), [("", None), ("re_wrong", 403)])
async def test_bad_or_missing_key_is_an_auth_error(provider, key, status) -> None:
    with pytest.raises(ProviderAuthError) as err:
        await provider(api_key=key).send(message())
    assert err.value.status == status


async def test_429_honours_retry_after(fake, provider) -> None:
    fake.rate_limit(retry_after=7)
    with pytest.raises(ProviderRateLimited) as err:
        await provider().send(message())
    assert err.value.retry_after == 7
    assert err.value.code == "rate_limit_exceeded"


async def test_5xx_is_transient(fake, provider) -> None:
    fake.server_error()
    with pytest.raises(TransientProviderError) as err:
        await provider().send(message())
    assert not isinstance(err.value, (PermanentProviderError, ProviderAuthError))
    assert err.value.status == 500


async def test_hang_past_the_timeout_is_transient(fake, provider) -> None:
    fake.hang = True
    started = time.monotonic()
    with pytest.raises(TransientProviderError, match="timed out"):
        await provider(provider_timeout=0.5).send(message())
    assert time.monotonic() - started < 2


async def test_unreachable_host_is_transient(provider_ctx) -> None:
    ctx = provider_ctx(resend_base_url="http://127.0.0.1:9", provider_timeout=1)
    with pytest.raises(TransientProviderError, match="connection error"):
        await ResendProvider({"api_key": API_KEY}, ctx).send(message())


# --------------------------------------------------------------------------- check / config


async def test_check_lists_domains(provider) -> None:
    result = await provider().check()
    assert (result.reachable, result.authenticated) == (True, True)


async def test_check_with_sending_only_key_is_authenticated(provider) -> None:
    result = await provider(api_key=SENDING_ONLY_KEY).check()
    assert (result.reachable, result.authenticated) == (True, True)
    assert "sending-only" in result.detail


async def test_check_with_bad_key(provider) -> None:
    result = await provider(api_key="re_wrong").check()
    assert (result.reachable, result.authenticated) == (True, False)


def test_config_from_settings_only_when_selected(make_settings) -> None:
    chosen = make_settings(email_provider="resend", email_api_key="re_x", email_from="a@b.io")
    assert ResendProvider.config_from_settings(chosen) == {
        "api_key": "re_x",
        "from": "a@b.io",
        "reply_to": None,
    }
    assert ResendProvider.config_from_settings(make_settings(email_provider="sendgrid")) is None
    assert ResendProvider.config_from_settings(make_settings(email_provider="resend")) is None


# --------------------------------------------------------------------------- webhooks


def svix_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Svix's algorithm, as its own library signs."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook(
    payload: Any,
    *,
    secret: str = SECRET,
    msg_id: str = "msg_2Lh9KRb0pzN4",
    timestamp: int | None = None,
    signature: str | None = None,
) -> WebhookRequest:
    body = json.dumps(payload).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {
        "svix-id": msg_id,
        "svix-timestamp": str(ts),
        "svix-signature": signature or svix_sign(secret, msg_id, ts, body),
    }
    return WebhookRequest(
        url="https://n.test/webhooks/resend", method="POST", headers=headers, body=body
    )


def event(kind: str = "email.delivered", **data: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "created_at": "2024-11-22T23:41:12.126Z",
        "data": {
            "created_at": "2024-11-22T23:41:11.894719+00:00",
            "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
            "from": "Acme <onboarding@resend.dev>",
            "to": ["ada@example.org"],
            "subject": "Hello",
            "tags": {"notification_id": "0f8b4c1e-9d7a-4c2b-8a51-3f0e6d2b1c9a"},
            **data,
        },
    }


@pytest.fixture
def ctx(provider_ctx) -> ProviderContext:
    return provider_ctx(resend_webhook_secret=SECRET)


async def test_valid_signature_is_accepted(ctx) -> None:
    await ResendProvider.verify_webhook(webhook(event()), ctx)


async def test_any_of_several_signatures_may_match(ctx) -> None:
    req = webhook(event())
    rotated = f"v1,{base64.b64encode(b'x' * 32).decode()} {req.headers['svix-signature']}"
    await ResendProvider.verify_webhook(webhook(event(), signature=rotated), ctx)


async def test_tampered_body_is_rejected(ctx) -> None:
    req = webhook(event())
    forged = WebhookRequest(
        req.url, req.method, req.headers, req.body.replace(b"delivered", b"bounced")
    )
    with pytest.raises(WebhookRejected):
        await ResendProvider.verify_webhook(forged, ctx)


async def test_stale_timestamp_is_rejected(ctx) -> None:
    with pytest.raises(WebhookRejected, match="tolerance"):
        await ResendProvider.verify_webhook(webhook(event(), timestamp=int(time.time()) - 301), ctx)


async def test_unsigned_is_rejected(ctx) -> None:
    req = WebhookRequest("https://n.test", "POST", {}, json.dumps(event()).encode())
    with pytest.raises(WebhookRejected, match="missing"):
        await ResendProvider.verify_webhook(req, ctx)


async def test_wrong_secret_is_rejected(ctx) -> None:
    other = "whsec_" + base64.b64encode(b"another-secret-entirely-32-bytes").decode()
    with pytest.raises(WebhookRejected):
        await ResendProvider.verify_webhook(webhook(event(), secret=other), ctx)


async def test_no_secret_configured_is_never_an_open_door(provider_ctx) -> None:
    with pytest.raises(WebhookRejected, match="no Resend webhook secret"):
        await ResendProvider.verify_webhook(webhook(event()), provider_ctx())


async def test_generic_webhook_secret_is_the_fallback(provider_ctx) -> None:
    await ResendProvider.verify_webhook(webhook(event()), provider_ctx(webhook_secret=SECRET))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("email.delivered", EventType.DELIVERED),
        ("email.bounced", EventType.BOUNCE),
        ("email.complained", EventType.COMPLAINT),
        ("email.opened", EventType.OPEN),
        ("email.clicked", EventType.CLICK),
        ("email.failed", EventType.FAILED),
    ],
)
def test_events_are_normalised(kind: str, expected: EventType) -> None:
    [parsed] = ResendProvider.parse_webhook(webhook(event(kind)))
    assert parsed.type is expected
    assert parsed.provider == "resend"
    assert parsed.event_id == "msg_2Lh9KRb0pzN4"
    assert parsed.message_id == "56761188-7520-42d8-8898-ff6fc54ce618"
    assert parsed.notification_id == UUID("0f8b4c1e-9d7a-4c2b-8a51-3f0e6d2b1c9a")
    assert parsed.recipient == "ada@example.org"
    assert parsed.occurred_at == datetime.fromisoformat("2024-11-22T23:41:12.126+00:00")
    assert parsed.occurred_at.tzinfo is not None


def test_bounce_and_failure_reasons_are_kept() -> None:
    bounce = {"message": "mailbox does not exist", "subType": "General", "type": "Permanent"}
    [bounced] = ResendProvider.parse_webhook(webhook(event("email.bounced", bounce=bounce)))
    assert bounced.reason == "mailbox does not exist"
    [failed] = ResendProvider.parse_webhook(
        webhook(event("email.failed", failed={"reason": "reached_daily_quota"}))
    )
    assert failed.reason == "reached_daily_quota"


@pytest.mark.parametrize("kind", ["email.delivery_delayed", "email.sent", "contact.created"])
def test_other_events_are_dropped(kind: str) -> None:
    assert ResendProvider.parse_webhook(webhook(event(kind))) == []


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"type": "email.delivered"}'])
def test_malformed_bodies_are_invalid(body: bytes) -> None:
    with pytest.raises(WebhookInvalid):
        ResendProvider.parse_webhook(WebhookRequest("https://n.test", "POST", {}, body))


async def test_send_then_webhook_matches_the_stored_id(fake, provider, ctx) -> None:
    msg = message()
    sent = await provider().send(msg)
    tags = {t["name"]: t["value"] for t in fake.emails[0]["tags"]}
    req = webhook(event("email.delivered", email_id=sent.provider_message_id, tags=tags))
    await ResendProvider.verify_webhook(req, ctx)
    [parsed] = ResendProvider.parse_webhook(req)
    assert parsed.message_id == sent.provider_message_id
    assert parsed.notification_id == msg.notification_id


async def test_non_ascii_names_are_quoted_not_encoded(fake, provider) -> None:
    await provider().send(message(to=Recipient(email="zoe@example.org", name='Zoë "Z" Ö')))
    assert fake.emails[0]["to"] == ['"Zoë \\"Z\\" Ö" <zoe@example.org>']
