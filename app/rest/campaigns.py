"""REST routes for campaigns and drip sequences. Thin: authenticate, validate, call the service.

    POST /api/campaigns                  {name, channel, template | subject/body, recipients,
                                          variables?, category?, priority?, send_at?} -> 202
    GET  /api/campaigns                  recent campaigns
    GET  /api/campaigns/{id}             progress and stats
    POST /api/campaigns/{id}/cancel      cancel what is not yet sent
    POST /api/sequences                  {user_id, channel?, to, name, steps} -> 201
    GET  /api/sequences/{id}             the sequence and its steps
    POST /api/sequences/{id}/cancel      cancel the remaining steps

Errors are app.errors exceptions or pydantic ValidationErrors, which the REST problem
middleware (app.rest.middleware) turns into application/problem+json.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from app.rest.routes import authenticate, body_as, path_uuid, privileged, raw_reply, rt_of
from app.services import campaigns, drips


class CampaignRecipient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UUID
    to: dict[str, Any]
    variables: dict[str, Any] = Field(default_factory=dict)


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=255)
    channel: str = "email"
    template: str | None = Field(None, min_length=1, max_length=255)
    subject: str | None = Field(None, max_length=500)
    body: str | None = Field(None, max_length=100_000)
    body_html: str | None = Field(None, max_length=500_000)
    variables: dict[str, Any] = Field(default_factory=dict)
    category: str | None = Field(None, min_length=1, max_length=100)
    priority: int = Field(0, ge=-1000, le=1000)
    send_at: datetime | None = None
    # Recipients are validated one by one by the service: a bad one is counted, not fatal.
    recipients: list[dict[str, Any]] = Field(min_length=1)


class SequenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    user_id: UUID
    name: str = Field(min_length=1, max_length=255)
    channel: str = "email"
    category: str | None = None
    to: dict[str, Any]
    steps: list[dict[str, Any]] = Field(min_length=1, max_length=drips.MAX_STEPS)


async def create_campaign(request: web.Request) -> web.Response:
    caller = privileged(request)
    data = await body_as(request, CampaignIn)
    rt = rt_of(request)
    campaign_id = await campaigns.create(
        rt, caller, data.name, data.template, data.channel, data.recipients,
        subject=data.subject, body=data.body, body_html=data.body_html,
        variables=data.variables, category=data.category, priority=data.priority,
        send_at=data.send_at,
    )  # fmt: skip
    progress = await campaigns.progress(rt, caller, campaign_id)
    return raw_reply(progress, status=202)


async def list_campaigns(request: web.Request) -> web.Response:
    caller = privileged(request)
    return raw_reply({"items": await campaigns.list_campaigns(rt_of(request), caller)})


async def get_campaign(request: web.Request) -> web.Response:
    caller = privileged(request)
    return raw_reply(await campaigns.stats(rt_of(request), caller, path_uuid(request, "id")))


async def cancel_campaign(request: web.Request) -> web.Response:
    caller = privileged(request)
    return raw_reply(await campaigns.cancel(rt_of(request), caller, path_uuid(request, "id")))


async def start_sequence(request: web.Request) -> web.Response:
    caller = authenticate(request)
    data = await body_as(request, SequenceIn)
    rt = rt_of(request)
    sequence_id = await drips.start(
        rt, caller, data.user_id, data.to, data.steps, data.name,
        channel=data.channel, category=data.category,
    )  # fmt: skip
    return raw_reply(await drips.get(rt, caller, sequence_id), status=201)


async def get_sequence(request: web.Request) -> web.Response:
    caller = authenticate(request)
    return raw_reply(await drips.get(rt_of(request), caller, path_uuid(request, "id")))


async def cancel_sequence(request: web.Request) -> web.Response:
    caller = authenticate(request)
    rt = rt_of(request)
    sequence_id = path_uuid(request, "id")
    cancelled = await drips.cancel(rt, caller, sequence_id)
    return raw_reply({**await drips.get(rt, caller, sequence_id), "cancelled": cancelled})


ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/api/campaigns", create_campaign),
    ("GET", "/api/campaigns", list_campaigns),
    ("GET", "/api/campaigns/{id}", get_campaign),
    ("POST", "/api/campaigns/{id}/cancel", cancel_campaign),
    ("POST", "/api/sequences", start_sequence),
    ("GET", "/api/sequences/{id}", get_sequence),
    ("POST", "/api/sequences/{id}/cancel", cancel_sequence),
]


def setup(app: web.Application) -> None:
    """Mount the routes; the REST middlewares (errors, limits, metrics) are app.rest.routes'."""
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
