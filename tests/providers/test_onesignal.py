"""OneSignal against a local fake of its REST API, and its shared-secret webhooks."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
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
from app.providers.push.onesignal import SECRET_HEADER, OneSignalProvider
from tests.fakes.onesignal import NO_SUBSCRIBERS, FakeOneSignal

API_KEY = "os_v2_app_testkey"
APP_ID = str(uuid.uuid4())
SUBSCRIPTION = str(uuid.uuid4())
SECRET = "onesignal-webhook-secret"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOneSignal]:
    server = FakeOneSignal(api_key=API_KEY, app_id=APP_ID, subscriptions={SUBSCRIPTION})
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def make_provider(
    fake: FakeOneSignal, provider_ctx: Callable[..., ProviderContext]
) -> Callable[..., OneSignalProvider]:
    def build(config: dict[str, Any] | None = None, **settings: Any) -> OneSignalProvider:
        ctx = provider_ctx(onesignal_base_url=fake.base_url, **settings)
        return OneSignalProvider(config or {"api_key": API_KEY, "app_id": APP_ID}, ctx)

    return build


def message(token: str | None = SUBSCRIPTION, **kw: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "notification_id": uuid.uuid4(),
        "channel": Channel.PUSH,
        "to": Recipient(device_token=token) if token else Recipient(name="someone"),
        "subject": "New reply",
        "text": "Ana answered your question",
        "data": {"thread": "7"},
    }
    fields.update(kw)
    return OutboundMessage(**fields)


# --------------------------------------------------------------------------- sending


async def test_send_creates_notification(
    fake: FakeOneSignal, make_provider: Callable[..., OneSignalProvider]
) -> None:
    msg = message(category="transactional")
    result = await make_provider().send(msg)

    assert result.provider_message_id and uuid.UUID(result.provider_message_id)
    [body] = fake.created
    assert body["app_id"] == APP_ID
    assert body["include_subscription_ids"] == [SUBSCRIPTION]
    assert body["headings"] == {"en": "New reply"}
    assert body["contents"] == {"en": "Ana answered your question"}
    assert body["data"] == {"thread": "7", "notification_id": str(msg.notification_id)}
    assert body["idempotency_key"] == str(msg.notification_id)
    assert body["priority"] == 10


async def test_retry_is_idempotent(
    fake: FakeOneSignal, make_provider: Callable[..., OneSignalProvider]
) -> None:
    msg = message()
    first = await make_provider().send(msg)
    second = await make_provider().send(msg)  # a retried job, another worker
    assert first.provider_message_id == second.provider_message_id
    assert len(fake.created) == 1 and fake.replays == 1


async def test_external_id_targeting(
    fake: FakeOneSignal, make_provider: Callable[..., OneSignalProvider]
) -> None:
    fake.external_ids.add("user-17")
    provider = make_provider({"api_key": API_KEY, "app_id": APP_ID, "target": "external_id"})
    await provider.send(message(token=None, metadata={"external_id": "user-17"}))
    body = fake.created[-1]
    assert body["include_aliases"] == {"external_id": ["user-17"]}
    assert body["target_channel"] == "push" and "include_subscription_ids" not in body
    assert "priority" not in body


async def test_unsubscribed_recipient_is_permanent(
    fake: FakeOneSignal, make_provider: Callable[..., OneSignalProvider]
) -> None:
    with pytest.raises(PermanentProviderError, match=NO_SUBSCRIBERS) as caught:
        await make_provider().send(message(token=str(uuid.uuid4())))
    assert caught.value.invalid_recipient and caught.value.status == 200
    assert fake.created == []


@pytest.mark.parametrize(
    "answer",
    [
        {"id": "", "errors": {"invalid_player_ids": [SUBSCRIPTION]}},
        {"errors": {"invalid_player_ids": [SUBSCRIPTION]}},
        {"id": str(uuid.uuid4()), "errors": {"invalid_aliases": {"external_id": ["x"]}}},
    ],
    ids=["empty-id", "no-id", "skipped"],
)
async def test_invalid_ids_in_a_200_are_permanent(
    fake: FakeOneSignal, make_provider: Callable[..., OneSignalProvider], answer: dict[str, Any]
) -> None:
    fake.scripted.append((200, answer, {}))
    with pytest.raises(PermanentProviderError) as caught:
        await make_provider().send(message())
    assert caught.value.invalid_recipient


@pytest.mark.parametrize(
    ("status", "answer", "headers", "error"),
    [
        (
            400,
            {"errors": ["Notification content must not be null for any languages."]},
            {},
            PermanentProviderError,
        ),
        (429, {"errors": ["API rate limit exceeded"]}, {"Retry-After": "3"}, ProviderRateLimited),
        (500, {"errors": ["Internal server error"]}, {}, TransientProviderError),
        (503, {"errors": ["Service temporarily unavailable"]}, {}, TransientProviderError),
    ],
    ids=["400", "429", "500", "503"],
)
async def test_http_errors_are_classified(
    fake: FakeOneSignal,
    make_provider: Callable[..., OneSignalProvider],
    status: int,
    answer: dict[str, Any],
    headers: dict[str, str],
    error: type[Exception],
) -> None:
    fake.scripted.append((status, answer, headers))
    with pytest.raises(error) as caught:
        await make_provider().send(message())
    assert type(caught.value) is error and caught.value.status == status  # type: ignore[attr-defined]
    assert answer["errors"][0] in str(caught.value)
    if error is ProviderRateLimited:
        assert caught.value.retry_after == 3  # type: ignore[attr-defined]
    if error is PermanentProviderError:
        assert not caught.value.invalid_recipient  # type: ignore[attr-defined]


async def test_400_naming_the_recipient_marks_it_invalid(
    fake: FakeOneSignal, make_provider: Callable[..., OneSignalProvider]
) -> None:
    fake.scripted.append(
        (400, {"errors": ["Incorrect player_id format in include_player_ids (not a UUID)"]}, {})
    )
    with pytest.raises(PermanentProviderError) as caught:
        await make_provider().send(message())
    assert caught.value.invalid_recipient and caught.value.status == 400


async def test_wrong_key_is_an_auth_error(
    fake: FakeOneSignal, make_provider: Callable[..., OneSignalProvider]
) -> None:
    provider = make_provider({"api_key": "wrong", "app_id": APP_ID})
    with pytest.raises(ProviderAuthError, match="Access denied") as caught:
        await provider.send(message())
    assert caught.value.status == 403
    check = await provider.check()
    assert check.reachable and check.authenticated is False


async def test_timeout_is_transient(
    fake: FakeOneSignal, make_provider: Callable[..., OneSignalProvider]
) -> None:
    fake.hang = True
    with pytest.raises(TransientProviderError, match="timed out"):
        await make_provider(provider_timeout=0.5).send(message())


async def test_check_and_env_config(
    fake: FakeOneSignal, make_provider: Callable[..., OneSignalProvider]
) -> None:
    provider = make_provider(
        config={}, push_provider="onesignal", push_api_key=API_KEY, push_app_id=APP_ID
    )
    assert OneSignalProvider.config_from_settings(provider.ctx.settings) == {
        "api_key": API_KEY,
        "app_id": APP_ID,
    }
    check = await provider.check()
    assert check.reachable and check.authenticated is True
    assert fake.created == []
    with pytest.raises(PermanentProviderError) as caught:
        await provider.send(message(token=None))  # nothing to address
    assert caught.value.invalid_recipient


# --------------------------------------------------------------------------- webhooks


def webhook(body: Any, *, header: str | None = SECRET, query: str = "") -> WebhookRequest:
    headers = CIMultiDict({"Content-Type": "application/json"})
    if header is not None:
        headers[SECRET_HEADER] = header
    return WebhookRequest(
        url=f"https://notify.example/webhooks/onesignal{query}",
        method="POST",
        headers=headers,
        body=json.dumps(body).encode(),
    )


STREAM_CLICK: dict[str, Any] = {
    "event": {
        "id": "9f0c5a35-7b0f-4e8f-9a0e-8c5d3f6f4a11",
        "kind": "message.push.clicked",
        "timestamp": 1767225600,
        "subscription_id": SUBSCRIPTION,
    },
    "message": {"id": "b2f7f966-d8cc-11e4-bed1-df8f05be55ba"},
}


@pytest.mark.parametrize(
    ("settings", "header", "query"),
    [
        ({"onesignal_webhook_secret": SECRET}, SECRET, ""),
        ({"webhook_secret": SECRET}, SECRET, ""),  # the generic fallback
        ({"onesignal_webhook_secret": SECRET}, None, f"?secret={SECRET}"),
    ],
    ids=["header", "generic-secret", "query"],
)
async def test_webhook_with_the_secret_is_accepted(
    provider_ctx: Callable[..., ProviderContext],
    settings: dict[str, str],
    header: str | None,
    query: str,
) -> None:
    request = webhook(STREAM_CLICK, header=header, query=query)
    await OneSignalProvider.verify_webhook(request, provider_ctx(**settings))


@pytest.mark.parametrize(
    ("settings", "header", "query"),
    [
        ({"onesignal_webhook_secret": SECRET}, "guess", ""),
        ({"onesignal_webhook_secret": SECRET}, None, ""),
        ({"onesignal_webhook_secret": SECRET}, None, "?secret=guess"),
        ({}, SECRET, ""),  # nothing configured: never an open door
    ],
    ids=["wrong", "unsigned", "wrong-query", "unconfigured"],
)
async def test_webhook_without_the_secret_is_rejected(
    provider_ctx: Callable[..., ProviderContext],
    settings: dict[str, str],
    header: str | None,
    query: str,
) -> None:
    with pytest.raises(WebhookRejected):
        await OneSignalProvider.verify_webhook(
            webhook(STREAM_CLICK, header=header, query=query), provider_ctx(**settings)
        )


def test_event_stream_events_are_normalised() -> None:
    received = {
        "event": {
            "id": "e-2",
            "kind": "message.push.received",
            "datetime": "2026-01-01T00:00:05.228Z",
        },
        "message": {"id": "b2f7f966-d8cc-11e4-bed1-df8f05be55ba"},
    }
    sent = {"event": {"id": "e-3", "kind": "message.push.sent", "timestamp": 1}, "message": {}}
    events = OneSignalProvider.parse_webhook(webhook([STREAM_CLICK, received, sent]))

    assert [e.type for e in events] == [EventType.CLICK, EventType.DELIVERED]  # sent dropped
    click, delivered = events
    assert click.event_id == STREAM_CLICK["event"]["id"]
    assert click.message_id == "b2f7f966-d8cc-11e4-bed1-df8f05be55ba"
    assert click.occurred_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert click.recipient == SUBSCRIPTION and click.provider == "onesignal"
    assert delivered.occurred_at.tzinfo is not None and delivered.occurred_at.second == 5


def test_web_sdk_events_are_normalised() -> None:
    ours = uuid.uuid4()
    clicked = {
        "event": "notification.clicked",
        "notificationId": "ed46884e-0e3f-4373-9e11-e28f27746d3d",
        "heading": "New reply",
        "content": "Ana answered your question",
        "additionalData": {"notification_id": str(ours), "thread": "7"},
        "actionId": "",
        "url": "https://app.example/threads/7",
    }
    [event] = OneSignalProvider.parse_webhook(webhook(clicked))
    assert event.type is EventType.CLICK
    assert event.message_id == "ed46884e-0e3f-4373-9e11-e28f27746d3d"
    assert event.notification_id == ours
    assert event.occurred_at.tzinfo is not None
    again = OneSignalProvider.parse_webhook(webhook(clicked))[0]
    assert again.event_id == event.event_id  # stable, so redeliveries dedupe

    shown = OneSignalProvider.parse_webhook(
        webhook({**clicked, "event": "notification.willDisplay"})
    )
    assert shown[0].type is EventType.DELIVERED and shown[0].event_id != event.event_id
    dismissed = {**clicked, "event": "notification.dismissed"}
    assert OneSignalProvider.parse_webhook(webhook(dismissed)) == []


@pytest.mark.parametrize(
    "body",
    [
        "not an object",
        {"no": "event"},
        {"event": {"id": "x"}},  # stream event without kind
        {"event": {"kind": "message.push.clicked", "timestamp": "yesterday"}},
        {"event": "notification.clicked"},  # no notificationId
        [{"event": 3}],
    ],
)
def test_malformed_bodies_are_invalid(body: Any) -> None:
    with pytest.raises(WebhookInvalid):
        OneSignalProvider.parse_webhook(webhook(body))


def test_body_that_is_not_json_is_invalid() -> None:
    request = WebhookRequest(url="https://x/", method="POST", headers={}, body=b"{nope")
    with pytest.raises(WebhookInvalid):
        OneSignalProvider.parse_webhook(request)
