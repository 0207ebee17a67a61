"""SNS SMS provider: Publish against a moto server, wire details and errors against AwsApiFake."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from uuid import uuid4

import pytest
from aiohttp.test_utils import TestServer

from app.models import Channel, Recipient
from app.providers.base import (
    OutboundMessage,
    PermanentProviderError,
    ProviderAuthError,
    ProviderContext,
    ProviderError,
    ProviderRateLimited,
    TransientProviderError,
)
from app.providers.sms.sns import SnsProvider
from tests.fakes.aws import AWS_TEST_CONFIG, AwsApiFake, free_port, moto_data, shared_moto_url

PHONE = "+14155550123"


@pytest.fixture(scope="module")
def moto_url() -> str:
    return shared_moto_url()


@pytest.fixture(scope="module")
async def aws_server() -> AsyncIterator[tuple[AwsApiFake, str]]:
    fake = AwsApiFake()
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    fake.reset()
    await server.close()


@pytest.fixture
def aws_fake(aws_server: tuple[AwsApiFake, str]) -> Iterator[tuple[AwsApiFake, str]]:
    """The module's fake, with a clean script for each test (one boto3 client for all)."""
    aws_server[0].reset()
    yield aws_server
    aws_server[0].reset()


@pytest.fixture
def sns(provider_ctx: Callable[..., ProviderContext]) -> Callable[..., SnsProvider]:
    def build(endpoint: str, ctx: dict[str, Any] | None = None, **config: Any) -> SnsProvider:
        context = provider_ctx(aws_endpoint_url=endpoint, **(ctx or {}))
        return SnsProvider({**AWS_TEST_CONFIG, **config}, context)

    return build


def sms(**overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "notification_id": uuid4(),
        "channel": Channel.SMS,
        "to": Recipient(phone=PHONE),
        "text": "Your code is 123456",
        "category": "transactional",
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


def attributes(form: dict[str, str]) -> dict[str, tuple[str, str]]:
    """MessageAttributes as the query protocol encodes them on the wire."""
    out = {}
    n = 1
    while f"MessageAttributes.entry.{n}.Name" in form:
        prefix = f"MessageAttributes.entry.{n}"
        out[form[f"{prefix}.Name"]] = (
            form[f"{prefix}.Value.DataType"],
            form[f"{prefix}.Value.StringValue"],
        )
        n += 1
    return out


async def test_publish_is_recorded_by_moto(moto_url: str, sns: Callable[..., SnsProvider]) -> None:
    result = await sns(moto_url).send(sms())
    stored = [
        m
        for m in moto_data(moto_url)["sns"]["SMS"]
        if m["message_id"] == result.provider_message_id
    ]
    assert stored == [
        {
            "message_id": result.provider_message_id,
            "phone_number": PHONE,
            "message": "Your code is 123456",
        }
    ]


async def test_html_only_body_is_sent_as_text(
    moto_url: str, sns: Callable[..., SnsProvider]
) -> None:
    result = await sns(moto_url).send(sms(text=None, html="<p>Hi <b>there</b></p>"))
    [stored] = [
        m
        for m in moto_data(moto_url)["sns"]["SMS"]
        if m["message_id"] == result.provider_message_id
    ]
    assert stored["message"] == "Hi there"


@pytest.mark.parametrize(
    ("overrides", "sms_type"),
    [
        ({"category": "transactional"}, "Transactional"),
        ({"category": "marketing"}, "Promotional"),
        ({"category": None, "priority": 100}, "Transactional"),
        ({"category": "social", "priority": 150}, "Transactional"),
        ({"category": "social", "priority": 10}, "Promotional"),
        ({"category": "social"}, "Promotional"),
    ],
)
async def test_wire_attributes(
    aws_fake: tuple[AwsApiFake, str],
    sns: Callable[..., SnsProvider],
    overrides: dict[str, Any],
    sms_type: str,
) -> None:
    fake, url = aws_fake
    result = await sns(url, sender_id="Acme").send(sms(**overrides))
    assert result.provider_message_id
    form = fake.requests[-1]["form"]
    assert form["Action"] == "Publish" and form["PhoneNumber"] == PHONE
    assert form["Message"] == "Your code is 123456"
    assert attributes(form) == {
        "AWS.SNS.SMS.SMSType": ("String", sms_type),
        "AWS.SNS.SMS.SenderID": ("String", "Acme"),
    }


async def test_e164_sender_becomes_origination_number(
    aws_fake: tuple[AwsApiFake, str], sns: Callable[..., SnsProvider], make_settings: Any
) -> None:
    fake, url = aws_fake
    config = SnsProvider.config_from_settings(
        make_settings(sms_provider="sns", sms_from="+18885550100")
    )
    assert config is not None
    await sns(url, **config).send(sms())
    attrs = attributes(fake.requests[-1]["form"])
    assert attrs["AWS.MM.SMS.OriginationNumber"] == ("String", "+18885550100")
    assert "AWS.SNS.SMS.SenderID" not in attrs


@pytest.mark.parametrize(
    ("status", "code", "text", "expected", "invalid_recipient"),
    [
        (
            400,
            "InvalidParameter",
            "Invalid parameter: PhoneNumber Reason: +1555 is not valid to publish to",
            PermanentProviderError,
            True,
        ),
        (400, "OptedOut", "Phone number is opted out", PermanentProviderError, False),
        (400, "Throttling", "Rate exceeded", ProviderRateLimited, None),
        (
            403,
            "AuthorizationError",
            "not authorized to perform SNS:Publish",
            ProviderAuthError,
            None,
        ),
        (403, "InvalidClientTokenId", "The security token is invalid.", ProviderAuthError, None),
        (500, "InternalError", "Internal error", TransientProviderError, None),
    ],
)
async def test_error_classification(
    aws_fake: tuple[AwsApiFake, str],
    sns: Callable[..., SnsProvider],
    status: int,
    code: str,
    text: str,
    expected: type[ProviderError],
    invalid_recipient: bool | None,
) -> None:
    fake, url = aws_fake
    fake.fail(status, code, text)
    with pytest.raises(ProviderError) as info:
        await sns(url).send(sms())
    assert type(info.value) is expected
    assert info.value.provider == "sns" and info.value.code == code
    if invalid_recipient is not None:
        assert isinstance(info.value, PermanentProviderError)
        assert info.value.invalid_recipient is invalid_recipient


async def test_hang_past_timeout_is_transient(
    aws_fake: tuple[AwsApiFake, str], sns: Callable[..., SnsProvider]
) -> None:
    fake, url = aws_fake
    fake.hang()
    started = time.monotonic()
    with pytest.raises(TransientProviderError):
        await sns(url, ctx={"provider_timeout": 0.5}).send(sms())
    assert time.monotonic() - started < 3


async def test_refused_connection_is_transient(sns: Callable[..., SnsProvider]) -> None:
    with pytest.raises(TransientProviderError) as info:
        await sns(f"http://127.0.0.1:{free_port()}").send(sms())
    assert type(info.value) is TransientProviderError


async def test_bad_sender_id_is_a_config_error(
    moto_url: str, sns: Callable[..., SnsProvider]
) -> None:
    with pytest.raises(ProviderAuthError, match="sender_id"):
        await sns(moto_url, sender_id="Way Too Long Sender").send(sms())


async def test_empty_body_is_permanent(moto_url: str, sns: Callable[..., SnsProvider]) -> None:
    with pytest.raises(PermanentProviderError):
        await sns(moto_url).send(sms(text="  ", html=None))


async def test_check(
    moto_url: str, aws_fake: tuple[AwsApiFake, str], sns: Callable[..., SnsProvider]
) -> None:
    ok = await sns(moto_url).check()
    assert (ok.reachable, ok.authenticated) == (True, True)
    fake, url = aws_fake
    fake.fail(403, "InvalidClientTokenId", "The security token is invalid.")
    denied = await sns(url).check()
    assert (denied.reachable, denied.authenticated) == (True, False)
    assert fake.requests[-1]["op"] == "GetSMSAttributes"


def test_config_from_settings(make_settings: Callable[..., Any]) -> None:
    assert SnsProvider.config_from_settings(make_settings(sms_provider="twilio")) is None
    config = SnsProvider.config_from_settings(
        make_settings(sms_provider="sns", sms_from="Acme", aws_region="eu-west-1")
    )
    assert config == {"region": "eu-west-1", "sender_id": "Acme"}
