"""Every environment variable of the spec, plus ours, in one pydantic-settings class.

Names, defaults and units follow the spec's README (times the spec gives in
milliseconds stay milliseconds here, seconds stay seconds). Field names are short
Python names; each carries its environment variable as its alias, so a bad value
is reported by the variable the operator actually set.

`load_settings()` turns a validation failure into one readable line
(`SettingsError`), which every entry point prints before exiting with status 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EmailProviderName = Literal["resend", "sendgrid", "mailgun", "ses", "smtp"]
PushProviderName = Literal["fcm", "onesignal", "webpush"]
SmsProviderName = Literal["twilio", "plivo", "sns"]
LogLevel = Literal["debug", "info", "warning", "warn", "error", "critical"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Provider rate limits: (environment variable, spec default, seconds per unit).
# The spec states Resend in req/sec, SendGrid in req/min and Mailgun in req/hour;
# the rest use the units of the spec's provider tables. 0 means unlimited.
PROVIDER_RATE_LIMITS: dict[str, tuple[str, float, float]] = {
    "resend": ("NOTIFICATIONS_RESEND_RATE_LIMIT", 10, 1),
    "sendgrid": ("NOTIFICATIONS_SENDGRID_RATE_LIMIT", 600, 60),
    "mailgun": ("NOTIFICATIONS_MAILGUN_RATE_LIMIT", 1000, 3600),
    "ses": ("NOTIFICATIONS_SES_RATE_LIMIT", 14, 1),
    "smtp": ("NOTIFICATIONS_SMTP_RATE_LIMIT", 300, 3600),
    "fcm": ("NOTIFICATIONS_FCM_RATE_LIMIT", 600000, 60),
    "onesignal": ("NOTIFICATIONS_ONESIGNAL_RATE_LIMIT", 30, 1),
    "webpush": ("NOTIFICATIONS_WEBPUSH_RATE_LIMIT", 0, 1),
    "twilio": ("NOTIFICATIONS_TWILIO_RATE_LIMIT", 100, 1),
    "plivo": ("NOTIFICATIONS_PLIVO_RATE_LIMIT", 200, 1),
    "sns": ("NOTIFICATIONS_SNS_RATE_LIMIT", 20, 1),
}


class SettingsError(Exception):
    """A configuration value is invalid; the message is one line naming the variable."""


def _env(name: str) -> Any:
    return Field(validation_alias=AliasChoices(name, name.lower()))


class Settings(BaseSettings):
    """Runtime configuration, read from the environment (and `.env` when present)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        case_sensitive=False,
    )

    # --- connections -------------------------------------------------------
    database_url: str | None = Field(None, validation_alias=AliasChoices("DATABASE_URL"))
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL"))
    database_pool_min: int = Field(5, ge=0, validation_alias=AliasChoices("DATABASE_POOL_MIN"))
    database_pool_max: int = Field(20, ge=1, validation_alias=AliasChoices("DATABASE_POOL_MAX"))
    database_pool_idle_timeout: int = Field(
        30000, ge=0, validation_alias=AliasChoices("DATABASE_POOL_IDLE_TIMEOUT")
    )  # ms
    redis_pool_min: int = Field(2, ge=0, validation_alias=AliasChoices("REDIS_POOL_MIN"))
    redis_pool_max: int = Field(10, ge=1, validation_alias=AliasChoices("REDIS_POOL_MAX"))
    data_dir: Path = Field(
        PROJECT_ROOT / ".data", validation_alias=AliasChoices("NOTIFICATIONS_DATA_DIR")
    )

    # --- server ------------------------------------------------------------
    port: int = Field(3102, ge=1, le=65535, validation_alias=AliasChoices("PORT"))
    host: str = Field("0.0.0.0", validation_alias=AliasChoices("HOST"))
    log_level: LogLevel = Field("info", validation_alias=AliasChoices("LOG_LEVEL"))
    dev_mode: bool = Field(False, validation_alias=AliasChoices("NOTIFICATIONS_DEV_MODE"))
    public_url: str | None = Field(None, validation_alias=AliasChoices("NOTIFICATIONS_PUBLIC_URL"))
    max_body_size: int = Field(
        1_048_576, ge=1024, validation_alias=AliasChoices("NOTIFICATIONS_MAX_BODY_SIZE")
    )

    # --- auth ----------------------------------------------------------------
    api_keys: str | None = Field(None, validation_alias=AliasChoices("NOTIFICATIONS_API_KEYS"))
    admin_secret: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_ADMIN_SECRET")
    )
    action_secret: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_ACTION_SECRET")
    )
    jwt_secret: str | None = Field(None, validation_alias=AliasChoices("NOTIFICATIONS_JWT_SECRET"))
    metrics_protected: bool = Field(
        False, validation_alias=AliasChoices("NOTIFICATIONS_METRICS_PROTECTED")
    )
    api_rate_limit: int = Field(
        100, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_API_RATE_LIMIT")
    )  # req/min per IP, 0 disables
    api_burst_limit: int = Field(
        20, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_API_BURST_LIMIT")
    )

    # --- email ---------------------------------------------------------------
    email_enabled: bool = Field(False, validation_alias=AliasChoices("NOTIFICATIONS_EMAIL_ENABLED"))
    email_provider: EmailProviderName = Field(
        "resend", validation_alias=AliasChoices("NOTIFICATIONS_EMAIL_PROVIDER")
    )
    email_api_key: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_EMAIL_API_KEY")
    )
    email_from: str = Field(
        "noreply@example.com", validation_alias=AliasChoices("NOTIFICATIONS_EMAIL_FROM")
    )
    email_reply_to: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_EMAIL_REPLY_TO")
    )
    mailgun_domain: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_MAILGUN_DOMAIN")
    )
    mailgun_region: Literal["us", "eu"] = Field(
        "us", validation_alias=AliasChoices("NOTIFICATIONS_MAILGUN_REGION")
    )
    smtp_host: str | None = Field(None, validation_alias=AliasChoices("NOTIFICATIONS_SMTP_HOST"))
    smtp_port: int = Field(
        587, ge=1, le=65535, validation_alias=AliasChoices("NOTIFICATIONS_SMTP_PORT")
    )
    smtp_secure: bool = Field(False, validation_alias=AliasChoices("NOTIFICATIONS_SMTP_SECURE"))
    smtp_starttls: bool = Field(True, validation_alias=AliasChoices("NOTIFICATIONS_SMTP_STARTTLS"))
    smtp_user: str | None = Field(None, validation_alias=AliasChoices("NOTIFICATIONS_SMTP_USER"))
    smtp_password: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_SMTP_PASSWORD")
    )
    smtp_reject_unauthorized: bool = Field(
        True, validation_alias=AliasChoices("NOTIFICATIONS_SMTP_REJECT_UNAUTHORIZED")
    )

    # --- push ----------------------------------------------------------------
    push_provider: PushProviderName | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_PUSH_PROVIDER")
    )
    push_api_key: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_PUSH_API_KEY")
    )
    push_app_id: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_PUSH_APP_ID")
    )
    vapid_private_key: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_VAPID_PRIVATE_KEY")
    )
    vapid_subject: str = Field(
        "mailto:noreply@example.com", validation_alias=AliasChoices("NOTIFICATIONS_VAPID_SUBJECT")
    )

    # --- sms -----------------------------------------------------------------
    sms_provider: SmsProviderName | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_SMS_PROVIDER")
    )
    sms_account_sid: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_SMS_ACCOUNT_SID")
    )
    sms_auth_token: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_SMS_AUTH_TOKEN")
    )
    sms_from: str | None = Field(None, validation_alias=AliasChoices("NOTIFICATIONS_SMS_FROM"))

    # --- AWS and secret managers ---------------------------------------------
    aws_region: str = Field("us-east-1", validation_alias=AliasChoices("AWS_REGION"))
    aws_endpoint_url: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_AWS_ENDPOINT_URL")
    )
    secrets_manager: Literal["aws", "vault"] | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_SECRETS_MANAGER")
    )
    vault_addr: str | None = Field(None, validation_alias=AliasChoices("VAULT_ADDR"))
    vault_token: str | None = Field(None, validation_alias=AliasChoices("VAULT_TOKEN"))

    # --- provider base URLs (tests, proxies, EU regions) ---------------------
    resend_base_url: str = Field(
        "https://api.resend.com", validation_alias=AliasChoices("NOTIFICATIONS_RESEND_BASE_URL")
    )
    sendgrid_base_url: str = Field(
        "https://api.sendgrid.com", validation_alias=AliasChoices("NOTIFICATIONS_SENDGRID_BASE_URL")
    )
    mailgun_base_url: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_MAILGUN_BASE_URL")
    )
    fcm_base_url: str = Field(
        "https://fcm.googleapis.com", validation_alias=AliasChoices("NOTIFICATIONS_FCM_BASE_URL")
    )
    fcm_token_url: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_FCM_TOKEN_URL")
    )
    onesignal_base_url: str = Field(
        "https://api.onesignal.com",
        validation_alias=AliasChoices("NOTIFICATIONS_ONESIGNAL_BASE_URL"),
    )
    twilio_base_url: str = Field(
        "https://api.twilio.com", validation_alias=AliasChoices("NOTIFICATIONS_TWILIO_BASE_URL")
    )
    plivo_base_url: str = Field(
        "https://api.plivo.com", validation_alias=AliasChoices("NOTIFICATIONS_PLIVO_BASE_URL")
    )

    # --- queue and worker ----------------------------------------------------
    queue_backend: Literal["redis", "postgres"] = Field(
        "redis", validation_alias=AliasChoices("NOTIFICATIONS_QUEUE_BACKEND")
    )
    worker_concurrency: int = Field(5, ge=1, validation_alias=AliasChoices("WORKER_CONCURRENCY"))
    worker_poll_interval: int = Field(
        100, ge=1, validation_alias=AliasChoices("WORKER_POLL_INTERVAL")
    )  # ms
    worker_batch_size: int = Field(50, ge=1, validation_alias=AliasChoices("WORKER_BATCH_SIZE"))
    retry_attempts: int = Field(
        3, ge=1, validation_alias=AliasChoices("NOTIFICATIONS_RETRY_ATTEMPTS")
    )
    retry_delay: int = Field(
        1000, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_RETRY_DELAY")
    )  # ms
    max_retry_delay: int = Field(
        300000, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_MAX_RETRY_DELAY")
    )  # ms
    batch_interval: int = Field(
        86400, ge=1, validation_alias=AliasChoices("NOTIFICATIONS_BATCH_INTERVAL")
    )  # s
    batch_size: int = Field(100, ge=1, validation_alias=AliasChoices("NOTIFICATIONS_BATCH_SIZE"))
    batch_flush_interval: int = Field(
        5000, ge=1, validation_alias=AliasChoices("NOTIFICATIONS_BATCH_FLUSH_INTERVAL")
    )  # ms
    queue_retention: int = Field(
        604800, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_QUEUE_RETENTION")
    )  # s
    auto_cleanup: bool = Field(True, validation_alias=AliasChoices("NOTIFICATIONS_AUTO_CLEANUP"))
    sweep_interval: int = Field(
        30, ge=1, validation_alias=AliasChoices("NOTIFICATIONS_SWEEP_INTERVAL")
    )  # s
    lock_timeout: int = Field(
        120, ge=1, validation_alias=AliasChoices("NOTIFICATIONS_LOCK_TIMEOUT")
    )  # s: a claimed queue row older than this is considered abandoned
    provider_timeout: float = Field(
        30.0, gt=0, validation_alias=AliasChoices("NOTIFICATIONS_PROVIDER_TIMEOUT")
    )  # s
    job_timeout: int = Field(
        300, ge=1, validation_alias=AliasChoices("NOTIFICATIONS_JOB_TIMEOUT")
    )  # s
    dry_run: bool = Field(False, validation_alias=AliasChoices("NOTIFICATIONS_DRY_RUN"))
    worker_metrics_port: int = Field(
        9102, ge=0, le=65535, validation_alias=AliasChoices("NOTIFICATIONS_WORKER_METRICS_PORT")
    )  # 0 disables the worker's own /metrics listener
    retention_days: int = Field(
        0, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_RETENTION_DAYS")
    )  # 0 keeps notifications forever
    digest_hour: int = Field(
        9, ge=0, le=23, validation_alias=AliasChoices("NOTIFICATIONS_DIGEST_HOUR")
    )

    # --- rules ---------------------------------------------------------------
    dedup_window: int = Field(
        3600, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_DEDUP_WINDOW")
    )  # s; the spec's per (user, template, hour) window
    user_email_limit: int = Field(
        100, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_USER_EMAIL_LIMIT")
    )
    user_sms_limit: int = Field(
        20, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_USER_SMS_LIMIT")
    )
    user_push_limit: int = Field(
        200, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_USER_PUSH_LIMIT")
    )
    template_cache_ttl: int = Field(
        3600, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_TEMPLATE_CACHE_TTL")
    )  # s
    circuit_breaker_threshold: int = Field(
        10, ge=1, validation_alias=AliasChoices("NOTIFICATIONS_CIRCUIT_BREAKER_THRESHOLD")
    )
    circuit_breaker_timeout: int = Field(
        300, ge=1, validation_alias=AliasChoices("NOTIFICATIONS_CIRCUIT_BREAKER_TIMEOUT")
    )  # s

    # --- security --------------------------------------------------------------
    encrypt_config: bool = Field(
        False, validation_alias=AliasChoices("NOTIFICATIONS_ENCRYPT_CONFIG")
    )
    encryption_key: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_ENCRYPTION_KEY")
    )
    webhook_secret: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_WEBHOOK_SECRET")
    )
    webhook_verify: bool = Field(
        False, validation_alias=AliasChoices("NOTIFICATIONS_WEBHOOK_VERIFY")
    )
    webhook_ip_whitelist: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_WEBHOOK_IP_WHITELIST")
    )
    webhook_tolerance: int = Field(
        300, ge=1, validation_alias=AliasChoices("NOTIFICATIONS_WEBHOOK_TOLERANCE")
    )  # s
    sendgrid_webhook_public_key: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_SENDGRID_WEBHOOK_PUBLIC_KEY")
    )
    mailgun_webhook_key: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_MAILGUN_WEBHOOK_KEY")
    )
    resend_webhook_secret: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_RESEND_WEBHOOK_SECRET")
    )  # whsec_...; falls back to NOTIFICATIONS_WEBHOOK_SECRET
    onesignal_webhook_secret: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_ONESIGNAL_WEBHOOK_SECRET")
    )
    ses_webhook_topic_arns: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_SES_WEBHOOK_TOPIC_ARNS")
    )  # comma-separated SNS topic ARNs allowed to post SES events (unset: any)
    twilio_auth_token: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_TWILIO_AUTH_TOKEN")
    )  # webhook verification when Twilio is configured in notification_providers
    plivo_auth_token: str | None = Field(
        None, validation_alias=AliasChoices("NOTIFICATIONS_PLIVO_AUTH_TOKEN")
    )  # falls back to NOTIFICATIONS_SMS_AUTH_TOKEN

    # --- provider rate limits (units per PROVIDER_RATE_LIMITS) -----------------
    resend_rate_limit: float = Field(
        10, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_RESEND_RATE_LIMIT")
    )
    sendgrid_rate_limit: float = Field(
        600, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_SENDGRID_RATE_LIMIT")
    )
    mailgun_rate_limit: float = Field(
        1000, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_MAILGUN_RATE_LIMIT")
    )
    ses_rate_limit: float = Field(
        14, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_SES_RATE_LIMIT")
    )
    smtp_rate_limit: float = Field(
        300, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_SMTP_RATE_LIMIT")
    )
    fcm_rate_limit: float = Field(
        600000, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_FCM_RATE_LIMIT")
    )
    onesignal_rate_limit: float = Field(
        30, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_ONESIGNAL_RATE_LIMIT")
    )
    webpush_rate_limit: float = Field(
        0, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_WEBPUSH_RATE_LIMIT")
    )
    twilio_rate_limit: float = Field(
        100, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_TWILIO_RATE_LIMIT")
    )
    plivo_rate_limit: float = Field(
        200, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_PLIVO_RATE_LIMIT")
    )
    sns_rate_limit: float = Field(
        20, ge=0, validation_alias=AliasChoices("NOTIFICATIONS_SNS_RATE_LIMIT")
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator(
        "push_provider", "sms_provider", "secrets_manager", "email_provider", mode="before"
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return value or None
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret_is_hasura_json(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(
                'must be JSON like Hasura\'s, e.g. {"type":"HS256","key":"..."}'
            ) from exc
        if not isinstance(parsed, dict) or "key" not in parsed or "type" not in parsed:
            raise ValueError("must be a JSON object with 'type' and 'key'")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.encrypt_config and not self.encryption_key:
            raise ValueError("NOTIFICATIONS_ENCRYPT_CONFIG=true needs NOTIFICATIONS_ENCRYPTION_KEY")
        if self.encryption_key is not None and len(self.encryption_key) < 32:
            raise ValueError("NOTIFICATIONS_ENCRYPTION_KEY must be at least 32 characters")
        if self.database_pool_min > self.database_pool_max:
            raise ValueError("DATABASE_POOL_MIN must not exceed DATABASE_POOL_MAX")
        return self

    # --- derived values --------------------------------------------------------
    @property
    def api_key_list(self) -> list[str]:
        return [key.strip() for key in (self.api_keys or "").split(",") if key.strip()]

    @property
    def user_limits(self) -> dict[str, int]:
        """Per-user sends per hour, by channel."""
        return {
            "email": self.user_email_limit,
            "push": self.user_push_limit,
            "sms": self.user_sms_limit,
        }

    def provider_rate(self, provider: str) -> tuple[float, float]:
        """(requests, per seconds) for a provider; (0, 1) means unlimited."""
        if provider not in PROVIDER_RATE_LIMITS:
            return 0.0, 1.0
        _, _, period = PROVIDER_RATE_LIMITS[provider]
        return float(getattr(self, f"{provider}_rate_limit")), period

    @property
    def retry_delay_seconds(self) -> float:
        return self.retry_delay / 1000

    @property
    def max_retry_delay_seconds(self) -> float:
        return self.max_retry_delay / 1000


def _describe(error: dict[str, Any]) -> str:
    loc = error.get("loc") or ()
    name = str(loc[0]).upper() if loc else "configuration"
    value = error.get("input")
    shown = f" (got {value!r})" if loc and not isinstance(value, dict) else ""
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{name}: {message}{shown}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; raise SettingsError with one clear line."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SettingsError(f"invalid configuration: {_describe(dict(first))}") from None
    from app.secrets import resolve

    return resolve(settings)
