"""A local OneSignal REST API (api.onesignal.com): create and list notifications.

It checks what OneSignal checks - the `Authorization: Key <app API key>` header,
the app id, a targeting parameter, English contents - and answers with the
documented shapes: 200 {"id", "external_id"} on a send; the polymorphic
200 {"id": "", "errors": ["All included players are not subscribed"]} when no
targeted subscription exists; 400/403 {"errors": [...]}; replays for a repeated
`idempotency_key` with the `Idempotent-Replayed: true` header.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

INVALID_API_KEY = (
    "Access denied.  Please include an 'Authorization: ...' header with a valid API key "
    "(https://documentation.onesignal.com/docs/en/keys-and-ids#api-keys)."
)
NO_SUBSCRIBERS = "All included players are not subscribed"
NO_TARGETING = (
    "You must include which players, segments, or tags you wish to send this notification to."
)
NO_ENGLISH = "Message Notifications must have English language content"


@dataclass
class FakeOneSignal:
    api_key: str
    app_id: str
    subscriptions: set[str] = field(default_factory=set)
    external_ids: set[str] = field(default_factory=set)
    created: list[dict[str, Any]] = field(default_factory=list)
    replays: int = 0
    # answered, in order, instead of processing the next POST /notifications
    scripted: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    hang: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    server: TestServer | None = None
    base_url: str = ""
    _by_key: dict[str, str] = field(default_factory=dict)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/notifications", self.create)
        app.router.add_get("/notifications", self.list)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        self.base_url = str(self.server.make_url("")).rstrip("/")
        return self.base_url

    async def close(self) -> None:
        self.release.set()
        if self.server is not None:
            await self.server.close()

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Key {self.api_key}"

    async def create(self, request: web.Request) -> web.Response:
        if self.hang:
            await asyncio.wait_for(self.release.wait(), 10)
        if not self._authorised(request):
            return _errors(403, INVALID_API_KEY)
        if request.content_type != "application/json":
            return _errors(400, "Content-Type must be application/json")
        body = await request.json()
        if body.get("app_id") != self.app_id:
            return _errors(403, INVALID_API_KEY)
        if self.scripted:
            status, answer, headers = self.scripted.pop(0)
            return web.json_response(answer, status=status, headers=headers)
        key = body.get("idempotency_key")
        if key and key in self._by_key:
            self.replays += 1
            return web.json_response(
                {"id": self._by_key[key], "external_id": None},
                headers={"Idempotent-Replayed": "true"},
            )
        problem = _problem(body)
        if problem:
            return _errors(400, problem)
        if not self._reaches_someone(body):
            return web.json_response({"id": "", "errors": [NO_SUBSCRIBERS]})
        notification_id = str(uuid.uuid4())
        if key:
            self._by_key[key] = notification_id
        self.created.append(body)
        return web.json_response({"id": notification_id, "external_id": None})

    def _reaches_someone(self, body: dict[str, Any]) -> bool:
        ids = set(body.get("include_subscription_ids") or ())
        aliases = set((body.get("include_aliases") or {}).get("external_id") or ())
        return bool(ids & self.subscriptions or aliases & self.external_ids)

    async def list(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _errors(403, INVALID_API_KEY)
        if request.query.get("app_id") != self.app_id:
            return _errors(403, INVALID_API_KEY)
        limit = int(request.query.get("limit", "50"))
        notifications = [{"id": "n", **n} for n in self.created[-limit:]] if limit else []
        return web.json_response(
            {
                "total_count": len(self.created),
                "offset": 0,
                "limit": limit,
                "notifications": notifications,
            }
        )


def _problem(body: dict[str, Any]) -> str | None:
    if not (body.get("include_subscription_ids") or body.get("include_aliases")):
        return NO_TARGETING
    if body.get("include_aliases") and body.get("target_channel") != "push":
        return "target_channel is required when targeting aliases"
    if not (body.get("contents") or {}).get("en"):
        return NO_ENGLISH
    data = body.get("data")
    if data is not None and not isinstance(data, dict):
        return "data must be an object"
    return None


def _errors(status: int, *messages: str) -> web.Response:
    return web.json_response({"errors": list(messages)}, status=status)
