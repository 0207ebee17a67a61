"""Twilio Programmable Messaging: send SMS, read status callbacks.

Wire format (https://www.twilio.com/docs/messaging/api/message-resource):

    POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json
    Authorization: Basic base64(AccountSid:AuthToken)
    Content-Type: application/x-www-form-urlencoded
    To=+1555...&From=+1555...|MessagingServiceSid=MG...&Body=...&StatusCallback=...

    201 {"sid": "SM...", "status": "queued", ...}
    4xx/5xx {"code": 21211, "message": "...", "more_info": "...", "status": 400}

Status callbacks are form posts signed with `X-Twilio-Signature`; the check below
is twilio-python's `RequestValidator` (twilio/request_validator.py) re-stated, so a
callback Twilio's own SDK accepts is accepted here and nothing else is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import ParseResult, parse_qs, parse_qsl, quote, urlparse

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
    parse_retry_after,
)

if TYPE_CHECKING:
    from app.settings import Settings

API_VERSION = "2010-04-01"
SIGNATURE_HEADER = "X-Twilio-Signature"

# Error codes (https://www.twilio.com/docs/api/errors) that mean "this recipient
# cannot get this SMS": failing over to another provider would not help.
INVALID_RECIPIENT_CODES = frozenset(
    {
        21211,  # Invalid 'To' phone number
        21214,  # 'To' phone number cannot be reached
        21217,  # Phone number does not appear to be valid
        21265,  # 'To' number cannot be a short code
        21401,  # Invalid phone number
        21604,  # 'To' phone number is required
        21610,  # Attempt to send to unsubscribed recipient (replied STOP)
        21612,  # 'To' phone number is not currently reachable via SMS
        21614,  # 'To' number is not a valid mobile number
    }
)
# The message is rejected but the recipient is not at fault (geo permission,
# trial-account restrictions, body problems).
PERMANENT_CODES = frozenset(
    {
        21408,  # Permission to send an SMS has not been enabled for the region
        21602,  # Message body is required
        21608,  # Trial account: 'To' number is unverified
        21617,  # Body exceeds the 1600 character limit
        21266,  # 'To' and 'From' cannot be the same
    }
)
# Our configuration is wrong (sender or account): the provider is unusable.
CONFIG_CODES = frozenset(
    {
        20003,  # Authenticate
        20404,  # Resource not found (wrong Account SID)
        21212,  # Invalid 'From' number
        21603,  # 'From' phone number is required
        21606,  # 'From' is not a message-capable Twilio number
        21659,  # 'From' is not a Twilio phone number or sender ID
        21660,  # 'From' does not belong to the account
        21661,  # 'From' number is not SMS-capable
        21701,  # Messaging Service does not exist
        21703,  # Messaging Service has no senders
        21705,  # Invalid Messaging Service SID
    }
)
RATE_LIMIT_CODES = frozenset(
    {
        14107,  # SMS send rate limit exceeded
        20429,  # Too many requests
        21611,  # 'From' number has exceeded the maximum number of queued messages
    }
)

# Status-callback MessageStatus -> our event type; the rest (accepted, queued,
# sending, sent, scheduled, receiving, received, canceled) are progress noise.
STATUS_EVENTS: dict[str, EventType] = {
    "delivered": EventType.DELIVERED,
    "undelivered": EventType.FAILED,
    "failed": EventType.FAILED,
    "read": EventType.OPEN,  # read receipts (WhatsApp/RCS senders)
}

# Delivery error codes seen in callbacks, for a readable stored reason.
DELIVERY_ERRORS: dict[str, str] = {
    "30001": "queue overflow",
    "30002": "account suspended",
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "message filtered by carrier",
    "30008": "unknown error",
    "30034": "US A2P 10DLC: message from an unregistered number",
    "21610": "recipient unsubscribed",
}


class TwilioProvider(Provider):
    """SMS through Twilio's Messages resource, one client per configured account."""

    name: ClassVar[str] = "twilio"
    channel: ClassVar[Channel] = Channel.SMS

    # ---- configuration ---------------------------------------------------------

    @classmethod
    def config_from_settings(cls, settings: Settings) -> dict[str, Any] | None:
        """Env config when NOTIFICATIONS_SMS_PROVIDER=twilio.

        NOTIFICATIONS_SMS_FROM may be a phone number or a Messaging Service SID
        (MG...), which Twilio wants in a different field.
        """
        if settings.sms_provider != cls.name:
            return None
        config: dict[str, Any] = {
            "account_sid": settings.sms_account_sid,
            "auth_token": settings.sms_auth_token,
        }
        sender = settings.sms_from
        if sender and sender.startswith("MG") and len(sender) == 34:
            config["messaging_service_sid"] = sender
        else:
            config["from"] = sender
        return config

    def _credentials(self) -> tuple[str, str]:
        sid = self.config.get("account_sid")
        token = self.config.get("auth_token")
        if not sid or not token:
            raise self.error(ProviderAuthError, "account_sid and auth_token are required")
        return str(sid), str(token)

    def _url(self, sid: str, suffix: str) -> str:
        base = self.ctx.settings.twilio_base_url.rstrip("/")
        return f"{base}/{API_VERSION}/Accounts/{quote(sid, safe='')}{suffix}"

    def _status_callback(self) -> str | None:
        public = self.ctx.settings.public_url
        return f"{public.rstrip('/')}/webhooks/twilio" if public else None

    # ---- sending -----------------------------------------------------------------

    def build_form(self, message: OutboundMessage) -> dict[str, str]:
        """The Messages.json form fields for one message."""
        to = message.to.phone
        if not to:
            raise self.error(PermanentProviderError, "no phone number", invalid_recipient=True)
        body = message.text or message.subject
        if not body:
            raise self.error(PermanentProviderError, "empty SMS body")
        form = {"To": to, "Body": body}
        service = self.config.get("messaging_service_sid")
        sender = wire.sms_sender(message.from_address) or self.config.get("from")
        if service:
            form["MessagingServiceSid"] = str(service)
        elif sender:
            form["From"] = str(sender)
        else:
            raise self.error(ProviderAuthError, "no sender: set from or messaging_service_sid")
        callback = self._status_callback()
        if callback:
            form["StatusCallback"] = callback
        return form

    async def send(self, message: OutboundMessage) -> SendResult:
        sid, token = self._credentials()
        form = self.build_form(message)
        status, headers, body = await self.request(
            "POST",
            self._url(sid, "/Messages.json"),
            data=form,
            headers=wire.basic_auth_headers(sid, token),
        )
        self.raise_for_status(status, headers, body)
        parsed = wire.json_object(body)
        message_sid = parsed.get("sid")
        if not isinstance(message_sid, str) or not message_sid:
            raise self.error(TransientProviderError, "no message sid in response", status=status)
        return SendResult(provider_message_id=message_sid, raw=parsed)

    def raise_for_status(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """Classify by Twilio's error `code` first, the HTTP status second."""
        if 200 <= status < 300:
            return
        raise self.classify_error(status, headers, body)

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        parsed = wire.json_object(body)
        code = _int(parsed.get("code"))
        reason = str(parsed.get("message") or body[:300].decode("utf-8", "replace") or "")
        reason = reason or f"HTTP {status}"
        if code is not None:
            reason = f"{reason} (Twilio error {code})"
        kw: dict[str, Any] = {"provider": self.name, "status": status}
        kw["code"] = str(code) if code is not None else None
        if status == 429 or code in RATE_LIMIT_CODES:
            retry_after = parse_retry_after(headers.get("Retry-After"))
            return ProviderRateLimited(reason, retry_after=retry_after, **kw)
        if status >= 500:
            return TransientProviderError(reason, **kw)
        if code in INVALID_RECIPIENT_CODES:
            return PermanentProviderError(reason, invalid_recipient=True, **kw)
        if code in PERMANENT_CODES:
            return PermanentProviderError(reason, **kw)
        if status in (401, 403) or code in CONFIG_CODES:
            return ProviderAuthError(reason, **kw)
        if status == 404:
            return ProviderAuthError(reason, **kw)  # wrong Account SID in the path
        if status in (408, 409, 425):
            return TransientProviderError(reason, **kw)
        return PermanentProviderError(reason, **kw)

    async def check(self) -> ProviderCheck:
        """GET the Account resource: read-only, proves both the SID and the token."""
        try:
            sid, token = self._credentials()
        except ProviderError as exc:
            return ProviderCheck(reachable=False, authenticated=False, detail=exc.reason)
        try:
            status, headers, body = await self.request(
                "GET", self._url(sid, ".json"), headers=wire.basic_auth_headers(sid, token)
            )
        except TransientProviderError as exc:
            return ProviderCheck(reachable=False, authenticated=None, detail=exc.reason)
        if 200 <= status < 300:
            account_status = wire.json_object(body).get("status", "unknown")
            return ProviderCheck(True, True, f"account {account_status}")
        error = self.classify_error(status, headers, body)
        authenticated = False if isinstance(error, ProviderAuthError) else None
        return ProviderCheck(reachable=True, authenticated=authenticated, detail=str(error))

    # ---- webhooks ----------------------------------------------------------------

    @classmethod
    async def verify_webhook(cls, request: WebhookRequest, ctx: ProviderContext) -> None:
        """Check X-Twilio-Signature the way twilio-python's RequestValidator does."""
        signature = wire.header(request.headers, SIGNATURE_HEADER)
        if not signature:
            raise WebhookRejected(f"missing {SIGNATURE_HEADER} header")
        tokens = _candidate_tokens(ctx.settings)
        if not tokens:
            raise WebhookRejected("no Twilio auth token configured to verify the signature")
        params, body_ok = _signed_params(request)
        if not body_ok:
            raise WebhookRejected("bodySHA256 does not match the body")
        for token in tokens:
            if validate_signature(token, request.url, params, signature):
                return
        raise WebhookRejected("X-Twilio-Signature does not match")

    @classmethod
    def parse_webhook(cls, request: WebhookRequest) -> list[ProviderEvent]:
        """One status callback -> at most one event (progress statuses are dropped)."""
        params = _single_params(request)
        message_sid = params.get("MessageSid") or params.get("SmsSid")
        status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
        if not message_sid or not status:
            raise WebhookInvalid("status callback needs MessageSid and MessageStatus")
        event_type = STATUS_EVENTS.get(status)
        if event_type is None:
            return []
        reason = None
        if event_type is EventType.FAILED:
            reason = _delivery_reason(status, params.get("ErrorCode"))
        return [
            ProviderEvent(
                provider=cls.name,
                # Twilio callbacks carry no event id; one (message, status) pair is
                # one event, so retried callbacks collapse onto the same id.
                event_id=hashlib.sha256(f"{message_sid}{status}".encode()).hexdigest(),
                type=event_type,
                occurred_at=datetime.now(UTC),
                message_id=message_sid,
                recipient=params.get("To"),
                reason=reason,
                payload=params,
            )
        ]


# --------------------------------------------------------------------------- signature


def compute_signature(token: str, url: str, params: Mapping[str, list[str]]) -> str:
    """base64(HMAC-SHA1(token, url + name+value for each sorted name and value)).

    Names sorted, each name's distinct values sorted, as RequestValidator does.
    """
    payload = url
    for name in sorted(set(params)):
        for value in sorted(set(params[name])):
            payload += name + value
    mac = hmac.new(token.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def validate_signature(
    token: str, url: str, params: Mapping[str, list[str]], signature: str
) -> bool:
    """True when `signature` matches the URL with or without its port.

    Twilio's own signer is inconsistent about default ports (its SDK says so),
    so the SDK tries both forms; we do the same.
    """
    try:
        parsed = urlparse(url)
        with_port, without_port = _add_port(parsed), _remove_port(parsed)
    except ValueError:
        return False
    given = signature.encode("utf-8")
    matches = [
        hmac.compare_digest(compute_signature(token, candidate, params).encode(), given)
        for candidate in (without_port, with_port)
    ]
    return any(matches)


def _remove_port(uri: ParseResult) -> str:
    if not uri.port:
        return uri.geturl()
    return uri._replace(netloc=uri.netloc.split(":")[0]).geturl()


def _add_port(uri: ParseResult) -> str:
    if uri.port:
        return uri.geturl()
    port = 443 if uri.scheme == "https" else 80
    return uri._replace(netloc=f"{uri.netloc}:{port}").geturl()


def _signed_params(request: WebhookRequest) -> tuple[dict[str, list[str]], bool]:
    """The params Twilio signed, and whether a bodySHA256 (JSON bodies) matches.

    Form posts sign their fields; JSON posts sign only the URL, which carries
    bodySHA256 = sha256 hex of the raw body.
    """
    query = parse_qs(urlparse(request.url).query)
    if _is_form(request):
        return _multi_params(request), True
    if "bodySHA256" in query:
        computed = hashlib.sha256(request.body).hexdigest()
        return {}, hmac.compare_digest(computed.encode(), query["bodySHA256"][0].encode())
    return {}, True


def _is_form(request: WebhookRequest) -> bool:
    content_type = wire.header(request.headers, "Content-Type") or ""
    if "application/x-www-form-urlencoded" in content_type.lower():
        return True
    return not content_type and (request.form is not None or b"=" in request.body)


def _multi_params(request: WebhookRequest) -> dict[str, list[str]]:
    """Every form field with all its values (a repeated name signs every value)."""
    params: dict[str, list[str]] = {}
    if request.body:
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookRejected("form body is not UTF-8") from None
        for name, value in parse_qsl(text, keep_blank_values=True):
            params.setdefault(name, []).append(value)
    elif request.form:
        params = {name: [value] for name, value in request.form.items()}
    return params


def _single_params(request: WebhookRequest) -> dict[str, str]:
    if request.form is not None and not request.body:
        return dict(request.form)
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookInvalid("form body is not UTF-8") from None
    if text.lstrip().startswith("{"):
        raise WebhookInvalid("Twilio status callbacks are form-encoded, got JSON")
    return dict(parse_qsl(text, keep_blank_values=True))


def _candidate_tokens(settings: Settings) -> list[str]:
    """Auth tokens that may have signed the callback (Twilio signs with the account's).

    NOTIFICATIONS_TWILIO_AUTH_TOKEN names it explicitly (Twilio configured in the
    database); NOTIFICATIONS_SMS_AUTH_TOKEN is the token when Twilio is the env
    provider; NOTIFICATIONS_WEBHOOK_SECRET is the generic fallback.
    """
    tokens = [settings.twilio_auth_token, settings.sms_auth_token, settings.webhook_secret]
    return list(dict.fromkeys(t for t in tokens if t))


def _delivery_reason(status: str, error_code: str | None) -> str:
    if not error_code:
        return status
    description = DELIVERY_ERRORS.get(error_code)
    detail = f": {description}" if description else ""
    return f"{status} (Twilio error {error_code}{detail})"


# --------------------------------------------------------------------------- helpers


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
