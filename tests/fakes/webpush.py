"""A local RFC 8030 push service that checks VAPID and decrypts what it receives.

Subscribers are generated here the way a browser makes them: a P-256 key pair
and a 16-byte auth secret, bound to one application server (VAPID) public key.
A push must carry `Content-Encoding: aes128gcm`, a TTL, and
`Authorization: vapid t=<ES256 JWT>,k=<key>`; the JWT is verified with k, its
`aud` must be this service's origin, `exp` at most 24 h away and `sub` a
mailto:/https: contact, and k must be the key the subscription was made with
(403 otherwise, as FCM and autopush answer). The body is then decrypted with
the subscriber's private key and auth secret (http_ece, aes128gcm) and kept
for the test to read. Unknown subscriptions answer 410 Gone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscriber:
    """A browser's push subscription: its keys stay here, the test gets the JSON."""

    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    endpoint: str

    def subscription(self) -> dict[str, Any]:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)},
        }


@dataclass
class Received:
    payload: dict[str, Any]
    headers: dict[str, str]
    claims: dict[str, Any]


@dataclass
class FakePushService:
    application_server_key: str  # base64url public key the subscriptions were made with
    subscribers: dict[str, Subscriber] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    # subscription id -> (status, body, headers) answered instead of accepting
    scripted: dict[str, tuple[int, str, dict[str, str]]] = field(default_factory=dict)
    hang: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    server: TestServer | None = None
    base_url: str = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/push/{sid}", self.push)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        self.base_url = str(self.server.make_url("")).rstrip("/")
        return self.base_url

    async def close(self) -> None:
        self.release.set()
        if self.server is not None:
            await self.server.close()

    def subscribe(self) -> tuple[str, dict[str, Any]]:
        """A new subscription: (its id, the PushSubscription JSON a browser returns)."""
        sid = secrets.token_urlsafe(16)
        subscriber = Subscriber(
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth=secrets.token_bytes(16),
            endpoint=f"{self.base_url}/push/{sid}",
        )
        self.subscribers[sid] = subscriber
        return sid, subscriber.subscription()

    async def push(self, request: web.Request) -> web.Response:
        if self.hang:
            await asyncio.wait_for(self.release.wait(), 10)
        sid = request.match_info["sid"]
        if sid in self.scripted:
            status, text, headers = self.scripted[sid]
            return web.Response(status=status, text=text, headers=headers)
        subscriber = self.subscribers.get(sid)
        if subscriber is None:
            return web.Response(status=410, text="push subscription has unsubscribed or expired")
        problem = _header_problem(request)
        if problem:
            return web.Response(status=400, text=problem)
        try:
            claims = self._verify_vapid(request)
        except PermissionError as exc:
            return web.Response(status=403, text=str(exc))
        except ValueError as exc:
            return web.Response(status=401, text=str(exc))
        body = await request.read()
        if len(body) > 4096:
            return web.Response(status=413, text="payload too large")
        try:
            plain = http_ece.decrypt(
                body,
                private_key=subscriber.private_key,
                auth_secret=subscriber.auth,
                version="aes128gcm",
            )
        except http_ece.ECEException as exc:
            return web.Response(status=400, text=f"cannot decrypt: {exc}")
        self.received.append(Received(json.loads(plain), dict(request.headers), claims))
        location = f"{self.base_url}/m/{uuid.uuid4()}"
        return web.Response(status=201, headers={"Location": location})

    def _verify_vapid(self, request: web.Request) -> dict[str, Any]:
        """RFC 8292: ES256 JWT signed by k; aud = our origin; exp within 24 h; sub set."""
        scheme, _, params = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError("Authorization must use the vapid scheme")
        fields = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
        if "t" not in fields or "k" not in fields:
            raise ValueError("vapid needs t= and k=")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(fields["k"]))
        try:
            claims = jwt.decode(
                fields["t"],
                public,
                algorithms=["ES256"],
                audience=f"{request.scheme}://{request.host}",
                options={"require": ["aud", "exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise PermissionError(f"invalid VAPID JWT: {exc}") from None
        if claims["exp"] > time.time() + 86400:
            raise PermissionError("VAPID exp more than 24 hours ahead")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            raise PermissionError("VAPID sub must be mailto: or https:")
        if fields["k"] != self.application_server_key:
            raise PermissionError("VAPID key does not match the subscription")
        return claims


def _header_problem(request: web.Request) -> str | None:
    if request.headers.get("Content-Encoding") != "aes128gcm":
        return "Content-Encoding must be aes128gcm"
    if not request.headers.get("TTL", "").isdigit():
        return "TTL header required"
    if request.headers.get("Urgency", "normal") not in ("very-low", "low", "normal", "high"):
        return "invalid Urgency"
    return None
