"""Direct dispatch of the hot Hasura action, sendNotification, without Strawberry's executor.

Running an action through the schema costs ~2 ms of CPU (execution context,
extensions, argument conversion into Strawberry inputs, result completion), four
times the send itself; `sendNotification` is the action frontends call most. Here
its input is coerced by graphql-core against the schema's own input type (the same
coercion the executor applies to variables), mapped to the domain's SendRequest by
the Python names Strawberry recorded on each field, and handed to the service.

Only a fully valid input takes this path. When coercion fails, `run` answers None
and the caller runs the action through the schema, so every GraphQL-level error
keeps exactly the wording and code the schema gives it. Domain errors map as the
schema's ErrorCodes extension maps them (tests/graphql compare both paths).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from graphql import (
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    Undefined,
    get_nullable_type,
)
from graphql.utilities import coerce_input_value
from pydantic import ValidationError

from app.graphql.errors import invalid_input
from app.graphql.hasura import mutation_field
from app.models import NUL_CHECKED, Caller, SendRequest
from app.runtime import Runtime
from app.services import notifications

DIRECT_ACTIONS = frozenset({"sendNotification"})
STRAWBERRY_FIELD = "strawberry-definition"


@cache
def _input_type(action: str) -> GraphQLInputType:
    return mutation_field(action).args["input"].type  # type: ignore[return-value]


@cache
def _python_names(type_: GraphQLInputObjectType) -> dict[str, str]:
    """GraphQL field name -> the Python name Strawberry recorded for it."""
    return {
        name: getattr(field.extensions.get(STRAWBERRY_FIELD), "python_name", name)
        for name, field in type_.fields.items()
    }


def _plain(value: Any, type_: GraphQLInputType) -> Any:
    """A coerced input -> the dict `to_request` builds from Strawberry inputs: Python field
    names, null fields left out; JSON scalars (variables, metadata) untouched."""
    if value is None:
        return None
    nullable = get_nullable_type(type_)  # type: ignore[arg-type]
    if isinstance(nullable, GraphQLList):
        return [_plain(item, nullable.of_type) for item in value]
    if not isinstance(nullable, GraphQLInputObjectType):
        return value
    names = _python_names(nullable)
    return {
        names[key]: _plain(item, nullable.fields[key].type)
        for key, item in value.items()
        if item is not None
    }


def to_request(action_input: Any, *, nul_checked: bool) -> SendRequest | None:
    """The SendRequest of a sendNotification input; None when GraphQL coercion rejects it
    (the schema then produces the error). A domain validation error is raised as
    InvalidInput naming the GraphQL field, as `SendNotificationInput.to_request` does."""
    type_ = _input_type("sendNotification")
    try:
        coerced = coerce_input_value(action_input, type_)
    except Exception:  # graphql-core reports some invalid values by raising
        return None
    if coerced is Undefined:
        return None
    data = _plain(coerced, type_)
    try:
        return SendRequest.model_validate(data, context=NUL_CHECKED if nul_checked else None)
    except ValidationError as exc:
        raise invalid_input(exc, "input") from None


async def send_notification(rt: Runtime, caller: Caller, request: SendRequest) -> dict[str, Any]:
    """The SendNotificationPayload of one send, as the schema would serialise it."""
    outcome = await notifications.send(rt, request, caller)
    return {
        "success": outcome.success,
        "notificationId": str(outcome.notification_id) if outcome.notification_id else None,
        "status": outcome.status,
        "message": outcome.message,
    }
