"""Who is calling: admin secret, API keys, Hasura-style JWTs, Hasura session variables.

    X-Notifications-Admin-Secret: S      -> admin   (NOTIFICATIONS_ADMIN_SECRET)
    Authorization: Bearer KEY | X-API-Key -> service (NOTIFICATIONS_API_KEYS, kept hashed)
    Authorization: Bearer JWT             -> the JWT's Hasura role (NOTIFICATIONS_JWT_SECRET,
                                             Hasura's HASURA_GRAPHQL_JWT_SECRET format)
    Hasura action session variables      -> x-hasura-role / x-hasura-user-id

Roles other than admin and service act as `user`: they must carry a user id and
may only touch their own rows. A way in whose secret is unset is closed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from uuid import UUID

import jwt

from app.errors import Forbidden, Unauthenticated
from app.models import Caller, Role
from app.settings import Settings

DEFAULT_NAMESPACE = "https://hasura.io/jwt/claims"
ADMIN_HEADER = "X-Notifications-Admin-Secret"
ACTION_HEADER = "X-Notifications-Action-Secret"


def _sha(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _map_role(role: str) -> Role:
    if role == "admin":
        return Role.ADMIN
    if role == "service":
        return Role.SERVICE
    return Role.USER


def _user_id(value: Any) -> UUID | None:
    if value in (None, ""):
        return None
    try:
        return UUID(str(value))
    except ValueError:
        raise Unauthenticated("x-hasura-user-id must be a UUID") from None


def caller_from_session(
    session: Mapping[str, Any], *, source: str, ip: str | None = None
) -> Caller:
    """Hasura session variables (any case) -> Caller."""
    lowered = {str(k).lower(): v for k, v in session.items()}
    role_name = str(lowered.get("x-hasura-role") or "")
    if not role_name:
        raise Unauthenticated("session variables carry no x-hasura-role")
    role = _map_role(role_name)
    user_id = _user_id(lowered.get("x-hasura-user-id"))
    if role is Role.USER and user_id is None:
        raise Unauthenticated(f"role {role_name} needs x-hasura-user-id")
    return Caller(role=role, user_id=user_id, source=source, ip=ip, extra={"role": role_name})


@dataclass(frozen=True)
class JwtConfig:
    algorithm: str
    key: Any
    namespace: str
    audience: str | list[str] | None
    issuer: str | None
    stringified: bool

    @classmethod
    def parse(cls, raw: str) -> JwtConfig:
        data = json.loads(raw)
        algorithm = str(data["type"]).upper()
        if algorithm not in {
            "HS256",
            "HS384",
            "HS512",
            "RS256",
            "RS384",
            "RS512",
            "ES256",
            "ES384",
            "ES512",
            "ED25519",
            "EDDSA",
        }:
            raise ValueError(f"unsupported JWT type {algorithm}")
        if algorithm == "ED25519":
            algorithm = "EdDSA"
        return cls(
            algorithm=algorithm,
            key=data["key"],
            namespace=data.get("claims_namespace") or DEFAULT_NAMESPACE,
            audience=data.get("audience"),
            issuer=data.get("issuer"),
            stringified=data.get("claims_format") == "stringified_json",
        )


class Authenticator:
    """Built once per process from settings; `authenticate(headers)` per request."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._key_hashes = [_sha(k) for k in settings.api_key_list]
        self._admin = _sha(settings.admin_secret) if settings.admin_secret else None
        self._action = _sha(settings.action_secret) if settings.action_secret else None

    @cached_property
    def jwt_config(self) -> JwtConfig | None:
        return JwtConfig.parse(self.settings.jwt_secret) if self.settings.jwt_secret else None

    # ---- secrets ----------------------------------------------------------------

    def is_admin_secret(self, given: str | None) -> bool:
        return bool(given and self._admin and hmac.compare_digest(_sha(given), self._admin))

    def is_action_secret(self, given: str | None) -> bool:
        return bool(given and self._action and hmac.compare_digest(_sha(given), self._action))

    def is_api_key(self, given: str | None) -> bool:
        if not given or not self._key_hashes:
            return False
        digest = _sha(given)
        # compare against every key so timing does not reveal which one matched
        return any([hmac.compare_digest(digest, h) for h in self._key_hashes])

    # ---- requests ---------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], ip: str | None = None) -> Caller:
        """Caller from request headers (case-insensitive mapping), or Unauthenticated."""
        admin = headers.get(ADMIN_HEADER)
        if admin is not None:
            if self.is_admin_secret(admin):
                return self._admin_caller(headers, ip)
            raise Unauthenticated("invalid admin secret")
        api_key = headers.get("X-API-Key")
        bearer = _bearer(headers.get("Authorization"))
        if api_key is not None:
            if self.is_api_key(api_key):
                return Caller(role=Role.SERVICE, source="api-key", ip=ip)
            raise Unauthenticated("invalid API key")
        if bearer:
            if self.is_api_key(bearer):
                return Caller(role=Role.SERVICE, source="api-key", ip=ip)
            if bearer.count(".") == 2:
                return self.caller_from_jwt(bearer, headers.get("X-Hasura-Role"), ip)
            raise Unauthenticated("invalid API key")
        raise Unauthenticated(
            "authentication required: send a JWT or API key as 'Authorization: Bearer ...',"
            f" an 'X-API-Key', or '{ADMIN_HEADER}'"
        )

    def _admin_caller(self, headers: Mapping[str, str], ip: str | None) -> Caller:
        """The admin secret may act as a role (like Hasura's admin secret + x-hasura-role)."""
        role = headers.get("X-Hasura-Role")
        if role and role != "admin":
            session = {"x-hasura-role": role, "x-hasura-user-id": headers.get("X-Hasura-User-Id")}
            return caller_from_session(session, source="admin-secret", ip=ip)
        return Caller(role=Role.ADMIN, source="admin-secret", ip=ip)

    def caller_from_jwt(self, token: str, requested_role: str | None, ip: str | None) -> Caller:
        config = self.jwt_config
        if config is None:
            raise Unauthenticated("JWT authentication is not configured")
        try:
            claims = jwt.decode(
                token,
                config.key,
                algorithms=[config.algorithm],
                audience=config.audience,
                issuer=config.issuer,
                options={"verify_aud": config.audience is not None, "require": ["exp"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("JWT has expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid JWT: {exc}") from None
        hasura = claims.get(config.namespace)
        if isinstance(hasura, str) and config.stringified:
            hasura = json.loads(hasura)
        if not isinstance(hasura, dict):
            raise Unauthenticated(f"JWT has no {config.namespace} claims")
        lowered = {str(k).lower(): v for k, v in hasura.items()}
        allowed = lowered.get("x-hasura-allowed-roles") or []
        role = requested_role or lowered.get("x-hasura-default-role")
        if not role:
            raise Unauthenticated("JWT has no x-hasura-default-role")
        if role not in allowed:
            raise Forbidden(f"role {role!r} is not in the JWT's x-hasura-allowed-roles")
        session = {"x-hasura-role": role, "x-hasura-user-id": lowered.get("x-hasura-user-id")}
        return caller_from_session(session, source="jwt", ip=ip)


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
