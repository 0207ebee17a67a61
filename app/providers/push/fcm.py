"""Firebase Cloud Messaging through the HTTP v1 API.

Authentication is a Google service account. Its key signs a JWT assertion
(RS256, header `kid` = private_key_id, claims iss/scope/aud/iat/exp) that is
traded at the account's `token_uri` for an OAuth2 access token (RFC 7523
JWT-bearer grant, scope firebase.messaging). That is the exchange google-auth's
`service_account.Credentials.refresh` performs; it is done here on the shared
aiohttp session so the provider timeout, the error classification and the test
fakes apply to it as well, and nothing blocks the event loop. The token is
cached until five minutes before it expires, and one refresh is shared by all
concurrent sends (an asyncio.Lock), so a burst of sends costs one token request.

    POST {fcm_base_url}/v1/projects/{project}/messages:send
    Authorization: Bearer ACCESS_TOKEN
    {"message": {"token", "notification": {title, body}, "data", "android", "apns", "webpush"}}
    -> 200 {"name": "projects/{project}/messages/{id}"}   (the name is our provider id)

Errors are google.rpc.Status bodies whose `details` may carry an FcmError
(`type.googleapis.com/google.firebase.fcm.v1.FcmError`, `errorCode`); see
`classify_error` for how each code maps onto the provider error classes.

Configuration (a notification_providers row's config, or the environment):
    service_account  the service-account JSON: a dict, a JSON string or a file path
                     (falls back to NOTIFICATIONS_PUSH_API_KEY)
    project_id       Firebase project id (NOTIFICATIONS_PUSH_APP_ID; else the JSON's)
    default_title    title when the notification has no subject
    ttl              optional time to live in seconds (android.ttl, apns-expiration)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.models import Channel
from app.providers.base import (
    OutboundMessage,
    PermanentProviderError,
    Provider,
    ProviderAuthError,
    ProviderCheck,
    ProviderContext,
    ProviderError,
    ProviderRateLimited,
    SendResult,
    TransientProviderError,
    describe_body,
    parse_retry_after,
)

if TYPE_CHECKING:
    from app.settings import Settings

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
ASSERTION_LIFETIME = 3600  # seconds; Google's maximum
REFRESH_MARGIN = 300.0  # refresh this long before the access token expires
DEFAULT_TITLE = "Notification"

_AUTH_CODES = frozenset(
    {"SENDER_ID_MISMATCH", "THIRD_PARTY_AUTH_ERROR", "UNAUTHENTICATED", "PERMISSION_DENIED"}
)
_RATE_CODES = frozenset({"QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED"})
_TRANSIENT_CODES = frozenset({"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "ABORTED"})


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class ServiceAccount:
    """The parts of a service-account JSON the token exchange needs."""

    client_email: str
    private_key: rsa.RSAPrivateKey
    private_key_id: str | None
    token_uri: str
    project_id: str | None


def load_service_account(value: Any) -> ServiceAccount:
    """Parse a service account given as a dict, a JSON string or a path to a JSON file."""
    info = _service_account_info(value)
    missing = [key for key in ("client_email", "private_key") if not info.get(key)]
    if missing:
        raise ValueError(f"service-account JSON lacks {', '.join(missing)}")
    try:
        key = serialization.load_pem_private_key(str(info["private_key"]).encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"service-account private_key is not a PEM key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("service-account private_key must be an RSA key")
    return ServiceAccount(
        client_email=str(info["client_email"]),
        private_key=key,
        private_key_id=info.get("private_key_id") or None,
        token_uri=str(info.get("token_uri") or DEFAULT_TOKEN_URI),
        project_id=info.get("project_id") or None,
    )


def _service_account_info(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("no service account configured (NOTIFICATIONS_PUSH_API_KEY)")
    text = value.strip()
    if not text.startswith("{"):
        path = Path(text).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read service-account file {path}: {exc.strerror}") from None
    try:
        info = json.loads(text)
    except ValueError:
        raise ValueError("service account is not valid JSON") from None
    if not isinstance(info, dict):
        raise ValueError("service account JSON must be an object")
    return info


def make_assertion(account: ServiceAccount, now: int | None = None) -> str:
    """The signed JWT that the token endpoint trades for an access token."""
    issued = int(time.time()) if now is None else now
    claims = {
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": account.token_uri,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME,
    }
    headers = {"kid": account.private_key_id} if account.private_key_id else None
    return jwt.encode(claims, account.private_key, algorithm="RS256", headers=headers)


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class RpcError:
    """A google.rpc.Status error body, reduced to what classification needs."""

    status: str | None
    fcm_code: str | None
    message: str
    token_violation: bool

    @property
    def code(self) -> str | None:
        return self.fcm_code or self.status


def parse_rpc_error(body: bytes) -> RpcError:
    try:
        error = json.loads(body).get("error")
    except (ValueError, UnicodeDecodeError, AttributeError):
        error = None
    if not isinstance(error, dict):
        return RpcError(None, None, describe_body(body), False)
    fcm_code = None
    token_violation = False
    for detail in error.get("details") or ():
        if not isinstance(detail, dict):
            continue
        if detail.get("@type") == FCM_ERROR_TYPE:
            fcm_code = detail.get("errorCode") or fcm_code
        if detail.get("@type") == BAD_REQUEST_TYPE:
            violations = detail.get("fieldViolations") or ()
            fields = {v.get("field") for v in violations if isinstance(v, dict)}
            token_violation = token_violation or "message.token" in fields
    message = str(error.get("message") or "")
    token_violation = token_violation or "registration token" in message.lower()
    return RpcError(error.get("status"), fcm_code, message, token_violation)


def classify_error(
    provider: str, status: int, headers: Mapping[str, str], body: bytes
) -> ProviderError:
    """Map an FCM error answer onto the provider error classes (see app.providers.base)."""
    err = parse_rpc_error(body)
    code = err.code
    reason = f"{code}: {err.message}" if code and err.message else (code or err.message)
    reason = reason or f"HTTP {status}"
    kw: dict[str, Any] = {"provider": provider, "status": status, "code": code}
    if code == "UNREGISTERED":
        return PermanentProviderError(
            f"registration token is no longer valid ({reason})", invalid_recipient=True, **kw
        )
    if code == "INVALID_ARGUMENT":
        return PermanentProviderError(reason, invalid_recipient=err.token_violation, **kw)
    if code in _AUTH_CODES or status in (401, 403):
        return ProviderAuthError(reason, **kw)
    if code in _RATE_CODES or status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return ProviderRateLimited(reason, retry_after=retry_after, **kw)
    if code in _TRANSIENT_CODES or status >= 500 or status in (408, 409):
        return TransientProviderError(reason, **kw)
    return PermanentProviderError(reason, **kw)


# --------------------------------------------------------------------------- message


def push_data(message: OutboundMessage) -> dict[str, str]:
    """FCM data values must be strings; notification_id lets the app report back."""
    data = {str(key): str(value) for key, value in message.data.items()}
    data["notification_id"] = str(message.notification_id)
    return data


def build_message(
    message: OutboundMessage, token: str, config: Mapping[str, Any]
) -> dict[str, Any]:
    """The v1 `Message` resource for one registration token."""
    urgent = message.is_urgent
    notification = {"title": message.subject or config.get("default_title") or DEFAULT_TITLE}
    if message.text:
        notification["body"] = message.text
    android: dict[str, Any] = {"priority": "HIGH" if urgent else "NORMAL"}
    apns_headers = {"apns-priority": "10" if urgent else "5"}
    ttl = config.get("ttl")
    if ttl is not None:
        android["ttl"] = f"{int(ttl)}s"
        apns_headers["apns-expiration"] = str(int(time.time()) + int(ttl))
    return {
        "token": token,
        "notification": notification,
        "data": push_data(message),
        "android": android,
        "apns": {"headers": apns_headers},
        "webpush": {"headers": {"Urgency": "high" if urgent else "normal"}},
    }


# --------------------------------------------------------------------------- provider


class FcmProvider(Provider):
    """FCM HTTP v1 with a cached, shared OAuth2 access token."""

    name: ClassVar[str] = "fcm"
    channel: ClassVar[Channel] = Channel.PUSH

    def __init__(self, config: Mapping[str, Any], ctx: ProviderContext) -> None:
        super().__init__(config, ctx)
        self._account: ServiceAccount | None = None
        self._token: str | None = None
        self._token_expires = 0.0  # time.monotonic()
        self._token_lock = asyncio.Lock()
        self.token_requests = 0  # observability and tests

    @classmethod
    def config_from_settings(cls, settings: Settings) -> dict[str, Any] | None:
        if settings.push_provider != cls.name:
            return None
        return {"service_account": settings.push_api_key, "project_id": settings.push_app_id}

    # ---- credentials ----------------------------------------------------------

    def service_account(self) -> ServiceAccount:
        """Parsed once; a broken account makes the provider unusable, not the message."""
        if self._account is None:
            source = self.config.get("service_account") or self.ctx.settings.push_api_key
            try:
                self._account = load_service_account(source)
            except ValueError as exc:
                raise self.error(ProviderAuthError, str(exc)) from None
        return self._account

    def project_id(self) -> str:
        project = self.config.get("project_id") or self.service_account().project_id
        if not project:
            raise self.error(ProviderAuthError, "no FCM project id (NOTIFICATIONS_PUSH_APP_ID)")
        return str(project)

    async def access_token(self) -> str:
        """A valid access token; concurrent callers wait for one shared refresh."""
        async with self._token_lock:
            if self._token and time.monotonic() < self._token_expires - REFRESH_MARGIN:
                return self._token
            token, lifetime = await self._fetch_token()
            self._token, self._token_expires = token, time.monotonic() + lifetime
            return token

    def _forget_token(self, token: str) -> None:
        """Drop a token FCM refused, unless a concurrent send already replaced it."""
        if self._token == token:
            self._token, self._token_expires = None, 0.0

    async def _fetch_token(self) -> tuple[str, float]:
        account = self.service_account()
        url = self.ctx.settings.fcm_token_url or account.token_uri
        form = {"grant_type": JWT_BEARER_GRANT, "assertion": make_assertion(account)}
        self.token_requests += 1
        status, headers, body = await self.request("POST", url, data=form)
        if status in (400, 401, 403):
            raise self.error(
                ProviderAuthError, f"token request refused: {_oauth_error(body)}", status=status
            )
        self.raise_for_status(status, headers, body)
        try:
            parsed = json.loads(body)
            return str(parsed["access_token"]), float(parsed.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise self.error(
                TransientProviderError, "token endpoint answered without an access_token"
            ) from None

    # ---- sending --------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        token = message.to.device_token
        if not token:
            raise self.error(
                PermanentProviderError, "FCM needs to.device_token", invalid_recipient=True
            )
        base = self.ctx.settings.fcm_base_url.rstrip("/")
        url = f"{base}/v1/projects/{quote(self.project_id(), safe='')}/messages:send"
        payload = {"message": build_message(message, token, self.config)}
        status, headers, body = await self._post(url, payload)
        if not 200 <= status < 300:
            raise classify_error(self.name, status, headers, body)
        try:
            name = json.loads(body)["name"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise self.error(
                TransientProviderError, "FCM answered without a message name"
            ) from None
        return SendResult(provider_message_id=str(name), raw={"name": name})

    async def _post(
        self, url: str, payload: dict[str, Any]
    ) -> tuple[int, Mapping[str, str], bytes]:
        """POST with the cached token; one retry with a fresh token if FCM refused it."""
        for attempt in (1, 2):
            access = await self.access_token()
            auth = {"Authorization": f"Bearer {access}"}
            status, headers, body = await self.request("POST", url, json=payload, headers=auth)
            if status == 401 and attempt == 1 and parse_rpc_error(body).fcm_code is None:
                self._forget_token(access)  # expired or revoked OAuth token
                continue
            break
        return status, headers, body

    async def check(self) -> ProviderCheck:
        """Obtaining an access token proves the service account; nothing is sent."""
        try:
            project = self.project_id()
            await self.access_token()
        except ProviderAuthError as exc:
            reached = exc.status is not None
            return ProviderCheck(reachable=reached, authenticated=False, detail=str(exc))
        except TransientProviderError as exc:
            return ProviderCheck(reachable=False, authenticated=None, detail=str(exc))
        return ProviderCheck(
            reachable=True, authenticated=True, detail=f"access token obtained for {project}"
        )


def _oauth_error(body: bytes) -> str:
    """RFC 6749 error bodies: {"error": "invalid_grant", "error_description": "..."}."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return describe_body(body) or "no detail"
    if not isinstance(parsed, dict):
        return describe_body(body) or "no detail"
    parts = [str(parsed.get(k)) for k in ("error", "error_description") if parsed.get(k)]
    return ": ".join(parts) or describe_body(body) or "no detail"
