"""Every query and mutation through POST /graphql, with the role and permission matrix."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from app.main import RUNTIME
from tests.graphql.conftest import ADMIN_HEADERS, bearer, code, token

SEND = """
mutation($input: SendNotificationInput!) {
  sendNotification(input: $input) { success notificationId status message }
}"""

ME = uuid.uuid4()
OTHER = uuid.uuid4()


def email_input(user: uuid.UUID = ME, **extra: Any) -> dict[str, Any]:
    return {
        "userId": str(user), "channel": "EMAIL", "to": {"email": "ada@example.com"},
        "subject": "Hi", "body": "Hello there", **extra,
    }  # fmt: skip


async def send(gql: Any, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    status, body = await gql(SEND, {"input": email_input(**extra)}, headers)
    assert status == 200, body
    assert "errors" not in body, body
    return dict(body["data"]["sendNotification"])


# --------------------------------------------------------------------------- auth


async def test_anonymous_is_refused(gql: Any) -> None:
    status, body = await gql("{ templates { name } }")
    assert status == 401
    assert code(body) == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "headers",
    [
        bearer(ME, exp=time.time() - 3600),  # expired
        bearer(ME, key="another-key-that-is-also-long-enough-000"),  # wrongly signed
        bearer(ME, aud="someone-else"),  # wrong audience
        bearer(ME, aud=None),  # no audience
        {"X-Notifications-Admin-Secret": "wrong"},
        {"Authorization": "Bearer not-a-key"},
    ],
    ids=["expired", "bad-signature", "wrong-audience", "no-audience", "bad-admin", "bad-key"],
)
async def test_bad_credentials_are_unauthenticated(gql: Any, headers: dict[str, str]) -> None:
    status, body = await gql("{ templates { name } }", headers=headers)
    assert status == 401
    assert code(body) == "UNAUTHENTICATED"


async def test_role_not_allowed_by_the_jwt_is_forbidden(gql: Any) -> None:
    headers = {**bearer(ME), "X-Hasura-Role": "admin"}
    status, body = await gql("{ templates { name } }", headers=headers)
    assert status == 403
    assert code(body) == "FORBIDDEN"


async def test_graphiql_only_in_dev_mode(client: Any) -> None:
    resp = await client.get("/graphql", headers={"Accept": "text/html"})
    assert resp.status == 401  # not dev mode: no IDE, and no anonymous access


# --------------------------------------------------------------------------- send


async def test_user_sends_to_itself(gql: Any, client: Any) -> None:
    result = await send(gql, bearer(ME), category="account", priority=5, idempotencyKey="k-1")
    assert result["success"] is True
    assert result["status"] == "queued"
    row = await client.app[RUNTIME].db.fetchrow(
        "SELECT user_id, channel, to_address, category, priority, idempotency_key"
        " FROM notifications WHERE id = $1",
        uuid.UUID(result["notificationId"]),
    )
    assert dict(row) == {
        "user_id": ME, "channel": "email", "to_address": "ada@example.com",
        "category": "account", "priority": 5, "idempotency_key": "k-1",
    }  # fmt: skip


async def test_user_may_not_send_to_another_user(gql: Any, client: Any) -> None:
    status, body = await gql(SEND, {"input": email_input(OTHER)}, bearer(ME))
    assert status == 200
    assert code(body) == "FORBIDDEN"
    assert await client.app[RUNTIME].db.fetchval("SELECT COUNT(*) FROM notifications") == 0


async def test_admin_and_service_send_to_anyone(gql: Any, app_settings: Any) -> None:
    assert (await send(gql, ADMIN_HEADERS, user=OTHER))["success"]
    assert (await send(gql, bearer(None, "service"), user=OTHER))["success"]


async def test_scheduled_send(gql: Any) -> None:
    result = await send(gql, bearer(ME), sendAt="2099-01-01T09:00:00Z")
    assert result["status"] == "scheduled"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"channel": "SMS", "to": {"phone": "12"}}, "input.to.phone"),
        ({"to": {"email": "not an email"}}, "input.to.email"),
        ({"sendAt": "2030-01-01T09:00:00"}, "input.sendAt"),
        ({"priority": 5000}, "input.priority"),
    ],
)
async def test_bad_input_names_the_field(
    gql: Any, client: Any, override: dict[str, Any], field: str
) -> None:
    status, body = await gql(SEND, {"input": {**email_input(), **override}}, bearer(ME))
    assert status == 200
    assert code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == field
    assert await client.app[RUNTIME].db.fetchval("SELECT COUNT(*) FROM notifications") == 0


async def test_malformed_variables_are_bad_user_input(gql: Any) -> None:
    status, body = await gql(SEND, {"input": {**email_input(), "userId": "nope"}}, bearer(ME))
    assert status == 200
    assert code(body) == "BAD_USER_INPUT"
    status, body = await gql("{ nope }", headers=bearer(ME))
    assert code(body) == "BAD_USER_INPUT"


async def test_idempotency_key(gql: Any) -> None:
    first = await send(gql, bearer(ME), idempotencyKey="same")
    again = await send(gql, bearer(ME), idempotencyKey="same")
    assert again["notificationId"] == first["notificationId"]
    _status, body = await gql(
        SEND, {"input": email_input(idempotencyKey="same", body="different")}, bearer(ME)
    )
    assert code(body) == "CONFLICT"


async def test_missing_template_is_not_found(gql: Any) -> None:
    _, body = await gql(SEND, {"input": email_input(template="nope")}, bearer(ME))
    assert code(body) == "NOT_FOUND"


BULK = """
mutation($input: SendNotificationsInput!) {
  sendNotifications(input: $input) {
    total accepted rejected results { index success notificationId status errorCode message }
  }
}"""


async def test_bulk_send_reports_each_recipient(gql: Any, client: Any) -> None:
    await template(gql, "welcome")
    recipients = [
        {"userId": str(uuid.uuid4()), "to": {"email": f"u{i}@example.com"}, "variables": {"name": f"U{i}"}}
        for i in range(3)
    ]  # fmt: skip
    recipients.insert(1, {"userId": str(uuid.uuid4()), "to": {"email": "broken"}})
    _status, body = await gql(
        BULK,
        {"input": {"channel": "EMAIL", "template": "welcome", "recipients": recipients,
                   "variables": {"name": "default"}}},
        ADMIN_HEADERS,
    )  # fmt: skip
    payload = body["data"]["sendNotifications"]
    assert (payload["total"], payload["accepted"], payload["rejected"]) == (4, 3, 1)
    assert [r["index"] for r in payload["results"]] == [0, 1, 2, 3]
    assert payload["results"][1]["errorCode"] == "BAD_USER_INPUT"
    assert "input.recipients.1.to.email" in payload["results"][1]["message"]
    rows = await client.app[RUNTIME].db.fetch("SELECT subject FROM notifications")
    assert sorted(r["subject"] for r in rows) == ["Welcome U0", "Welcome U1", "Welcome U2"]


async def test_user_bulk_to_others_is_rejected_per_item(gql: Any) -> None:
    _, body = await gql(
        BULK,
        {"input": {"channel": "EMAIL", "body": "x",
                   "recipients": [{"userId": str(OTHER), "to": {"email": "o@example.com"}}]}},
        bearer(ME),
    )  # fmt: skip
    assert body["data"]["sendNotifications"]["results"][0]["errorCode"] == "FORBIDDEN"


# --------------------------------------------------------------------------- reads


NOTIFICATION = """
query($id: UUID!) { notification(id: $id) { id userId channel status subject
  events { eventType provider } } }"""


async def add_event(client: Any, notification_id: str, event_type: str, n: int) -> None:
    await client.app[RUNTIME].db.execute(
        "INSERT INTO notification_events (notification_id, provider, provider_event_id,"
        " event_type, occurred_at) VALUES ($1, 'resend', $2, $3, NOW() + make_interval(secs => $4))",
        uuid.UUID(notification_id), f"evt-{notification_id}-{n}", event_type, float(n),
    )  # fmt: skip


async def test_notification_is_visible_to_its_owner_only(gql: Any, client: Any) -> None:
    sent = await send(gql, bearer(ME))
    await add_event(client, sent["notificationId"], "delivery.succeeded", 1)
    _, body = await gql(NOTIFICATION, {"id": sent["notificationId"]}, bearer(ME))
    got = body["data"]["notification"]
    assert (got["userId"], got["channel"], got["status"]) == (str(ME), "EMAIL", "QUEUED")
    assert got["events"] == [{"eventType": "delivery.succeeded", "provider": "resend"}]
    _, body = await gql(NOTIFICATION, {"id": sent["notificationId"]}, bearer(OTHER))
    assert body == {"data": {"notification": None}}
    _, body = await gql(NOTIFICATION, {"id": sent["notificationId"]}, ADMIN_HEADERS)
    assert body["data"]["notification"]["id"] == sent["notificationId"]


LIST = """
query($filter: NotificationFilter, $limit: Int!, $offset: Int!) {
  notifications(filter: $filter, limit: $limit, offset: $offset) {
    limit offset hasMore items { id userId channel events { eventType } }
  }
}"""


async def test_notifications_are_filtered_paginated_and_ordered(gql: Any, client: Any) -> None:
    mine = [(await send(gql, bearer(ME), body=f"b{i}"))["notificationId"] for i in range(3)]
    await send(gql, ADMIN_HEADERS, user=OTHER)
    for n, nid in enumerate(mine):
        await add_event(client, nid, "delivered", n)
    _, body = await gql(LIST, {"limit": 2, "offset": 0}, bearer(ME))
    page = body["data"]["notifications"]
    assert page["hasMore"] is True
    assert [i["id"] for i in page["items"]] == mine[::-1][:2]
    assert all(i["events"] == [{"eventType": "delivered"}] for i in page["items"])
    _, body = await gql(LIST, {"limit": 2, "offset": 2}, bearer(ME))
    assert [i["id"] for i in body["data"]["notifications"]["items"]] == [mine[0]]
    assert body["data"]["notifications"]["hasMore"] is False
    _, body = await gql(
        LIST, {"limit": 10, "offset": 0, "filter": {"userId": str(OTHER)}}, bearer(ME)
    )
    assert code(body) == "FORBIDDEN"
    _, body = await gql(
        LIST, {"limit": 10, "offset": 0, "filter": {"userId": str(OTHER)}}, ADMIN_HEADERS
    )
    assert [i["userId"] for i in body["data"]["notifications"]["items"]] == [str(OTHER)]
    _, body = await gql(
        LIST,
        {"limit": 10, "offset": 0, "filter": {"channel": "SMS", "status": "QUEUED"}},
        ADMIN_HEADERS,
    )
    assert body["data"]["notifications"]["items"] == []
    _, body = await gql(
        LIST, {"limit": 10, "offset": 0, "filter": {"since": "2099-01-01T00:00:00Z"}}, ADMIN_HEADERS
    )
    assert body["data"]["notifications"]["items"] == []
    _, body = await gql(LIST, {"limit": 0, "offset": 0}, bearer(ME))
    assert code(body) == "BAD_USER_INPUT"


async def test_notification_events(gql: Any, client: Any) -> None:
    sent = await send(gql, bearer(ME))
    for n, kind in enumerate(["sent", "delivered", "opened"]):
        await add_event(client, sent["notificationId"], kind, n)
    query = "query($id: UUID!) { notificationEvents(notificationId: $id) { eventType occurredAt } }"
    _, body = await gql(query, {"id": sent["notificationId"]}, bearer(ME))
    assert [e["eventType"] for e in body["data"]["notificationEvents"]] == [
        "sent",
        "delivered",
        "opened",
    ]
    _, body = await gql(query, {"id": sent["notificationId"]}, bearer(OTHER))
    assert code(body) == "NOT_FOUND"


async def test_cancel(gql: Any) -> None:
    sent = await send(gql, bearer(ME), sendAt="2099-01-01T09:00:00Z")
    mutation = (
        "mutation($id: UUID!) { cancelNotification(id: $id) { success status notificationId } }"
    )
    _, body = await gql(mutation, {"id": sent["notificationId"]}, bearer(OTHER))
    assert code(body) == "NOT_FOUND"
    _, body = await gql(mutation, {"id": sent["notificationId"]}, bearer(ME))
    assert body["data"]["cancelNotification"]["status"] == "cancelled"
    _, body = await gql(mutation, {"id": sent["notificationId"]}, bearer(ME))
    assert code(body) == "CONFLICT"


# --------------------------------------------------------------------------- preferences

UPSERT = """
mutation($input: PreferenceInput!) {
  upsertPreference(input: $input) { userId channel category enabled frequency quietHours reason }
}"""


async def test_preferences(gql: Any, client: Any) -> None:
    pref = {"userId": str(ME), "channel": "EMAIL", "category": "marketing", "enabled": False}
    _, body = await gql(UPSERT, {"input": pref}, bearer(ME))
    assert body["data"]["upsertPreference"]["enabled"] is False
    quiet = {"start": "22:00", "end": "7", "timezone": "Europe/Paris"}
    _, body = await gql(UPSERT, {"input": {**pref, "quietHours": quiet}}, bearer(ME))
    got = body["data"]["upsertPreference"]
    assert got["enabled"] is False  # not given: unchanged
    assert got["quietHours"] == {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris"}
    _, body = await gql(UPSERT, {"input": {**pref, "userId": str(OTHER)}}, bearer(ME))
    assert code(body) == "FORBIDDEN"
    _, body = await gql(UPSERT, {"input": {**pref, "frequency": "hourly"}}, bearer(ME))
    assert code(body) == "BAD_USER_INPUT"
    query = "query($u: UUID) { preferences(userId: $u) { channel category enabled } }"
    _, body = await gql(query, {}, bearer(ME))
    assert body["data"]["preferences"] == [
        {"channel": "email", "category": "marketing", "enabled": False}
    ]
    _, body = await gql(query, {"u": str(ME)}, bearer(OTHER))
    assert code(body) == "FORBIDDEN"
    _, body = await gql(query, {"u": str(ME)}, ADMIN_HEADERS)
    assert len(body["data"]["preferences"]) == 1
    # the preference applies to the next marketing send
    result = await send(gql, bearer(ME), category="marketing")
    assert result["status"] == "suppressed"


# --------------------------------------------------------------------------- templates

CREATE = """
mutation($input: TemplateInput!) { createTemplate(input: $input) { name channels subject active } }"""


async def template(gql: Any, name: str) -> dict[str, Any]:
    spec = {"name": name, "channels": ["EMAIL", "PUSH"], "subject": "Welcome {{name}}",
            "bodyText": "Hi {{name}}", "variables": ["name"], "category": "account"}  # fmt: skip
    _status, body = await gql(CREATE, {"input": spec}, ADMIN_HEADERS)
    assert "errors" not in body, body
    return dict(body["data"]["createTemplate"])


async def test_template_crud_is_admin_only(gql: Any) -> None:
    created = await template(gql, "welcome")
    assert created == {"name": "welcome", "channels": ["email", "push"], "subject": "Welcome {{name}}",
                       "active": True}  # fmt: skip
    _, body = await gql(CREATE, {"input": {"name": "x", "bodyText": "x"}}, bearer(ME))
    assert code(body) == "FORBIDDEN"
    _, body = await gql(CREATE, {"input": {"name": "welcome", "bodyText": "x"}}, ADMIN_HEADERS)
    assert code(body) == "CONFLICT"
    _, body = await gql(CREATE, {"input": {"name": "bad", "bodyText": "{{#if}}"}}, ADMIN_HEADERS)
    assert code(body) == "BAD_USER_INPUT"
    update = "mutation($n: String!, $p: TemplatePatch!) { updateTemplate(name: $n, input: $p) { subject active channels } }"
    _, body = await gql(update, {"n": "welcome", "p": {"active": False}}, ADMIN_HEADERS)
    assert body["data"]["updateTemplate"] == {"subject": "Welcome {{name}}", "active": False,
                                              "channels": ["email", "push"]}  # fmt: skip
    _, body = await gql(update, {"n": "welcome", "p": {"active": True}}, bearer(ME))
    assert code(body) == "FORBIDDEN"
    _, body = await gql(update, {"n": "missing", "p": {"active": True}}, ADMIN_HEADERS)
    assert code(body) == "NOT_FOUND"
    _, body = await gql("{ templates { name active } }", headers=bearer(ME))
    assert body["data"]["templates"] == [{"name": "welcome", "active": False}]
    _, body = await gql("{ templates(active: true) { name } }", headers=bearer(ME))
    assert body["data"]["templates"] == []
    one = "query($n: String!) { template(name: $n) { name bodyText variables } }"
    _, body = await gql(one, {"n": "welcome"}, bearer(ME))
    assert body["data"]["template"] == {
        "name": "welcome",
        "bodyText": "Hi {{name}}",
        "variables": ["name"],
    }
    delete = "mutation($n: String!) { deleteTemplate(name: $n) { success name } }"
    _, body = await gql(delete, {"n": "welcome"}, bearer(ME))
    assert code(body) == "FORBIDDEN"
    _, body = await gql(delete, {"n": "welcome"}, ADMIN_HEADERS)
    assert body["data"]["deleteTemplate"] == {"success": True, "name": "welcome"}
    _, body = await gql(one, {"n": "welcome"}, ADMIN_HEADERS)
    assert body["data"]["template"] is None


async def test_send_with_template(gql: Any, client: Any) -> None:
    await template(gql, "welcome")
    result = await send(gql, bearer(ME), template="welcome", variables={"name": "Ada"},
                        subject=None, body=None)  # fmt: skip
    row = await client.app[RUNTIME].db.fetchrow(
        "SELECT subject, body, category FROM notifications WHERE id = $1",
        uuid.UUID(result["notificationId"]),
    )
    assert dict(row) == {"subject": "Welcome Ada", "body": "Hi Ada", "category": "account"}


# --------------------------------------------------------------------------- stats

STATS = """
query($u: UUID) { stats {
  delivery(days: 30) { channel total sent delivered failed bounced deliveryRatePct }
  engagement(days: 7) { templateName totalSent opened clicked openRatePct clickRatePct }
  providers { name channel enabled priority failureCount }
  queue { totalQueued processing pending oldestQueuedAt }
  hourly(hours: 3) { hour total }
  userSummary(userId: $u) { userId totalNotifications emailCount pushCount smsCount }
} }"""


async def test_stats(gql: Any, client: Any) -> None:
    db = client.app[RUNTIME].db
    a = await send(gql, bearer(ME), body="one")
    await send(gql, bearer(ME), body="two")
    await db.execute(
        "UPDATE notifications SET status = 'delivered', template_name = 'welcome', opened_at = NOW()"
        " WHERE id = $1",
        uuid.UUID(a["notificationId"]),
    )
    await db.execute(
        "INSERT INTO notification_providers (name, channel, priority) VALUES ('resend', 'email', 10)"
    )
    _, body = await gql(STATS, {"u": str(ME)}, ADMIN_HEADERS)
    stats = body["data"]["stats"]
    assert stats["delivery"] == [{"channel": "email", "total": 2, "sent": 1, "delivered": 1,
                                  "failed": 0, "bounced": 0, "deliveryRatePct": 50.0}]  # fmt: skip
    assert stats["engagement"] == [{"templateName": "welcome", "totalSent": 1, "opened": 1,
                                    "clicked": 0, "openRatePct": 100.0, "clickRatePct": 0.0}]  # fmt: skip
    assert stats["providers"] == [{"name": "resend", "channel": "email", "enabled": True,
                                   "priority": 10, "failureCount": 0}]  # fmt: skip
    assert (stats["queue"]["totalQueued"], stats["queue"]["pending"]) == (1, 1)
    assert [h["total"] for h in stats["hourly"]] == [0, 0, 2]
    assert stats["userSummary"] == {"userId": str(ME), "totalNotifications": 2, "emailCount": 2,
                                    "pushCount": 0, "smsCount": 0}  # fmt: skip


async def test_stats_for_users(gql: Any) -> None:
    await send(gql, bearer(ME))
    own = "{ stats { userSummary { userId totalNotifications } } }"
    _, body = await gql(own, headers=bearer(ME))
    assert body["data"]["stats"]["userSummary"] == {"userId": str(ME), "totalNotifications": 1}
    _, body = await gql("{ stats { delivery { channel } } }", headers=bearer(ME))
    assert code(body) == "FORBIDDEN"
    other = "query($u: UUID) { stats { userSummary(userId: $u) { totalNotifications } } }"
    _, body = await gql(other, {"u": str(OTHER)}, bearer(ME))
    assert code(body) == "FORBIDDEN"
    _, body = await gql("{ stats { hourly(hours: 0) { hour } } }", headers=ADMIN_HEADERS)
    assert code(body) == "BAD_USER_INPUT"


async def test_service_token_and_api_key_style_roles(gql: Any) -> None:
    headers = bearer(ME, "editor", allowed=["editor"])  # any other role acts as a user
    assert (await send(gql, headers))["success"]
    assert token(ME)  # helper sanity


async def test_graphiql_in_dev_mode(aiohttp_client: Any, app_settings: Any, clean: None) -> None:
    from app.main import create_app

    client = await aiohttp_client(create_app(app_settings.model_copy(update={"dev_mode": True})))
    resp = await client.get("/graphql", headers={"Accept": "text/html"})
    assert resp.status == 200
    assert "graphiql" in (await resp.text()).lower()
    resp = await client.get("/graphql", params={"query": "{ templates { name } }"})
    assert resp.status == 401  # the IDE page is open; queries are not
