"""JSON on the hot paths: orjson, with the standard library for the little orjson refuses.

orjson parses and writes 4-10x faster than `json`, and writes UUIDs, datetimes,
enums and dataclasses itself; the send path encodes every request body, every
jsonb column and every answer, so this is a large part of its CPU. orjson refuses
integers beyond 64 bits, which JSON allows and jsonb stores, so those (rare)
documents go through `json`. NaN and Infinity are not JSON: `loads` rejects them
either way, and `dumps` writes a float NaN as null (PostgreSQL refuses NaN in jsonb).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from typing import Any
from uuid import UUID

import orjson

_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _default(value: Any) -> Any:
    """Types orjson does not write itself, such as asyncpg's UUID (a UUID subclass)."""
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _slow_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def loads(data: bytes | str) -> Any:
    """Parse a document; ValueError (with the position) when it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # integers beyond 64 bits are valid JSON; anything else fails here as well
        return json.loads(data, parse_constant=_no_constants)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; UUIDs, datetimes, enums and dataclasses included."""
    try:
        return orjson.dumps(value, default=_default)
    except TypeError:
        return _slow(value, sort_keys=False)


def dumps_text(value: Any) -> str:
    """`dumps` as text: for a query parameter (json_to_recordset) or aiohttp's json=."""
    return dumps(value).decode()


def canonical(value: Any) -> bytes:
    """The same value always gives the same bytes (keys sorted): for hashing requests."""
    try:
        return orjson.dumps(value, default=_default, option=_SORTED)
    except TypeError:
        return _slow(value, sort_keys=True)


def _slow(value: Any, *, sort_keys: bool) -> bytes:
    text = json.dumps(
        value,
        separators=(",", ":"),
        sort_keys=sort_keys,
        ensure_ascii=False,
        allow_nan=False,
        default=_slow_default,
    )
    return text.encode()
