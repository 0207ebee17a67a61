"""hypothesis-graphql against the Strawberry schema, through the real app as admin:
no generated query or mutation gets a 500 or an error with extensions.code INTERNAL.

Valid documents (Mode.POSITIVE) reach the resolvers with arbitrary arguments;
invalid ones (Mode.NEGATIVE) must be refused by validation, cleanly.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC
from typing import Any

import graphql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis_graphql import Mode, mutations, nodes, queries

from app.graphql.schema import schema
from tests.fuzz.conftest import ADMIN, count_rows

pytestmark = pytest.mark.slow

EXAMPLES = {Mode.POSITIVE: 120, Mode.NEGATIVE: 30}
DERANDOMIZE = os.environ.get("FUZZ_RANDOM") != "1"  # FUZZ_RANDOM=1 explores new cases
KNOWN_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


def _json_object(data: dict[str, str]) -> Any:
    fields = [
        graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=nodes.String(v))
        for k, v in data.items()
    ]
    return nodes.Object(fields)


# Custom scalars: mostly valid values, sometimes garbage, so both paths are exercised.
SCALARS = {
    "UUID": st.one_of(st.uuids(), st.just(KNOWN_ID), st.text(max_size=40)).map(nodes.String),
    "DateTime": st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        st.datetimes().map(lambda d: d.isoformat()),  # naive: must be refused
        st.text(max_size=30),
    ).map(nodes.String),
    # objects only: a non-object JSON is test_non_object_variables_in_send_notifications
    "JSON": st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), st.text(max_size=20), max_size=3
    ).map(_json_object),
}


def generate(kind: str, mode: Mode) -> list[str]:
    """Documents for every root field of `kind`, one field per document (so one bad
    argument does not hide the others), the same examples on every run."""
    sdl = str(schema)
    build = mutations if kind == "mutation" else queries
    gql = schema._schema
    root = gql.mutation_type if kind == "mutation" else gql.query_type
    assert root is not None
    found: list[str] = []
    fields = list(root.fields)
    for name in fields:
        # NUL in strings: test_nul_in_template_name (PostgreSQL refuses NUL in text)
        strategy = build(sdl, fields=[name], custom_scalars=SCALARS, mode=mode, allow_x00=False)

        @settings(max_examples=max(2, EXAMPLES[mode] // len(fields)), database=None,
                  deadline=None, derandomize=DERANDOMIZE, suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(strategy)
        def collect(document: Any) -> None:
            found.append(str(document))

        try:
            collect()
        except InvalidArgument:  # NEGATIVE mode: this field has nothing required to violate
            continue
    return found


async def _seed(client: Any) -> None:
    from app.main import RUNTIME

    rt = client.server.app[RUNTIME]
    await client.post("/graphql", headers=ADMIN, json={"query": """
        mutation { createTemplate(input: {name: "welcome", channels: [EMAIL],
          subject: "Hi {{name}}", bodyText: "Hello {{name}}", variables: ["name"]}) { name } }
    """})  # fmt: skip
    await rt.db.execute(
        "INSERT INTO notifications (id, user_id, channel, to_address, subject, body, status)"
        " VALUES ($1, $1, 'email', 'a@example.com', 's', 'b', 'sent')",
        KNOWN_ID,
    )


@pytest.mark.parametrize("mode", [Mode.POSITIVE, Mode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("kind", ["query", "mutation"])
async def test_generated_operations_never_fail_internally(
    client: Any, kind: str, mode: Mode
) -> None:
    await _seed(client)
    documents = generate(kind, mode)
    assert len(documents) >= EXAMPLES[mode] // 2
    failures: list[tuple[str, int, Any]] = []
    answered = 0
    for document in documents:
        resp = await client.post("/graphql", json={"query": document}, headers=ADMIN)
        text = await resp.text()
        try:
            body = json.loads(text)
        except ValueError:
            failures.append((document, resp.status, f"not JSON: {text[:300]!r}"))
            continue
        internal = [
            e for e in (body or {}).get("errors") or []
            if (e.get("extensions") or {}).get("code") == "INTERNAL"
        ]  # fmt: skip
        errors = (body or {}).get("errors") or []
        # reached a resolver: some data, or an error raised on a field (it has a path)
        answered += bool((body or {}).get("data")) or any(e.get("path") for e in errors)
        if resp.status >= 500 or internal:
            failures.append((document, resp.status, internal or body))
    if failures:
        raise AssertionError(
            "\n\n".join(f"{status}: {doc}\n{out}" for doc, status, out in failures[:3])
        )
    if mode is Mode.POSITIVE:  # the valid documents really reached the resolvers
        assert answered >= len(documents) // 4, (answered, len(documents))
    notifications, queue = await count_rows(client)
    assert notifications >= 1 and queue <= notifications


async def test_nul_in_template_name_is_bad_input(client: Any) -> None:
    for document in (
        'query { template(name: "a\\u0000b") { name } }',
        'mutation { updateTemplate(name: "a\\u0000b", input: {subject: "x"}) { name } }',
        'mutation { deleteTemplate(name: "a\\u0000b") { name } }',
    ):
        resp = await client.post("/graphql", json={"query": document}, headers=ADMIN)
        body = await resp.json()
        codes = [e["extensions"]["code"] for e in body.get("errors") or []]
        assert codes in ([], ["BAD_USER_INPUT"], ["NOT_FOUND"]), (document, body)


async def test_non_object_variables_in_send_notifications(client: Any) -> None:
    before = await count_rows(client)
    for where in ("input", "recipient"):
        extra = "variables: 5" if where == "input" else ""
        item = 'variables: "x"' if where == "recipient" else ""
        document = (
            'mutation { sendNotifications(input: {channel: EMAIL, subject: "s", body: "b", '
            f'{extra} recipients: [{{to: {{email: "a@example.com"}}, '
            f'userId: "{KNOWN_ID}" {item}}}]}}) {{ total rejected }} }}'
        )
        resp = await client.post("/graphql", json={"query": document}, headers=ADMIN)
        body = await resp.json()
        codes = [e["extensions"]["code"] for e in body.get("errors") or []]
        assert "INTERNAL" not in codes, (document, body)
        assert codes == ["BAD_USER_INPUT"] or body["data"]["sendNotifications"]["rejected"] == 1
    assert await count_rows(client) == before
