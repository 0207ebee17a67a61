"""A local FCM HTTP v1 API and Google OAuth2 token endpoint.

The token endpoint does what Google's does with a service-account assertion:
it requires the JWT-bearer grant, verifies the RS256 signature with the
account's public key, the `kid`, `iss`, `aud`, the firebase.messaging scope and
the one-hour lifetime cap, and answers {"access_token", "expires_in", "token_type"}
or an RFC 6749 error. The send endpoint accepts only tokens it issued, checks
the project and the v1 `Message` shape (string data values, enum priorities),
and answers {"name": "projects/P/messages/ID"} or google.rpc.Status errors with
FcmError details, exactly as the error-codes reference shows them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


def make_service_account(
    token_uri: str, project_id: str = "demo-project", key: rsa.RSAPrivateKey | None = None
) -> tuple[dict[str, Any], rsa.RSAPublicKey]:
    """A service-account JSON (as Google issues it) and the public half of its key."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return info, key.public_key()


def rpc_error(code: int, status: str, message: str, fcm_code: str | None = None) -> dict[str, Any]:
    """A google.rpc.Status body as FCM returns it."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if fcm_code:
        error["details"] = [{"@type": FCM_ERROR, "errorCode": fcm_code}]
    return {"error": error}


@dataclass
class FakeFcm:
    """One Firebase project with one service account."""

    account: dict[str, Any]
    public_key: rsa.RSAPublicKey
    token_audience: str  # the `aud` assertions must carry (the account's token_uri)
    expires_in: int = 3599
    token_requests: int = 0
    issued: set[str] = field(default_factory=set)
    sends: list[dict[str, Any]] = field(default_factory=list)
    # registration token -> (status, body, headers) answered instead of a send
    errors: dict[str, tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=dict)
    hang: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    server: TestServer | None = None
    base_url: str = ""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    @property
    def project_id(self) -> str:
        return str(self.account["project_id"])

    def revoke_tokens(self) -> None:
        self.issued.clear()

    # ---- server -----------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/token", self.token)
        app.router.add_post("/v1/projects/{project}/messages:send", self.send)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        self.base_url = str(self.server.make_url("")).rstrip("/")
        return self.base_url

    async def close(self) -> None:
        self.release.set()
        if self.server is not None:
            await self.server.close()

    # ---- OAuth2 token endpoint ------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        if request.content_type != "application/x-www-form-urlencoded":
            return _oauth_error("invalid_request", "form body expected")
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type")
        assertion = str(form.get("assertion") or "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256"],
                audience=self.token_audience,
                issuer=self.account["client_email"],
                options={"require": ["iss", "aud", "iat", "exp"]},
            )
        except jwt.PyJWTError as exc:
            return _oauth_error("invalid_grant", f"Invalid JWT: {exc}")
        if header.get("kid") != self.account["private_key_id"]:
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        if SCOPE not in str(claims.get("scope", "")).split():
            return _oauth_error("invalid_scope", "firebase.messaging scope missing")
        if claims["exp"] - claims["iat"] > 3600:
            return _oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token")
        token = "ya29." + secrets.token_urlsafe(32)
        self.issued.add(token)
        return web.json_response(
            {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        )

    # ---- messages:send ------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        if self.hang:
            await asyncio.wait_for(self.release.wait(), 10)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.issued:
            return _rpc(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if request.match_info["project"] != self.project_id:
            return _rpc(403, "PERMISSION_DENIED", "Permission denied on resource project.")
        if request.content_type != "application/json":
            return _rpc(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        body = await request.json()
        problem = _message_problem(body.get("message"))
        if problem:
            return _rpc(400, "INVALID_ARGUMENT", problem)
        token = body["message"]["token"]
        if token in self.errors:
            status, answer, headers = self.errors[token]
            return web.json_response(answer, status=status, headers=headers)
        self.sends.append(body)
        name = f"projects/{self.project_id}/messages/0:{next(self._ids)}%abc"
        return web.json_response({"name": name})


def _message_problem(message: Any) -> str | None:
    """What FCM's request validation would reject, or None."""
    if not isinstance(message, dict):
        return "Invalid value at 'message'"
    if not message.get("token"):
        return "Recipient of the message is not set."
    for key, value in (message.get("data") or {}).items():
        if not isinstance(value, str):
            return f"Invalid value at 'message.data[{key}].value' (TYPE_STRING)"
    priority = (message.get("android") or {}).get("priority", "NORMAL")
    if priority not in ("NORMAL", "HIGH"):
        return f"Invalid value at 'message.android.priority' ({priority})"
    notification = message.get("notification") or {}
    if not all(isinstance(v, str) for v in notification.values()):
        return "Invalid value at 'message.notification'"
    return None


def _rpc(code: int, status: str, message: str) -> web.Response:
    return web.json_response(rpc_error(code, status, message), status=code)


def _oauth_error(error: str, description: str) -> web.Response:
    return web.Response(
        status=400,
        text=json.dumps({"error": error, "error_description": description}),
        content_type="application/json",
    )
