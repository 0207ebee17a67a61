"""Shared AWS plumbing for the SES and SNS providers.

Three things live here because both providers need them:

* boto3 clients, one per distinct config (region, endpoint, credentials,
  timeout), built once and reused: building a client reads large JSON models
  and costs tens of milliseconds, and boto3 clients are thread-safe;
* `aws_call`, which runs a blocking boto3 call in a worker thread (never on the
  event loop) and turns botocore failures into the provider error classes;
* the SNS HTTP(S) message signature verifier (SES events reach us through SNS),
  following AWS's "Verifying the signatures of Amazon SNS messages".

Credentials come from the provider config (`access_key_id`, `secret_access_key`,
optional `session_token`); without them boto3's default chain is used (env vars,
shared config, instance/container role). The endpoint is `config.endpoint_url`
or `settings.aws_endpoint_url` (moto in tests), the region `config.region` or
`settings.aws_region`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from app.providers.base import (
    PermanentProviderError,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    TransientProviderError,
    WebhookRejected,
    parse_retry_after,
)

if TYPE_CHECKING:
    from app.settings import Settings

# --------------------------------------------------------------------------- clients


@dataclass(frozen=True)
class AwsConfig:
    """Everything that makes two boto3 clients different (and so the cache key)."""

    region: str
    endpoint_url: str | None
    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None
    timeout: float


def aws_config(config: Mapping[str, Any], settings: Settings) -> AwsConfig:
    """Provider config first, then settings; credentials only as a complete pair."""
    key_id = config.get("access_key_id") or None
    secret = config.get("secret_access_key") or None
    if bool(key_id) != bool(secret):
        raise ProviderAuthError("access_key_id and secret_access_key must be given together")
    return AwsConfig(
        region=str(config.get("region") or settings.aws_region),
        endpoint_url=config.get("endpoint_url") or settings.aws_endpoint_url,
        access_key_id=key_id,
        secret_access_key=secret,
        session_token=config.get("session_token") or None,
        timeout=float(settings.provider_timeout),
    )


_CLIENTS: dict[tuple[str, AwsConfig], Any] = {}
_CLIENTS_LOCK = threading.Lock()
_SESSION: boto3.session.Session | None = None


def _session() -> boto3.session.Session:
    """One boto3 session (its loader caches the service models); used under the lock."""
    global _SESSION
    if _SESSION is None:
        _SESSION = boto3.session.Session()
    return _SESSION


def client_for(service: str, cfg: AwsConfig) -> Any:
    """The cached boto3 client for (service, config); blocking, call it off the loop.

    Explicit credentials go to the client; without them the session's default
    chain (env, shared config, instance/container role) applies.

    Retries are off (total_max_attempts=1): the delivery worker owns retries,
    backoff and failover, and botocore's own retries would multiply the timeout.
    """
    key = (service, cfg)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _session().client(
                service,
                region_name=cfg.region,
                endpoint_url=cfg.endpoint_url,
                aws_access_key_id=cfg.access_key_id,
                aws_secret_access_key=cfg.secret_access_key,
                aws_session_token=cfg.session_token,
                config=Config(
                    connect_timeout=cfg.timeout,
                    read_timeout=cfg.timeout,
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    user_agent_extra="hasura-notifications",
                ),
            )
            _CLIENTS[key] = client
        return client


# --------------------------------------------------------------------------- errors

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "Throttled",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "LimitExceededException",  # SES v2: sending quota exceeded
        "SlowDown",
        "KMSThrottling",
    }
)
AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidSecurity",
        "OptInRequired",
        "KMSAccessDenied",
        "KMSDisabled",
        "KMSNotFound",
        "KMSOptInRequired",
    }
)
SERVER_CODES = frozenset(
    {"InternalError", "InternalFailure", "InternalErrorException", "ServiceUnavailable"}
)

# Decides the error class for codes a provider knows better than the defaults;
# returns None to fall back to the generic classification.
Classifier = Callable[[str, str, int | None], ProviderError | None]


def classify_client_error(
    exc: ClientError, provider: str, classify: Classifier | None = None
) -> ProviderError:
    """An AWS error answer as the provider error class the worker understands."""
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    code = str(error.get("Code") or "")
    message = str(error.get("Message") or code or "AWS error")
    status = meta.get("HTTPStatusCode")
    reason = f"{code}: {message}" if code and code != message else message
    if classify is not None:
        specific = classify(code, message, status)
        if specific is not None:
            specific.provider = specific.provider or provider
            specific.status = specific.status or status
            specific.code = specific.code or code
            return specific
    kw: dict[str, Any] = {"provider": provider, "status": status, "code": code}
    if code in THROTTLING_CODES or status == 429:
        headers = meta.get("HTTPHeaders") or {}
        retry_after = parse_retry_after(headers.get("retry-after"))
        return ProviderRateLimited(reason, retry_after=retry_after, **kw)
    if code in AUTH_CODES or status in (401, 403):
        return ProviderAuthError(reason, **kw)
    if code in SERVER_CODES or (status or 0) >= 500:
        return TransientProviderError(reason, **kw)
    return PermanentProviderError(reason, **kw)


def classify_botocore_error(exc: BotoCoreError, provider: str) -> ProviderError:
    """Failures before an answer: network and timeouts are transient, setup is auth."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return ProviderAuthError(f"AWS credentials: {exc}", provider=provider)
    if isinstance(exc, NoRegionError):
        return ProviderAuthError(f"AWS region: {exc}", provider=provider)
    if isinstance(exc, ParamValidationError):
        return PermanentProviderError(f"invalid request: {exc}", provider=provider)
    if isinstance(exc, BotoConnectionError | HTTPClientError | ConnectionClosedError):
        return TransientProviderError(f"connection error: {exc}", provider=provider)
    return TransientProviderError(f"AWS client error: {exc}", provider=provider)


async def aws_call(
    service: str,
    operation: str,
    cfg: AwsConfig,
    *,
    provider: str,
    classify: Classifier | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Run one boto3 operation (snake_case name) in a thread; errors classified."""

    def run() -> dict[str, Any]:
        result: dict[str, Any] = getattr(client_for(service, cfg), operation)(**params)
        return result

    try:
        return await asyncio.to_thread(run)
    except ClientError as exc:
        raise classify_client_error(exc, provider, classify) from exc
    except BotoCoreError as exc:
        raise classify_botocore_error(exc, provider) from exc


# --------------------------------------------------------------------------- SNS signatures

# Where SNS serves its signing certificates (and SubscribeURLs): sns.<region>.amazonaws.com
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
SNS_MAX_AGE = 3600  # SNS retries carry the original Timestamp; allow up to an hour

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
CONFIRMATION_TYPES = frozenset({"SubscriptionConfirmation", "UnsubscribeConfirmation"})
MESSAGE_TYPES = CONFIRMATION_TYPES | {"Notification"}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1": hashes.SHA1,
    "2": hashes.SHA256,
}

# Signing certificates by URL. Module level so every request shares it; tests
# pre-seed it with a test certificate for an AWS-looking URL.
SIGNING_CERTS: dict[str, x509.Certificate] = {}


def is_sns_url(url: str) -> bool:
    """True for https://sns.<region>.amazonaws.com[.cn]/... (no userinfo, no odd port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.username is None
        and port in (None, 443)
        and bool(SNS_HOST.match(parts.hostname or ""))
    )


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical string AWS signs: "Key\\nValue\\n" for each field, in order.

    Notifications use Message, MessageId, Subject (only when present), Timestamp,
    TopicArn, Type; confirmations add SubscribeURL and Token.
    """
    fields = (
        CONFIRMATION_FIELDS if message.get("Type") in CONFIRMATION_TYPES else NOTIFICATION_FIELDS
    )
    out = []
    for key in fields:
        if key == "Subject" and message.get(key) is None:
            continue
        value = message.get(key)
        if not isinstance(value, str):
            raise WebhookRejected(f"SNS message lacks the signed field {key}")
        out.append(f"{key}\n{value}\n")
    return "".join(out).encode("utf-8")


async def signing_certificate(
    url: str, http: aiohttp.ClientSession, timeout: float
) -> x509.Certificate:
    """The PEM certificate at an SNS SigningCertURL, fetched once per URL."""
    cached = SIGNING_CERTS.get(url)
    if cached is not None:
        return cached
    if not is_sns_url(url):
        raise WebhookRejected("SigningCertURL is not an https://sns.<region>.amazonaws.com URL")
    try:
        async with http.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as resp:
            if resp.status != 200:
                raise WebhookRejected(f"signing certificate fetch answered {resp.status}")
            pem = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise WebhookRejected(f"could not fetch the signing certificate: {exc}") from exc
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise WebhookRejected("signing certificate is not a PEM certificate") from exc
    SIGNING_CERTS[url] = cert
    return cert


def parse_sns_timestamp(value: Any) -> datetime:
    """SNS Timestamp (ISO 8601, e.g. 2012-05-02T00:54:06.655Z) as an aware datetime."""
    if not isinstance(value, str):
        raise WebhookRejected("SNS message has no Timestamp")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise WebhookRejected(f"bad SNS Timestamp {value!r}") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def verify_sns_message(
    message: Mapping[str, Any],
    http: aiohttp.ClientSession,
    *,
    tolerance: float,
    timeout: float,
    now: datetime | None = None,
) -> None:
    """Raise WebhookRejected unless `message` carries a valid, fresh SNS signature.

    Checks: the message type, the SignatureVersion (1: SHA1withRSA, 2:
    SHA256withRSA), the SigningCertURL host (before any fetch, so a forged URL
    never makes us call out), the certificate's validity period, and the RSA
    PKCS#1 v1.5 signature over the canonical string. The Timestamp age is checked
    before the certificate is fetched, so stale replays cost nothing.
    """
    if message.get("Type") not in MESSAGE_TYPES:
        raise WebhookRejected(f"unknown SNS message Type {message.get('Type')!r}")
    hash_factory = _HASHES.get(str(message.get("SignatureVersion")))
    if hash_factory is None:
        raise WebhookRejected(f"unsupported SignatureVersion {message.get('SignatureVersion')!r}")
    cert_url = message.get("SigningCertURL") or message.get("SigningCertUrl")
    if not isinstance(cert_url, str) or not is_sns_url(cert_url):
        raise WebhookRejected("SigningCertURL is not an https://sns.<region>.amazonaws.com URL")
    try:
        signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookRejected("Signature is not base64") from exc
    if not signature:
        raise WebhookRejected("SNS message is not signed")
    payload = sns_string_to_sign(message)
    current = now or datetime.now(UTC)
    age = (current - parse_sns_timestamp(message.get("Timestamp"))).total_seconds()
    if abs(age) > max(tolerance, SNS_MAX_AGE):
        raise WebhookRejected(f"SNS message Timestamp is {age:.0f}s away from now")

    cert = await signing_certificate(cert_url, http, timeout)
    if not cert.not_valid_before_utc <= current <= cert.not_valid_after_utc:
        raise WebhookRejected("signing certificate is outside its validity period")
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise WebhookRejected("signing certificate does not hold an RSA key")
    try:
        public_key.verify(signature, payload, padding.PKCS1v15(), hash_factory())
    except InvalidSignature as exc:
        raise WebhookRejected("SNS signature does not match") from exc
