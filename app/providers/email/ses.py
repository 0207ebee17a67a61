"""Amazon SES (v2 API) email, and SES events delivered through SNS HTTP(S) subscriptions.

Sending: `SendEmail` with `Content.Raw`, the MIME message built by
`app.providers.email.mime` (text + html alternatives, Reply-To, List-Unsubscribe
headers for marketing). Raw content is what both real SES and moto take whole,
with every header we set (Reply-To travels in the MIME, not as
ReplyToAddresses, so it is never doubled). SES assigns the Message-ID itself; its `MessageId`
answer is the provider id, and SES events quote it as `mail.messageId`.
The notification id travels as the `notification_id` message tag, so events
carry it back in `mail.tags`.

Config keys (all optional): `access_key_id`, `secret_access_key`,
`session_token`, `region`, `endpoint_url`, `from_email`, `reply_to`,
`configuration_set` (needed for event publishing unless the identity has a
default configuration set).

Webhooks: SES publishes events to an SNS topic; SNS POSTs a signed JSON
envelope (`Type` Notification / SubscriptionConfirmation /
UnsubscribeConfirmation) whose `Message` is the SES event JSON. The signature is
checked by `app.providers.aws.verify_sns_message`; the route confirms a
subscription by GETting `SesProvider.subscription_confirm_url(request)`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from app.models import Channel
from app.providers import aws
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
    SendResult,
    WebhookInvalid,
    WebhookRejected,
    WebhookRequest,
)
from app.providers.email import mime

if TYPE_CHECKING:
    from app.settings import Settings

# Codes that mean "this SES account/identity cannot send now", not "this message is bad".
_CONFIG_CODES = frozenset(
    {
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",  # e.g. the configuration set does not exist
    }
)
_ADDRESS_HINTS = ("address", "missing domain", "domain", "@", "recipient", "mailbox")

# SES event (eventType) or notification (notificationType) -> our event type.
_EVENT_TYPES = {
    "Delivery": EventType.DELIVERED,
    "Bounce": EventType.BOUNCE,
    "Complaint": EventType.COMPLAINT,
    "Open": EventType.OPEN,
    "Click": EventType.CLICK,
    "Reject": EventType.FAILED,
    "Rendering Failure": EventType.FAILED,
    "RenderingFailure": EventType.FAILED,
    "Subscription": EventType.UNSUBSCRIBE,
}
# Where each event keeps its own details (and timestamp).
_DETAIL_KEYS = {
    "Delivery": "delivery",
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Open": "open",
    "Click": "click",
    "Reject": "reject",
    "Rendering Failure": "failure",
    "RenderingFailure": "failure",
    "Subscription": "subscription",
}


class SesProvider(Provider):
    name: ClassVar[str] = "ses"
    channel: ClassVar[Channel] = Channel.EMAIL

    @classmethod
    def config_from_settings(cls, settings: Settings) -> dict[str, Any] | None:
        """Env config when NOTIFICATIONS_EMAIL_PROVIDER=ses; credentials from boto3's chain."""
        if settings.email_provider != cls.name:
            return None
        return {
            "region": settings.aws_region,
            "from_email": settings.email_from,
            "reply_to": settings.email_reply_to,
        }

    # ---- sending --------------------------------------------------------------

    def _aws(self) -> aws.AwsConfig:
        try:
            return aws.aws_config(self.config, self.ctx.settings)
        except ProviderAuthError as exc:
            exc.provider = self.name
            raise

    def _from_address(self, message: OutboundMessage) -> str:
        return str(
            message.from_address or self.config.get("from_email") or self.ctx.settings.email_from
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        from_address = self._from_address(message)
        reply_to = message.reply_to or self.config.get("reply_to") or None
        try:
            raw = mime.to_bytes(
                mime.build_message(message, from_address=from_address, reply_to=reply_to)
            )
        except ValueError as exc:
            raise self.error(PermanentProviderError, f"cannot build the email: {exc}") from exc
        params: dict[str, Any] = {
            "FromEmailAddress": from_address,
            "Destination": {"ToAddresses": [message.to.email]},
            "Content": {"Raw": {"Data": raw}},
            "EmailTags": [{"Name": "notification_id", "Value": str(message.notification_id)}],
        }
        if self.config.get("configuration_set"):
            params["ConfigurationSetName"] = self.config["configuration_set"]
        answer = await aws.aws_call(
            "sesv2",
            "send_email",
            self._aws(),
            provider=self.name,
            classify=lambda code, msg, status: _classify(code, msg, from_address),
            **params,
        )
        return SendResult(provider_message_id=answer.get("MessageId"), raw=_strip_meta(answer))

    async def check(self) -> ProviderCheck:
        """GetAccount: proves credentials and tells whether sending is enabled."""
        try:
            account = await aws.aws_call("sesv2", "get_account", self._aws(), provider=self.name)
        except ProviderAuthError as exc:
            return ProviderCheck(reachable=True, authenticated=False, detail=str(exc))
        except ProviderError as exc:
            return ProviderCheck(reachable=False, authenticated=None, detail=str(exc))
        quota = account.get("SendQuota") or {}
        detail = (
            f"sending {'enabled' if account.get('SendingEnabled') else 'PAUSED'}, "
            f"{'production' if account.get('ProductionAccessEnabled') else 'sandbox'}, "
            f"{quota.get('SentLast24Hours', 0):g}/{quota.get('Max24HourSend', 0):g} sent in 24h, "
            f"max {quota.get('MaxSendRate', 0):g}/s"
        )
        return ProviderCheck(reachable=True, authenticated=True, detail=detail)

    # ---- webhooks (SES events through SNS) -------------------------------------

    @classmethod
    async def verify_webhook(cls, request: WebhookRequest, ctx: ProviderContext) -> None:
        """The SNS envelope must be signed by SNS, fresh, and (when configured) from our topics."""
        envelope = _envelope(request)
        await aws.verify_sns_message(
            envelope,
            ctx.http,
            tolerance=ctx.settings.webhook_tolerance,
            timeout=ctx.timeout,
        )
        allowed = _allowed_topics(ctx.settings)
        if allowed and envelope.get("TopicArn") not in allowed:
            raise WebhookRejected(f"SNS topic {envelope.get('TopicArn')!r} is not allowed")

    @classmethod
    def subscription_confirm_url(cls, request: WebhookRequest) -> str | None:
        """For a (verified) SubscriptionConfirmation, the SubscribeURL the route must GET."""
        envelope = _envelope(request)
        if envelope.get("Type") != "SubscriptionConfirmation":
            return None
        url = envelope.get("SubscribeURL")
        if not isinstance(url, str) or not aws.is_sns_url(url):
            raise WebhookInvalid("SubscribeURL is not an https://sns.<region>.amazonaws.com URL")
        return url

    @classmethod
    def parse_webhook(cls, request: WebhookRequest) -> list[ProviderEvent]:
        """SES event inside an SNS Notification -> at most one event; confirmations -> none."""
        envelope = _envelope(request)
        if envelope.get("Type") != "Notification":
            return []
        try:
            event = json.loads(envelope.get("Message") or "")
        except (TypeError, ValueError):
            return []  # e.g. SES's plain-text "Successfully validated SNS topic" test message
        if not isinstance(event, dict):
            return []
        message_id = envelope.get("MessageId")
        if not isinstance(message_id, str) or not message_id:
            raise WebhookInvalid("SNS notification has no MessageId")
        parsed = _ses_event(cls.name, message_id, event, envelope.get("Timestamp"))
        return [parsed] if parsed else []


subscription_confirm_url = SesProvider.subscription_confirm_url


# ---- helpers -------------------------------------------------------------------


def _classify(code: str, message: str, from_address: str) -> ProviderError | None:
    """SES-specific meanings; None falls back to the generic AWS classification."""
    lowered = message.lower()
    if code in _CONFIG_CODES:
        return ProviderAuthError(f"{code}: {message}")
    if code == "MessageRejected":
        sender = mime.address_of(from_address).lower()
        if sender and sender in lowered:  # our sender identity is not verified
            return ProviderAuthError(f"{code}: {message}")
        return PermanentProviderError(f"{code}: {message}")
    if code in ("BadRequestException", "InvalidParameterValue"):
        invalid = any(hint in lowered for hint in _ADDRESS_HINTS)
        return PermanentProviderError(f"{code}: {message}", invalid_recipient=invalid)
    return None


def _strip_meta(answer: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "ResponseMetadata"}


def _envelope(request: WebhookRequest) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict) or not isinstance(body.get("Type"), str):
        raise WebhookInvalid("not an SNS message (no Type)")
    return body


def _allowed_topics(settings: Settings) -> set[str]:
    """Optional allow-list of SNS topic ARNs (comma-separated), when the setting exists."""
    raw = getattr(settings, "ses_webhook_topic_arns", None) or ""
    return {arn.strip() for arn in str(raw).split(",") if arn.strip()}


def _ses_event(
    provider: str, event_id: str, event: Mapping[str, Any], sns_timestamp: Any
) -> ProviderEvent | None:
    kind = str(event.get("eventType") or event.get("notificationType") or "")
    event_type = _EVENT_TYPES.get(kind)
    if event_type is None:
        return None
    raw_mail = event.get("mail")
    mail: Mapping[str, Any] = raw_mail if isinstance(raw_mail, dict) else {}
    details = event.get(_DETAIL_KEYS[kind]) or {}
    if not isinstance(details, dict):
        raise WebhookInvalid(f"SES {kind} event has a malformed body")
    if kind == "Bounce" and details.get("bounceType") != "Permanent":
        return None  # transient / undetermined bounces: SES retries, nothing to apply
    if kind == "Subscription" and not _unsubscribed_all(details):
        return None
    message_id = mail.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise WebhookInvalid("SES event has no mail.messageId")
    return ProviderEvent(
        provider=provider,
        event_id=event_id,
        type=event_type,
        occurred_at=_occurred_at(details, mail, sns_timestamp),
        message_id=message_id,
        notification_id=_notification_id(mail),
        recipient=_recipient(kind, details, mail),
        reason=_reason(kind, details),
        payload=dict(event),
    )


def _unsubscribed_all(details: Mapping[str, Any]) -> bool:
    prefs = details.get("newTopicPreferences") or {}
    return isinstance(prefs, dict) and prefs.get("unsubscribeAll") is True


def _occurred_at(details: Mapping[str, Any], mail: Mapping[str, Any], fallback: Any) -> datetime:
    for value in (details.get("timestamp"), mail.get("timestamp"), fallback):
        if isinstance(value, str):
            try:
                return aws.parse_sns_timestamp(value)
            except WebhookRejected:
                continue
    raise WebhookInvalid("SES event has no usable timestamp")


def _notification_id(mail: Mapping[str, Any]) -> UUID | None:
    """Our id from the `notification_id` message tag, when SES echoes tags."""
    tags = mail.get("tags") or {}
    values = tags.get("notification_id") if isinstance(tags, dict) else None
    if isinstance(values, list) and values:
        try:
            return UUID(str(values[0]))
        except ValueError:
            return None
    return None


def _recipient(kind: str, details: Mapping[str, Any], mail: Mapping[str, Any]) -> str | None:
    candidates: list[Any] = []
    if kind == "Bounce":
        candidates = [r.get("emailAddress") for r in details.get("bouncedRecipients") or []]
    elif kind == "Complaint":
        candidates = [r.get("emailAddress") for r in details.get("complainedRecipients") or []]
    elif kind == "Delivery":
        candidates = list(details.get("recipients") or [])
    candidates += list(mail.get("destination") or [])
    return next((c for c in candidates if isinstance(c, str) and c), None)


def _reason(kind: str, details: Mapping[str, Any]) -> str | None:
    if kind == "Bounce":
        first = (details.get("bouncedRecipients") or [{}])[0]
        diagnostic = first.get("diagnosticCode") if isinstance(first, dict) else None
        base = f"{details.get('bounceType')}/{details.get('bounceSubType')}"
        return f"{base}: {diagnostic}" if diagnostic else base
    if kind == "Complaint":
        return details.get("complaintFeedbackType") or "complaint"
    if kind == "Reject":
        return details.get("reason")
    if kind in ("Rendering Failure", "RenderingFailure"):
        return details.get("errorMessage")
    if kind == "Delivery":
        return details.get("smtpResponse")
    if kind == "Click":
        return details.get("link")
    return None
