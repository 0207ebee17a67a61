"""The one exception tree of the service.

    NotificationError                 500  INTERNAL
     +-- InvalidInput                  422  BAD_USER_INPUT
     +-- NotFound                      404  NOT_FOUND
     +-- Unauthenticated               401  UNAUTHENTICATED
     +-- Forbidden                     403  FORBIDDEN
     +-- Conflict                      409  CONFLICT
     +-- RateLimited                   429  RATE_LIMITED   (carries retry_after seconds)
     +-- PayloadTooLarge               413  PAYLOAD_TOO_LARGE
     +-- Unavailable                   503  UNAVAILABLE    (database or Redis down)

Providers raise their own tree (app.providers.base): TransientProviderError,
PermanentProviderError, ProviderRateLimited. Those never reach a client; the
worker turns them into statuses.

Each interface maps this tree once: GraphQL puts `code` in `extensions.code`,
REST answers application/problem+json with `status`, the Hasura action route
answers 4xx with {"message", "extensions": {"code"}}.
"""

from __future__ import annotations

from typing import Any


class NotificationError(Exception):
    """Base of every error a caller can see."""

    status = 500
    code = "INTERNAL"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def extensions(self) -> dict[str, Any]:
        ext: dict[str, Any] = {"code": self.code}
        ext.update(self.details)
        return ext


class InvalidInput(NotificationError):
    """The request is well-formed JSON but its content is wrong."""

    status = 422
    code = "BAD_USER_INPUT"


class NotFound(NotificationError):
    status = 404
    code = "NOT_FOUND"


class Unauthenticated(NotificationError):
    status = 401
    code = "UNAUTHENTICATED"


class Forbidden(NotificationError):
    status = 403
    code = "FORBIDDEN"


class Conflict(NotificationError):
    status = 409
    code = "CONFLICT"


class RateLimited(NotificationError):
    status = 429
    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float, details: dict[str, Any] | None = None):
        super().__init__(message, details={"retry_after": round(retry_after, 3), **(details or {})})
        self.retry_after = retry_after


class PayloadTooLarge(NotificationError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class Unavailable(NotificationError):
    """A backing service (PostgreSQL, Redis) cannot be reached right now."""

    status = 503
    code = "UNAVAILABLE"


def unavailable_from(exc: BaseException) -> Unavailable | None:
    """The 503 for an infrastructure failure (PostgreSQL or Redis down, restarting, or the
    connection lost), or None when `exc` is something else (a bug: a 500)."""
    import asyncpg
    from redis import exceptions as redis_errors

    infrastructure = (
        OSError,
        TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.CannotConnectNowError,
        asyncpg.AdminShutdownError,
        redis_errors.ConnectionError,
        redis_errors.TimeoutError,
    )
    if isinstance(exc, Unavailable):
        return exc
    if isinstance(exc, infrastructure):
        return Unavailable(f"a backing service is unavailable: {type(exc).__name__}")
    return None
