"""The real app (create_app) on the test database and Redis, with every way in configured."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from app.main import create_app

API_KEY = "svc-key-0123456789abcdef"
ADMIN_SECRET = "admin-secret-0123456789"
JWT_KEY = "jwt-signing-key-0123456789abcdef0123456789"
JWT_SECRET = json.dumps({"type": "HS256", "key": JWT_KEY})
SERVICE = {"X-API-Key": API_KEY}
ADMIN = {"X-Notifications-Admin-Secret": ADMIN_SECRET}


def user_token(user_id: uuid.UUID, role: str = "user") -> dict[str, str]:
    claims = {
        "sub": str(user_id),
        "exp": int(time.time()) + 600,
        "https://hasura.io/jwt/claims": {
            "x-hasura-allowed-roles": [role],
            "x-hasura-default-role": role,
            "x-hasura-user-id": str(user_id),
        },
    }
    return {"Authorization": "Bearer " + jwt.encode(claims, JWT_KEY, algorithm="HS256")}


@pytest.fixture
def app_settings(db_settings: Callable[..., Any]) -> Callable[..., Any]:
    def build(**overrides: Any) -> Any:
        base = {
            "api_keys": API_KEY,
            "admin_secret": ADMIN_SECRET,
            "jwt_secret": JWT_SECRET,
            "dry_run": True,
            "api_rate_limit": 0,
            "max_body_size": 4096,
        }
        base.update(overrides)
        return db_settings(**base)

    return build


@pytest.fixture
async def make_client(clean: None, aiohttp_client: Any, app_settings: Callable[..., Any]) -> Any:
    async def build(**overrides: Any) -> Any:
        return await aiohttp_client(create_app(app_settings(**overrides)))

    return build


@pytest.fixture
async def client(make_client: Any) -> Any:
    return await make_client()


TEMPLATE = {
    "name": "welcome_email",
    "category": "transactional",
    "channels": ["email"],
    "subject": "Welcome {{user_name}}",
    "body_text": "Hi {{user_name}}, welcome to {{app_name}}",
    "variables": ["user_name", "app_name"],
}


def send_body(user_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    body = {
        "user_id": str(user_id),
        "channel": "email",
        "template": "welcome_email",
        "to": {"email": "ada@example.org"},
        "variables": {"user_name": "Ada", "app_name": "MyApp"},
    }
    body.update(overrides)
    return body
