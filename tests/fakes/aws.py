"""AWS fakes: a moto server for the happy paths, an aiohttp fake for AWS's error answers.

moto (`ThreadedMotoServer` on 127.0.0.1) implements SES v2 SendEmail and SNS
Publish for real (identity verification, stored messages readable at
/moto-api/data.json), but it never throttles, fails, hangs, or implements
SES v2 GetAccount. `AwsApiFake` fills that gap: it checks what AWS checks
(method, path, SigV4 Authorization header with the expected service and
region, content type, required fields) and answers in each service's real
wire format: rest-json for SES v2 (status + `x-amzn-ErrorType` + `{"message"}`),
the query protocol's XML for SNS (`<ErrorResponse><Error><Code>`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.request import urlopen

from aiohttp import web
from moto.server import ThreadedMotoServer

# Dummy credentials: moto accepts any, the error fake checks these.
AWS_TEST_CONFIG = {
    "access_key_id": "AKIATESTTESTTEST",
    "secret_access_key": "test-secret-key",
    "region": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1 (a free port); yields its base URL, stops after."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


_SHARED: list[str] = []
_SHARED_LOCK = threading.Lock()


def shared_moto_url() -> str:
    """One moto server for the whole test process (its daemon thread ends with it).

    moto's backends are process-global anyway, and stopping a server costs half a
    second (werkzeug's shutdown poll), so test modules share this one.
    """
    with _SHARED_LOCK:
        if not _SHARED:
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            _SHARED.append(f"http://{host}:{port}")
        return _SHARED[0]


def moto_data(base_url: str) -> dict[str, Any]:
    """moto's view of every backend (what was sent, published, created)."""
    with urlopen(f"{base_url}/moto-api/data.json", timeout=5) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


# --------------------------------------------------------------------------- error fake


@dataclass
class Scripted:
    """The next answer: an AWS error (code, message, status) or a hang."""

    status: int = 400
    code: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


class AwsApiFake:
    """SES v2 + SNS endpoints on one aiohttp app (point aws_endpoint_url at it)."""

    def __init__(self, access_key_id: str = AWS_TEST_CONFIG["access_key_id"]) -> None:
        self.access_key_id = access_key_id
        self.script: Scripted | None = None
        self.requests: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/v2/email/outbound-emails", self.ses_send_email)
        self.app.router.add_get("/v2/email/account", self.ses_get_account)
        self.app.router.add_post("/", self.sns_query)

    def fail(self, status: int, code: str, message: str, **headers: str) -> None:
        self.script = Scripted(status=status, code=code, message=message, headers=headers)

    def hang(self) -> None:
        self.script = Scripted(hang=True)

    def reset(self) -> None:
        """Between tests: let any hung handler finish, forget the script and requests."""
        self.release.set()
        self.release = asyncio.Event()
        self.script = None
        self.requests.clear()

    # ---- checks ---------------------------------------------------------------

    def _check_auth(self, request: web.Request, service: str) -> None:
        auth = request.headers.get("Authorization", "")
        scope = f"Credential={self.access_key_id}/"
        if not auth.startswith("AWS4-HMAC-SHA256 ") or scope not in auth:
            raise web.HTTPForbidden(text="missing or foreign SigV4 Authorization")
        if f"/us-east-1/{service}/aws4_request" not in auth:
            raise web.HTTPForbidden(text=f"credential scope is not us-east-1/{service}")
        if "X-Amz-Date" not in request.headers:
            raise web.HTTPForbidden(text="missing X-Amz-Date")

    async def _scripted(self) -> Scripted | None:
        script = self.script
        if script and script.hang:
            await self.release.wait()
        return script

    # ---- SES v2 (rest-json) ---------------------------------------------------

    def _ses_error(self, script: Scripted) -> web.Response:
        headers = {"x-amzn-ErrorType": script.code, "x-amzn-RequestId": str(uuid.uuid4())}
        headers.update(script.headers)
        return web.json_response({"message": script.message}, status=script.status, headers=headers)

    async def ses_send_email(self, request: web.Request) -> web.Response:
        self._check_auth(request, "ses")
        body = await request.json()
        self.requests.append({"service": "sesv2", "op": "SendEmail", "body": body})
        raw = body.get("Content", {}).get("Raw", {}).get("Data")
        if not body.get("FromEmailAddress") or not raw:
            return self._ses_error(Scripted(400, "BadRequestException", "Missing content"))
        base64.b64decode(raw, validate=True)  # botocore base64-encodes blobs
        script = await self._scripted()
        if script:
            return self._ses_error(script)
        return web.json_response({"MessageId": f"0100{uuid.uuid4().hex}-000000"})

    async def ses_get_account(self, request: web.Request) -> web.Response:
        self._check_auth(request, "ses")
        self.requests.append({"service": "sesv2", "op": "GetAccount"})
        script = await self._scripted()
        if script:
            return self._ses_error(script)
        return web.json_response(
            {
                "DedicatedIpAutoWarmupEnabled": False,
                "EnforcementStatus": "HEALTHY",
                "ProductionAccessEnabled": True,
                "SendQuota": {
                    "Max24HourSend": 50000.0,
                    "MaxSendRate": 14.0,
                    "SentLast24Hours": 12.0,
                },
                "SendingEnabled": True,
                "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
            }
        )

    # ---- SNS (query protocol, XML answers) -------------------------------------

    def _sns_error(self, script: Scripted) -> web.Response:
        kind = "Receiver" if script.status >= 500 else "Sender"
        xml = (
            '<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
            f"<Error><Type>{kind}</Type><Code>{script.code}</Code>"
            f"<Message>{script.message}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )
        return web.Response(
            text=xml, status=script.status, content_type="text/xml", headers=script.headers
        )

    async def sns_query(self, request: web.Request) -> web.Response:
        self._check_auth(request, "sns")
        if not request.content_type.startswith("application/x-www-form-urlencoded"):
            raise web.HTTPBadRequest(text="SNS query API takes form-encoded bodies")
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.requests.append({"service": "sns", "op": form.get("Action"), "form": form})
        if form.get("Version") != "2010-03-31":
            return self._sns_error(Scripted(400, "InvalidAction", "bad Version"))
        action = form.get("Action")
        if action == "Publish" and not (form.get("PhoneNumber") and form.get("Message")):
            return self._sns_error(Scripted(400, "InvalidParameter", "missing fields"))
        script = await self._scripted()
        if script:
            return self._sns_error(script)
        if action == "Publish":
            result = f"<PublishResult><MessageId>{uuid.uuid4()}</MessageId></PublishResult>"
        elif action == "GetSMSAttributes":
            result = (
                "<GetSMSAttributesResult><attributes><entry><key>DefaultSMSType</key>"
                "<value>Transactional</value></entry></attributes></GetSMSAttributesResult>"
            )
        else:
            return self._sns_error(Scripted(400, "InvalidAction", f"unknown {action}"))
        xml = (
            f'<{action}Response xmlns="http://sns.amazonaws.com/doc/2010-03-31/">{result}'
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            f"</{action}Response>"
        )
        return web.Response(text=xml, content_type="text/xml")
