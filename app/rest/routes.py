"""The REST API (the spec's /api/... routes and more), /metrics, /openapi.json and /docs.

Every handler is thin: authenticate, validate the body/query with app.rest.schemas,
call the service layer, serialise. Errors are raised as app.errors exceptions (or
pydantic ValidationError) and turned into problem+json by app.rest.middleware.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel, ValidationError

from app import jsoncodec, metrics
from app.errors import Forbidden, InvalidInput, NotificationError
from app.main import AUTH, RUNTIME, SETTINGS
from app.models import NUL_CHECKED, NUL_ESCAPE, Caller, SendRequest, nul_path
from app.rest import openapi, problems
from app.rest import schemas as s
from app.rest.middleware import metrics_middleware, problem_middleware, ratelimit_middleware
from app.services import events as event_service
from app.services import notifications, preferences, stats
from app.services import templates as template_service

M = TypeVar("M", bound=BaseModel)
JSON = "application/json"


# --------------------------------------------------------------------------- helpers


def rt_of(request: web.Request) -> Any:
    return request.app[RUNTIME]


def authenticate(request: web.Request) -> Caller:
    return request.app[AUTH].authenticate(request.headers, request.remote)


def privileged(request: web.Request) -> Caller:
    caller = authenticate(request)
    if not caller.is_privileged:
        raise Forbidden("this endpoint is for admin and service callers")
    return caller


async def read_json(request: web.Request) -> Any:
    """The JSON body; 413 over the size limit, 400 when empty or malformed."""
    limit = request.app[SETTINGS].max_body_size
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    raw = await request.read()
    if not raw.strip():
        raise _bad_request("request body is empty; send a JSON object")
    try:
        data = jsoncodec.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad_request(f"malformed JSON: {exc}") from None
    # JSON can only carry a NUL escaped, so a body without the escape needs no walk
    if NUL_ESCAPE in raw and (where := nul_path(data)) is not None:
        raise _nul_error(["body", *where])
    return data


def _nul_error(path: list[Any]) -> InvalidInput:
    where = ".".join(str(p) for p in path)
    return InvalidInput(
        f"{where}: must not contain NUL characters",
        details={"errors": [{"path": path, "message": "must not contain NUL characters"}]},
    )


class _BadRequest(NotificationError):
    status = 400
    code = "BAD_REQUEST"


def _bad_request(message: str) -> NotificationError:
    return _BadRequest(message)


async def body_as(request: web.Request, model: type[M]) -> M:
    return model.model_validate(await read_json(request), context=NUL_CHECKED)


def query_as(request: web.Request, model: type[M]) -> M:
    for key, value in request.query.items():
        if "\x00" in key or "\x00" in value:
            raise _nul_error(["query", key])
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        errors = problems.validation_errors(exc, ("query",))
        first = errors[0]
        raise InvalidInput(
            f"{'.'.join(str(p) for p in first['path'])}: {first['message']}",
            details={"errors": errors},
        ) from None


def path_name(request: web.Request, name: str = "name") -> str:
    value = request.match_info[name]
    if "\x00" in value:
        raise _nul_error(["path", name])
    return value


def path_uuid(request: web.Request, name: str) -> UUID:
    value = request.match_info[name]
    try:
        return UUID(value)
    except ValueError:
        raise InvalidInput(
            f"{name}: {value!r} is not a UUID",
            details={"errors": [{"path": ["path", name], "message": "must be a UUID"}]},
        ) from None


def reply(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status, content_type=JSON)


def raw_reply(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), status=status, content_type=JSON)


# --------------------------------------------------------------------------- notifications


async def send(request: web.Request) -> web.Response:
    caller = authenticate(request)
    payload = await body_as(request, SendRequest)
    outcome = await notifications.send(rt_of(request), payload, caller)
    return _send_reply(outcome)


def _send_reply(outcome: notifications.SendOutcome) -> web.Response:
    """The SendResponse written directly: the API's hottest answer skips a model round trip
    (tests/rest check it against the SendResponse schema)."""
    return web.Response(body=jsoncodec.dumps(outcome.as_dict()), content_type=JSON)


async def send_batch(request: web.Request) -> web.Response:
    caller = authenticate(request)
    batch = await body_as(request, s.BatchSendRequest)
    results: list[s.BatchItemResult | None] = [None] * len(batch.recipients)
    valid: list[tuple[int, SendRequest]] = []
    for index, recipient in enumerate(batch.recipients):
        user_id = recipient.user_id or caller.user_id
        if user_id is None:
            results[index] = _item_error(index, "BAD_USER_INPUT", "user_id is required")
            continue
        try:
            valid.append((index, SendRequest.model_validate(batch.item(recipient, user_id))))
        except ValidationError as exc:
            first = problems.validation_errors(exc, ())[0]
            where = ".".join(str(p) for p in first["path"])
            message = f"{where}: {first['message']}" if where else first["message"]
            results[index] = _item_error(index, "BAD_USER_INPUT", message)
    outcomes = await notifications.send_many(rt_of(request), [r for _, r in valid], caller)
    for (index, _), outcome in zip(valid, outcomes, strict=True):
        error = outcome.error
        results[index] = s.BatchItemResult(
            index=index,
            success=outcome.success,
            notification_id=outcome.notification_id,
            status=outcome.status,
            message=outcome.message,
            error=s.ErrorInfo(code=error.code, message=error.message) if error else None,
        )
    done = [r for r in results if r is not None]
    accepted = sum(1 for r in done if r.success)
    return reply(
        s.BatchSendResponse(
            success=accepted == len(done), total=len(done), accepted=accepted,
            failed=len(done) - accepted, results=done,
        )
    )  # fmt: skip


def _item_error(index: int, code: str, message: str) -> s.BatchItemResult:
    return s.BatchItemResult(
        index=index, success=False, status="rejected", message=message,
        error=s.ErrorInfo(code=code, message=message),
    )  # fmt: skip


async def get_notification(request: web.Request) -> web.Response:
    caller = authenticate(request)
    row = await notifications.get(rt_of(request), caller, path_uuid(request, "id"))
    return reply(s.NotificationOut.model_validate(dict(row)))


async def list_notifications(request: web.Request) -> web.Response:
    caller = authenticate(request)
    q = query_as(request, s.ListQuery)
    rows = await notifications.list_for(
        rt_of(request), caller, user_id=q.user_id,
        status=q.status.value if q.status else None,
        channel=q.channel.value if q.channel else None,
        template_name=q.template, limit=q.limit, offset=q.offset,
    )  # fmt: skip
    items = [s.NotificationOut.model_validate(dict(r)) for r in rows]
    next_offset = q.offset + len(items) if len(items) == q.limit else None
    return reply(
        s.NotificationList(
            items=items, limit=q.limit, offset=q.offset, count=len(items), next_offset=next_offset
        )
    )


async def cancel_notification(request: web.Request) -> web.Response:
    caller = authenticate(request)
    outcome = await notifications.cancel(rt_of(request), caller, path_uuid(request, "id"))
    return reply(s.SendResponse.model_validate(outcome))


async def notification_events(request: web.Request) -> web.Response:
    caller = authenticate(request)
    notification_id = path_uuid(request, "id")
    rows = await event_service.list_events(rt_of(request).db, caller, notification_id)
    return reply(
        s.EventList(
            notification_id=notification_id,
            events=[s.EventOut.model_validate(dict(r)) for r in rows],
        )
    )


# --------------------------------------------------------------------------- templates


class _TemplateQuery(BaseModel):
    model_config = {"extra": "forbid"}
    active: bool | None = None


async def list_templates(request: web.Request) -> web.Response:
    authenticate(request)
    q = query_as(request, _TemplateQuery)
    rows = await template_service.list_all(rt_of(request), active=q.active)
    items = [s.TemplateOut.model_validate(dict(r)) for r in rows]
    return reply(s.TemplateList(templates=items, count=len(items)))


async def get_template(request: web.Request) -> web.Response:
    authenticate(request)
    row = await template_service.get(rt_of(request), path_name(request))
    return reply(s.TemplateOut.model_validate(dict(row)))


async def create_template(request: web.Request) -> web.Response:
    caller = authenticate(request)
    body = await body_as(request, s.TemplateCreate)
    row = await template_service.create(rt_of(request), caller, body.name, body.fields())
    return reply(s.TemplateOut.model_validate(dict(row)), status=201)


async def update_template(request: web.Request) -> web.Response:
    caller = authenticate(request)
    body = await body_as(request, s.TemplateUpdate)
    row = await template_service.update(rt_of(request), caller, path_name(request), body.fields())
    return reply(s.TemplateOut.model_validate(dict(row)))


async def delete_template(request: web.Request) -> web.Response:
    caller = authenticate(request)
    await template_service.delete(rt_of(request), caller, path_name(request))
    return web.Response(status=204)


# --------------------------------------------------------------------------- preferences


async def set_preference(request: web.Request) -> web.Response:
    caller = authenticate(request)
    body = await body_as(request, s.PreferenceIn)
    row = await preferences.upsert(
        rt_of(request).db, caller, body.user_id, body.channel.value, body.category, body.fields()
    )
    return reply(s.PreferenceOut.model_validate(dict(row)))


async def get_preferences(request: web.Request) -> web.Response:
    caller = authenticate(request)
    user_id = path_uuid(request, "user_id")
    rows = await preferences.get_for_user(rt_of(request).db, caller, user_id)
    return reply(
        s.PreferenceList(
            user_id=user_id, preferences=[s.PreferenceOut.model_validate(dict(r)) for r in rows]
        )
    )


# --------------------------------------------------------------------------- stats


async def stats_delivery(request: web.Request) -> web.Response:
    privileged(request)
    days = query_as(request, s.StatsQuery).as_days()
    rows = await stats.delivery(rt_of(request).db, days if days is not None else 30)
    return reply(s.StatsResponse(days=days or 30, rows=rows))


async def stats_engagement(request: web.Request) -> web.Response:
    privileged(request)
    days = query_as(request, s.StatsQuery).as_days()
    rows = await stats.engagement(rt_of(request).db, days if days is not None else 7)
    return reply(s.StatsResponse(days=days or 7, rows=rows))


async def stats_providers(request: web.Request) -> web.Response:
    privileged(request)
    query_as(request, _NoQuery)
    return reply(s.StatsResponse(rows=await stats.providers(rt_of(request).db)))


async def stats_queue(request: web.Request) -> web.Response:
    privileged(request)
    query_as(request, _NoQuery)
    return reply(s.QueueStats(queue=await stats.queue(rt_of(request).db)))


async def stats_hourly(request: web.Request) -> web.Response:
    privileged(request)
    hours = query_as(request, s.HourlyQuery).hours
    return reply(s.StatsResponse(rows=await stats.hourly(rt_of(request).db, hours)))


async def stats_user(request: web.Request) -> web.Response:
    caller = authenticate(request)
    user_id = path_uuid(request, "user_id")
    stats.authorise(caller, user_id)
    return raw_reply(await stats.user_summary(rt_of(request).db, user_id))


class _NoQuery(BaseModel):
    model_config = {"extra": "forbid"}


# --------------------------------------------------------------------------- infrastructure


async def metrics_endpoint(request: web.Request) -> web.Response:
    if request.app[SETTINGS].metrics_protected:
        privileged(request)
    try:  # the spec's queue gauge, refreshed on scrape
        size = await rt_of(request).db.fetchval("SELECT COUNT(*) FROM notification_queue")
        metrics.notification_queue_size.set(size)
    except Exception:  # a scrape must not fail because PostgreSQL is slow
        pass
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_json(request: web.Request) -> web.Response:
    return raw_reply(openapi.document())


async def docs(request: web.Request) -> web.Response:
    html = resources.files("app.rest").joinpath("docs.html").read_text("utf-8")
    return web.Response(text=html, content_type="text/html")


ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/api/notifications/send", send),
    ("POST", "/api/notifications/send-batch", send_batch),
    ("GET", "/api/notifications", list_notifications),
    ("GET", "/api/notifications/{id}", get_notification),
    ("POST", "/api/notifications/{id}/cancel", cancel_notification),
    ("GET", "/api/notifications/{id}/events", notification_events),
    ("GET", "/api/templates", list_templates),
    ("POST", "/api/templates", create_template),
    ("GET", "/api/templates/{name}", get_template),
    ("PUT", "/api/templates/{name}", update_template),
    ("DELETE", "/api/templates/{name}", delete_template),
    ("POST", "/api/preferences", set_preference),
    ("GET", "/api/preferences/{user_id}", get_preferences),
    ("GET", "/api/stats/delivery", stats_delivery),
    ("GET", "/api/stats/engagement", stats_engagement),
    ("GET", "/api/stats/providers", stats_providers),
    ("GET", "/api/stats/queue", stats_queue),
    ("GET", "/api/stats/hourly", stats_hourly),
    ("GET", "/api/stats/users/{user_id}", stats_user),
    ("GET", "/metrics", metrics_endpoint),
    ("GET", "/openapi.json", openapi_json),
    ("GET", "/docs", docs),
]


def setup(app: web.Application) -> None:
    """Mount the REST routes and the middlewares (metrics outermost, then errors, limits)."""
    app.middlewares.extend([metrics_middleware, problem_middleware])
    if app[SETTINGS].api_rate_limit > 0:  # off: no layer at all on every request
        app.middlewares.append(ratelimit_middleware)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
