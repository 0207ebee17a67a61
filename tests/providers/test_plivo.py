"""Plivo: real wire format against a local fake, and V3-signed status callbacks."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
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
from app.providers.sms.plivo import PlivoProvider, compute_v3_signature
from tests.fakes.plivo import AUTH_ID, AUTH_TOKEN, INVALID_DST, SRC_NUMBER, FakePlivo, sign_v3

PUBLIC_URL = "https://notify.example.com"
CALLBACK_URL = f"{PUBLIC_URL}/webhooks/plivo"
MESSAGE_UUID = "5b40a428-bfc7-4daf-9d06-726c558bf3b8"
NONCE = "12345678901234567890"


@pytest.fixture
async def fake() -> AsyncIterator[FakePlivo]:
    server = FakePlivo()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def make_provider(
    fake: FakePlivo, provider_ctx: Callable[..., ProviderContext]
) -> Callable[..., PlivoProvider]:
    def build(config: dict[str, Any] | None = None, **settings: Any) -> PlivoProvider:
        ctx = provider_ctx(
            **{"plivo_base_url": fake.base_url, "public_url": PUBLIC_URL, **settings}
        )
        base = {"auth_id": AUTH_ID, "auth_token": AUTH_TOKEN, "from": SRC_NUMBER}
        return PlivoProvider({**base, **(config or {})}, ctx)

    return build


def sms(phone: str = "+14155550123", text: str = "Your code is 123456") -> OutboundMessage:
    return OutboundMessage(
        notification_id=uuid4(), channel=Channel.SMS, to=Recipient(phone=phone), text=text
    )


# --------------------------------------------------------------------------- send


async def test_send_posts_json_with_basic_auth_and_callback(fake, make_provider) -> None:
    result = await make_provider().send(sms())

    assert result.raw is not None and result.raw["message"] == "message(s) queued"
    assert result.provider_message_id == result.raw["message_uuid"][0]
    [call] = fake.requests
    assert call["path"] == f"/v1/Account/{AUTH_ID}/Message/"
    assert call["headers"]["Content-Type"] == "application/json"
    assert json.loads(call["body"]) == {
        "src": SRC_NUMBER,
        "dst": "+14155550123",
        "text": "Your code is 123456",
        "url": CALLBACK_URL,
        "method": "POST",
    }


async def test_send_with_powerpack_and_no_public_url(fake, make_provider) -> None:
    powerpack = str(uuid4())
    await make_provider({"powerpack_uuid": powerpack}, public_url=None).send(sms())

    body = json.loads(fake.requests[0]["body"])
    assert body["powerpack_uuid"] == powerpack
    assert "src" not in body and "url" not in body and "method" not in body


async def test_invalid_destination_is_permanent_invalid_recipient(make_provider) -> None:
    with pytest.raises(PermanentProviderError) as info:
        await make_provider().send(sms(INVALID_DST))
    assert info.value.invalid_recipient
    assert info.value.status == 400
    assert "destination" in info.value.reason


async def test_wrong_token_is_auth_error(make_provider) -> None:
    with pytest.raises(ProviderAuthError) as info:
        await make_provider({"auth_token": "wrong"}).send(sms())
    assert info.value.status == 401
    assert "authentication failed" in info.value.reason


async def test_missing_sender_is_a_config_error(fake, make_provider) -> None:
    with pytest.raises(ProviderAuthError, match="sender"):
        await make_provider({"from": None}).send(sms())
    assert fake.requests == []


async def test_429_is_rate_limited_with_retry_after(fake, make_provider) -> None:
    fake.mode = "rate_limit"
    with pytest.raises(ProviderRateLimited) as info:
        await make_provider().send(sms())
    assert info.value.retry_after == 7.0


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

    bad = await make_provider({"auth_token": "wrong"}).check()
    assert (bad.reachable, bad.authenticated) == (True, False)


def test_config_from_settings(make_settings) -> None:
    assert PlivoProvider.config_from_settings(make_settings(sms_provider="twilio")) is None
    settings = make_settings(
        sms_provider="plivo",
        sms_account_sid=AUTH_ID,
        sms_auth_token="generic",
        plivo_auth_token="specific",
        sms_from=SRC_NUMBER,
    )
    assert PlivoProvider.config_from_settings(settings) == {
        "auth_id": AUTH_ID,
        "auth_token": "specific",
        "from": SRC_NUMBER,
    }


# --------------------------------------------------------------------------- signature


def test_signature_matches_plivo_python() -> None:
    """Vectors computed with plivo-python's plivo/utils/signature_v3.py."""
    params = {
        "From": "14155550100",
        "To": "14155550123",
        "MessageUUID": MESSAGE_UUID,
        "Status": "delivered",
        "Units": "1",
        "ErrorCode": "000",
    }
    got = compute_v3_signature("MY_AUTH_TOKEN", "POST", CALLBACK_URL, NONCE, params)
    assert got == "+/D+MfMuLts2WCfoWXUjx2le6nyxca/e8vqXCzVwKpU="
    get_url = f"{CALLBACK_URL}?Status=delivered&MessageUUID=abc"
    got = compute_v3_signature("MY_AUTH_TOKEN", "GET", get_url, "42", {})
    assert got == "f+2zyM+HqO3uWioehgcHj5/QvBH3yk9HvIxtCAqVJ5A="


def status(state: str, **extra: str) -> dict[str, str]:
    return {
        "From": "14155550100",
        "To": "14155550123",
        "MessageUUID": MESSAGE_UUID,
        "ParentMessageUUID": MESSAGE_UUID,
        "Status": state,
        "Type": "sms",
        "Units": "1",
        "TotalRate": "0.00500",
        "TotalAmount": "0.00500",
        "MCC": "310",
        "MNC": "260",
        "Sequence": "2",
        "MessageTime": "2026-03-01 10:00:00.123456",
        "DeliveryReportTime": "2026-03-01 10:00:05.654321",
        "ErrorCode": "",
        **extra,
    }


def callback(
    params: dict[str, str],
    *,
    token: str = AUTH_TOKEN,
    url: str = CALLBACK_URL,
    signature: str | None = None,
    sign_params: dict[str, str] | None = None,
    nonce: str | None = NONCE,
) -> WebhookRequest:
    headers = CIMultiDict({"Content-Type": "application/x-www-form-urlencoded"})
    if signature is None:
        signature = sign_v3(token, url, NONCE, sign_params or params)
    if signature:
        headers["X-Plivo-Signature-V3"] = signature
    if nonce:
        headers["X-Plivo-Signature-V3-Nonce"] = nonce
    body = urlencode(params).encode()
    return WebhookRequest(url=url, method="POST", headers=headers, body=body, form=params)


@pytest.fixture
def ctx(provider_ctx) -> ProviderContext:
    return provider_ctx(sms_provider="plivo", plivo_auth_token=AUTH_TOKEN)


async def test_signed_delivered_callback_is_accepted_and_parsed(ctx) -> None:
    request = callback(status("delivered", ErrorCode="000"))
    await PlivoProvider.verify_webhook(request, ctx)

    [event] = PlivoProvider.parse_webhook(request)
    assert event.type is EventType.DELIVERED
    assert event.message_id == MESSAGE_UUID
    assert event.recipient == "14155550123"
    assert event.reason is None
    assert event.event_id == hashlib.sha256(f"{MESSAGE_UUID}delivered".encode()).hexdigest()
    assert event.occurred_at == datetime(2026, 3, 1, 10, 0, 5, 654321, tzinfo=UTC)


@pytest.mark.parametrize("state", ["failed", "undelivered"])
async def test_failed_callback_carries_error_code(ctx, state: str) -> None:
    request = callback(status(state, ErrorCode="50"))
    await PlivoProvider.verify_webhook(request, ctx)

    [event] = PlivoProvider.parse_webhook(request)
    assert event.type is EventType.FAILED
    assert event.reason is not None and "50" in event.reason
    assert "invalid destination" in event.reason


@pytest.mark.parametrize("state", ["queued", "sent"])
def test_progress_statuses_are_dropped(state: str) -> None:
    assert PlivoProvider.parse_webhook(callback(status(state))) == []


async def test_one_of_several_signatures_is_enough(ctx) -> None:
    """The header may hold several comma-separated signatures (token rotation)."""
    params = status("delivered")
    good = sign_v3(AUTH_TOKEN, CALLBACK_URL, NONCE, params)
    stale = sign_v3("previous-token", CALLBACK_URL, NONCE, params)
    await PlivoProvider.verify_webhook(callback(params, signature=f"{stale},{good}"), ctx)


async def test_main_account_signature_header_is_accepted(ctx) -> None:
    params = status("delivered")
    request = callback(params, signature="")
    headers = CIMultiDict(request.headers)
    headers["X-Plivo-Signature-Ma-V3"] = sign_v3(AUTH_TOKEN, CALLBACK_URL, NONCE, params)
    ma_request = WebhookRequest(
        url=request.url, method="POST", headers=headers, body=request.body, form=request.form
    )
    await PlivoProvider.verify_webhook(ma_request, ctx)


async def test_get_callback_signs_the_query(ctx) -> None:
    query = urlencode(status("delivered"))
    url = f"{CALLBACK_URL}?{query}"
    signature = compute_v3_signature(AUTH_TOKEN, "GET", url, NONCE, {})
    assert signature is not None
    request = WebhookRequest(
        url=url,
        method="GET",
        body=b"",
        headers=CIMultiDict(
            {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": NONCE}
        ),
    )
    await PlivoProvider.verify_webhook(request, ctx)
    [event] = PlivoProvider.parse_webhook(request)
    assert event.type is EventType.DELIVERED

    tampered = WebhookRequest(
        url=url.replace("Status=delivered", "Status=failed"),
        method="GET",
        body=b"",
        headers=request.headers,
    )
    with pytest.raises(WebhookRejected):
        await PlivoProvider.verify_webhook(tampered, ctx)


async def test_json_callback_is_verified_and_parsed(ctx) -> None:
    params = status("undelivered", ErrorCode="30")
    body = json.dumps(params).encode()
    headers = CIMultiDict(
        {
            "Content-Type": "application/json",
            "X-Plivo-Signature-V3": sign_v3(AUTH_TOKEN, CALLBACK_URL, NONCE, params),
            "X-Plivo-Signature-V3-Nonce": NONCE,
        }
    )
    request = WebhookRequest(url=CALLBACK_URL, method="POST", headers=headers, body=body)
    await PlivoProvider.verify_webhook(request, ctx)
    [event] = PlivoProvider.parse_webhook(request)
    assert event.type is EventType.FAILED and "spam" in (event.reason or "")


async def test_tampered_params_are_rejected(ctx) -> None:
    request = callback(status("delivered"), sign_params=status("failed", ErrorCode="50"))
    with pytest.raises(WebhookRejected):
        await PlivoProvider.verify_webhook(request, ctx)


async def test_other_nonce_is_rejected(ctx) -> None:
    with pytest.raises(WebhookRejected):
        await PlivoProvider.verify_webhook(callback(status("delivered"), nonce="999"), ctx)


async def test_wrong_token_is_rejected(ctx) -> None:
    with pytest.raises(WebhookRejected):
        await PlivoProvider.verify_webhook(callback(status("delivered"), token="other"), ctx)


@pytest.mark.parametrize("missing", ["signature", "nonce"])
async def test_missing_headers_are_rejected(ctx, missing: str) -> None:
    kwargs: dict[str, Any] = {"signature": ""} if missing == "signature" else {"nonce": None}
    with pytest.raises(WebhookRejected, match="missing"):
        await PlivoProvider.verify_webhook(callback(status("delivered"), **kwargs), ctx)


async def test_no_token_configured_rejects_everything(provider_ctx) -> None:
    with pytest.raises(WebhookRejected, match="no Plivo auth token"):
        await PlivoProvider.verify_webhook(callback(status("delivered")), provider_ctx())


def test_malformed_callbacks_are_invalid() -> None:
    with pytest.raises(WebhookInvalid):
        PlivoProvider.parse_webhook(callback({"Status": "delivered"}))
    request = WebhookRequest(
        url=CALLBACK_URL,
        method="POST",
        body=b"{not json",
        headers=CIMultiDict({"Content-Type": "application/json"}),
    )
    with pytest.raises(WebhookInvalid):
        PlivoProvider.parse_webhook(request)


async def test_signed_form_post_over_real_http(ctx) -> None:
    """aiohttp's form encoding of what Plivo posts verifies end to end."""
    seen: list[WebhookRequest] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            WebhookRequest(
                url=str(request.url),
                method=request.method,
                headers=request.headers,
                body=await request.read(),
            )
        )
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/webhooks/plivo", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/webhooks/plivo"))
        params = status("delivered", From="Acme Inc+")
        headers = {
            "X-Plivo-Signature-V3": sign_v3(AUTH_TOKEN, url, NONCE, params),
            "X-Plivo-Signature-V3-Nonce": NONCE,
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=params, headers=headers) as resp,
        ):
            assert resp.status == 204

    await PlivoProvider.verify_webhook(seen[0], ctx)
    [event] = PlivoProvider.parse_webhook(seen[0])
    assert event.type is EventType.DELIVERED and event.message_id == MESSAGE_UUID
