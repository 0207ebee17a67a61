"""Provider names -> classes. Adding a provider is its module plus one line here."""

from __future__ import annotations

import importlib
from functools import cache

from app.models import Channel
from app.providers.base import Provider

PROVIDERS: dict[str, str] = {
    # email
    "resend": "app.providers.email.resend:ResendProvider",
    "sendgrid": "app.providers.email.sendgrid:SendGridProvider",
    "mailgun": "app.providers.email.mailgun:MailgunProvider",
    "ses": "app.providers.email.ses:SesProvider",
    "smtp": "app.providers.email.smtp:SmtpProvider",
    # push
    "fcm": "app.providers.push.fcm:FcmProvider",
    "onesignal": "app.providers.push.onesignal:OneSignalProvider",
    "webpush": "app.providers.push.webpush:WebPushProvider",
    # sms
    "twilio": "app.providers.sms.twilio:TwilioProvider",
    "plivo": "app.providers.sms.plivo:PlivoProvider",
    "sns": "app.providers.sms.sns:SnsProvider",
    # a controllable provider for tests and benchmarks (any channel)
    "test": "app.providers.testing:TestProvider",
}

DRY_RUN = "dry-run"


class UnknownProvider(KeyError):
    pass


@cache
def provider_class(name: str) -> type[Provider]:
    try:
        target = PROVIDERS[name]
    except KeyError:
        raise UnknownProvider(f"unknown provider {name!r}; known: {sorted(PROVIDERS)}") from None
    module_name, class_name = target.split(":")
    cls: type[Provider] = getattr(importlib.import_module(module_name), class_name)
    return cls


def providers_for_channel(channel: Channel) -> list[str]:
    names = []
    for name in PROVIDERS:
        if name == "test":
            continue
        try:
            if provider_class(name).channel is channel:
                names.append(name)
        except (ImportError, AttributeError):
            continue
    return names
