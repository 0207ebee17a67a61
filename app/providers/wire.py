"""Small wire-format helpers shared by the HTTP provider modules."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp


def basic_auth_headers(login: str, password: str) -> dict[str, str]:
    """HTTP basic auth (aiohttp 3.14 deprecates BasicAuth objects) and JSON answers."""
    return {
        "Authorization": aiohttp.encode_basic_auth(login, password),
        "Accept": "application/json",
    }


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively, from any mapping (CIMultiDict or dict)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or {} when it is empty, not JSON, or not an object."""
    try:
        parsed = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def str_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def sms_sender(value: str | None) -> str | None:
    """A per-message sender override, unless it is an email From meant for another channel."""
    return value if value and "@" not in value else None
