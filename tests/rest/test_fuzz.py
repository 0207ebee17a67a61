"""Schemathesis against /openapi.json, through the real app: no input yields a 5xx.

Cases are generated from the served document (hypothesis, ~20 per operation),
then sent with the aiohttp test client as a service caller.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.rest.conftest import SERVICE, TEMPLATE

MAX_EXAMPLES = 20


def _collect(strategy: Any, cases: list[Any]) -> None:
    @settings(max_examples=MAX_EXAMPLES, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(strategy)
    def collect(case: Any) -> None:
        cases.append(case)

    collect()


def generate(doc: dict[str, Any]) -> list[Any]:
    schema = schemathesis.openapi.from_dict(doc)
    cases: list[Any] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in ("/health", "/metrics"):
            continue

        _collect(operation.as_strategy(), cases)
    return cases


async def test_no_5xx_for_generated_input(client: Any) -> None:
    await client.post("/api/templates", json=TEMPLATE, headers=SERVICE)
    doc = await (await client.get("/openapi.json")).json()
    cases = generate(doc)
    assert len(cases) > 100
    failures = []
    for case in cases:
        path = case.path
        for name, value in (case.path_parameters or {}).items():
            path = path.replace("{" + name + "}", str(value))
        kwargs: dict[str, Any] = {"headers": {**SERVICE}, "params": {
            k: (str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in (case.query or {}).items() if v is not None
        }}  # fmt: skip
        if case.body is not None and not isinstance(case.body, schemathesis.core.NotSet):
            kwargs["json"] = case.body
        resp = await client.request(case.method, path, **kwargs)
        if resp.status >= 500:
            failures.append((case.method, path, case.body, resp.status, await resp.text()))
    assert not failures, failures[:3]
