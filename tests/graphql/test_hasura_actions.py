"""POST /hasura/actions with the payloads Hasura v2 sends (and the older bare-name form)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from app.main import RUNTIME

ME = uuid.uuid4()
OTHER = uuid.uuid4()
USER = {"x-hasura-role": "user", "x-hasura-user-id": str(ME)}
ADMIN = {"x-hasura-role": "admin"}


def send_input(user: uuid.UUID = ME, **extra: Any) -> dict[str, Any]:
    return {"input": {"userId": str(user), "channel": "EMAIL", "to": {"email": "ada@example.com"},
                      "subject": "Hi", "body": "Hello", **extra}}  # fmt: skip


@pytest.mark.parametrize("secret", [None, "wrong"])
async def test_secret_is_required(action: Any, client: Any, secret: str | None) -> None:
    status, body = await action("sendNotification", send_input(), USER, secret=secret)
    assert status == 401
    assert body["extensions"]["code"] == "UNAUTHENTICATED"
    assert await client.app[RUNTIME].db.fetchval("SELECT COUNT(*) FROM notifications") == 0


async def test_send_notification_as_the_session_user(action: Any, client: Any) -> None:
    status, body = await action("sendNotification", send_input(priority=10), USER)
    assert status == 200, body
    assert set(body) == {"success", "notificationId", "status", "message"}
    assert (body["success"], body["status"]) == (True, "queued")
    row = await client.app[RUNTIME].db.fetchrow(
        "SELECT user_id, priority FROM notifications WHERE id = $1",
        uuid.UUID(body["notificationId"]),
    )
    assert (row["user_id"], row["priority"]) == (ME, 10)


class _Bare(str):
    """A str subclass: the fixture sends it as the bare action name older Hasura used."""


async def test_old_hasura_bare_action_name_and_header_case(action: Any) -> None:
    session = {"X-Hasura-Role": "user", "X-Hasura-User-Id": str(ME)}  # any case
    status, body = await action({"name": "sendNotification"}, send_input(), session)
    assert (status, body["success"]) == (200, True)
    status, body = await action(_Bare("sendNotification"), send_input(), USER)
    assert (status, body["success"]) == (200, True)


@pytest.mark.parametrize(
    ("session", "input_", "code"),
    [
        (USER, send_input(OTHER), "FORBIDDEN"),
        (USER, send_input(to={"email": "nope"}), "BAD_USER_INPUT"),
        (USER, {"input": {"userId": "not-a-uuid"}}, "BAD_USER_INPUT"),
        ({"x-hasura-role": "user"}, send_input(), "UNAUTHENTICATED"),
        ({}, send_input(), "UNAUTHENTICATED"),
        (USER, send_input(template="missing"), "NOT_FOUND"),
    ],
)
async def test_failures_are_400_with_a_code(
    action: Any, session: dict[str, str], input_: dict[str, Any], code: str
) -> None:
    status, body = await action("sendNotification", input_, session)
    assert status == 400
    assert body["extensions"]["code"] == code
    assert isinstance(body["message"], str) and body["message"]


async def test_unknown_action_and_bad_body(action: Any, client: Any) -> None:
    status, body = await action("dropEverything", {}, ADMIN)
    assert (status, body["extensions"]["code"]) == (400, "NOT_FOUND")
    resp = await client.post(
        "/hasura/actions", data=b"{not json",
        headers={"X-Notifications-Action-Secret": "action-secret-for-tests"},
    )  # fmt: skip
    assert resp.status == 400
    assert (await resp.json())["extensions"]["code"] == "BAD_USER_INPUT"


async def test_idempotency_conflict(action: Any) -> None:
    assert (await action("sendNotification", send_input(idempotencyKey="a"), USER))[0] == 200
    status, body = await action("sendNotification", send_input(idempotencyKey="a", body="x"), USER)
    assert (status, body["extensions"]["code"]) == (400, "CONFLICT")


async def test_bulk_send_async_action(action: Any, client: Any) -> None:
    recipients = [
        {"userId": str(uuid.uuid4()), "to": {"email": f"u{i}@example.com"}} for i in range(5)
    ]
    status, body = await action(
        "sendNotifications",
        {"input": {"channel": "EMAIL", "body": "Hello {{name}}", "variables": {"name": "all"},
                   "recipients": recipients}},
        {"x-hasura-role": "service"},
    )  # fmt: skip
    assert status == 200, body
    assert (body["total"], body["accepted"], body["rejected"]) == (5, 5, 0)
    assert await client.app[RUNTIME].db.fetchval("SELECT COUNT(*) FROM notifications") == 5


async def test_cancel_action(action: Any) -> None:
    _, sent = await action("sendNotification", send_input(sendAt="2099-01-01T00:00:00Z"), USER)
    other = {"x-hasura-role": "user", "x-hasura-user-id": str(OTHER)}
    status, body = await action("cancelNotification", {"id": sent["notificationId"]}, other)
    assert (status, body["extensions"]["code"]) == (400, "NOT_FOUND")
    status, body = await action("cancelNotification", {"id": sent["notificationId"]}, USER)
    assert (status, body["status"]) == (200, "cancelled")


async def test_upsert_preference_action(action: Any) -> None:
    pref = {"userId": str(ME), "channel": "SMS", "enabled": False, "reason": "STOP"}
    status, body = await action("upsertPreference", {"input": pref}, USER)
    assert status == 200
    assert (body["channel"], body["enabled"], body["reason"], body["userId"]) == (
        "sms",
        False,
        "STOP",
        str(ME),
    )
    status, body = await action("upsertPreference", {"input": {**pref, "userId": str(OTHER)}}, USER)
    assert (status, body["extensions"]["code"]) == (400, "FORBIDDEN")


async def test_template_actions(action: Any) -> None:
    spec = {"name": "otp", "channels": ["SMS"], "bodyText": "Code {{code}}", "variables": ["code"]}
    status, body = await action("createTemplate", {"input": spec}, USER)
    assert (status, body["extensions"]["code"]) == (400, "FORBIDDEN")
    status, body = await action("createTemplate", {"input": spec}, ADMIN)
    assert (status, body["name"], body["channels"]) == (200, "otp", ["sms"])
    status, body = await action(
        "updateTemplate", {"name": "otp", "input": {"category": "security"}}, ADMIN
    )
    assert (status, body["category"]) == (200, "security")
    status, body = await action(
        "sendNotification",
        {"input": {"userId": str(ME), "channel": "SMS", "to": {"phone": "+14155550100"},
                   "template": "otp", "variables": {"code": "123456"}}},
        USER,
    )  # fmt: skip
    assert (status, body["success"]) == (200, True)
    status, body = await action("deleteTemplate", {"name": "otp"}, ADMIN)
    assert (status, body) == (200, {"success": True, "name": "otp"})
    status, body = await action("deleteTemplate", {"name": "otp"}, ADMIN)
    assert (status, body["extensions"]["code"]) == (400, "NOT_FOUND")


# sendNotification skips Strawberry's executor (app.graphql.direct); it must answer exactly
# as the schema does, valid or not, so each case runs both ways and the answers are compared.
DIRECT_CASES = {
    "valid": send_input(priority=10),
    "valid, JSON scalars and a schedule": send_input(
        variables={"a": {"b": [1, 2]}, "userId": "kept as is"},
        metadata={"camelCase": True},
        sendAt="2030-01-01T09:00:00Z",
        to={"email": "ada@example.com", "name": "Ada"},
    ),
    "bad e-mail": send_input(to={"email": "nope"}),
    "not a UUID": {"input": {"userId": "not-a-uuid"}},
    "unknown channel": send_input(channel="FAX"),
    "unknown field": send_input(colour="blue"),
    "priority not an Int": send_input(priority="high"),
    "priority out of range": send_input(priority=5000),
    "another user": send_input(OTHER),
    "missing template": send_input(template="missing"),
    "NUL in the body": send_input(body="a\u0000b"),
    "variables not an object": send_input(variables=[1, 2]),
    "no input": {},
    "null input": {"input": None},
}


def _comparable(status: int, body: Any) -> tuple[int, Any]:
    if isinstance(body, dict) and body.get("notificationId"):
        body = {**body, "notificationId": "<uuid>"}
    return status, body


@pytest.mark.parametrize("case", list(DIRECT_CASES))
async def test_direct_send_answers_as_the_schema_does(
    action: Any, client: Any, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    from app.graphql import direct

    direct_answer = _comparable(*await action("sendNotification", DIRECT_CASES[case], USER))
    monkeypatch.setattr(direct, "DIRECT_ACTIONS", frozenset())
    schema_answer = _comparable(*await action("sendNotification", DIRECT_CASES[case], USER))
    assert direct_answer == schema_answer
    stored = await client.app[RUNTIME].db.fetchval("SELECT COUNT(*) FROM notifications")
    assert stored == (2 if direct_answer[0] == 200 else 0)


async def test_a_valid_send_never_reaches_the_executor(
    action: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.graphql import routes

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("sendNotification went through the executor")

    monkeypatch.setattr(routes.schema, "execute", refuse)
    status, body = await action("sendNotification", DIRECT_CASES["valid"], USER)
    assert (status, body["success"]) == (200, True)
