"""A real app (real PostgreSQL and Redis) with every way in configured, and token helpers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from app.main import create_app

JWT_KEY = "graphql-test-signing-key-0123456789abcdef"
ADMIN = "admin-secret-for-tests"
ACTION = "action-secret-for-tests"
AUDIENCE = "notifications-tests"


def token(
    user_id: uuid.UUID | str | None = None,
    role: str = "user",
    *,
    key: str = JWT_KEY,
    exp: float | None = None,
    aud: str | None = AUDIENCE,
    allowed: list[str] | None = None,
) -> str:
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "exp": int(exp if exp is not None else time.time() + 600),
        "https://hasura.io/jwt/claims": {
            "x-hasura-default-role": role,
            "x-hasura-allowed-roles": allowed or [role],
            **({"x-hasura-user-id": str(user_id)} if user_id else {}),
        },
    }
    if aud:
        claims["aud"] = aud
    return jwt.encode(claims, key, algorithm="HS256")


def bearer(user_id: uuid.UUID | str | None = None, role: str = "user", **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user_id, role, **kw)}"}


ADMIN_HEADERS = {"X-Notifications-Admin-Secret": ADMIN}


@pytest.fixture
def app_settings(db_settings: Callable[..., Any]) -> Any:
    return db_settings(
        admin_secret=ADMIN,
        action_secret=ACTION,
        jwt_secret=json.dumps({"type": "HS256", "key": JWT_KEY, "audience": AUDIENCE}),
        dry_run=True,
        dedup_window=0,
    )


@pytest.fixture
async def client(clean: None, aiohttp_client: Any, app_settings: Any) -> Any:
    return await aiohttp_client(create_app(app_settings))


@pytest.fixture
def gql(client: Any) -> Callable[..., Any]:
    """await gql(query, variables, headers) -> (status, body)."""

    async def run(
        query: str, variables: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        resp = await client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        return resp.status, await resp.json()

    return run


@pytest.fixture
def action(client: Any) -> Callable[..., Any]:
    """await action(name, input, session) -> (status, body): Hasura's action call, verbatim."""

    async def run(
        name: str | dict[str, Any],
        input: dict[str, Any],
        session: dict[str, str],
        *,
        secret: str | None = ACTION,
    ) -> tuple[int, Any]:
        body = {
            # a plain str is Hasura v2's {"name": ...}; a str subclass or dict is sent as is
            "action": {"name": name}
            if type(name) is str
            else (name if isinstance(name, dict) else str(name)),
            "input": input,
            "session_variables": session,
            "request_query": "mutation { ... }",
        }
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "hasura-graphql-engine/v2.48.5",
        }
        if secret is not None:
            headers["X-Notifications-Action-Secret"] = secret
        resp = await client.post("/hasura/actions", json=body, headers=headers)
        return resp.status, await resp.json()

    return run


def code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])
