"""A local SendGrid v3 API that checks what api.sendgrid.com checks and answers the same way.

POST /v3/mail/send: Bearer key, JSON, personalizations[].to[].email valid, verified
sender, subject, content (text/plain before text/html, non-empty values), string
custom_args, no reserved headers. Success is 202 with an empty body and the id in
X-Message-Id. GET /v3/scopes lists the key's scopes. Errors use
{"errors": [{"message", "field", "help"}]}.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

API_KEY = "SG.test-key.full"
NO_SEND_KEY = "SG.test-key.readonly"
VERIFIED_SENDERS = {"noreply@example.com", "news@example.com"}
RESERVED_HEADERS = {
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
}

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


def errors(status: int, *items: tuple[str, str | None], **headers: str) -> web.Response:
    body = {"errors": [{"message": m, "field": f, "help": None} for m, f in items]}
    return web.json_response(body, status=status, headers=headers)


def sg_message_id(x_message_id: str) -> str:
    """What events carry: the X-Message-Id plus SendGrid's own suffix."""
    return f"{x_message_id}.recvd-5f9ffdf494-9kc6l-1-673C6EB0-B.0"


class FakeSendGrid:
    def __init__(self) -> None:
        self.mails: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.message_ids: list[str] = []
        self.canned: list[web.Response] = []
        self.hang = False
        self.url = ""
        self._release = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/v3/mail/send", self.mail_send)
        self.app.router.add_get("/v3/scopes", self.scopes)

    def _auth(self, request: web.Request) -> str | web.Response:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:]:
            return errors(401, ("authorization required", None))
        key = header[7:]
        if key not in (API_KEY, NO_SEND_KEY):
            return errors(
                401, ("The provided authorization grant is invalid, expired, or revoked", None)
            )
        return key

    async def mail_send(self, request: web.Request) -> web.StreamResponse:
        if self.hang:
            await asyncio.wait_for(self._release.wait(), 10)
        if self.canned:
            return self.canned.pop(0)
        key = self._auth(request)
        if isinstance(key, web.Response):
            return key
        if key == NO_SEND_KEY:
            return errors(403, ("access forbidden", None))
        if request.content_type != "application/json":
            return errors(400, ("Content-Type should be application/json.", None))
        try:
            body = json.loads(await request.text())
        except ValueError:
            return errors(400, ("Bad Request", None))
        if problem := self._validate(body):
            return problem
        message_id = secrets.token_urlsafe(16)[:22]
        self.mails.append(body)
        self.headers.append(dict(request.headers))
        self.message_ids.append(message_id)
        return web.Response(status=202, headers={"X-Message-Id": message_id})

    def _validate(self, body: Any) -> web.Response | None:
        if not isinstance(body, dict):
            return errors(400, ("Bad Request", None))
        personalizations = body.get("personalizations")
        if not isinstance(personalizations, list) or not personalizations:
            return errors(400, ("The personalizations field is required.", "personalizations"))
        for i, p in enumerate(personalizations):
            for j, to in enumerate(p.get("to") or []):
                if not _ADDRESS.match(str(to.get("email", ""))):
                    return errors(
                        400,
                        ("Does not contain a valid address.", f"personalizations.{i}.to.{j}.email"),
                    )
        sender = (body.get("from") or {}).get("email")
        if not sender:
            return errors(400, ("The from object must be provided for every email send.", "from"))
        if sender not in VERIFIED_SENDERS:
            return errors(
                403,
                ("The from address does not match a verified Sender Identity.", "from"),
            )
        if not body.get("subject"):
            return errors(400, ("The subject is required.", "subject"))
        content = body.get("content") or []
        types = [c.get("type") for c in content]
        if not content or any(not c.get("value") for c in content):
            return errors(
                400,
                (
                    "The content value must be a string at least one character in length.",
                    "content.0.value",
                ),
            )
        if "text/plain" in types and types.index("text/plain") != 0:
            return errors(400, ("The text/plain content type must be first.", "content"))
        if any(not isinstance(v, str) for v in (body.get("custom_args") or {}).values()):
            return errors(400, ("Custom arguments must be strings.", "custom_args"))
        for name in body.get("headers") or {}:
            if name.lower() in RESERVED_HEADERS:
                return errors(400, (f"The header {name} is reserved.", "headers"))
        return None

    async def scopes(self, request: web.Request) -> web.Response:
        key = self._auth(request)
        if isinstance(key, web.Response):
            return key
        scopes = ["mail.send", "user.profile.read"] if key == API_KEY else ["user.profile.read"]
        return web.json_response({"scopes": scopes})

    def rate_limit(self, reset_in: int = 30) -> None:
        reset = str(int(time.time()) + reset_in)
        self.canned.append(
            errors(
                429,
                ("too many requests", None),
                **{
                    "X-RateLimit-Limit": "600",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": reset,
                },
            )
        )

    def server_error(self) -> None:
        self.canned.append(errors(503, ("Service Unavailable", None)))

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
