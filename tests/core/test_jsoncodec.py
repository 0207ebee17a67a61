"""app.jsoncodec: orjson on the hot paths, the standard library for what orjson refuses."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncpg.pgproto.pgproto import UUID as PgUUID

from app import jsoncodec


@dataclass
class Row:
    id: uuid.UUID
    variables: dict[str, Any]
    at: datetime | None = None


def test_round_trip_of_ordinary_documents() -> None:
    doc = {"name": "Ada 🎉 <b>", "n": [1, 2.5, None, True], "nested": {"k": "ü"}}
    assert jsoncodec.loads(jsoncodec.dumps(doc)) == doc
    assert jsoncodec.loads(json.dumps(doc)) == doc


def test_integers_beyond_64_bits_survive_both_ways() -> None:
    big = 2**70
    assert jsoncodec.loads(f'{{"n": {big}}}'.encode()) == {"n": big}
    assert json.loads(jsoncodec.dumps({"n": big})) == {"n": big}
    # inside a dataclass too (the slow path writes dataclasses itself)
    row = Row(uuid.UUID(int=1), {"n": big}, datetime(2026, 1, 1, tzinfo=UTC))
    assert json.loads(jsoncodec.dumps([row])) == [
        {
            "id": "00000000-0000-0000-0000-000000000001",
            "variables": {"n": big},
            "at": "2026-01-01T00:00:00+00:00",
        }
    ]


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', "[-Infinity]", "{", '{"a":}'])
def test_loads_rejects_what_is_not_json(text: str) -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads(text.encode())


def test_asyncpg_uuids_and_dataclasses_are_written() -> None:
    value = PgUUID("6f1c0e52-8a3b-4c1d-9e2f-0a1b2c3d4e5f")
    row = Row(value, {"a": 1})
    assert json.loads(jsoncodec.dumps([row])) == [
        {"id": "6f1c0e52-8a3b-4c1d-9e2f-0a1b2c3d4e5f", "variables": {"a": 1}, "at": None}
    ]


def test_canonical_ignores_key_order_and_is_stable() -> None:
    a = {"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": None}}
    b = {"a": {"x": None, "y": [1, {"c": 3, "d": 2}]}, "b": 1}
    assert (
        jsoncodec.canonical(a)
        == jsoncodec.canonical(b)
        == (b'{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}')
    )
    assert jsoncodec.canonical({"n": 2**70, "a": 1}) == b'{"a":1,"n":1180591620717411303424}'
