"""FCM HTTP v1 against a local fake of the API and of Google's token endpoint."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from app.models import Channel, Recipient
from app.providers.base import (
    OutboundMessage,
    PermanentProviderError,
    ProviderAuthError,
    ProviderContext,
    ProviderRateLimited,
    TransientProviderError,
)
from app.providers.push.fcm import FcmProvider
from tests.fakes.fcm import BAD_REQUEST, FakeFcm, make_service_account, rpc_error

TOKEN = "fcm-registration-token-abcdef0123456789"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def fake(signing_key: rsa.RSAPrivateKey) -> AsyncIterator[FakeFcm]:
    # The account's token_uri is Google's; tests reach the fake via fcm_token_url.
    account, public = make_service_account("https://oauth2.googleapis.com/token", key=signing_key)
    server = FakeFcm(account=account, public_key=public, token_audience=account["token_uri"])
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def make_provider(
    fake: FakeFcm, provider_ctx: Callable[..., ProviderContext]
) -> Callable[..., FcmProvider]:
    def build(config: dict[str, Any] | None = None, **settings: Any) -> FcmProvider:
        base = fake.base_url
        ctx = provider_ctx(fcm_base_url=base, fcm_token_url=f"{base}/token", **settings)
        return FcmProvider(config or {"service_account": fake.account}, ctx)

    return build


def message(token: str = TOKEN, **kw: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "notification_id": uuid.uuid4(),
        "channel": Channel.PUSH,
        "to": Recipient(device_token=token),
        "subject": "Order shipped",
        "text": "Your parcel is on its way",
        "data": {"order": "42"},
    }
    fields.update(kw)
    return OutboundMessage(**fields)


async def test_sends_v1_message_with_one_shared_token(
    fake: FakeFcm, make_provider: Callable[..., FcmProvider]
) -> None:
    provider = make_provider()
    messages = [message(category="transactional")] + [message() for _ in range(4)]
    results = await asyncio.gather(*(provider.send(m) for m in messages))

    assert fake.token_requests == 1  # concurrent sends shared one refresh
    assert len({r.provider_message_id for r in results}) == 5
    prefix = f"projects/{fake.project_id}/messages/"
    assert all((r.provider_message_id or "").startswith(prefix) for r in results)
    urgent = next(s["message"] for s in fake.sends if s["message"]["android"]["priority"] == "HIGH")
    assert urgent["token"] == TOKEN
    assert urgent["notification"] == {"title": "Order shipped", "body": "Your parcel is on its way"}
    assert urgent["data"] == {"order": "42", "notification_id": str(messages[0].notification_id)}
    assert urgent["apns"]["headers"]["apns-priority"] == "10"
    normal = [s["message"] for s in fake.sends if s["message"]["android"]["priority"] == "NORMAL"]
    assert len(normal) == 4 and normal[0]["apns"]["headers"]["apns-priority"] == "5"

    await provider.send(message())
    assert fake.token_requests == 1  # still cached for later sends


async def test_token_refreshed_when_close_to_expiry(
    fake: FakeFcm, make_provider: Callable[..., FcmProvider]
) -> None:
    fake.expires_in = 120  # inside the five-minute refresh margin
    provider = make_provider()
    await provider.send(message())
    await provider.send(message())
    assert fake.token_requests == 2


async def test_refused_access_token_is_renewed_once(
    fake: FakeFcm, make_provider: Callable[..., FcmProvider]
) -> None:
    provider = make_provider()
    await provider.send(message())
    fake.revoke_tokens()  # as if Google revoked or expired it early
    result = await provider.send(message())
    assert result.provider_message_id
    assert fake.token_requests == 2 and len(fake.sends) == 2


async def test_account_from_env_file_path_and_project_from_app_id(
    fake: FakeFcm, make_provider: Callable[..., FcmProvider], tmp_path: Any
) -> None:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({**fake.account, "project_id": "ignored"}))
    settings = {"push_provider": "fcm", "push_api_key": str(path), "push_app_id": fake.project_id}
    provider = make_provider(config={}, **settings)
    config = FcmProvider.config_from_settings(provider.ctx.settings)
    assert config == {"service_account": str(path), "project_id": fake.project_id}

    provider = make_provider(config=config, **settings)
    assert (await provider.send(message())).provider_message_id


async def test_json_string_account_uses_its_token_uri(
    fake: FakeFcm, provider_ctx: Callable[..., ProviderContext], signing_key: rsa.RSAPrivateKey
) -> None:
    base = fake.base_url
    account, _ = make_service_account(f"{base}/token", fake.project_id, key=signing_key)
    account["private_key_id"] = fake.account["private_key_id"]
    account["client_email"] = fake.account["client_email"]
    fake.token_audience = account["token_uri"]
    provider = FcmProvider(
        {"service_account": json.dumps(account)}, provider_ctx(fcm_base_url=base)
    )
    assert (await provider.send(message())).provider_message_id


async def test_assertion_signed_with_another_key_is_an_auth_error(
    fake: FakeFcm, make_provider: Callable[..., FcmProvider]
) -> None:
    impostor, _ = make_service_account(fake.account["token_uri"], fake.project_id)
    impostor["private_key_id"] = fake.account["private_key_id"]
    impostor["client_email"] = fake.account["client_email"]
    provider = make_provider(config={"service_account": impostor})
    with pytest.raises(ProviderAuthError, match="invalid_grant"):
        await provider.send(message())
    assert fake.sends == []
    check = await provider.check()
    assert check.reachable and check.authenticated is False


async def test_check_obtains_a_token_and_sends_nothing(
    fake: FakeFcm, make_provider: Callable[..., FcmProvider]
) -> None:
    check = await make_provider().check()
    assert check.authenticated is True and fake.project_id in check.detail
    assert fake.token_requests == 1 and fake.sends == []


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "invalid_recipient"),
    [
        (
            404,
            rpc_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
            {},
            PermanentProviderError,
            True,
        ),
        (
            400,
            rpc_error(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                "INVALID_ARGUMENT",
            ),
            {},
            PermanentProviderError,
            True,
        ),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "status": "INVALID_ARGUMENT",
                    "message": "Invalid value at 'message.data[0].value'",
                    "details": [
                        {
                            "@type": BAD_REQUEST,
                            "fieldViolations": [
                                {"field": "message.data[0].value", "description": "bad"}
                            ],
                        }
                    ],
                }
            },
            {},
            PermanentProviderError,
            False,
        ),
        (
            403,
            rpc_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"),
            {},
            ProviderAuthError,
            None,
        ),
        (
            401,
            rpc_error(401, "UNAUTHENTICATED", "APNs auth failed", "THIRD_PARTY_AUTH_ERROR"),
            {},
            ProviderAuthError,
            None,
        ),
        (
            429,
            rpc_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", "QUOTA_EXCEEDED"),
            {"Retry-After": "17"},
            ProviderRateLimited,
            None,
        ),
        (
            503,
            rpc_error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"),
            {},
            TransientProviderError,
            None,
        ),
        (
            500,
            rpc_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL"),
            {},
            TransientProviderError,
            None,
        ),
    ],
    ids=[
        "unregistered",
        "bad-token",
        "bad-data",
        "sender-mismatch",
        "third-party-auth",
        "quota",
        "unavailable",
        "internal",
    ],
)
async def test_fcm_errors_are_classified(
    fake: FakeFcm,
    make_provider: Callable[..., FcmProvider],
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    error: type[Exception],
    invalid_recipient: bool | None,
) -> None:
    fake.errors[TOKEN] = (status, body, headers)
    with pytest.raises(error) as caught:
        await make_provider().send(message())
    assert type(caught.value) is error
    assert caught.value.status == status  # type: ignore[attr-defined]
    if invalid_recipient is not None:
        assert caught.value.invalid_recipient is invalid_recipient  # type: ignore[attr-defined]
    if error is ProviderRateLimited:
        assert caught.value.retry_after == 17  # type: ignore[attr-defined]
    assert fake.token_requests == 1  # a 401 with an FcmError is not a stale token


async def test_timeout_is_transient(
    fake: FakeFcm, make_provider: Callable[..., FcmProvider]
) -> None:
    fake.hang = True
    with pytest.raises(TransientProviderError, match="timed out"):
        await make_provider(provider_timeout=0.5).send(message())


async def test_recipient_without_token_and_broken_config(
    make_provider: Callable[..., FcmProvider],
) -> None:
    web = Recipient(
        subscription={
            "endpoint": "https://push.example/x",
            "keys": {"p256dh": "B" * 87, "auth": "A" * 22},
        }
    )
    with pytest.raises(PermanentProviderError) as caught:
        await make_provider().send(message(to=web))
    assert caught.value.invalid_recipient
    with pytest.raises(ProviderAuthError, match="not valid JSON"):
        await make_provider(config={"service_account": "{broken"}).send(message())


def test_config_only_when_selected(make_settings: Callable[..., Any]) -> None:
    assert FcmProvider.config_from_settings(make_settings(push_provider="onesignal")) is None
    assert FcmProvider.config_from_settings(make_settings()) is None
