"""A local Mailgun API that checks what api.mailgun.net checks and answers the same way.

POST /v3/{domain}/messages: HTTP basic auth api:KEY (else a plain "Forbidden" 401),
a form body (urlencoded or multipart), a known domain (else 404), from/to/subject,
text or html, valid addresses. Answers {"id": "<...@domain>", "message": "Queued.
Thank you."}. GET /v3/domains/{domain} describes the domain. Errors are {"message"}.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

API_KEY = "key-test-0123456789abcdef"
DOMAIN = "mg.example.com"

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_NAMED = re.compile(r"^[^<>]*<([^<>]+)>$")


def _valid_address(value: str) -> bool:
    named = _NAMED.match(value.strip())
    return bool(_ADDRESS.match(named.group(1) if named else value.strip()))


def message(status: int, text: str, **headers: str) -> web.Response:
    return web.json_response({"message": text}, status=status, headers=headers)


class FakeMailgun:
    def __init__(self) -> None:
        self.messages: list[list[tuple[str, str]]] = []  # accepted forms, fields in order
        self.ids: list[str] = []
        self.canned: list[web.Response] = []
        self.hang = False
        self.url = ""
        self._release = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/v3/{domain}/messages", self.send)
        self.app.router.add_get("/v3/domains/{domain}", self.domain)

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, key = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == "api" and key == API_KEY

    async def send(self, request: web.Request) -> web.StreamResponse:
        if self.hang:
            await asyncio.wait_for(self._release.wait(), 10)
        if self.canned:
            return self.canned.pop(0)
        if not self._authorised(request):
            return web.Response(status=401, text="Forbidden")
        domain = request.match_info["domain"]
        if domain != DOMAIN:
            return message(404, f"Domain not found: {domain}")
        if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return message(400, "Invalid request: expected form data")
        form = [(k, str(v)) for k, v in (await request.post()).items()]
        fields = dict(form)
        for name in ("from", "to", "subject"):
            if not fields.get(name):
                return message(400, f"'{name}' parameter is missing")
        if not (fields.get("text") or fields.get("html") or fields.get("template")):
            return message(
                400, "Need at least one of 'text', 'html' or 'template' parameters specified"
            )
        for name in ("from", "to"):
            if not _valid_address(fields[name]):
                return message(
                    400, f"'{name}' parameter is not a valid address. please check documentation"
                )
        message_id = f"<{time.strftime('%Y%m%d%H%M%S')}.{secrets.token_hex(8)}@{DOMAIN}>"
        self.messages.append(form)
        self.ids.append(message_id)
        return web.json_response({"id": message_id, "message": "Queued. Thank you."})

    async def domain(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.Response(status=401, text="Forbidden")
        name = request.match_info["domain"]
        if name != DOMAIN:
            return message(404, "Domain not found")
        info: dict[str, Any] = {"name": DOMAIN, "state": "active", "type": "custom"}
        return web.json_response(
            {"domain": info, "receiving_dns_records": [], "sending_dns_records": []}
        )

    def rate_limit(self, retry_after: int = 5) -> None:
        self.canned.append(message(429, "Too many requests", **{"Retry-After": str(retry_after)}))

    def server_error(self) -> None:
        self.canned.append(message(500, "Internal Server Error"))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = TestServer(self.app, host="127.0.0.1")
        await server.start_server()
        self.url = str(server.make_url("")).rstrip("/")
        try:
            yield self.url
        finally:
            self._release.set()
            await server.close()
