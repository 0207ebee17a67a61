"""Secrets: provider-config encryption at rest, secret references, constant-time checks.

Encrypted provider config (NOTIFICATIONS_ENCRYPT_CONFIG=true) is stored in the
JSONB column as {"encrypted": "v1:<base64 nonce|ciphertext>"}: AES-256-GCM with a
key derived from NOTIFICATIONS_ENCRYPTION_KEY (SHA-256 of it, so any 32+ character
secret gives a proper 256-bit key). `rotate()` re-encrypts under a new key.

Secret references (`aws:secretsmanager:NAME[#field]`, `vault:PATH#KEY`) are
resolved by `app.secrets` at start-up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "v1:"


class ConfigDecryptionError(Exception):
    pass


def _key(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def encrypt_config(config: dict[str, Any], secret: str) -> dict[str, str]:
    nonce = os.urandom(12)
    sealed = AESGCM(_key(secret)).encrypt(nonce, json.dumps(config).encode(), b"provider-config")
    return {"encrypted": PREFIX + base64.b64encode(nonce + sealed).decode()}


def is_encrypted(config: Any) -> bool:
    return (
        isinstance(config, dict) and isinstance(config.get("encrypted"), str) and len(config) == 1
    )


def decrypt_config(config: Any, secret: str | None) -> dict[str, Any]:
    """Plain dicts pass through; encrypted ones need the key."""
    if config is None:
        return {}
    if not is_encrypted(config):
        return dict(config)
    if not secret:
        raise ConfigDecryptionError(
            "provider config is encrypted but no NOTIFICATIONS_ENCRYPTION_KEY"
        )
    token = config["encrypted"]
    if not token.startswith(PREFIX):
        raise ConfigDecryptionError("unknown provider-config encryption version")
    raw = base64.b64decode(token[len(PREFIX) :])
    try:
        plain = AESGCM(_key(secret)).decrypt(raw[:12], raw[12:], b"provider-config")
    except InvalidTag:
        raise ConfigDecryptionError("provider config cannot be decrypted with this key") from None
    result: dict[str, Any] = json.loads(plain)
    return result


def rotate(config: Any, old_secret: str | None, new_secret: str) -> dict[str, str]:
    return encrypt_config(decrypt_config(config, old_secret), new_secret)


def constant_time_equals(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
