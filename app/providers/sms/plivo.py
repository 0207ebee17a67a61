"""Plivo Messaging: send SMS, read message status callbacks.

Wire format (https://www.plivo.com/docs/messaging/api/message/send-a-message):

    POST {base}/v1/Account/{auth_id}/Message/
    Authorization: Basic base64(auth_id:auth_token)
    Content-Type: application/json
    {"src": "+1555...", "dst": "+1555...", "text": "...", "url": "...", "method": "POST"}

    202 {"api_id": "...", "message": "message(s) queued", "message_uuid": ["..."]}
    4xx/5xx {"api_id": "...", "error": "..."}

Status callbacks are signed with `X-Plivo-Signature-V3` (+ `-Nonce`); the check
below re-states plivo-python's `validate_v3_signature`
(plivo/utils/signature_v3.py) so exactly what the SDK accepts is accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, parse_qsl, quote, urlparse, urlunparse

from app.models import Channel
from app.providers import wire
from app.providers.base import (
    EventType,
    OutboundMessage,
    PermanentProviderError,
    Provider,
    ProviderAuthError,
    ProviderCheck,
    ProviderContext,
    ProviderError,
    ProviderEvent,
    ProviderRateLimited,
    SendResult,
    TransientProviderError,
    WebhookInvalid,
    WebhookRejected,
    WebhookRequest,
    describe_body,
    parse_retry_after,
)

if TYPE_CHECKING:
    from app.settings import Settings

SIGNATURE_HEADERS = ("X-Plivo-Signature-V3", "X-Plivo-Signature-Ma-V3")
NONCE_HEADER = "X-Plivo-Signature-V3-Nonce"

# Callback Status -> our event type; queued and sent are progress noise.
STATUS_EVENTS: dict[str, EventType] = {
    "delivered": EventType.DELIVERED,
    "failed": EventType.FAILED,
    "undelivered": EventType.FAILED,
    "rejected": EventType.FAILED,
    "read": EventType.OPEN,  # WhatsApp only
}

# https://www.plivo.com/docs/messaging/troubleshooting/error-codes
DELIVERY_ERRORS: dict[str, str] = {
    "10": "invalid message",
    "20": "network error",
    "30": "spam detected",
    "40": "invalid source number",
    "50": "invalid destination number",
    "60": "loop detected",
    "70": "destination permanently unavailable",
    "80": "destination temporarily unavailable",
    "90": "no route available",
    "100": "prohibited by carrier",
    "110": "message too long",
    "200": "source number blocked by STOP from destination",
    "420": "message expired",
    "450": "destination country barred",
    "900": "insufficient credit",
    "1000": "unknown error",
}

# Timestamp format of MessageTime / DeliveryReportTime in callbacks.
CALLBACK_TIME_FIELDS = ("DeliveryReportTime", "SentTime", "QueuedTime", "MessageTime")


class PlivoProvider(Provider):
    """SMS through Plivo's Message API, one client per configured account."""

    name: ClassVar[str] = "plivo"
    channel: ClassVar[Channel] = Channel.SMS

    # ---- configuration ---------------------------------------------------------

    @classmethod
    def config_from_settings(cls, settings: Settings) -> dict[str, Any] | None:
        """Env config when NOTIFICATIONS_SMS_PROVIDER=plivo (the SID setting holds the Auth ID)."""
        if settings.sms_provider != cls.name:
            return None
        return {
            "auth_id": settings.sms_account_sid,
            "auth_token": settings.plivo_auth_token or settings.sms_auth_token,
            "from": settings.sms_from,
        }

    def _credentials(self) -> tuple[str, str]:
        auth_id = self.config.get("auth_id")
        token = self.config.get("auth_token")
        if not auth_id or not token:
            raise self.error(ProviderAuthError, "auth_id and auth_token are required")
        return str(auth_id), str(token)

    def _url(self, auth_id: str, suffix: str = "") -> str:
        base = self.ctx.settings.plivo_base_url.rstrip("/")
        return f"{base}/v1/Account/{quote(auth_id, safe='')}/{suffix}"

    def _status_callback(self) -> str | None:
        public = self.ctx.settings.public_url
        return f"{public.rstrip('/')}/webhooks/plivo" if public else None

    # ---- sending -----------------------------------------------------------------

    def build_payload(self, message: OutboundMessage) -> dict[str, str]:
        """The JSON body of one Send Message request."""
        to = message.to.phone
        if not to:
            raise self.error(PermanentProviderError, "no phone number", invalid_recipient=True)
        text = message.text or message.subject
        if not text:
            raise self.error(PermanentProviderError, "empty SMS body")
        payload = {"dst": to, "text": text}
        powerpack = self.config.get("powerpack_uuid")
        sender = wire.sms_sender(message.from_address) or self.config.get("from")
        if powerpack:
            payload["powerpack_uuid"] = str(powerpack)
        elif sender:
            payload["src"] = str(sender)
        else:
            raise self.error(ProviderAuthError, "no sender: set from or powerpack_uuid")
        callback = self._status_callback()
        if callback:
            payload["url"] = callback
            payload["method"] = "POST"
        return payload

    async def send(self, message: OutboundMessage) -> SendResult:
        auth_id, token = self._credentials()
        status, headers, body = await self.request(
            "POST",
            self._url(auth_id, "Message/"),
            json=self.build_payload(message),
            headers=wire.basic_auth_headers(auth_id, token),
        )
        self.raise_for_status(status, headers, body)
        parsed = wire.json_object(body)
        uuids = parsed.get("message_uuid")
        if not isinstance(uuids, list) or not uuids or not isinstance(uuids[0], str):
            raise self.error(TransientProviderError, "no message_uuid in response", status=status)
        return SendResult(provider_message_id=uuids[0], raw=parsed)

    def raise_for_status(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        if 200 <= status < 300:
            return
        raise self.classify_error(status, headers, body)

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """Plivo has no error codes on the API, only a status and an `error` text."""
        reason = describe_body(body) or f"HTTP {status}"
        kw: dict[str, Any] = {"provider": self.name, "status": status}
        lowered = reason.lower()
        if status == 429:
            retry_after = parse_retry_after(headers.get("Retry-After"))
            return ProviderRateLimited(reason, retry_after=retry_after, **kw)
        if status >= 500 or status in (408, 409, 425):
            return TransientProviderError(reason, **kw)
        if status == 401 or status == 404:
            # 404 on /Account/{auth_id}/Message/ means the Auth ID does not exist.
            return ProviderAuthError(reason, **kw)
        if status == 403:
            # Geo permissions: the destination country is not enabled on this account.
            return PermanentProviderError(reason, **kw)
        if "src" in lowered or "powerpack" in lowered or "source" in lowered:
            return ProviderAuthError(reason, **kw)  # our sender is misconfigured
        invalid_recipient = ("dst" in lowered or "destination" in lowered) and (
            "country" not in lowered
        )
        return PermanentProviderError(reason, invalid_recipient=invalid_recipient, **kw)

    async def check(self) -> ProviderCheck:
        """GET the Account resource: read-only, proves the Auth ID and token."""
        try:
            auth_id, token = self._credentials()
        except ProviderError as exc:
            return ProviderCheck(reachable=False, authenticated=False, detail=exc.reason)
        try:
            status, headers, body = await self.request(
                "GET", self._url(auth_id), headers=wire.basic_auth_headers(auth_id, token)
            )
        except TransientProviderError as exc:
            return ProviderCheck(reachable=False, authenticated=None, detail=exc.reason)
        if 200 <= status < 300:
            account = wire.json_object(body)
            detail = f"account {account.get('name') or auth_id} ({account.get('account_type')})"
            return ProviderCheck(reachable=True, authenticated=True, detail=detail)
        error = self.classify_error(status, headers, body)
        authenticated = False if isinstance(error, ProviderAuthError) else None
        return ProviderCheck(reachable=True, authenticated=authenticated, detail=str(error))

    # ---- webhooks ----------------------------------------------------------------

    @classmethod
    async def verify_webhook(cls, request: WebhookRequest, ctx: ProviderContext) -> None:
        """Check the V3 signature (account or main-account header) with our auth token."""
        nonce = wire.header(request.headers, NONCE_HEADER)
        signatures = [
            part.strip()
            for name in SIGNATURE_HEADERS
            for part in (wire.header(request.headers, name) or "").split(",")
            if part.strip()
        ]
        if not nonce or not signatures:
            raise WebhookRejected(f"missing {SIGNATURE_HEADERS[0]} or {NONCE_HEADER} header")
        tokens = _candidate_tokens(ctx.settings)
        if not tokens:
            raise WebhookRejected("no Plivo auth token configured to verify the signature")
        params = _signed_params(request)
        for token in tokens:
            expected = compute_v3_signature(token, request.method, request.url, nonce, params)
            if expected is not None and _any_equal(expected, signatures):
                return
        raise WebhookRejected("X-Plivo-Signature-V3 does not match")

    @classmethod
    def parse_webhook(cls, request: WebhookRequest) -> list[ProviderEvent]:
        """One status callback -> at most one event (queued/sent are dropped)."""
        params = _single_params(request)
        message_uuid = params.get("MessageUUID")
        status = str(params.get("Status") or "").lower()
        if not message_uuid or not status:
            raise WebhookInvalid("status callback needs MessageUUID and Status")
        event_type = STATUS_EVENTS.get(status)
        if event_type is None:
            return []
        reason = None
        if event_type is EventType.FAILED:
            reason = _delivery_reason(status, params.get("ErrorCode"))
        return [
            ProviderEvent(
                provider=cls.name,
                # Plivo callbacks carry no event id; one (message, status) pair is
                # one event, so retried callbacks collapse onto the same id.
                event_id=hashlib.sha256(f"{message_uuid}{status}".encode()).hexdigest(),
                type=event_type,
                occurred_at=_occurred_at(params),
                message_id=str(message_uuid),
                recipient=wire.str_or_none(params.get("To")),
                reason=reason,
                payload=params,
            )
        ]


# --------------------------------------------------------------------------- signature
# A faithful port of plivo-python's signature_v3: the same string is built, byte for
# byte, including its quirks (URL query values are read as Latin-1, lists sorted,
# nested dicts flattened as key + sorted(key+value...)).


def compute_v3_signature(
    token: str, method: str, url: str, nonce: str, params: Mapping[str, Any]
) -> str | None:
    """base64(HMAC-SHA256(token, base_url + "." + nonce)), or None if unsignable."""
    try:
        if method.upper() == "GET":
            base = _construct_get_url(url, {}).decode("utf-8")
        else:
            base = _construct_post_url(url, dict(params)).decode("utf-8")
    except (TypeError, ValueError, UnicodeDecodeError):
        return None  # e.g. unsortable mixed-type JSON lists: the SDK would raise too
    nonce_text = nonce.encode("utf-8").decode("latin-1")
    message = f"{base}.{nonce_text}".encode()
    digest = hmac.new(token.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _fmt(value: Any) -> Any:
    """The SDK's string_format: bytes as Latin-1 text, numbers and bools via str()."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, int | float | bool):
        return str(value)
    if isinstance(value, list):
        return [_fmt(item) for item in value]
    return value


def _query_map(query: bytes) -> dict[str, Any]:
    return {
        _fmt(key): _fmt(values) for key, values in parse_qs(query, keep_blank_values=True).items()
    }


def _sorted_query_string(params: Mapping[str, Any]) -> str:
    parts = []
    for key in sorted(params):
        value = params[key]
        if isinstance(value, list):
            parts.append("&".join(f"{_fmt(key)}={item}" for item in sorted(_fmt(value))))
        else:
            parts.append(f"{_fmt(key)}={_fmt(value)}")
    return "&".join(parts)


def _sorted_params_string(params: Mapping[str, Any]) -> str:
    parts = []
    for key in sorted(params):
        value = params[key]
        if isinstance(value, list):
            parts.append("".join(f"{_fmt(key)}{item}" for item in sorted(_fmt(value))))
        elif isinstance(value, dict):
            parts.append(f"{_fmt(key)}{_sorted_params_string(value)}")
        else:
            parts.append(f"{_fmt(key)}{_fmt(value)}")
    return "".join(parts)


def _construct_get_url(uri: str, params: dict[str, Any], empty_post_params: bool = True) -> bytes:
    parsed = urlparse(uri.encode("utf-8"))
    base = urlunparse(
        (parsed.scheme.decode(), parsed.netloc.decode(), parsed.path.decode(), "", "", "")
    ).encode("utf-8")
    params.update(_query_map(parsed.query))
    query = _sorted_query_string(params)
    if query or not empty_post_params:
        base += ("?" + query).encode("utf-8")
    if query and not empty_post_params:
        base += b"."
    return base


def _construct_post_url(uri: str, params: dict[str, Any]) -> bytes:
    base = _construct_get_url(uri, {}, len(params) == 0)
    return base + _sorted_params_string(params).encode("utf-8")


def _any_equal(expected: str, signatures: list[str]) -> bool:
    wanted = expected.encode()
    results = [hmac.compare_digest(wanted, given.encode("utf-8")) for given in signatures]
    return any(results)


def _signed_params(request: WebhookRequest) -> dict[str, Any]:
    """POST params as the SDK is given them: form fields, or the JSON object."""
    if request.method.upper() == "GET":
        return {}
    if _is_json(request):
        parsed = request.json()
        if not isinstance(parsed, dict):
            raise WebhookRejected("JSON callback body must be an object")
        return parsed
    params: dict[str, Any] = {}
    for name, value in _form_pairs(request):
        if name in params:
            existing = params[name]
            params[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            params[name] = value
    return params


def _form_pairs(request: WebhookRequest) -> list[tuple[str, str]]:
    if request.body:
        try:
            return parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise WebhookInvalid("form body is not UTF-8") from None
    if request.form:
        return list(request.form.items())
    return []


def _single_params(request: WebhookRequest) -> dict[str, Any]:
    """Callback fields: JSON object, form body, or the query string of a GET callback."""
    if request.method.upper() == "GET":
        return dict(parse_qsl(urlparse(request.url).query, keep_blank_values=True))
    if _is_json(request):
        parsed = request.json()
        if not isinstance(parsed, dict):
            raise WebhookInvalid("JSON callback body must be an object")
        return parsed
    return dict(_form_pairs(request))


def _is_json(request: WebhookRequest) -> bool:
    content_type = (wire.header(request.headers, "Content-Type") or "").lower()
    if "json" in content_type:
        return True
    return not content_type and request.body.lstrip().startswith(b"{")


def _candidate_tokens(settings: Settings) -> list[str]:
    """Plivo signs with the (sub)account auth token; the generic secret is the fallback."""
    tokens = [settings.plivo_auth_token, settings.sms_auth_token, settings.webhook_secret]
    return list(dict.fromkeys(t for t in tokens if t))


def _occurred_at(params: Mapping[str, Any]) -> datetime:
    """The callback's own timestamp ("YYYY-mm-dd HH:MM:SS.ffffff", UTC), else now."""
    for name in CALLBACK_TIME_FIELDS:
        value = params.get(name)
        if not value:
            continue
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _delivery_reason(status: str, error_code: Any) -> str:
    code = wire.str_or_none(error_code)
    if not code or code == "000":
        return status
    description = DELIVERY_ERRORS.get(code)
    detail = f": {description}" if description else ""
    return f"{status} (Plivo error {code}{detail})"
