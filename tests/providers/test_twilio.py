"""Twilio: real wire format against a local fake, and signed status callbacks."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode
from uuid import uuid4

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

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
from app.providers.sms.twilio import TwilioProvider, compute_signature, validate_signature
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio, sign

PUBLIC_URL = "https://notify.example.com"
CALLBACK_URL = f"{PUBLIC_URL}/webhooks/twilio"
MESSAGE_SID = "SM" + "b2" * 16


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    server = FakeTwilio()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def make_provider(
    fake: FakeTwilio, provider_ctx: Callable[..., ProviderContext]
) -> Callable[..., TwilioProvider]:
    def build(config: dict[str, Any] | None = None, **settings: Any) -> TwilioProvider:
        ctx = provider_ctx(
            **{"twilio_base_url": fake.base_url, "public_url": PUBLIC_URL, **settings}
        )
        base = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from": FROM_NUMBER}
        return TwilioProvider({**base, **(config or {})}, ctx)

    return build


def sms(phone: str = "+14155550123", text: str = "Your code is 123456") -> OutboundMessage:
    return OutboundMessage(
        notification_id=uuid4(), channel=Channel.SMS, to=Recipient(phone=phone), text=text
    )


# --------------------------------------------------------------------------- send


async def test_send_posts_form_with_basic_auth_and_status_callback(fake, make_provider) -> None:
    result = await make_provider().send(sms())

    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith("SM")
    assert result.raw is not None and result.raw["status"] == "queued"
    [call] = fake.requests
    assert call["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert call["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert call["form"] == {
        "To": "+14155550123",
        "From": FROM_NUMBER,
        "Body": "Your code is 123456",
        "StatusCallback": CALLBACK_URL,
    }


async def test_send_uses_messaging_service_instead_of_from(fake, make_provider) -> None:
    service = "MG" + "c3" * 16
    await make_provider({"messaging_service_sid": service}).send(sms())

    form = fake.requests[0]["form"]
    assert form["MessagingServiceSid"] == service
    assert "From" not in form


async def test_no_status_callback_without_public_url(fake, make_provider) -> None:
    await make_provider(public_url=None).send(sms())
    assert "StatusCallback" not in fake.requests[0]["form"]


@pytest.mark.parametrize(
    ("phone", "code", "invalid_recipient"),
    [
        ("+15005550001", "21211", True),  # invalid number
        ("+15005550002", "21612", True),  # unreachable via SMS
        ("+15005550004", "21610", True),  # unsubscribed (STOP)
        ("+15005550009", "21614", True),  # not a mobile number
        ("+15005550003", "21408", False),  # region not enabled: our account, not them
    ],
)
async def test_rejected_numbers_are_permanent(
    make_provider, phone: str, code: str, invalid_recipient: bool
) -> None:
    with pytest.raises(PermanentProviderError) as info:
        await make_provider().send(sms(phone))

    assert info.value.code == code
    assert info.value.status == 400
    assert info.value.invalid_recipient is invalid_recipient
    assert not info.value.transient


async def test_wrong_token_is_auth_error(make_provider) -> None:
    with pytest.raises(ProviderAuthError) as info:
        await make_provider({"auth_token": "wrong"}).send(sms())
    assert info.value.status == 401
    assert info.value.code == "20003"


async def test_missing_credentials_never_call_out(fake, make_provider) -> None:
    with pytest.raises(ProviderAuthError):
        await make_provider({"auth_token": None}).send(sms())
    assert fake.requests == []


async def test_429_is_rate_limited_with_retry_after(fake, make_provider) -> None:
    fake.mode = "rate_limit"
    with pytest.raises(ProviderRateLimited) as info:
        await make_provider().send(sms())
    assert info.value.retry_after == 3.0
    assert info.value.code == "20429"


async def test_500_is_transient(fake, make_provider) -> None:
    fake.mode = "server_error"
    with pytest.raises(TransientProviderError) as info:
        await make_provider().send(sms())
    assert type(info.value) is TransientProviderError
    assert info.value.status == 500


async def test_hang_times_out_as_transient(fake, make_provider) -> None:
    fake.mode = "hang"
    started = time.monotonic()
    with pytest.raises(TransientProviderError, match="timed out"):
        await make_provider(provider_timeout=0.5).send(sms())
    assert time.monotonic() - started < 3


async def test_check_reads_the_account(make_provider) -> None:
    ok = await make_provider().check()
    assert (ok.reachable, ok.authenticated) == (True, True)
    assert "active" in ok.detail

    bad = await make_provider({"auth_token": "wrong"}).check()
    assert (bad.reachable, bad.authenticated) == (True, False)


def test_config_from_settings(make_settings) -> None:
    assert TwilioProvider.config_from_settings(make_settings(sms_provider="plivo")) is None
    settings = make_settings(
        sms_provider="twilio", sms_account_sid=ACCOUNT_SID, sms_auth_token="t", sms_from="+1555"
    )
    assert TwilioProvider.config_from_settings(settings) == {
        "account_sid": ACCOUNT_SID,
        "auth_token": "t",
        "from": "+1555",
    }
    service = "MG" + "0" * 32
    config = TwilioProvider.config_from_settings(
        make_settings(sms_provider="twilio", sms_from=service)
    )
    assert config is not None and config["messaging_service_sid"] == service


# --------------------------------------------------------------------------- signature


def test_signature_matches_twilio_python_vectors() -> None:
    """Vectors from twilio-python's tests/unit/test_request_validator.py (token 12345)."""
    uri = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": ["CA1234567890ABCDE"],
        "Digits": ["1234"],
        "From": ["+14158675309"],
        "To": ["+18005551212"],
        "Caller": ["+14158675309"],
    }
    assert compute_signature("12345", uri, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    # repeated names: keys sorted, values sorted and de-duplicated
    multi = {"Sid": ["CA123"], "SidAccount": ["AC123"], "Digits": ["5678", "1234", "1234"]}
    assert compute_signature("12345", uri, multi) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    # the URL is tried with and without its port, as the SDK does
    assert validate_signature(
        "12345", uri.replace(".com", ".com:1234"), params, "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )
    assert validate_signature("12345", uri, params, "kvajT1Ptam85bY51eRf/AJRuM3w=")
    http = uri.replace("https", "http")
    assert validate_signature("12345", http, params, "0ZXoZLH/DfblKGATFgpif+LLRf4=")
    assert not validate_signature("12345", uri, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8")


def callback(
    params: dict[str, str],
    *,
    token: str = AUTH_TOKEN,
    url: str = CALLBACK_URL,
    signature: str | None = None,
    sign_params: dict[str, str] | None = None,
) -> WebhookRequest:
    body = urlencode(params).encode()
    headers = CIMultiDict({"Content-Type": "application/x-www-form-urlencoded"})
    if signature is None:
        signature = sign(token, url, sign_params or params)
    if signature:
        headers["X-Twilio-Signature"] = signature
    return WebhookRequest(url=url, method="POST", headers=headers, body=body, form=params)


def status(message_status: str, **extra: str) -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "From": FROM_NUMBER,
        "MessageSid": MESSAGE_SID,
        "MessageStatus": message_status,
        "SmsSid": MESSAGE_SID,
        "SmsStatus": message_status,
        "To": "+14155550123",
        **extra,
    }


@pytest.fixture
def ctx(provider_ctx) -> ProviderContext:
    return provider_ctx(sms_provider="twilio", sms_auth_token=AUTH_TOKEN, public_url=PUBLIC_URL)


async def test_signed_delivered_callback_is_accepted_and_parsed(ctx) -> None:
    request = callback(status("delivered"))
    await TwilioProvider.verify_webhook(request, ctx)

    [event] = TwilioProvider.parse_webhook(request)
    assert event.type is EventType.DELIVERED
    assert event.message_id == MESSAGE_SID
    assert event.recipient == "+14155550123"
    assert event.event_id == hashlib.sha256(f"{MESSAGE_SID}delivered".encode()).hexdigest()
    assert event.occurred_at.tzinfo is not None
    assert event.payload["MessageStatus"] == "delivered"


@pytest.mark.parametrize("message_status", ["undelivered", "failed"])
async def test_failed_callback_carries_error_code(ctx, message_status: str) -> None:
    request = callback(status(message_status, ErrorCode="30003"))
    await TwilioProvider.verify_webhook(request, ctx)

    [event] = TwilioProvider.parse_webhook(request)
    assert event.type is EventType.FAILED
    assert event.reason is not None and "30003" in event.reason
    assert "unreachable" in event.reason


@pytest.mark.parametrize("message_status", ["queued", "sending", "sent", "accepted"])
def test_progress_statuses_are_dropped(message_status: str) -> None:
    assert TwilioProvider.parse_webhook(callback(status(message_status))) == []


def test_same_status_twice_has_one_event_id() -> None:
    first = TwilioProvider.parse_webhook(callback(status("delivered")))
    again = TwilioProvider.parse_webhook(callback(status("delivered")))
    failed = TwilioProvider.parse_webhook(callback(status("failed")))
    assert first[0].event_id == again[0].event_id != failed[0].event_id


async def test_callback_signed_on_url_with_port_is_accepted(ctx) -> None:
    signed_url = CALLBACK_URL.replace(".com", ".com:443")
    request = callback(
        status("delivered"), signature=sign(AUTH_TOKEN, signed_url, status("delivered"))
    )
    await TwilioProvider.verify_webhook(request, ctx)


async def test_tampered_params_are_rejected(ctx) -> None:
    signed = status("failed", ErrorCode="30003")
    request = callback(status("delivered"), sign_params=signed)
    with pytest.raises(WebhookRejected):
        await TwilioProvider.verify_webhook(request, ctx)


async def test_other_url_is_rejected(ctx) -> None:
    params = status("delivered")
    request = callback(
        params, signature=sign(AUTH_TOKEN, "https://evil.example/webhooks/twilio", params)
    )
    with pytest.raises(WebhookRejected):
        await TwilioProvider.verify_webhook(request, ctx)


async def test_wrong_token_is_rejected(ctx) -> None:
    with pytest.raises(WebhookRejected):
        await TwilioProvider.verify_webhook(callback(status("delivered"), token="other"), ctx)


async def test_missing_signature_is_rejected(ctx) -> None:
    with pytest.raises(WebhookRejected, match="missing"):
        await TwilioProvider.verify_webhook(callback(status("delivered"), signature=""), ctx)


async def test_no_token_configured_rejects_everything(provider_ctx) -> None:
    with pytest.raises(WebhookRejected, match="no Twilio auth token"):
        await TwilioProvider.verify_webhook(callback(status("delivered")), provider_ctx())


async def test_webhook_secret_is_the_fallback_token(provider_ctx) -> None:
    ctx = provider_ctx(webhook_secret="shared-secret-for-webhooks")
    request = callback(status("delivered"), token="shared-secret-for-webhooks")
    await TwilioProvider.verify_webhook(request, ctx)


def test_malformed_callbacks_are_invalid() -> None:
    with pytest.raises(WebhookInvalid):
        TwilioProvider.parse_webhook(callback({"MessageStatus": "delivered"}))
    request = WebhookRequest(
        url=CALLBACK_URL, method="POST", headers=CIMultiDict(), body=b'{"MessageSid": "SM1"}'
    )
    with pytest.raises(WebhookInvalid):
        TwilioProvider.parse_webhook(request)


async def test_signed_form_post_over_real_http(ctx) -> None:
    """aiohttp's form encoding of spaces, '+' and non-ASCII signs as Twilio does."""
    seen: list[WebhookRequest] = []

    async def handler(request: web.Request) -> web.Response:
        form = await request.post()
        seen.append(
            WebhookRequest(
                url=str(request.url),
                method=request.method,
                headers=request.headers,
                body=await request.read(),
                form={k: str(v) for k, v in form.items()},
            )
        )
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/webhooks/twilio", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/webhooks/twilio"))
        params = status("undelivered", ErrorCode="30005", Body="héllo + world")
        headers = {"X-Twilio-Signature": sign(AUTH_TOKEN, url, params)}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=params, headers=headers) as resp,
        ):
            assert resp.status == 204

    await TwilioProvider.verify_webhook(seen[0], ctx)
    [event] = TwilioProvider.parse_webhook(seen[0])
    assert event.type is EventType.FAILED and event.message_id == MESSAGE_SID


async def test_email_from_address_does_not_override_sms_sender(fake, make_provider) -> None:
    message = OutboundMessage(
        notification_id=uuid4(),
        channel=Channel.SMS,
        to=Recipient(phone="+14155550123"),
        text="hi",
        from_address="noreply@example.com",
    )
    await make_provider().send(message)
    assert fake.requests[0]["form"]["From"] == FROM_NUMBER
