"""Web Push against a local push service that verifies VAPID and decrypts the payload."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.models import Channel, Recipient
from app.providers.base import (
    OutboundMessage,
    PermanentProviderError,
    ProviderAuthError,
    ProviderContext,
    ProviderRateLimited,
    TransientProviderError,
)
from app.providers.push.webpush import WebPushProvider
from tests.fakes.webpush import FakePushService, b64url

SUBJECT = "mailto:ops@example.com"


def pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_b64(key: ec.EllipticCurvePrivateKey) -> str:
    raw = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(raw)


@pytest.fixture(scope="module")
def vapid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def service(vapid_key: ec.EllipticCurvePrivateKey) -> AsyncIterator[FakePushService]:
    server = FakePushService(application_server_key=public_b64(vapid_key))
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def make_provider(
    vapid_key: ec.EllipticCurvePrivateKey, provider_ctx: Callable[..., ProviderContext]
) -> Callable[..., WebPushProvider]:
    def build(config: dict[str, Any] | None = None, **settings: Any) -> WebPushProvider:
        settings.setdefault("vapid_private_key", pem(vapid_key))
        settings.setdefault("vapid_subject", SUBJECT)
        return WebPushProvider(config or {}, provider_ctx(**settings))

    return build


def message(subscription: dict[str, Any] | None, **kw: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "notification_id": uuid.uuid4(),
        "channel": Channel.PUSH,
        "to": Recipient(subscription=subscription) if subscription else None,
        "subject": "Deploy finished",
        "text": "main is live on production",
        "data": {"url": "/deploys/81"},
    }
    fields.update(kw)
    return OutboundMessage(**fields)


async def test_payload_arrives_encrypted_for_the_subscriber(
    service: FakePushService, make_provider: Callable[..., WebPushProvider]
) -> None:
    _, subscription = service.subscribe()
    msg = message(subscription, category="transactional")
    result = await make_provider().send(msg)

    [got] = service.received  # the fake decrypted it with the subscriber's private key
    assert got.payload == {
        "title": "Deploy finished",
        "body": "main is live on production",
        "data": {"url": "/deploys/81", "notification_id": str(msg.notification_id)},
    }
    assert got.headers["Urgency"] == "high" and got.headers["TTL"] == "86400"
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.claims["aud"] == service.base_url and got.claims["sub"] == SUBJECT
    assert result.provider_message_id and result.provider_message_id.startswith(
        f"{service.base_url}/m/"
    )


async def test_each_message_has_a_fresh_key_and_the_jwt_is_reused(
    service: FakePushService, make_provider: Callable[..., WebPushProvider]
) -> None:
    _, subscription = service.subscribe()
    provider = make_provider({"ttl": 60})
    await provider.send(message(subscription))
    await provider.send(message(subscription, subject=None))
    first, second = service.received
    assert first.headers["Authorization"] == second.headers["Authorization"]
    assert first.headers["Urgency"] == "normal" and first.headers["TTL"] == "60"
    assert second.payload["title"] == "Notification"  # the default title


async def test_raw_base64url_vapid_key_from_env(
    service: FakePushService,
    make_provider: Callable[..., WebPushProvider],
    vapid_key: ec.EllipticCurvePrivateKey,
) -> None:
    raw = vapid_key.private_numbers().private_value.to_bytes(32, "big")
    settings = {"push_provider": "webpush", "vapid_private_key": b64url(raw)}
    provider = make_provider(**settings)
    config = WebPushProvider.config_from_settings(provider.ctx.settings)
    assert config == {"vapid_private_key": b64url(raw), "vapid_subject": SUBJECT}
    _, subscription = service.subscribe()
    await WebPushProvider(config, provider.ctx).send(message(subscription))
    assert len(service.received) == 1
    assert provider.public_key() == service.application_server_key


@pytest.mark.parametrize("status", [404, 410])
async def test_gone_subscription_is_an_invalid_recipient(
    service: FakePushService, make_provider: Callable[..., WebPushProvider], status: int
) -> None:
    sid, subscription = service.subscribe()
    service.scripted[sid] = (status, "push subscription has unsubscribed or expired", {})
    with pytest.raises(PermanentProviderError, match="subscription gone") as caught:
        await make_provider().send(message(subscription))
    assert caught.value.invalid_recipient and caught.value.status == status


async def test_unknown_subscription_answers_gone(
    service: FakePushService, make_provider: Callable[..., WebPushProvider]
) -> None:
    sid, subscription = service.subscribe()
    del service.subscribers[sid]  # the browser unsubscribed
    with pytest.raises(PermanentProviderError) as caught:
        await make_provider().send(message(subscription))
    assert caught.value.status == 410 and caught.value.invalid_recipient


async def test_other_vapid_key_is_an_auth_error(
    service: FakePushService, make_provider: Callable[..., WebPushProvider]
) -> None:
    _, subscription = service.subscribe()
    other = make_provider(vapid_private_key=pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(ProviderAuthError, match="does not match") as caught:
        await other.send(message(subscription))
    assert caught.value.status == 403 and service.received == []


@pytest.mark.parametrize(
    ("status", "headers", "error"),
    [
        (413, {}, PermanentProviderError),
        (429, {"Retry-After": "30"}, ProviderRateLimited),
        (500, {}, TransientProviderError),
        (503, {}, TransientProviderError),
        (400, {}, ProviderAuthError),
        (401, {}, ProviderAuthError),
    ],
)
async def test_push_service_errors_are_classified(
    service: FakePushService,
    make_provider: Callable[..., WebPushProvider],
    status: int,
    headers: dict[str, str],
    error: type[Exception],
) -> None:
    sid, subscription = service.subscribe()
    service.scripted[sid] = (status, "refused", headers)
    with pytest.raises(error) as caught:
        await make_provider().send(message(subscription))
    assert type(caught.value) is error and caught.value.status == status  # type: ignore[attr-defined]
    if error is ProviderRateLimited:
        assert caught.value.retry_after == 30  # type: ignore[attr-defined]
    if error is PermanentProviderError:
        assert not caught.value.invalid_recipient  # type: ignore[attr-defined]


async def test_oversized_payload_is_refused_before_sending(
    service: FakePushService, make_provider: Callable[..., WebPushProvider]
) -> None:
    _, subscription = service.subscribe()
    with pytest.raises(PermanentProviderError, match="too large"):
        await make_provider().send(message(subscription, text="x" * 5000))
    assert service.received == []


async def test_timeout_is_transient(
    service: FakePushService, make_provider: Callable[..., WebPushProvider]
) -> None:
    service.hang = True
    _, subscription = service.subscribe()
    with pytest.raises(TransientProviderError, match="timed out"):
        await make_provider(provider_timeout=0.5).send(message(subscription))


async def test_unusable_recipients_are_permanent(
    make_provider: Callable[..., WebPushProvider],
) -> None:
    provider = make_provider()
    token_only = message(None, to=Recipient(device_token="fcm-token-123456"))
    with pytest.raises(PermanentProviderError) as caught:
        await provider.send(token_only)
    assert caught.value.invalid_recipient
    bad_key = {
        "endpoint": "https://push.example/p/1",
        "keys": {
            "p256dh": base64.urlsafe_b64encode(b"\x04" + b"\x01" * 64).decode(),
            "auth": "AAAAAAAAAAAAAAAAAAAAAA",
        },
    }
    with pytest.raises(PermanentProviderError, match="unusable subscription") as caught:
        await provider.send(message(bad_key))
    assert caught.value.invalid_recipient


async def test_check_reports_the_public_key(
    make_provider: Callable[..., WebPushProvider], vapid_key: ec.EllipticCurvePrivateKey
) -> None:
    check = await make_provider().check()
    assert check.authenticated is None and public_b64(vapid_key) in check.detail
    broken = await make_provider(vapid_private_key="not-a-key").check()
    assert broken.authenticated is False and "VAPID" in broken.detail
    missing = await make_provider(vapid_private_key=None).check()
    assert missing.authenticated is False


def test_config_only_when_selected(make_settings: Callable[..., Any]) -> None:
    assert WebPushProvider.config_from_settings(make_settings(push_provider="fcm")) is None
