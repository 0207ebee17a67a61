"""SES v2 provider: happy paths against a moto server, error answers against AwsApiFake."""

from __future__ import annotations

import base64
import email
import email.policy
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from uuid import uuid4

import boto3
import pytest
from aiohttp.test_utils import TestServer

from app.models import Channel, Recipient
from app.providers import aws
from app.providers.base import (
    OutboundMessage,
    PermanentProviderError,
    ProviderAuthError,
    ProviderContext,
    ProviderError,
    ProviderRateLimited,
    TransientProviderError,
)
from app.providers.email.ses import SesProvider
from tests.fakes.aws import AWS_TEST_CONFIG, AwsApiFake, free_port, moto_data, shared_moto_url

SENDER = "notify@example.com"


@pytest.fixture(scope="module")
def moto_url() -> str:
    url = shared_moto_url()
    # SES only sends from verified identities (moto enforces it too).
    boto3.client(
        "sesv2",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    ).create_email_identity(EmailIdentity=SENDER)
    return url


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
def ses(provider_ctx: Callable[..., ProviderContext]) -> Callable[..., SesProvider]:
    def build(endpoint: str, ctx: dict[str, Any] | None = None, **config: Any) -> SesProvider:
        context = provider_ctx(aws_endpoint_url=endpoint, **(ctx or {}))
        return SesProvider({**AWS_TEST_CONFIG, "from_email": SENDER, **config}, context)

    return build


def message(**overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "notification_id": uuid4(),
        "channel": Channel.EMAIL,
        "to": Recipient(email="grace@example.net", name="Grace Hopper"),
        "subject": "Prix spécial ✓",
        "text": "Plain body",
        "html": "<p>HTML body</p>",
        "reply_to": "help@example.com",
        "category": "marketing",
        "unsubscribe_url": "https://app.example.com/unsub/42",
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


async def test_send_raw_mime_is_stored_by_moto(
    moto_url: str, ses: Callable[..., SesProvider]
) -> None:
    msg = message()
    result = await ses(moto_url).send(msg)

    stored = [
        m for m in moto_data(moto_url)["ses"]["RawMessage"] if m["id"] == result.provider_message_id
    ]
    assert len(stored) == 1, "moto holds exactly the message SES answered for"
    assert stored[0]["source"] == SENDER
    assert "grace@example.net" in stored[0]["destinations"]
    mail = email.message_from_string(stored[0]["raw_data"], policy=email.policy.default)
    assert isinstance(mail, email.message.EmailMessage)
    assert mail.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    assert mail.get_body(("plain",)).get_content().strip() == "Plain body"  # type: ignore[union-attr]
    assert mail.get_body(("html",)).get_content().strip() == "<p>HTML body</p>"  # type: ignore[union-attr]
    assert mail["Subject"] == "Prix spécial ✓"
    assert mail["From"] == SENDER
    assert mail["To"] == "Grace Hopper <grace@example.net>"
    assert mail["Reply-To"] == "help@example.com"
    assert mail["List-Unsubscribe"] == "<https://app.example.com/unsub/42>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["X-Notification-ID"] == str(msg.notification_id)
    assert mail["Message-ID"] is None  # SES assigns its own


async def test_unverified_sender_is_a_provider_problem(
    moto_url: str, ses: Callable[..., SesProvider]
) -> None:
    provider = ses(moto_url, from_email="stranger@unverified.example")
    with pytest.raises(ProviderAuthError, match="MessageRejected"):
        await provider.send(message())


async def test_wire_request_has_tags_reply_to_and_config_set(
    aws_fake: tuple[AwsApiFake, str], ses: Callable[..., SesProvider]
) -> None:
    fake, url = aws_fake
    msg = message()
    result = await ses(url, configuration_set="events").send(msg)
    assert result.provider_message_id and result.provider_message_id.startswith("0100")
    body = fake.requests[-1]["body"]
    assert body["FromEmailAddress"] == SENDER
    assert body["Destination"] == {"ToAddresses": ["grace@example.net"]}
    assert "ReplyToAddresses" not in body  # Reply-To is a MIME header of the raw message
    assert body["ConfigurationSetName"] == "events"
    assert body["EmailTags"] == [{"Name": "notification_id", "Value": str(msg.notification_id)}]
    raw = base64.b64decode(body["Content"]["Raw"]["Data"])
    assert raw.startswith(b"From: ") and b"\r\nReply-To: help@example.com\r\n" in raw


@pytest.mark.parametrize(
    ("status", "code", "text", "expected", "invalid_recipient"),
    [
        (
            429,
            "TooManyRequestsException",
            "Maximum sending rate exceeded.",
            ProviderRateLimited,
            None,
        ),
        (400, "LimitExceededException", "Daily message quota exceeded.", ProviderRateLimited, None),
        (400, "MessageRejected", "Message contains a virus.", PermanentProviderError, False),
        (400, "BadRequestException", "Illegal address", PermanentProviderError, True),
        (
            400,
            "MailFromDomainNotVerifiedException",
            "MAIL FROM not verified",
            ProviderAuthError,
            None,
        ),
        (400, "AccountSuspendedException", "Account suspended", ProviderAuthError, None),
        (
            403,
            "UnrecognizedClientException",
            "The security token is invalid.",
            ProviderAuthError,
            None,
        ),
        (403, "SignatureDoesNotMatch", "Signature mismatch", ProviderAuthError, None),
        (
            403,
            "AccessDeniedException",
            "not authorized to perform ses:SendEmail",
            ProviderAuthError,
            None,
        ),
        (500, "InternalFailure", "Internal failure", TransientProviderError, None),
        (503, "ServiceUnavailable", "Service unavailable", TransientProviderError, None),
    ],
)
async def test_error_classification(
    aws_fake: tuple[AwsApiFake, str],
    ses: Callable[..., SesProvider],
    status: int,
    code: str,
    text: str,
    expected: type[ProviderError],
    invalid_recipient: bool | None,
) -> None:
    fake, url = aws_fake
    fake.fail(status, code, text)
    with pytest.raises(ProviderError) as info:
        await ses(url).send(message())
    assert type(info.value) is expected
    assert info.value.provider == "ses" and info.value.code == code
    if invalid_recipient is not None:
        assert isinstance(info.value, PermanentProviderError)
        assert info.value.invalid_recipient is invalid_recipient


async def test_retry_after_is_honoured(
    aws_fake: tuple[AwsApiFake, str], ses: Callable[..., SesProvider]
) -> None:
    fake, url = aws_fake
    fake.fail(429, "TooManyRequestsException", "slow down", **{"Retry-After": "7"})
    with pytest.raises(ProviderRateLimited) as info:
        await ses(url).send(message())
    assert info.value.retry_after == 7


async def test_hang_past_timeout_is_transient(
    aws_fake: tuple[AwsApiFake, str], ses: Callable[..., SesProvider]
) -> None:
    fake, url = aws_fake
    fake.hang()
    started = time.monotonic()
    with pytest.raises(TransientProviderError, match=r"(?i)timeout|timed out"):
        await ses(url, ctx={"provider_timeout": 0.5}).send(message())
    assert time.monotonic() - started < 3  # botocore retries are off


async def test_refused_connection_is_transient(ses: Callable[..., SesProvider]) -> None:
    with pytest.raises(TransientProviderError) as info:
        await ses(f"http://127.0.0.1:{free_port()}").send(message())
    assert type(info.value) is TransientProviderError


async def test_check_reads_account(
    aws_fake: tuple[AwsApiFake, str], ses: Callable[..., SesProvider]
) -> None:
    fake, url = aws_fake
    result = await ses(url).check()
    assert (result.reachable, result.authenticated) == (True, True)
    assert "enabled" in result.detail and "production" in result.detail
    fake.fail(403, "UnrecognizedClientException", "The security token is invalid.")
    denied = await ses(url).check()
    assert (denied.reachable, denied.authenticated) == (True, False)


async def test_check_unreachable(ses: Callable[..., SesProvider]) -> None:
    result = await ses(f"http://127.0.0.1:{free_port()}").check()
    assert not result.reachable


async def test_half_credentials_are_a_config_error(
    moto_url: str, ses: Callable[..., SesProvider]
) -> None:
    with pytest.raises(ProviderAuthError):
        await ses(moto_url, secret_access_key="").send(message())


async def test_one_client_per_config(moto_url: str, ses: Callable[..., SesProvider]) -> None:
    first, second = ses(moto_url), ses(moto_url)
    await first.send(message())
    await second.send(message())
    cfg = first._aws()
    assert cfg == second._aws()
    assert aws.client_for("sesv2", cfg) is aws.client_for("sesv2", second._aws())
    other = ses(moto_url, region="eu-west-1")._aws()
    assert aws.client_for("sesv2", other) is not aws.client_for("sesv2", cfg)


def test_config_from_settings(make_settings: Callable[..., Any]) -> None:
    assert SesProvider.config_from_settings(make_settings(email_provider="smtp")) is None
    config = SesProvider.config_from_settings(
        make_settings(email_provider="ses", aws_region="eu-central-1", email_from="a@b.example")
    )
    assert config == {"region": "eu-central-1", "from_email": "a@b.example", "reply_to": None}
