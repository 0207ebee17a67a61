"""Secret references in settings, resolved once at start-up.

Any key or token setting may name where the secret lives instead of holding it:

    aws:secretsmanager:NAME           the secret string (or its only JSON value)
    aws:secretsmanager:NAME#field     one field of a JSON secret
    vault:PATH#KEY                    Vault KV v2 at VAULT_ADDR with VAULT_TOKEN
                                      (PATH like secret/data/notifications/twilio)

Resolution happens before anything connects, so a wrong reference stops start-up
with one line naming the setting, and no secret value is ever logged.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from app.settings import Settings, SettingsError

AWS_PREFIX = "aws:secretsmanager:"
VAULT_PREFIX = "vault:"


def is_reference(value: object) -> bool:
    return isinstance(value, str) and value.startswith((AWS_PREFIX, VAULT_PREFIX))


def _pick(payload: str, field: str | None, where: str) -> str:
    if field is None:
        try:
            parsed = json.loads(payload)
        except ValueError:
            return payload
        if isinstance(parsed, dict) and len(parsed) == 1:
            return str(next(iter(parsed.values())))
        return payload
    try:
        return str(json.loads(payload)[field])
    except (ValueError, KeyError, TypeError):
        raise SettingsError(f"{where}: field {field!r} not found in the secret") from None


def _aws(reference: str, settings: Settings) -> str:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    name, _, field = reference[len(AWS_PREFIX) :].partition("#")
    client = boto3.client(
        "secretsmanager", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url
    )
    try:
        secret = client.get_secret_value(SecretId=name)
    except (BotoCoreError, ClientError) as exc:
        raise SettingsError(f"AWS Secrets Manager {name!r}: {exc}") from None
    payload = secret.get("SecretString")
    if payload is None:
        payload = secret["SecretBinary"].decode()
    return _pick(payload, field or None, f"AWS Secrets Manager {name!r}")


def _vault(reference: str, settings: Settings) -> str:
    path, _, key = reference[len(VAULT_PREFIX) :].partition("#")
    if not settings.vault_addr or not settings.vault_token:
        raise SettingsError("vault: references need VAULT_ADDR and VAULT_TOKEN")
    if not key:
        raise SettingsError(f"vault:{path}: name the key as vault:PATH#KEY")
    url = f"{settings.vault_addr.rstrip('/')}/v1/{path.lstrip('/')}"
    request = urllib.request.Request(url, headers={"X-Vault-Token": settings.vault_token})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, ValueError) as exc:
        raise SettingsError(f"vault:{path}: {exc}") from None
    data = body.get("data", {})
    data = data.get("data", data)  # KV v2 nests the secret under data.data
    if key not in data:
        raise SettingsError(f"vault:{path}: key {key!r} not found")
    return str(data[key])


def resolve(settings: Settings) -> Settings:
    """A copy of settings with every reference replaced by its secret."""
    updates: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if not is_reference(value):
            continue
        try:
            updates[name] = (
                _aws(value, settings) if value.startswith(AWS_PREFIX) else _vault(value, settings)
            )
        except SettingsError as exc:
            alias = type(settings).model_fields[name].validation_alias
            label = getattr(alias, "choices", [name])[0]
            raise SettingsError(f"invalid configuration: {label}: {exc}") from None
    return settings.model_copy(update=updates) if updates else settings
