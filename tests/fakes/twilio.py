"""A local Twilio REST API: the Messages and Account resources, as the real one answers.

It checks what Twilio checks (method, path, HTTP basic auth with the Account SID
and Auth Token, form encoding, required To / From-or-MessagingServiceSid / Body)
and answers with Twilio's JSON shapes. The `To` numbers Twilio's test
credentials treat as magic (https://www.twilio.com/docs/iam/test-credentials)
produce the same error codes here. `mode` scripts the failures a unit test
cannot get from real Twilio on demand: 429, 500 and a hang.

`sign()` is what Twilio does when it calls our status callback.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "twilio-test-auth-token-0123456789"
FROM_NUMBER = "+15005550006"

# Magic 'To' numbers -> (Twilio error code, message), as with Twilio test credentials.
MAGIC_TO: dict[str, tuple[int, str]] = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550002": (
        21612,
        "The 'To' phone number: +15005550002, is not currently reachable using the "
        "'From' phone number: +15005550006 via SMS.",
    ),
    "+15005550003": (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by "
        "the 'To' number: +15005550003.",
    ),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}


def sign(token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's X-Twilio-Signature: base64(HMAC-SHA1(token, url + sorted name+value))."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def error_body(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@dataclass
class FakeTwilio:
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    mode: str | None = None  # None | "rate_limit" | "server_error" | "hang"
    retry_after: str = "3"
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""
    _server: TestServer | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    # ---- lifecycle ---------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.create_message)
        app.router.add_get("/2010-04-01/Accounts/{sid}.json", self.fetch_account)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        self.base_url = str(self._server.make_url("")).rstrip("/")
        return self.base_url

    async def stop(self) -> None:
        self._release.set()  # let a hanging handler finish so shutdown is immediate
        if self._server is not None:
            await self._server.close()

    # ---- checks shared by every route --------------------------------------------

    def _authenticate(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if header != f"Basic {expected}" or request.match_info["sid"] != self.account_sid:
            return web.json_response(
                error_body(20003, "Authentication Error - invalid username", 401), status=401
            )
        return None

    async def _scripted(self) -> web.Response | None:
        if self.mode == "rate_limit":
            return web.json_response(
                error_body(20429, "Too Many Requests", 429),
                status=429,
                headers={"Retry-After": self.retry_after},
            )
        if self.mode == "server_error":
            return web.json_response(error_body(20500, "Internal Server Error", 500), status=500)
        if self.mode == "hang":
            await asyncio.wait_for(self._release.wait(), timeout=10)
            return web.json_response(error_body(20500, "too late", 500), status=500)
        return None

    # ---- routes ------------------------------------------------------------------

    async def create_message(self, request: web.Request) -> web.Response:
        form = (
            dict(await request.post())
            if request.content_type == ("application/x-www-form-urlencoded")
            else {}
        )
        self.requests.append({"path": request.path, "headers": dict(request.headers), "form": form})
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        scripted = await self._scripted()
        if scripted is not None:
            return scripted
        invalid = self._validate(form)
        if invalid is not None:
            return invalid
        return web.json_response(self._message(form), status=201)

    async def fetch_account(self, request: web.Request) -> web.Response:
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        return web.json_response(
            {
                "sid": self.account_sid,
                "owner_account_sid": self.account_sid,
                "friendly_name": "Test account",
                "status": "active",
                "type": "Full",
                "date_created": "Mon, 01 Jan 2024 00:00:00 +0000",
                "uri": f"/2010-04-01/Accounts/{self.account_sid}.json",
            }
        )

    def _validate(self, form: Mapping[str, Any]) -> web.Response | None:
        to = str(form.get("To") or "")
        if not to:
            return _bad(21604, "A 'To' phone number is required.")
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return _bad(21603, "A 'From' phone number is required.")
        if not form.get("Body"):
            return _bad(21602, "Message body is required.")
        if to in MAGIC_TO:
            return _bad(*MAGIC_TO[to])
        if not to.startswith("+") or not to[1:].isdigit():
            return _bad(21211, f"The 'To' number {to} is not a valid phone number.")
        return None

    def _message(self, form: Mapping[str, Any]) -> dict[str, Any]:
        sid = "SM" + uuid.uuid4().hex
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form["Body"],
            "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
            "date_sent": None,
            "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": form["To"],
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }


def _bad(code: int, message: str) -> web.Response:
    return web.json_response(error_body(code, message, 400), status=400)
