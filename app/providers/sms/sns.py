"""Amazon SNS SMS: `Publish` straight to a phone number.

The message type is set per message (`AWS.SNS.SMS.SMSType`): Transactional for
transactional or critical notifications (higher delivery priority, allowed in
quiet hours by carriers), Promotional otherwise (cheaper). The sender is an
alphanumeric Sender ID (`AWS.SNS.SMS.SenderID`, up to 11 characters) or, when
the configured sender is an E.164 number, an origination number
(`AWS.MM.SMS.OriginationNumber`).

Config keys (all optional): `access_key_id`, `secret_access_key`,
`session_token`, `region`, `endpoint_url`, `sender_id`, `origination_number`,
`sms_type` (forces Transactional/Promotional), `max_price` (USD per message).

SNS has no per-message delivery webhook (delivery status goes to CloudWatch
Logs), so this provider has none.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from app.models import E164, Channel
from app.providers import aws
from app.providers.base import (
    OutboundMessage,
    PermanentProviderError,
    Provider,
    ProviderAuthError,
    ProviderCheck,
    ProviderError,
    SendResult,
)
from app.providers.email.mime import html_to_text

if TYPE_CHECKING:
    from app.settings import Settings

SENDER_ID = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9-]{1,11}$")
_RECIPIENT_HINTS = ("phone", "number", "e.164", "e164", "destination", "endpoint")


class SnsProvider(Provider):
    name: ClassVar[str] = "sns"
    channel: ClassVar[Channel] = Channel.SMS

    @classmethod
    def config_from_settings(cls, settings: Settings) -> dict[str, Any] | None:
        """Env config when NOTIFICATIONS_SMS_PROVIDER=sns; SMS_FROM is the sender."""
        if settings.sms_provider != cls.name:
            return None
        config: dict[str, Any] = {"region": settings.aws_region}
        sender = (settings.sms_from or "").strip()
        if E164.match(sender):
            config["origination_number"] = sender
        elif sender:
            config["sender_id"] = sender
        return config

    def _aws(self) -> aws.AwsConfig:
        try:
            return aws.aws_config(self.config, self.ctx.settings)
        except ProviderAuthError as exc:
            exc.provider = self.name
            raise

    async def send(self, message: OutboundMessage) -> SendResult:
        phone = message.to.phone
        if not phone:
            raise self.error(PermanentProviderError, "sms needs to.phone", invalid_recipient=True)
        body = message.text or html_to_text(message.html or "")
        if not body.strip():
            raise self.error(PermanentProviderError, "sms needs a text body")
        answer = await aws.aws_call(
            "sns",
            "publish",
            self._aws(),
            provider=self.name,
            classify=_classify,
            PhoneNumber=phone,
            Message=body,
            MessageAttributes=self.message_attributes(message),
        )
        raw = {k: v for k, v in answer.items() if k != "ResponseMetadata"}
        return SendResult(provider_message_id=answer.get("MessageId"), raw=raw)

    def message_attributes(self, message: OutboundMessage) -> dict[str, dict[str, str]]:
        """The AWS.SNS.SMS.* attributes for this message (type, sender, price cap)."""
        attrs = {"AWS.SNS.SMS.SMSType": _string(self._sms_type(message))}
        sender_id = self.config.get("sender_id")
        if sender_id:
            if not SENDER_ID.match(str(sender_id)):
                raise self.error(
                    ProviderAuthError, f"invalid SNS sender_id {sender_id!r} (1-11 alphanumerics)"
                )
            attrs["AWS.SNS.SMS.SenderID"] = _string(str(sender_id))
        if self.config.get("origination_number"):
            attrs["AWS.MM.SMS.OriginationNumber"] = _string(str(self.config["origination_number"]))
        if self.config.get("max_price"):
            attrs["AWS.SNS.SMS.MaxPrice"] = {
                "DataType": "Number",
                "StringValue": str(self.config["max_price"]),
            }
        return attrs

    def _sms_type(self, message: OutboundMessage) -> str:
        forced = str(self.config.get("sms_type") or "").capitalize()
        if forced in ("Transactional", "Promotional"):
            return forced
        if message.is_urgent:
            return "Transactional"
        return "Promotional"

    async def check(self) -> ProviderCheck:
        """GetSMSAttributes: read-only, needs valid credentials."""
        try:
            answer = await aws.aws_call(
                "sns", "get_sms_attributes", self._aws(), provider=self.name
            )
        except ProviderAuthError as exc:
            return ProviderCheck(reachable=True, authenticated=False, detail=str(exc))
        except ProviderError as exc:
            return ProviderCheck(reachable=False, authenticated=None, detail=str(exc))
        attributes = answer.get("attributes") or {}
        default_type = attributes.get("DefaultSMSType", "Promotional (AWS default)")
        return ProviderCheck(
            reachable=True, authenticated=True, detail=f"default SMS type {default_type}"
        )


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _classify(code: str, message: str, status: int | None) -> ProviderError | None:
    """SNS-specific meanings; None falls back to the generic AWS classification."""
    lowered = message.lower()
    if code in ("InvalidParameter", "ParameterValueInvalid", "InvalidParameterValue"):
        invalid = any(hint in lowered for hint in _RECIPIENT_HINTS)
        return PermanentProviderError(f"{code}: {message}", invalid_recipient=invalid)
    if code in ("OptedOut", "OptedOutException") or "opted out" in lowered:
        return PermanentProviderError(f"recipient opted out of SMS: {message}")
    return None
