"""SMTP email through aiosmtplib, for any relay (Postfix, Mailpit, a provider's SMTP).

Each send opens one connection: connect, STARTTLS or implicit TLS, AUTH when
credentials are set, MAIL/RCPT/DATA, QUIT. The MIME message comes from
`app.providers.email.mime`; its Message-ID (without angle brackets) is the
provider id, since SMTP has no id of its own.

Config keys (all optional, env settings as fallback): `host`, `port`,
`secure` (implicit TLS, usually port 465), `starttls` (STARTTLS, usually 587;
required when set, so credentials never cross in clear), `user`, `password`
(falls back to NOTIFICATIONS_EMAIL_API_KEY), `reject_unauthorized` (certificate
and hostname validation, on by default), `from_email`, `reply_to`.

Reply codes decide the error class: 5xx on RCPT is a bad recipient
(permanent), 4xx anywhere is "try later" (transient), bad credentials or an
untrusted certificate make the provider unusable (auth error).
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, ClassVar

import aiosmtplib

from app.models import Channel
from app.providers.base import (
    OutboundMessage,
    PermanentProviderError,
    Provider,
    ProviderAuthError,
    ProviderCheck,
    ProviderError,
    SendResult,
    TransientProviderError,
)
from app.providers.email import mime

if TYPE_CHECKING:
    from app.settings import Settings


class SmtpProvider(Provider):
    name: ClassVar[str] = "smtp"
    channel: ClassVar[Channel] = Channel.EMAIL

    @classmethod
    def config_from_settings(cls, settings: Settings) -> dict[str, Any] | None:
        """Env config when NOTIFICATIONS_EMAIL_PROVIDER=smtp and a host is set."""
        if settings.email_provider != cls.name or not settings.smtp_host:
            return None
        return {
            "host": settings.smtp_host,
            "port": settings.smtp_port,
            "secure": settings.smtp_secure,
            "starttls": settings.smtp_starttls,
            "user": settings.smtp_user,
            "password": settings.smtp_password or settings.email_api_key,
            "reject_unauthorized": settings.smtp_reject_unauthorized,
            "from_email": settings.email_from,
            "reply_to": settings.email_reply_to,
        }

    # ---- connection -----------------------------------------------------------

    def _setting(self, key: str, fallback: Any) -> Any:
        value = self.config.get(key)
        return fallback if value is None else value

    def client(self) -> aiosmtplib.SMTP:
        """An unconnected client built from config (settings fill the gaps)."""
        s = self.ctx.settings
        host = self._setting("host", s.smtp_host)
        if not host:
            raise self.error(ProviderAuthError, "no SMTP host configured")
        secure = bool(self._setting("secure", s.smtp_secure))
        starttls = bool(self._setting("starttls", s.smtp_starttls)) and not secure
        validate = bool(self._setting("reject_unauthorized", s.smtp_reject_unauthorized))
        user, password = self.credentials()
        return aiosmtplib.SMTP(
            hostname=str(host),
            port=int(self._setting("port", s.smtp_port)),
            use_tls=secure,
            start_tls=starttls,
            validate_certs=validate,
            username=user,
            password=password,
            timeout=self.ctx.timeout,
        )

    def credentials(self) -> tuple[str | None, str | None]:
        """(user, password) when both are set; AUTH is skipped otherwise."""
        s = self.ctx.settings
        user = self._setting("user", s.smtp_user) or None
        password = self._setting("password", s.smtp_password or s.email_api_key) or None
        return (str(user), str(password)) if user and password else (None, None)

    # ---- sending --------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        from_address = str(
            message.from_address or self.config.get("from_email") or self.ctx.settings.email_from
        )
        reply_to = message.reply_to or self.config.get("reply_to") or None
        message_id = mime.new_message_id(from_address)
        try:
            email = mime.build_message(
                message, from_address=from_address, reply_to=reply_to, message_id=message_id
            )
        except ValueError as exc:
            raise self.error(PermanentProviderError, f"cannot build the email: {exc}") from exc
        smtp = self.client()
        try:
            async with smtp:
                errors, _ = await smtp.send_message(
                    email,
                    sender=mime.address_of(from_address),
                    recipients=[message.to.email or ""],
                )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self.classify(exc) from exc
        if errors:  # some recipients refused (we send to one, so this is defensive)
            refused = ", ".join(
                f"{rcpt}: {resp.code} {resp.message}" for rcpt, resp in errors.items()
            )
            raise self.error(
                PermanentProviderError, f"recipient refused: {refused}", invalid_recipient=True
            )
        return SendResult(provider_message_id=message_id.strip("<>"))

    async def check(self) -> ProviderCheck:
        """Connect, EHLO, TLS and AUTH as configured, then QUIT; nothing is sent."""
        smtp = self.client()
        try:
            async with smtp:
                await smtp.ehlo()
        except (aiosmtplib.SMTPException, OSError) as exc:
            error = self.classify(exc)
            if isinstance(error, ProviderAuthError):
                return ProviderCheck(reachable=True, authenticated=False, detail=str(error))
            return ProviderCheck(reachable=False, authenticated=None, detail=str(error))
        except ProviderError as exc:
            return ProviderCheck(reachable=False, authenticated=False, detail=str(exc))
        authenticated = True if self.credentials()[0] else None
        detail = "connected" + (" and logged in" if authenticated else " (no credentials)")
        return ProviderCheck(reachable=True, authenticated=authenticated, detail=detail)

    # ---- errors ---------------------------------------------------------------

    def classify(self, exc: BaseException) -> ProviderError:
        """An aiosmtplib/network failure as the provider error class."""
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            first = exc.recipients[0] if exc.recipients else None
            if first is None:
                return self.error(PermanentProviderError, "all recipients refused")
            return self._recipient_refused(first)
        if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
            return self._recipient_refused(exc)
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            return self.error(ProviderAuthError, f"SMTP login failed: {_reply(exc)}")
        if isinstance(exc, aiosmtplib.SMTPNotSupported):
            return self.error(ProviderAuthError, f"SMTP server lacks a needed feature: {exc}")
        if isinstance(exc, ssl.SSLCertVerificationError) or isinstance(
            exc.__cause__, ssl.SSLCertVerificationError
        ):
            return self.error(ProviderAuthError, f"SMTP server certificate rejected: {exc}")
        if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
            return self.error(TransientProviderError, f"SMTP timed out: {exc}")
        cls: type[ProviderError]
        if isinstance(exc, aiosmtplib.SMTPSenderRefused):
            cls = TransientProviderError if exc.code < 500 else ProviderAuthError
            return self.error(cls, f"sender refused: {_reply(exc)}", code=str(exc.code))
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            cls = TransientProviderError if exc.code < 500 else PermanentProviderError
            return self.error(cls, f"SMTP error: {_reply(exc)}", code=str(exc.code))
        return self.error(TransientProviderError, f"SMTP connection error: {exc}")

    def _recipient_refused(self, exc: aiosmtplib.SMTPRecipientRefused) -> ProviderError:
        reason = f"recipient {exc.recipient} refused: {_reply(exc)}"
        if exc.code >= 500:
            return self.error(
                PermanentProviderError, reason, invalid_recipient=True, code=str(exc.code)
            )
        return self.error(TransientProviderError, reason, code=str(exc.code))


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}"
