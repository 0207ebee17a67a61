"""SendGrid against a local fake of its v3 API, and its Signed Event Webhook."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

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
from app.providers.email.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, SendGridProvider
from tests.fakes.sendgrid import API_KEY, NO_SEND_KEY, FakeSendGrid, sg_message_id

PRIVATE_KEY = ec.generate_private_key(ec.SECP256R1())
# the dashboard's "Verification Key": base64 DER SubjectPublicKeyInfo
PUBLIC_KEY = base64.b64encode(
    PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


@pytest.fixture
async def fake() -> AsyncIterator[FakeSendGrid]:
    server = FakeSendGrid()
    async with server.running():
        yield server


@pytest.fixture
def provider(
    fake: FakeSendGrid, provider_ctx: Callable[..., ProviderContext]
) -> Callable[..., SendGridProvider]:
    def build(api_key: str = API_KEY, **settings: Any) -> SendGridProvider:
        settings = {"sendgrid_base_url": fake.url, "provider_timeout": 2, **settings}
        return SendGridProvider({"api_key": api_key}, provider_ctx(**settings))

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


async def test_send_posts_the_real_request_and_returns_x_message_id(fake, provider) -> None:
    msg = message(
        category="marketing",
        unsubscribe_url="https://app.test/u/1",
        reply_to="Help Desk <help@example.com>",
        from_address="Example News <news@example.com>",
    )
    result = await provider().send(msg)

    assert result.provider_message_id == fake.message_ids[0]
    body = fake.mails[0]
    assert fake.headers[0]["Authorization"] == f"Bearer {API_KEY}"
    assert body["personalizations"] == [
        {"to": [{"email": "ada@example.org", "name": "Ada Lovelace"}]}
    ]
    assert body["from"] == {"email": "news@example.com", "name": "Example News"}
    assert body["reply_to"] == {"email": "help@example.com", "name": "Help Desk"}
    assert body["content"] == [
        {"type": "text/plain", "value": "plain body"},
        {"type": "text/html", "value": "<p>html body</p>"},
    ]
    assert body["custom_args"] == {"notification_id": str(msg.notification_id)}
    assert body["headers"] == {"List-Unsubscribe": "<https://app.test/u/1>"}
    assert body["categories"] == ["marketing"]


async def test_html_only_mail_is_accepted(fake, provider) -> None:
    await provider().send(message(text=None))
    assert fake.mails[0]["content"] == [{"type": "text/html", "value": "<p>html body</p>"}]


async def test_invalid_recipient_is_permanent_and_flagged(provider) -> None:
    bad = Recipient.model_construct(email="not-an-address", name=None)
    with pytest.raises(PermanentProviderError) as err:
        await provider().send(message(to=bad))
    assert err.value.invalid_recipient
    assert "personalizations.0.to.0.email" in err.value.reason


async def test_unverified_sender_is_a_provider_config_error(provider) -> None:
    with pytest.raises(ProviderAuthError) as err:
        await provider().send(message(from_address="someone@unverified.io"))
    assert err.value.status == 403
    assert "Sender Identity" in err.value.reason


@pytest.mark.parametrize(("key", "status"), [("", None), ("SG.wrong", 401), (NO_SEND_KEY, 403)])
async def test_bad_keys_are_auth_errors(provider, key, status) -> None:
    with pytest.raises(ProviderAuthError) as err:
        await provider(api_key=key).send(message())
    assert err.value.status == status


async def test_429_waits_until_the_rate_limit_resets(fake, provider) -> None:
    fake.rate_limit(reset_in=30)
    with pytest.raises(ProviderRateLimited) as err:
        await provider().send(message())
    assert err.value.retry_after is not None
    assert 25 <= err.value.retry_after <= 30


async def test_5xx_is_transient(fake, provider) -> None:
    fake.server_error()
    with pytest.raises(TransientProviderError) as err:
        await provider().send(message())
    assert not isinstance(err.value, (PermanentProviderError, ProviderAuthError))
    assert err.value.status == 503


async def test_hang_past_the_timeout_is_transient(fake, provider) -> None:
    fake.hang = True
    started = time.monotonic()
    with pytest.raises(TransientProviderError, match="timed out"):
        await provider(provider_timeout=0.5).send(message())
    assert time.monotonic() - started < 2


# --------------------------------------------------------------------------- check / config


async def test_check_confirms_the_mail_send_scope(provider) -> None:
    result = await provider().check()
    assert (result.reachable, result.authenticated) == (True, True)


async def test_check_flags_a_key_without_mail_send(provider) -> None:
    result = await provider(api_key=NO_SEND_KEY).check()
    assert (result.reachable, result.authenticated) == (True, False)
    assert "mail.send" in result.detail


async def test_check_with_bad_key(provider) -> None:
    result = await provider(api_key="SG.wrong").check()
    assert (result.reachable, result.authenticated) == (True, False)


async def test_check_unreachable(provider_ctx) -> None:
    ctx = provider_ctx(sendgrid_base_url="http://127.0.0.1:9", provider_timeout=1)
    result = await SendGridProvider({"api_key": API_KEY}, ctx).check()
    assert result.reachable is False


def test_config_from_settings_only_when_selected(make_settings) -> None:
    chosen = make_settings(email_provider="sendgrid", email_api_key="SG.x")
    assert SendGridProvider.config_from_settings(chosen) == {
        "api_key": "SG.x",
        "from": "noreply@example.com",
        "reply_to": None,
    }
    other = make_settings(email_provider="resend", email_api_key="re_x")
    assert SendGridProvider.config_from_settings(other) is None


# --------------------------------------------------------------------------- webhooks


def webhook(
    events: Any,
    *,
    key: ec.EllipticCurvePrivateKey = PRIVATE_KEY,
    timestamp: int | None = None,
    body: bytes | None = None,
) -> WebhookRequest:
    """Signed as SendGrid signs: ECDSA P-256/SHA-256 over timestamp + raw body."""
    raw = body if body is not None else json.dumps(events).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(ts.encode() + raw, ec.ECDSA(hashes.SHA256()))
    headers = {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: ts}
    return WebhookRequest("https://n.test/webhooks/sendgrid", "POST", headers, raw)


def sg_event(kind: str = "delivered", **extra: Any) -> dict[str, Any]:
    return {
        "email": "ada@example.org",
        "timestamp": 1700000000,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": kind,
        "category": ["marketing"],
        "sg_event_id": f"sg_event_{kind}",
        "sg_message_id": sg_message_id("W86EgYT6SQKk0lRflfLRsA"),
        "notification_id": "0f8b4c1e-9d7a-4c2b-8a51-3f0e6d2b1c9a",
        **extra,
    }


@pytest.fixture
def ctx(provider_ctx) -> ProviderContext:
    return provider_ctx(sendgrid_webhook_public_key=PUBLIC_KEY)


async def test_valid_signature_is_accepted(ctx) -> None:
    await SendGridProvider.verify_webhook(webhook([sg_event()]), ctx)


async def test_pem_public_key_is_accepted_too(provider_ctx) -> None:
    pem = PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ctx = provider_ctx(sendgrid_webhook_public_key=pem.decode())
    await SendGridProvider.verify_webhook(webhook([sg_event()]), ctx)


async def test_tampered_body_is_rejected(ctx) -> None:
    req = webhook([sg_event()])
    forged = WebhookRequest(
        req.url, req.method, req.headers, req.body.replace(b"delivered", b"bounce")
    )
    with pytest.raises(WebhookRejected):
        await SendGridProvider.verify_webhook(forged, ctx)


async def test_other_signer_is_rejected(ctx) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(WebhookRejected):
        await SendGridProvider.verify_webhook(webhook([sg_event()], key=stranger), ctx)


async def test_stale_timestamp_is_rejected(ctx) -> None:
    with pytest.raises(WebhookRejected, match="tolerance"):
        await SendGridProvider.verify_webhook(
            webhook([sg_event()], timestamp=int(time.time()) - 301), ctx
        )


async def test_unsigned_and_garbage_signatures_are_rejected(ctx) -> None:
    body = json.dumps([sg_event()]).encode()
    with pytest.raises(WebhookRejected, match="missing"):
        await SendGridProvider.verify_webhook(WebhookRequest("u", "POST", {}, body), ctx)
    headers = {SIGNATURE_HEADER: "not base64!", TIMESTAMP_HEADER: str(int(time.time()))}
    with pytest.raises(WebhookRejected):
        await SendGridProvider.verify_webhook(WebhookRequest("u", "POST", headers, body), ctx)


async def test_no_public_key_configured_is_never_an_open_door(provider_ctx) -> None:
    with pytest.raises(WebhookRejected, match="no SendGrid"):
        await SendGridProvider.verify_webhook(
            webhook([sg_event()]), provider_ctx(webhook_secret="x")
        )


def test_events_are_normalised() -> None:
    kinds = {
        "processed": None,
        "deferred": None,
        "delivered": EventType.DELIVERED,
        "bounce": EventType.BOUNCE,
        "dropped": EventType.FAILED,
        "open": EventType.OPEN,
        "click": EventType.CLICK,
        "spamreport": EventType.COMPLAINT,
        "unsubscribe": EventType.UNSUBSCRIBE,
        "group_unsubscribe": EventType.UNSUBSCRIBE,
        "group_resubscribe": None,
    }
    parsed = SendGridProvider.parse_webhook(webhook([sg_event(k) for k in kinds]))
    assert [(e.event_id, e.type) for e in parsed] == [
        (f"sg_event_{k}", t) for k, t in kinds.items() if t is not None
    ]
    first = parsed[0]
    assert first.message_id == "W86EgYT6SQKk0lRflfLRsA"
    assert first.notification_id == UUID("0f8b4c1e-9d7a-4c2b-8a51-3f0e6d2b1c9a")
    assert first.recipient == "ada@example.org"
    assert first.occurred_at == datetime.fromtimestamp(1700000000, tz=UTC)


def test_blocked_bounce_is_a_failure_not_a_dead_mailbox() -> None:
    [event] = SendGridProvider.parse_webhook(
        webhook([sg_event("bounce", type="blocked", reason="550 IP blocklisted")])
    )
    assert event.type is EventType.FAILED
    assert event.reason == "550 IP blocklisted"


def test_event_without_sg_event_id_gets_a_stable_hash() -> None:
    item = sg_event()
    del item["sg_event_id"]
    [a] = SendGridProvider.parse_webhook(webhook([item]))
    [b] = SendGridProvider.parse_webhook(webhook([dict(reversed(list(item.items())))]))
    assert a.event_id == b.event_id and len(a.event_id) == 64


@pytest.mark.parametrize(
    "body", [b"nope", b'{"event": "delivered"}', b"[1]", b'[{"event": "open", "timestamp": "x"}]']
)
def test_malformed_bodies_are_invalid(body: bytes) -> None:
    with pytest.raises(WebhookInvalid):
        SendGridProvider.parse_webhook(WebhookRequest("u", "POST", {}, body))


async def test_send_then_webhook_matches_the_stored_id(fake, provider, ctx) -> None:
    msg = message()
    sent = await provider().send(msg)
    echoed = fake.mails[0]["custom_args"]
    req = webhook(
        [sg_event("open", sg_message_id=sg_message_id(sent.provider_message_id), **echoed)]
    )
    await SendGridProvider.verify_webhook(req, ctx)
    [event] = SendGridProvider.parse_webhook(req)
    assert event.message_id == sent.provider_message_id
    assert event.notification_id == msg.notification_id
