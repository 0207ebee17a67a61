"""SES events through SNS: signature verification (SNS's real algorithm) and event parsing."""

from __future__ import annotations

import base64
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from app.providers import aws
from app.providers.base import (
    EventType,
    ProviderContext,
    WebhookInvalid,
    WebhookRejected,
    WebhookRequest,
)
from app.providers.email.ses import SesProvider, subscription_confirm_url
from tests.fakes.aws import free_port

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000test.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
SES_MESSAGE_ID = "010001890aa1b2c3-11111111-2222-3333-4444-555555555555-000000"


# --------------------------------------------------------------------------- signing


def make_cert(key: rsa.RSAPrivateKey, dns: str, days: int = 1) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CERT = make_cert(KEY, "sns.amazonaws.com")


def sign(
    envelope: dict[str, Any], version: str = "1", key: rsa.RSAPrivateKey = KEY
) -> dict[str, Any]:
    """Sign exactly as SNS does: RSA PKCS#1 v1.5 over the canonical "Key\\nValue\\n" string."""
    if envelope["Type"] == "Notification":
        fields = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        fields = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    canonical = "".join(f"{k}\n{envelope[k]}\n" for k in fields if k in envelope)
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(canonical.encode(), padding.PKCS1v15(), digest)
    return {
        **envelope,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
        "SigningCertURL": envelope.get("SigningCertURL", CERT_URL),
    }


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def notification(
    event: dict[str, Any] | str, *, age: timedelta = timedelta(0), **extra: Any
) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": str(uuid4()),
        "TopicArn": TOPIC,
        "Message": event if isinstance(event, str) else json.dumps(event),
        "Timestamp": iso(datetime.now(UTC) - age),
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
        **extra,
    }


def request(body: dict[str, Any] | bytes) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    kind = body.get("Type", "") if isinstance(body, dict) else ""
    return WebhookRequest(
        url="https://notify.example.com/webhooks/ses",
        method="POST",
        headers={"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": kind},
        body=raw,
    )


def ses_event(
    kind: str, details_key: str | None, details: dict[str, Any], *, style: str = "eventType"
) -> dict[str, Any]:
    event: dict[str, Any] = {
        style: kind,
        "mail": {
            "timestamp": "2026-03-01T10:00:00.000Z",
            "source": "notify@example.com",
            "sendingAccountId": "123456789012",
            "messageId": SES_MESSAGE_ID,
            "destination": ["grace@example.net"],
            "tags": {
                "ses:configuration-set": ["events"],
                "notification_id": ["7d3c2b1a-0000-4000-8000-000000000001"],
            },
        },
    }
    if details_key:
        event[details_key] = details
    return event


@pytest.fixture(autouse=True)
def seeded_cert() -> Iterator[None]:
    aws.SIGNING_CERTS[CERT_URL] = CERT
    yield
    aws.SIGNING_CERTS.clear()


@pytest.fixture
def ctx(provider_ctx: Callable[..., ProviderContext]) -> ProviderContext:
    return provider_ctx(webhook_tolerance=300)


@pytest.fixture
async def counting_ctx(
    make_settings: Callable[..., Any],
) -> AsyncIterator[tuple[ProviderContext, list[str]]]:
    """A context whose HTTP session records every request it starts."""
    started: list[str] = []

    async def on_start(session: Any, trace: Any, params: aiohttp.TraceRequestStartParams) -> None:
        started.append(str(params.url))

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[tracing]) as session:
        yield ProviderContext(http=session, settings=make_settings()), started


# --------------------------------------------------------------------------- verification


def test_string_to_sign_follows_the_aws_field_order() -> None:
    message = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": TOPIC,
        "Subject": "Hi",
        "Message": "line1\nline2",
        "Timestamp": "2026-03-01T10:00:00.000Z",
        "SignatureVersion": "1",
    }
    assert (
        aws.sns_string_to_sign(message)
        == (
            "Message\nline1\nline2\nMessageId\nm-1\nSubject\nHi\n"
            f"Timestamp\n2026-03-01T10:00:00.000Z\nTopicArn\n{TOPIC}\nType\nNotification\n"
        ).encode()
    )
    del message["Subject"]
    assert b"Subject" not in aws.sns_string_to_sign(message)


@pytest.mark.parametrize("version", ["1", "2"])
async def test_signed_notification_is_accepted(ctx: ProviderContext, version: str) -> None:
    body = sign(
        notification(ses_event("Delivery", "delivery", {"timestamp": iso(datetime.now(UTC))})),
        version,
    )
    await SesProvider.verify_webhook(request(body), ctx)


async def test_subject_is_part_of_the_signature(ctx: ProviderContext) -> None:
    body = sign(notification("plain", Subject="Amazon SES Email Event Notification"))
    await SesProvider.verify_webhook(request(body), ctx)
    with pytest.raises(WebhookRejected, match="does not match"):
        await SesProvider.verify_webhook(request({**body, "Subject": "changed"}), ctx)


@pytest.mark.parametrize("field", ["Message", "MessageId", "TopicArn", "Timestamp"])
async def test_tampered_fields_are_rejected(ctx: ProviderContext, field: str) -> None:
    body = sign(notification(ses_event("Open", "open", {"timestamp": iso(datetime.now(UTC))})))
    tampered = dict(body)
    if field == "Timestamp":
        tampered[field] = iso(datetime.now(UTC) - timedelta(seconds=5))
    else:
        tampered[field] = str(tampered[field]) + "x"
    with pytest.raises(WebhookRejected):
        await SesProvider.verify_webhook(request(tampered), ctx)


async def test_signature_by_another_key_is_rejected(ctx: ProviderContext) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(WebhookRejected, match="does not match"):
        await SesProvider.verify_webhook(request(sign(notification("x"), key=other)), ctx)


async def test_unsigned_and_unknown_versions_are_rejected(ctx: ProviderContext) -> None:
    body = sign(notification("x"))
    for broken in (
        {k: v for k, v in body.items() if k != "Signature"},
        {k: v for k, v in body.items() if k != "SignatureVersion"},
        {**body, "SignatureVersion": "3"},
        {**body, "Signature": "not base64!!"},
    ):
        with pytest.raises(WebhookRejected):
            await SesProvider.verify_webhook(request(broken), ctx)


async def test_stale_messages_are_rejected_but_sns_retries_within_an_hour_pass(
    ctx: ProviderContext,
) -> None:
    # Tolerance is 300 s, but SNS redelivers with the original Timestamp: up to 3600 s passes.
    await SesProvider.verify_webhook(
        request(sign(notification("x", age=timedelta(minutes=30)))), ctx
    )
    with pytest.raises(WebhookRejected, match="Timestamp"):
        await SesProvider.verify_webhook(
            request(sign(notification("x", age=timedelta(hours=2)))), ctx
        )
    with pytest.raises(WebhookRejected, match="Timestamp"):
        await SesProvider.verify_webhook(
            request(sign(notification("x", age=-timedelta(hours=2)))), ctx
        )


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/SimpleNotificationService-1.pem",
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-1.pem",
        "https://xsns.us-east-1.amazonaws.com/cert.pem",
    ],
)
async def test_foreign_cert_urls_are_rejected_without_fetching(
    counting_ctx: tuple[ProviderContext, list[str]], url: str
) -> None:
    ctx, started = counting_ctx
    body = sign(notification("x", SigningCertURL=url))
    with pytest.raises(WebhookRejected, match="SigningCertURL"):
        await SesProvider.verify_webhook(request(body), ctx)
    assert started == []


async def test_china_region_cert_host_is_accepted() -> None:
    assert aws.is_sns_url("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem")


class PinnedResolver(AbstractResolver):
    """Resolves every host to 127.0.0.1:<port>, so the real https URL reaches a local server."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(
        self, host: str, port: int = 0, family: int = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=self.port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


async def test_certificate_is_fetched_over_https_once_and_cached(
    tmp_path: Path, make_settings: Callable[..., Any]
) -> None:
    host = "sns.eu-west-1.amazonaws.com"
    url = f"https://{host}/SimpleNotificationService-fetched.pem"
    tls_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tls_cert = make_cert(tls_key, host)
    (tmp_path / "tls.pem").write_bytes(tls_cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(
        tls_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(tmp_path / "tls.pem", tmp_path / "tls.key")
    client_tls = ssl.create_default_context(cafile=str(tmp_path / "tls.pem"))

    hits: list[str] = []

    async def serve_pem(req: web.Request) -> web.Response:
        hits.append(req.path)
        return web.Response(body=CERT.public_bytes(serialization.Encoding.PEM))

    app = web.Application()
    app.router.add_get("/SimpleNotificationService-fetched.pem", serve_pem)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_tls).start()
    try:
        connector = aiohttp.TCPConnector(resolver=PinnedResolver(port), ssl=client_tls)
        async with aiohttp.ClientSession(connector=connector) as session:
            ctx = ProviderContext(http=session, settings=make_settings())
            for _ in range(2):
                body = sign(notification("x", SigningCertURL=url), "2")
                await SesProvider.verify_webhook(request(body), ctx)
    finally:
        await runner.cleanup()
    assert hits == ["/SimpleNotificationService-fetched.pem"]  # fetched once, then cached
    assert aws.SIGNING_CERTS[url] == CERT


# --------------------------------------------------------------------------- confirmations


def confirmation(kind: str = "SubscriptionConfirmation", **extra: Any) -> dict[str, Any]:
    return {
        "Type": kind,
        "MessageId": str(uuid4()),
        "Token": "2336412f37fb687f5d51e6e2425c464de12884dc",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
        "SubscribeURL": (
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
            f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425c464de12884dc"
        ),
        "Timestamp": iso(datetime.now(UTC)),
        **extra,
    }


async def test_subscription_confirmation_is_verified_and_exposes_subscribe_url(
    ctx: ProviderContext,
) -> None:
    body = sign(confirmation())
    req = request(body)
    await SesProvider.verify_webhook(req, ctx)
    assert subscription_confirm_url(req) == body["SubscribeURL"]
    assert SesProvider.parse_webhook(req) == []
    # The Token and SubscribeURL are signed: changing either breaks the signature.
    with pytest.raises(WebhookRejected):
        await SesProvider.verify_webhook(request({**body, "Token": "forged"}), ctx)


async def test_unsubscribe_confirmation_verifies_and_yields_nothing(ctx: ProviderContext) -> None:
    req = request(sign(confirmation("UnsubscribeConfirmation")))
    await SesProvider.verify_webhook(req, ctx)
    assert subscription_confirm_url(req) is None
    assert SesProvider.parse_webhook(req) == []


def test_subscribe_url_must_be_an_sns_url() -> None:
    forged = confirmation(SubscribeURL="https://evil.example/?Action=ConfirmSubscription")
    with pytest.raises(WebhookInvalid):
        subscription_confirm_url(request(forged))


def test_notification_has_no_subscribe_url() -> None:
    assert subscription_confirm_url(request(notification("x"))) is None


# --------------------------------------------------------------------------- parsing

NOW = "2026-03-01T10:00:05.123Z"


@pytest.mark.parametrize(
    ("event", "expected", "reason"),
    [
        (
            ses_event(
                "Delivery",
                "delivery",
                {
                    "timestamp": NOW,
                    "processingTimeMillis": 546,
                    "recipients": ["grace@example.net"],
                    "smtpResponse": "250 ok: Message 64111812 accepted",
                    "reportingMTA": "a8-70.smtp-out.amazonses.com",
                },
            ),
            EventType.DELIVERED,
            "250 ok: Message 64111812 accepted",
        ),
        (
            ses_event(
                "Bounce",
                "bounce",
                {
                    "bounceType": "Permanent",
                    "bounceSubType": "General",
                    "timestamp": NOW,
                    "feedbackId": "0100015f",
                    "reportingMTA": "dsn; e.example",
                    "bouncedRecipients": [
                        {
                            "emailAddress": "grace@example.net",
                            "action": "failed",
                            "status": "5.1.1",
                            "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                        }
                    ],
                },
            ),
            EventType.BOUNCE,
            "Permanent/General: smtp; 550 5.1.1 user unknown",
        ),
        (
            ses_event(
                "Complaint",
                "complaint",
                {
                    "complainedRecipients": [{"emailAddress": "grace@example.net"}],
                    "timestamp": NOW,
                    "feedbackId": "0100015f",
                    "complaintFeedbackType": "abuse",
                },
            ),
            EventType.COMPLAINT,
            "abuse",
        ),
        (
            ses_event(
                "Open",
                "open",
                {"ipAddress": "192.0.2.1", "timestamp": NOW, "userAgent": "Mozilla/5.0"},
            ),
            EventType.OPEN,
            None,
        ),
        (
            ses_event(
                "Click",
                "click",
                {
                    "ipAddress": "192.0.2.1",
                    "timestamp": NOW,
                    "userAgent": "Mozilla/5.0",
                    "link": "https://example.com/offer",
                    "linkTags": {"campaign": ["spring"]},
                },
            ),
            EventType.CLICK,
            "https://example.com/offer",
        ),
        (ses_event("Reject", "reject", {"reason": "Bad content"}), EventType.FAILED, "Bad content"),
        (
            ses_event(
                "Rendering Failure",
                "failure",
                {
                    "errorMessage": "Attribute 'color' is not present in the rendering data.",
                    "templateName": "MyTemplate",
                },
            ),
            EventType.FAILED,
            "Attribute 'color' is not present in the rendering data.",
        ),
        (
            ses_event(
                "Bounce",
                "bounce",
                {
                    "bounceType": "Permanent",
                    "bounceSubType": "Suppressed",
                    "timestamp": NOW,
                    "bouncedRecipients": [{"emailAddress": "grace@example.net"}],
                },
                style="notificationType",
            ),
            EventType.BOUNCE,
            "Permanent/Suppressed",
        ),
    ],
    ids=[
        "delivery",
        "bounce",
        "complaint",
        "open",
        "click",
        "reject",
        "rendering",
        "notification-style",
    ],
)
def test_ses_events_are_normalised(
    event: dict[str, Any], expected: EventType, reason: str | None
) -> None:
    body = notification(event)
    [parsed] = SesProvider.parse_webhook(request(body))
    assert parsed.provider == "ses"
    assert parsed.type is expected
    assert parsed.event_id == body["MessageId"]  # the SNS message id
    assert parsed.message_id == SES_MESSAGE_ID  # what SendEmail returned
    assert str(parsed.notification_id) == "7d3c2b1a-0000-4000-8000-000000000001"
    assert parsed.recipient == "grace@example.net"
    assert parsed.reason == reason
    assert parsed.occurred_at.tzinfo is not None
    if expected is not EventType.FAILED:  # events with their own timestamp use it
        assert parsed.occurred_at == datetime(2026, 3, 1, 10, 0, 5, 123000, tzinfo=UTC)
    assert parsed.payload == event


@pytest.mark.parametrize(
    "event",
    [
        ses_event(
            "Bounce",
            "bounce",
            {"bounceType": "Transient", "bounceSubType": "MailboxFull", "timestamp": NOW},
        ),
        ses_event(
            "Bounce",
            "bounce",
            {"bounceType": "Undetermined", "bounceSubType": "Undetermined", "timestamp": NOW},
        ),
        ses_event("Send", "send", {}),
        ses_event("DeliveryDelay", "deliveryDelay", {"delayType": "MailboxFull", "timestamp": NOW}),
        {
            "notificationType": "AmazonSnsSubscriptionSucceeded",
            "message": "You have successfully subscribed",
        },
    ],
    ids=[
        "transient-bounce",
        "undetermined-bounce",
        "send",
        "delivery-delay",
        "subscription-succeeded",
    ],
)
def test_events_outside_the_set_are_dropped(event: dict[str, Any]) -> None:
    assert SesProvider.parse_webhook(request(notification(event))) == []


def test_ses_setup_test_message_in_plain_text_is_ignored() -> None:
    body = notification("Successfully validated SNS topic for Amazon SES event publishing.")
    assert SesProvider.parse_webhook(request(body)) == []


def test_malformed_bodies_are_invalid() -> None:
    with pytest.raises(WebhookInvalid):
        SesProvider.parse_webhook(request(b"not json"))
    with pytest.raises(WebhookInvalid):
        SesProvider.parse_webhook(request({"no": "type"}))
    no_mail_id = ses_event("Delivery", "delivery", {"timestamp": NOW})
    del no_mail_id["mail"]["messageId"]
    with pytest.raises(WebhookInvalid):
        SesProvider.parse_webhook(request(notification(no_mail_id)))


async def test_non_sns_body_is_rejected_by_verify(ctx: ProviderContext) -> None:
    with pytest.raises((WebhookRejected, WebhookInvalid)):
        await SesProvider.verify_webhook(request({"eventType": "Bounce"}), ctx)
    with pytest.raises(WebhookRejected):
        await SesProvider.verify_webhook(request({"Type": "Bogus"}), ctx)
