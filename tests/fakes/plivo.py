"""A local Plivo REST API: the Message and Account resources, as the real one answers.

It checks what Plivo checks (method, path with the trailing slash, HTTP basic
auth with Auth ID and Auth Token, a JSON body, required src-or-powerpack_uuid /
dst / text, callback method) and answers with Plivo's shapes: 202
`{"api_id", "message": "message(s) queued", "message_uuid": [...]}` and
`{"api_id", "error": "..."}` on failure. `mode` scripts 429, 500 and a hang.

`sign_v3()` is what Plivo does when it calls our status callback.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

AUTH_ID = "MAODUZYTQ0Y2FMYJBLOW"
AUTH_TOKEN = "plivo-test-auth-token-0123456789"
SRC_NUMBER = "+14155550100"
INVALID_DST = "+15005550001"


def sign_v3(token: str, url: str, nonce: str, params: Mapping[str, str]) -> str:
    """Plivo's V3 signature of a POST callback with form params and no URL query.

    base64(HMAC-SHA256(token, url + "?" + name+value for sorted names + "." + nonce))
    """
    base = url + "?" + "".join(name + params[name] for name in sorted(params))
    if not params:
        base = url
    digest = hmac.new(token.encode(), f"{base}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _error(status: int, message: str, **headers: str) -> web.Response:
    body = {"api_id": str(uuid.uuid4()), "error": message}
    return web.json_response(body, status=status, headers=headers or None)


@dataclass
class FakePlivo:
    auth_id: str = AUTH_ID
    auth_token: str = AUTH_TOKEN
    mode: str | None = None  # None | "rate_limit" | "server_error" | "hang"
    retry_after: str = "7"
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""
    _server: TestServer | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/Account/{auth_id}/Message/", self.send_message)
        app.router.add_get("/v1/Account/{auth_id}/", self.get_account)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        self.base_url = str(self._server.make_url("")).rstrip("/")
        return self.base_url

    async def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            await self._server.close()

    def _authenticate(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.auth_id}:{self.auth_token}".encode()).decode()
        if header != f"Basic {expected}" or request.match_info["auth_id"] != self.auth_id:
            return _error(401, "authentication failed")
        return None

    async def _scripted(self) -> web.Response | None:
        if self.mode == "rate_limit":
            return _error(429, "too many requests", **{"Retry-After": self.retry_after})
        if self.mode == "server_error":
            return _error(500, "unexpected error")
        if self.mode == "hang":
            await asyncio.wait_for(self._release.wait(), timeout=10)
            return _error(500, "too late")
        return None

    async def send_message(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": raw})
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        scripted = await self._scripted()
        if scripted is not None:
            return scripted
        if request.content_type != "application/json":
            return _error(400, "content type must be application/json")
        try:
            payload = json.loads(raw)
        except ValueError:
            return _error(400, "invalid json data")
        invalid = _validate(payload)
        if invalid is not None:
            return invalid
        return web.json_response(
            {
                "api_id": str(uuid.uuid4()),
                "message": "message(s) queued",
                "message_uuid": [str(uuid.uuid4())],
            },
            status=202,
        )

    async def get_account(self, request: web.Request) -> web.Response:
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        return web.json_response(
            {
                "account_type": "standard",
                "address": "",
                "api_id": str(uuid.uuid4()),
                "auth_id": self.auth_id,
                "auto_recharge": False,
                "billing_mode": "prepaid",
                "cash_credits": "10.00000",
                "city": "",
                "name": "Test account",
                "resource_uri": f"/v1/Account/{self.auth_id}/",
                "state": "",
                "timezone": "America/Los_Angeles",
            }
        )


def _validate(payload: Any) -> web.Response | None:
    if not isinstance(payload, dict):
        return _error(400, "invalid json data")
    if not (payload.get("src") or payload.get("powerpack_uuid")):
        return _error(400, "Either src or powerpack_uuid must be specified")
    if not payload.get("dst"):
        return _error(400, "Missing mandatory parameter: dst")
    if not payload.get("text"):
        return _error(400, "Missing mandatory parameter: text")
    if payload.get("method", "POST") not in ("GET", "POST"):
        return _error(400, "method must be GET or POST")
    dst = str(payload["dst"])
    digits = dst.removeprefix("+")
    if dst == INVALID_DST or not digits.isdigit() or len(digits) > 14:
        return _error(400, f"invalid destination number {dst}")
    return None
