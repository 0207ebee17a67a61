"""The one place GraphQL maps errors: app.errors -> extensions.code.

    NotificationError (any)      -> its code (BAD_USER_INPUT, NOT_FOUND, FORBIDDEN, ...)
    pydantic ValidationError     -> BAD_USER_INPUT with the offending input field
    GraphQL parse / validation / variable coercion errors -> BAD_USER_INPUT
    anything else                -> INTERNAL, message hidden (logged with its traceback)

`ErrorCodes` is a schema extension, so /graphql and /hasura/actions (which runs
the same schema) answer with the same codes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from pydantic import ValidationError
from strawberry.extensions import SchemaExtension

from app.errors import InvalidInput, NotificationError, unavailable_from

log = logging.getLogger(__name__)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def invalid_input(exc: ValidationError, prefix: str = "") -> InvalidInput:
    """A pydantic error on a mapped input -> InvalidInput naming the GraphQL field."""
    first = exc.errors()[0]
    path = [camel(str(p)) if isinstance(p, str) else str(p) for p in first["loc"]]
    field = ".".join([prefix, *path] if prefix else path) or prefix or None
    message = str(first["msg"]).removeprefix("Value error, ")
    details: dict[str, Any] = {"field": field} if field else {}
    return InvalidInput(f"{field}: {message}" if field else message, details=details)


def extensions_for(error: GraphQLError) -> tuple[str, dict[str, Any]]:
    """(message, extensions) for one error."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return error.message, {"code": "BAD_USER_INPUT"}
    return extensions_for_exception(original)


def extensions_for_exception(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """(message, extensions) for an exception a resolver raised (also used by the direct
    action path, app.graphql.direct, so both answer alike)."""
    if isinstance(exc, NotificationError):
        return exc.message, exc.extensions()
    if isinstance(exc, ValidationError):
        mapped = invalid_input(exc)
        return mapped.message, mapped.extensions()
    unavailable = unavailable_from(exc) if isinstance(exc, Exception) else None
    if unavailable is not None:
        return unavailable.message, unavailable.extensions()
    log.error("unexpected error in GraphQL resolver", exc_info=exc)
    return "Internal server error", {"code": "INTERNAL"}


def format_error(error: GraphQLError) -> GraphQLError:
    if error.extensions and "code" in error.extensions and error.original_error is None:
        return error
    message, extensions = extensions_for(error)
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions=extensions,
    )


class ErrorCodes(SchemaExtension):
    """Rewrite every error of the result with its extensions.code."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = [format_error(e) for e in errors]
