"""POST /graphql (GraphiQL in dev mode) and POST /hasura/actions, both over one schema.

/graphql authenticates with app.auth (JWT, admin secret, API key); anonymous
requests are refused with 401 and a GraphQL error body. /hasura/actions checks
the shared action secret, takes the caller from Hasura's session variables, runs
the action's mutation and answers the output object, or 400 with
{"message", "extensions": {"code"}} as Hasura's action protocol expects.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from aiohttp import web
from strawberry.aiohttp.views import GraphQLView

from app import jsoncodec
from app.auth import ACTION_HEADER, caller_from_session
from app.errors import InvalidInput, NotificationError
from app.graphql import direct, hasura
from app.graphql.context import Context
from app.graphql.errors import extensions_for_exception
from app.graphql.schema import schema
from app.main import AUTH, RUNTIME, SETTINGS
from app.models import NUL_ESCAPE, Caller, Role

log = logging.getLogger(__name__)

CALLER = web.RequestKey("graphql_caller", Caller)


def _graphql_error(exc: NotificationError) -> web.Response:
    body = {"data": None, "errors": [{"message": exc.message, "extensions": exc.extensions()}]}
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return web.json_response(body, status=exc.status, headers=headers)


class View(GraphQLView[Context, None]):
    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if (
            self.graphql_ide
            and request.method == "GET"
            and self.should_render_graphql_ide(self.request_adapter_class(request))
        ):
            return await super().__call__(request)
        try:
            request[CALLER] = request.app[AUTH].authenticate(request.headers, request.remote)
        except NotificationError as exc:
            return _graphql_error(exc)
        if request.method == "POST" and request.content_type == "application/json":
            try:
                body = await request.json()  # aiohttp keeps the body for strawberry
            except ValueError:
                body = {}  # strawberry answers malformed JSON itself
            if not isinstance(body, dict):
                return _graphql_error(InvalidInput("the request body must be a JSON object"))
        return await super().__call__(request)

    async def get_context(  # type: ignore[override]
        self, request: web.Request, response: web.Response | web.WebSocketResponse
    ) -> Context:
        caller = request.get(CALLER)
        if caller is None:  # only the GraphiQL page (dev mode) gets here unauthenticated
            caller = Caller(role=Role.USER, source="anonymous")
        return Context(rt=request.app[RUNTIME], caller=caller, request=request)


def _action_error(message: str, code: str, status: int = 400) -> web.Response:
    return web.json_response({"message": message, "extensions": {"code": code}}, status=status)


async def hasura_action(request: web.Request) -> web.Response:
    if not request.app[AUTH].is_action_secret(request.headers.get(ACTION_HEADER)):
        return _action_error(f"missing or wrong {ACTION_HEADER}", "UNAUTHENTICATED", 401)
    raw = await request.read()
    try:
        body = jsoncodec.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _action_error("body must be JSON", "BAD_USER_INPUT")
    if not isinstance(body, dict):
        return _action_error("body must be a JSON object", "BAD_USER_INPUT")
    name = hasura.action_name(body)
    if name not in hasura.ACTION_NAMES:
        return _action_error(f"unknown action {name!r}", "NOT_FOUND")
    session = body.get("session_variables")
    try:
        caller = caller_from_session(
            session if isinstance(session, dict) else {}, source="hasura-action",
            ip=request.headers.get("X-Forwarded-For") or request.remote,
        )  # fmt: skip
    except NotificationError as exc:
        return _action_error(exc.message, exc.code)
    if name in direct.DIRECT_ACTIONS:
        answer = await _direct_action(request, body, caller, nul_checked=NUL_ESCAPE not in raw)
        if answer is not None:
            return answer
    result = await schema.execute(
        hasura.operation(name),
        variable_values=hasura.argument_values(name, body.get("input")),
        context_value=Context(rt=request.app[RUNTIME], caller=caller, request=request),
    )
    if result.errors:
        error = result.errors[0]
        extensions: dict[str, Any] = dict(error.extensions or {"code": "INTERNAL"})
        return _action_error_ext(error.message, extensions)
    assert result.data is not None
    return web.json_response(result.data[name])


async def _direct_action(
    request: web.Request, body: dict[str, Any], caller: Caller, *, nul_checked: bool
) -> web.Response | None:
    """sendNotification without the executor (app.graphql.direct); None: use the schema."""
    arguments = hasura.argument_values("sendNotification", body.get("input"))
    if "input" not in arguments:
        return None
    try:
        send_request = direct.to_request(arguments["input"], nul_checked=nul_checked)
        if send_request is None:
            return None
        payload = await direct.send_notification(request.app[RUNTIME], caller, send_request)
    except Exception as exc:
        return _action_error_ext(*extensions_for_exception(exc))
    return web.Response(body=jsoncodec.dumps(payload), content_type="application/json")


def _action_error_ext(message: str, extensions: dict[str, Any]) -> web.Response:
    return web.json_response({"message": message, "extensions": extensions}, status=400)


def setup(app: web.Application) -> None:
    """Mount /graphql and /hasura/actions."""
    ide: Literal["graphiql"] | None = "graphiql" if app[SETTINGS].dev_mode else None
    view = View(schema=schema, graphql_ide=ide, allow_queries_via_get=True)
    app.router.add_route("GET", "/graphql", view)
    app.router.add_route("POST", "/graphql", view)
    app.router.add_post("/hasura/actions", hasura_action)
