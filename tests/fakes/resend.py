"""A local Resend API that checks what api.resend.com checks and answers the same way.

POST /emails: Bearer key, JSON body with from/to/subject and html or text, tag
charset, address format, Idempotency-Key (1-256 chars; a replay with the same body
returns the first id, a different body is 409). GET /domains: full-access keys only.
Errors use Resend's {"statusCode", "name", "message"} shape.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

API_KEY = "re_test_full_access"
SENDING_ONLY_KEY = "re_test_sending_only"

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_NAMED = re.compile(r"^[^<>]*<([^<>]+)>$")
_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def _valid_address(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    named = _NAMED.match(value.strip())
    return bool(_ADDRESS.match(named.group(1) if named else value.strip()))


def error(status: int, name: str, message: str, **headers: str) -> web.Response:
    body = {"statusCode": status, "name": name, "message": message}
    return web.json_response(body, status=status, headers=headers)


class FakeResend:
    def __init__(self) -> None:
        self.emails: list[dict[str, Any]] = []  # accepted request bodies
        self.headers: list[dict[str, str]] = []  # their request headers
        self.canned: list[web.Response] = []  # answered first, in order
        self.hang = False
        self.url = ""  # set while running
        self._release = asyncio.Event()
        self._idempotency: dict[str, tuple[str, str]] = {}  # key -> (body, id)
        self.app = web.Application()
        self.app.router.add_post("/emails", self.send_email)
        self.app.router.add_get("/domains", self.list_domains)

    # ---- auth -------------------------------------------------------------------

    def _auth(self, request: web.Request) -> str | web.Response:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:]:
            return error(401, "missing_api_key", "Missing API key in the authorization header.")
        key = header[7:]
        if key not in (API_KEY, SENDING_ONLY_KEY):
            return error(403, "invalid_api_key", "API key is invalid")
        return key

    # ---- routes -----------------------------------------------------------------

    async def send_email(self, request: web.Request) -> web.StreamResponse:
        if self.hang:
            await asyncio.wait_for(self._release.wait(), 10)
        if self.canned:
            return self.canned.pop(0)
        key = self._auth(request)
        if isinstance(key, web.Response):
            return key
        if request.content_type != "application/json":
            return error(422, "validation_error", "Invalid content type: use application/json")
        raw = await request.text()
        try:
            body = json.loads(raw)
        except ValueError:
            return error(422, "validation_error", "Invalid JSON body")
        if problem := self._validate(body):
            return problem
        idem = request.headers.get("Idempotency-Key")
        if idem is not None:
            if not 1 <= len(idem) <= 256:
                return error(400, "invalid_idempotency_key", "The key must be between 1-256 chars.")
            if idem in self._idempotency:
                first_body, first_id = self._idempotency[idem]
                if first_body != raw:
                    return error(
                        409,
                        "invalid_idempotent_request",
                        "Same idempotency key used with a different request payload.",
                    )
                return web.json_response({"id": first_id})
        email_id = str(uuid.uuid4())
        if idem is not None:
            self._idempotency[idem] = (raw, email_id)
        self.emails.append(body)
        self.headers.append(dict(request.headers))
        return web.json_response({"id": email_id})

    def _validate(self, body: Any) -> web.Response | None:
        if not isinstance(body, dict):
            return error(422, "validation_error", "Invalid body")
        for field in ("from", "to", "subject"):
            if not body.get(field):
                return error(422, "missing_required_field", f"Missing `{field}` field.")
        if not (body.get("html") or body.get("text")):
            return error(422, "validation_error", "Missing `html` or `text` field.")
        if not _valid_address(body["from"]):
            return error(
                422,
                "validation_error",
                "Invalid `from` field. The email address needs to follow the "
                "`email@example.com` or `Name <email@example.com>` format.",
            )
        to = body["to"] if isinstance(body["to"], list) else [body["to"]]
        if not to or not all(_valid_address(a) for a in to):
            return error(
                422,
                "validation_error",
                "Invalid `to` field. The email address needs to follow the "
                "`email@example.com` or `Name <email@example.com>` format.",
            )
        for tag in body.get("tags") or []:
            if not (_TAG.match(str(tag.get("name"))) and _TAG.match(str(tag.get("value")))):
                return error(
                    422,
                    "validation_error",
                    "Tags should only contain ASCII letters, numbers, underscores, or dashes",
                )
        headers = body.get("headers")
        if headers is not None and not isinstance(headers, dict):
            return error(422, "validation_error", "Invalid `headers` field.")
        return None

    async def list_domains(self, request: web.Request) -> web.Response:
        key = self._auth(request)
        if isinstance(key, web.Response):
            return key
        if key == SENDING_ONLY_KEY:
            return error(
                401, "restricted_api_key", "This API key is restricted to only send emails."
            )
        domain = {"id": str(uuid.uuid4()), "name": "example.com", "status": "verified"}
        return web.json_response({"object": "list", "data": [domain]})

    # ---- canned answers ---------------------------------------------------------

    def rate_limit(self, retry_after: int = 7) -> None:
        self.canned.append(
            error(
                429,
                "rate_limit_exceeded",
                "Too many requests. You can only make 2 requests per second.",
                **{"retry-after": str(retry_after), "ratelimit-limit": "2"},
            )
        )

    def server_error(self) -> None:
        self.canned.append(error(500, "internal_server_error", "An unexpected error occurred."))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serve on 127.0.0.1 (free port); yield the base URL."""
        server = TestServer(self.app, host="127.0.0.1")
        await server.start_server()
        self.url = str(server.make_url("")).rstrip("/")
        try:
            yield self.url
        finally:
            self._release.set()
            await server.close()
