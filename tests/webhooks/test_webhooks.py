"""Provider webhooks through the real app: signed with each provider's real algorithm,
applied to notifications; tampered, stale, unsigned, replayed and malformed ones change
nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from app.main import create_app
from app.providers import aws
from tests.fakes.plivo import sign_v3
from tests.fakes.twilio import sign as twilio_sign
from tests.providers.test_resend import svix_sign
from tests.providers.test_sendgrid import PRIVATE_KEY as SG_KEY
from tests.providers.test_sendgrid import PUBLIC_KEY as SG_PUBLIC

RESEND_SECRET = "whsec_" + base64.b64encode(b"resend-secret-bytes-0123456789").decode()
MAILGUN_KEY = "mailgun-signing-key-0123"
TWILIO_TOKEN = "twilio-token-0123456789"
PLIVO_TOKEN = "plivo-token-0123456789"
ONESIGNAL_SECRET = "onesignal-secret-0123"
PUBLIC = "https://n.test"


@pytest.fixture
async def env(clean: None, aiohttp_client: Any, db_settings: Callable[..., Any],
              database_url: str) -> Any:  # fmt: skip
    async def build(**overrides: Any) -> Any:
        options = dict(
            webhook_verify=True, public_url=PUBLIC, resend_webhook_secret=RESEND_SECRET,
            sendgrid_webhook_public_key=SG_PUBLIC, mailgun_webhook_key=MAILGUN_KEY,
            twilio_auth_token=TWILIO_TOKEN, sms_auth_token=TWILIO_TOKEN,
            plivo_auth_token=PLIVO_TOKEN, onesignal_webhook_secret=ONESIGNAL_SECRET,
            max_body_size=8192,
        )  # fmt: skip
        settings = db_settings(**{**options, **overrides})
        return await aiohttp_client(create_app(settings))

    conn = await asyncpg.connect(database_url)
    try:
        yield build, conn
    finally:
        await conn.close()


async def notification(conn: Any, provider: str, provider_id: str, *, status: str = "sent",
                       channel: str = "email", category: str | None = "marketing") -> Any:  # fmt: skip
    return await conn.fetchval(
        """INSERT INTO notifications (user_id, channel, to_address, status, provider, provider_id,
               sent_at, category) VALUES ($1, $2, 'ada@example.org', $3, $4, $5, NOW(), $6)
           RETURNING id""",
        uuid.uuid4(), channel, status, provider, provider_id, category,
    )  # fmt: skip


async def row(conn: Any, nid: Any) -> Any:
    return await conn.fetchrow("SELECT * FROM notifications WHERE id = $1", nid)


async def events(conn: Any) -> int:
    return int(await conn.fetchval("SELECT COUNT(*) FROM notification_events"))


# --------------------------------------------------------------------------- resend (svix)


def resend(kind: str, email_id: str, *, msg_id: str | None = None, ts: int | None = None,
           created: str = "2026-01-01T10:00:00Z") -> tuple[bytes, dict[str, str]]:  # fmt: skip
    body = json.dumps({"type": kind, "created_at": created,
                       "data": {"email_id": email_id, "to": ["ada@example.org"]}}).encode()  # fmt: skip
    msg_id = msg_id or "msg_" + uuid.uuid4().hex
    ts = int(time.time()) if ts is None else ts
    headers = {"svix-id": msg_id, "svix-timestamp": str(ts),
               "svix-signature": svix_sign(RESEND_SECRET, msg_id, ts, body),
               "Content-Type": "application/json"}  # fmt: skip
    return body, headers


async def test_resend_applied_replay_and_rejections(env: Any) -> None:
    build, conn = env
    client = await build()
    nid = await notification(conn, "resend", "re-1")
    body, headers = resend("email.delivered", "re-1")
    resp = await client.post("/webhooks/resend", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    out = await resp.json()
    assert out["stored"] == 1 and out["matched"] == 1 and out["changed"] == 1
    current = await row(conn, nid)
    assert current["status"] == "delivered" and current["delivered_at"] is not None

    resp = await client.post("/webhooks/resend", data=body, headers=headers)  # replay
    assert resp.status == 200 and (await resp.json())["status"] == "duplicate"
    assert await events(conn) == 1

    other = await notification(conn, "resend", "re-2")
    body, headers = resend("email.bounced", "re-2")
    tampered = body.replace(b"re-2", b"re-3")
    stale_body, stale = resend("email.bounced", "re-2", ts=int(time.time()) - 3600)
    unsigned = {k: v for k, v in headers.items() if k != "svix-signature"}
    for data, hdrs in ((tampered, headers), (stale_body, stale), (body, unsigned)):
        resp = await client.post("/webhooks/resend", data=data, headers=hdrs)
        assert resp.status == 401, await resp.text()
        assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert (await row(conn, other))["status"] == "sent"
    assert await events(conn) == 1

    # the spec's single URL detects Resend from svix-id
    resp = await client.post("/webhooks/notifications", data=body, headers=headers)
    assert resp.status == 200 and (await resp.json())["provider"] == "resend"
    assert (await row(conn, other))["status"] == "bounced"


async def test_concurrent_deliveries_share_a_batch_and_a_nul_poisons_none(env: Any) -> None:
    """Concurrent webhooks are claimed and applied together; a signed body carrying a NUL
    (which PostgreSQL text cannot hold) is refused alone, and a replay within the same
    burst is answered as a duplicate."""
    build, conn = env
    client = await build()
    ids = [await notification(conn, "resend", f"burst-{i}") for i in range(20)]
    deliveries = [resend("email.delivered", f"burst-{i}") for i in range(20)]
    poisoned = resend("email.delivered", "burst-\u0000x")
    replayed = deliveries[0]
    answers = await asyncio.gather(
        *(client.post("/webhooks/resend", data=b, headers=h)
          for b, h in [*deliveries, poisoned, replayed])
    )  # fmt: skip
    statuses = [a.status for a in answers]
    assert statuses[:20] == [200] * 20 and statuses[20] == 400
    bodies = [await a.json() for a in answers]
    assert "NUL" in bodies[20]["detail"]
    # one of the two identical deliveries applied, the other was the duplicate
    assert sorted(b["status"] for b in (bodies[0], bodies[21])) == ["duplicate", "ok"]
    assert await events(conn) == 20
    assert [(await row(conn, nid))["status"] for nid in ids] == ["delivered"] * 20
    # written in fewer transactions than requests (NOW() is per transaction)
    assert await conn.fetchval("SELECT count(DISTINCT created_at) FROM notification_events") < 20


async def test_percent_zero_zero_in_json_is_only_text(env: Any) -> None:
    build, conn = env
    client = await build()
    nid = await notification(conn, "resend", "msg-%00-text")
    body, headers = resend("email.delivered", "msg-%00-text")
    resp = await client.post("/webhooks/resend", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await row(conn, nid))["status"] == "delivered"


async def test_unknown_message_stored_then_reconciled(env: Any) -> None:
    from app.main import SETTINGS
    from app.runtime import open_runtime
    from app.services import events as event_service

    build, conn = env
    client = await build()
    body, headers = resend("email.delivered", "re-later")
    resp = await client.post("/webhooks/resend", data=body, headers=headers)
    assert resp.status == 200 and (await resp.json())["unmatched"] == 1
    assert await conn.fetchval("SELECT notification_id FROM notification_events") is None
    nid = await notification(conn, "resend", "re-later")
    async with open_runtime(client.server.app[SETTINGS]) as rt:
        assert await event_service.reconcile(rt, "resend", "re-later") == 1
    assert (await row(conn, nid))["status"] == "delivered"


# --------------------------------------------------------------------------- sendgrid (ECDSA)


def sendgrid(items: list[dict[str, Any]], ts: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(items).encode()
    stamp = str(int(time.time()) if ts is None else ts)
    sig = SG_KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
                  "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
                  "Content-Type": "application/json"}  # fmt: skip


def sg(kind: str, message: str, at: int, **extra: Any) -> dict[str, Any]:
    return {"email": "ada@example.org", "timestamp": at, "event": kind,
            "sg_event_id": f"{kind}-{at}", "sg_message_id": f"{message}.filter0001", **extra}  # fmt: skip


async def test_sendgrid_out_of_order_and_complaint(env: Any) -> None:
    build, conn = env
    client = await build()
    nid = await notification(conn, "sendgrid", "sg-1", category="marketing")
    t0 = 1_767_000_000
    # a later open arrives first, then delivered, then the earlier open: first open wins
    batch = [sg("open", "sg-1", t0 + 100), sg("delivered", "sg-1", t0 + 10)]
    body, headers = sendgrid(batch)
    resp = await client.post("/webhooks/notifications", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    body, headers = sendgrid([sg("open", "sg-1", t0 + 50), sg("dropped", "sg-1", t0 + 60)])
    assert (await client.post("/webhooks/sendgrid", data=body, headers=headers)).status == 200
    current = await row(conn, nid)
    assert current["status"] == "delivered"  # a late failure never overwrites delivered
    assert current["opened_at"] == datetime.fromtimestamp(t0 + 50, UTC)
    assert current["delivered_at"] == datetime.fromtimestamp(t0 + 10, UTC)
    # bounce after delivered is allowed; complaint opts the user out of the category
    body, headers = sendgrid([sg("bounce", "sg-1", t0 + 200, reason="550 mailbox gone"),
                              sg("spamreport", "sg-1", t0 + 300)])  # fmt: skip
    assert (await client.post("/webhooks/sendgrid", data=body, headers=headers)).status == 200
    current = await row(conn, nid)
    assert current["status"] == "bounced" and "550" in current["error"]
    pref = await conn.fetchrow("SELECT * FROM notification_preferences")
    assert pref["user_id"] == current["user_id"] and pref["channel"] == "email"
    assert pref["category"] == "marketing" and pref["enabled"] is False
    assert pref["reason"] == "complaint via sendgrid"
    # wrong key / stale
    other = ec.generate_private_key(ec.SECP256R1())
    raw = json.dumps([sg("delivered", "sg-1", t0)]).encode()
    stamp = str(int(time.time()))
    bad = base64.b64encode(other.sign(stamp.encode() + raw, ec.ECDSA(hashes.SHA256()))).decode()
    resp = await client.post("/webhooks/sendgrid", data=raw, headers={
        "X-Twilio-Email-Event-Webhook-Signature": bad,
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp})  # fmt: skip
    assert resp.status == 401
    body, headers = sendgrid([sg("click", "sg-1", t0)], ts=int(time.time()) - 7200)
    assert (await client.post("/webhooks/sendgrid", data=body, headers=headers)).status == 401
    assert (await row(conn, nid))["clicked_at"] is None


# --------------------------------------------------------------------------- mailgun (HMAC)


def mailgun(kind: str, message_id: str, *, key: str = MAILGUN_KEY, ts: int | None = None) -> bytes:
    stamp = str(int(time.time()) if ts is None else ts)
    token = uuid.uuid4().hex
    sig = hmac.new(key.encode(), f"{stamp}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({
        "signature": {"timestamp": stamp, "token": token, "signature": sig},
        "event-data": {"event": kind, "id": uuid.uuid4().hex, "timestamp": time.time(),
                       "recipient": "ada@example.org",
                       "message": {"headers": {"message-id": message_id}}},
    }).encode()  # fmt: skip


async def test_mailgun(env: Any) -> None:
    build, conn = env
    client = await build()
    nid = await notification(conn, "mailgun", "mg-1@example.org")
    resp = await client.post("/webhooks/mailgun", data=mailgun("delivered", "<mg-1@example.org>"))
    assert resp.status == 200, await resp.text()
    assert (await row(conn, nid))["status"] == "delivered"
    bad = mailgun("opened", "<mg-1@example.org>", key="wrong")
    assert (await client.post("/webhooks/notifications", data=bad)).status == 401
    assert await events(conn) == 1


# --------------------------------------------------------------------------- twilio, plivo


async def test_twilio_form_callback(env: Any) -> None:
    build, conn = env
    client = await build()
    nid = await notification(conn, "twilio", "SM123", channel="sms")
    params = {"MessageSid": "SM123", "MessageStatus": "delivered", "To": "+14155550123",
              "AccountSid": "AC1"}  # fmt: skip
    url = PUBLIC + "/webhooks/twilio?tenant=a"
    headers = {"X-Twilio-Signature": twilio_sign(TWILIO_TOKEN, url, params),
               "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    resp = await client.post("/webhooks/twilio?tenant=a", data=urlencode(params), headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await row(conn, nid))["status"] == "delivered"
    # a late "failed" callback, correctly signed, does not undo delivered
    late = {**params, "MessageStatus": "failed", "ErrorCode": "30003"}
    headers["X-Twilio-Signature"] = twilio_sign(TWILIO_TOKEN, url, late)
    resp = await client.post("/webhooks/twilio?tenant=a", data=urlencode(late), headers=headers)
    assert resp.status == 200
    assert (await row(conn, nid))["status"] == "delivered"
    # signed for another URL (query dropped) -> rejected
    headers["X-Twilio-Signature"] = twilio_sign(TWILIO_TOKEN, PUBLIC + "/webhooks/twilio", late)
    resp = await client.post("/webhooks/twilio?tenant=a", data=urlencode(late), headers=headers)
    assert resp.status == 401
    # a correctly signed form whose value decodes to a NUL is refused on its own
    nul = {**params, "MessageSid": "SM\x00124"}
    headers["X-Twilio-Signature"] = twilio_sign(TWILIO_TOKEN, url, nul)
    resp = await client.post("/webhooks/twilio?tenant=a", data=urlencode(nul), headers=headers)
    assert resp.status == 400 and "NUL" in (await resp.json())["detail"]
    assert await events(conn) == 2


async def test_plivo(env: Any) -> None:
    build, conn = env
    client = await build()
    nid = await notification(conn, "plivo", "pl-uuid-1", channel="sms")
    params = {"MessageUUID": "pl-uuid-1", "Status": "delivered", "To": "14155550123"}
    url = PUBLIC + "/webhooks/notifications"
    headers = {"X-Plivo-Signature-V3": sign_v3(PLIVO_TOKEN, url, "nonce-1", params),
               "X-Plivo-Signature-V3-Nonce": "nonce-1",
               "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    resp = await client.post("/webhooks/notifications", data=urlencode(params), headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await row(conn, nid))["status"] == "delivered"
    headers["X-Plivo-Signature-V3"] = sign_v3("wrong", url, "nonce-2", params)
    headers["X-Plivo-Signature-V3-Nonce"] = "nonce-2"
    assert (
        await client.post("/webhooks/plivo", data=urlencode(params), headers=headers)
    ).status == 401


# --------------------------------------------------------------------------- onesignal


async def test_onesignal(env: Any) -> None:
    build, conn = env
    client = await build()
    nid = await notification(conn, "onesignal", "os-msg-1", channel="push")
    event = {"event": {"id": "ev-1", "kind": "message.push.clicked", "timestamp": int(time.time())},
             "message": {"id": "os-msg-1"}}  # fmt: skip
    resp = await client.post("/webhooks/onesignal", json=event,
                             headers={"X-OneSignal-Webhook-Secret": ONESIGNAL_SECRET})  # fmt: skip
    assert resp.status == 200, await resp.text()
    current = await row(conn, nid)
    assert current["clicked_at"] is not None and current["status"] == "delivered"
    resp = await client.post("/webhooks/onesignal", json=event,
                             headers={"X-OneSignal-Webhook-Secret": "nope"})  # fmt: skip
    assert resp.status == 401


# --------------------------------------------------------------------------- ses via sns


CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"


@pytest.fixture(scope="module")
def sns_key() -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))  # fmt: skip
    aws.SIGNING_CERTS[CERT_URL] = cert
    return key


def sns(key: rsa.RSAPrivateKey, kind: str = "Notification", **fields: Any) -> dict[str, Any]:
    message = {"Type": kind, "MessageId": str(uuid.uuid4()), "TopicArn": "arn:aws:sns:us-east-1:1:ses",
               "Timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
               "SignatureVersion": "2", "SigningCertURL": CERT_URL, **fields}  # fmt: skip
    signed = aws.sns_string_to_sign(message)
    message["Signature"] = base64.b64encode(
        key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    ).decode()
    return message


async def test_ses_notification_and_confirmation(env: Any, sns_key: Any, monkeypatch: Any) -> None:
    from app.webhooks import routes

    build, conn = env
    client = await build()
    nid = await notification(conn, "ses", "ses-msg-1")
    now = datetime.now(UTC).isoformat()
    event = {"eventType": "Delivery", "mail": {"messageId": "ses-msg-1", "timestamp": now,
             "destination": ["ada@example.org"]}, "delivery": {"timestamp": now}}  # fmt: skip
    envelope = sns(sns_key, Message=json.dumps(event))
    headers = {"x-amz-sns-message-type": "Notification", "Content-Type": "text/plain"}
    resp = await client.post("/webhooks/notifications", data=json.dumps(envelope), headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await row(conn, nid))["status"] == "delivered"
    forged = {**envelope, "Message": json.dumps({**event, "eventType": "Bounce"})}
    resp = await client.post("/webhooks/ses", data=json.dumps(forged), headers=headers)
    assert resp.status == 401

    fetched: list[str] = []

    async def confirm(http: Any, url: str) -> int:
        fetched.append(url)
        return 200

    monkeypatch.setattr(routes, "confirm_subscription", confirm)
    subscribe = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=t"
    confirmation = sns(sns_key, "SubscriptionConfirmation", Message="confirm", Token="t",
                       SubscribeURL=subscribe)  # fmt: skip
    resp = await client.post("/webhooks/ses", data=json.dumps(confirmation), headers=headers)
    assert resp.status == 200 and (await resp.json())["status"] == "subscribed"
    assert fetched == [subscribe]
    tampered = {**confirmation, "SubscribeURL": subscribe + "x"}
    resp = await client.post("/webhooks/ses", data=json.dumps(tampered), headers=headers)
    assert resp.status == 401 and fetched == [subscribe]
    assert await events(conn) == 1


# --------------------------------------------------------------------------- guards


async def test_guards(env: Any) -> None:
    build, conn = env
    client = await build()
    resp = await client.post("/webhooks/resend", data=b"{broken", headers={"svix-id": "x"})
    assert resp.status == 401  # unsigned before it is even parsed
    nosig = await build(webhook_verify=False)
    resp = await nosig.post("/webhooks/resend", data=b"{broken")
    assert resp.status == 400 and (await resp.json(content_type=None))["code"] == "BAD_REQUEST"
    resp = await nosig.post("/webhooks/notifications", data=b"hello")
    assert resp.status == 400
    resp = await client.post("/webhooks/resend", data=b"x" * 10_000)
    assert resp.status == 413
    resp = await client.post("/webhooks/fax", data=b"{}")
    assert resp.status == 404
    walled = await build(webhook_ip_whitelist="192.0.2.0/24")
    body, headers = resend("email.delivered", "re-x")
    resp = await walled.post("/webhooks/resend", data=body, headers=headers)
    assert resp.status == 403
    assert await events(conn) == 0
