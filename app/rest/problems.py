"""RFC 9457 problem details: every REST and webhook error is application/problem+json.

    {"type": "https://hasura-notifications.dev/problems/bad-user-input",
     "title": "Bad user input", "status": 422, "detail": "...", "code": "BAD_USER_INPUT",
     "errors": [{"path": ["body", "to", "email"], "message": "..."}]}

`code` is the stable app.errors code (the same one GraphQL puts in extensions.code).
The app.errors tree is mapped here, once.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from app.errors import NotificationError, RateLimited

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://hasura-notifications.dev/problems/"

TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Bad user input",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
}
CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "BAD_USER_INPUT",
    429: "RATE_LIMITED",
    500: "INTERNAL",
    502: "BAD_GATEWAY",
    503: "UNAVAILABLE",
}


RESERVED = frozenset({"type", "title", "status", "detail", "code", "errors", "instance"})


def problem(
    status: int,
    detail: str,
    /,
    *,
    code: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    code = code or CODES.get(status, "ERROR")
    body: dict[str, Any] = {
        "type": TYPE_BASE + code.lower().replace("_", "-"),
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    clashing = {k: v for k, v in extra.items() if k in RESERVED}
    body.update({k: v for k, v in extra.items() if k not in RESERVED})
    if clashing:  # e.g. a Conflict's current notification status
        body["context"] = clashing
    return web.Response(
        status=status,
        text=json.dumps(body, default=str),
        content_type=CONTENT_TYPE,
        headers=headers,
    )


def from_error(exc: NotificationError) -> web.Response:
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(max(1, int(exc.retry_after + 0.999)))}
    extra = {k: v for k, v in exc.details.items() if k != "code"}
    errors = extra.pop("errors", None)
    return problem(exc.status, exc.message, code=exc.code, headers=headers, errors=errors, **extra)


def validation_errors(
    exc: ValidationError, prefix: tuple[str, ...] = ("body",)
) -> list[dict[str, Any]]:
    out = []
    for error in exc.errors(include_url=False):
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        out.append(
            {
                "path": [*prefix, *error.get("loc", ())],
                "message": message,
                "type": error.get("type"),
            }
        )
    return out


def from_validation(exc: ValidationError, prefix: tuple[str, ...] = ("body",)) -> web.Response:
    errors = validation_errors(exc, prefix)
    first = errors[0] if errors else {"path": [], "message": "invalid input"}
    where = ".".join(str(p) for p in first["path"])
    return problem(422, f"{where}: {first['message']}", code="BAD_USER_INPUT", errors=errors)
