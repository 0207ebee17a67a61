"""The REST API through the real app: happy paths, auth, bad input (problem+json)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from app.rest import schemas as s
from tests.rest.conftest import ADMIN, SERVICE, TEMPLATE, send_body, user_token

PROBLEM = "application/problem+json"


async def count(database_url: str, table: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(f"SELECT COUNT(*) FROM {table}"))
    finally:
        await conn.close()


async def problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.headers["Content-Type"].startswith(PROBLEM)
    body = await resp.json(content_type=None)
    assert body["status"] == status and body["code"] == code
    assert body["type"].startswith("https://") and body["title"] and body["detail"]
    return body


async def with_template(client: Any) -> None:
    resp = await client.post("/api/templates", json=TEMPLATE, headers=ADMIN)
    assert resp.status == 201, await resp.text()


# --------------------------------------------------------------------------- happy paths


async def test_send_get_list_cancel(client: Any) -> None:
    await with_template(client)
    user = uuid.uuid4()
    resp = await client.post("/api/notifications/send", json=send_body(user), headers=SERVICE)
    assert resp.status == 200, await resp.text()
    sent = await resp.json()
    assert sent["success"] is True and sent["status"] == "queued" and sent["message"]
    # written without the model (the hot path), it is still exactly a SendResponse
    assert s.SendResponse.model_validate(sent).model_dump(mode="json") == sent
    nid = sent["notification_id"]

    resp = await client.get(f"/api/notifications/{nid}", headers=SERVICE)
    got = await resp.json()
    assert resp.status == 200
    assert got["id"] == nid and got["status"] == "queued" and got["subject"] == "Welcome Ada"
    assert got["sent_at"] is None and got["channel"] == "email"

    resp = await client.get(f"/api/notifications?user_id={user}&limit=1", headers=SERVICE)
    page = await resp.json()
    assert resp.status == 200 and page["count"] == 1 and page["next_offset"] == 1
    assert page["items"][0]["id"] == nid

    resp = await client.post(f"/api/notifications/{nid}/cancel", headers=SERVICE)
    assert (await resp.json())["status"] == "cancelled"
    resp = await client.post(f"/api/notifications/{nid}/cancel", headers=SERVICE)
    await problem(resp, 409, "CONFLICT")

    resp = await client.get(f"/api/notifications/{nid}/events", headers=SERVICE)
    assert resp.status == 200 and (await resp.json())["events"] == []


async def test_send_batch_per_item_results(client: Any, database_url: str) -> None:
    await with_template(client)
    body = {
        "template": "welcome_email",
        "channel": "email",
        "recipients": [
            {"to": {"email": "a@example.org"}, "user_id": str(uuid.uuid4()),
             "variables": {"user_name": "A", "app_name": "X"}},
            {"to": {"email": "not-an-email"}, "user_id": str(uuid.uuid4()),
             "variables": {"user_name": "B", "app_name": "X"}},
            {"to": {"email": "c@example.org"}, "variables": {"user_name": "C", "app_name": "X"}},
        ],
    }  # fmt: skip
    resp = await client.post("/api/notifications/send-batch", json=body, headers=SERVICE)
    assert resp.status == 200, await resp.text()
    out = await resp.json()
    assert out["total"] == 3 and out["accepted"] == 1 and out["failed"] == 2
    assert out["success"] is False
    ok, bad_email, no_user = out["results"]
    assert ok["success"] and ok["notification_id"]
    assert bad_email["error"]["code"] == "BAD_USER_INPUT" and "email" in bad_email["message"]
    assert no_user["error"]["code"] == "BAD_USER_INPUT" and "user_id" in no_user["message"]
    assert await count(database_url, "notifications") == 1


async def test_templates_crud(client: Any) -> None:
    await with_template(client)
    resp = await client.get("/api/templates", headers=SERVICE)
    listed = await resp.json()
    assert listed["count"] == 1 and listed["templates"][0]["name"] == "welcome_email"
    resp = await client.get("/api/templates/welcome_email", headers=SERVICE)
    assert (await resp.json())["variables"] == ["user_name", "app_name"]
    resp = await client.put(
        "/api/templates/welcome_email", json={"subject": "Hello {{user_name}}"}, headers=ADMIN
    )
    assert resp.status == 200 and (await resp.json())["subject"] == "Hello {{user_name}}"
    resp = await client.post("/api/templates", json=TEMPLATE, headers=ADMIN)
    await problem(resp, 409, "CONFLICT")
    resp = await client.delete("/api/templates/welcome_email", headers=ADMIN)
    assert resp.status == 204
    resp = await client.get("/api/templates/welcome_email", headers=SERVICE)
    await problem(resp, 404, "NOT_FOUND")


async def test_preferences(client: Any) -> None:
    user = uuid.uuid4()
    body = {"user_id": str(user), "channel": "email", "category": "marketing", "enabled": False,
            "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris"}}  # fmt: skip
    resp = await client.post("/api/preferences", json=body, headers=user_token(user))
    assert resp.status == 200, await resp.text()
    saved = await resp.json()
    assert saved["enabled"] is False and saved["quiet_hours"]["timezone"] == "Europe/Paris"
    resp = await client.get(f"/api/preferences/{user}", headers=user_token(user))
    prefs = (await resp.json())["preferences"]
    assert len(prefs) == 1 and prefs[0]["category"] == "marketing"


async def test_stats(client: Any) -> None:
    await with_template(client)
    user = uuid.uuid4()
    await client.post("/api/notifications/send", json=send_body(user), headers=SERVICE)
    resp = await client.get("/api/stats/delivery?period=24h", headers=SERVICE)
    delivery = await resp.json()
    assert resp.status == 200 and delivery["days"] == 1
    assert delivery["rows"][0]["channel"] == "email" and delivery["rows"][0]["total"] == 1
    resp = await client.get("/api/stats/delivery?days=7", headers=SERVICE)
    assert (await resp.json())["days"] == 7
    for path in ("/api/stats/engagement?period=7d", "/api/stats/providers", "/api/stats/queue",
                 "/api/stats/hourly?hours=3", f"/api/stats/users/{user}"):  # fmt: skip
        resp = await client.get(path, headers=SERVICE)
        assert resp.status == 200, (path, await resp.text())
    resp = await client.get("/api/stats/queue", headers=SERVICE)
    assert (await resp.json())["queue"]["total_queued"] == 1
    resp = await client.get("/api/stats/delivery?period=forever", headers=SERVICE)
    body = await problem(resp, 422, "BAD_USER_INPUT")
    assert body["errors"][0]["path"] == ["query", "period"]


# --------------------------------------------------------------------------- auth


async def test_auth(client: Any) -> None:
    resp = await client.get("/api/templates")
    await problem(resp, 401, "UNAUTHENTICATED")
    resp = await client.get("/api/templates", headers={"X-API-Key": "wrong"})
    await problem(resp, 401, "UNAUTHENTICATED")
    resp = await client.get("/api/templates", headers={"Authorization": "Bearer wrong"})
    await problem(resp, 401, "UNAUTHENTICATED")
    resp = await client.get(
        "/api/templates", headers={"Authorization": "Bearer " + SERVICE["X-API-Key"]}
    )
    assert resp.status == 200
    resp = await client.get("/health")
    assert resp.status == 200


async def test_user_jwt_only_own_data(client: Any, database_url: str) -> None:
    await with_template(client)
    me, other = uuid.uuid4(), uuid.uuid4()
    mine = user_token(me)
    resp = await client.post("/api/notifications/send", json=send_body(other), headers=mine)
    await problem(resp, 403, "FORBIDDEN")
    resp = await client.get(f"/api/preferences/{other}", headers=mine)
    await problem(resp, 403, "FORBIDDEN")
    resp = await client.post(
        "/api/preferences", json={"user_id": str(other), "channel": "sms"}, headers=mine
    )
    await problem(resp, 403, "FORBIDDEN")
    resp = await client.get(f"/api/notifications?user_id={other}", headers=mine)
    await problem(resp, 403, "FORBIDDEN")
    resp = await client.get("/api/stats/delivery", headers=mine)
    await problem(resp, 403, "FORBIDDEN")
    resp = await client.post("/api/templates", json={**TEMPLATE, "name": "x"}, headers=mine)
    await problem(resp, 403, "FORBIDDEN")
    # someone else's notification is invisible
    resp = await client.post("/api/notifications/send", json=send_body(other), headers=SERVICE)
    nid = (await resp.json())["notification_id"]
    resp = await client.get(f"/api/notifications/{nid}", headers=mine)
    await problem(resp, 404, "NOT_FOUND")
    # own send works
    resp = await client.post("/api/notifications/send", json=send_body(me), headers=mine)
    assert resp.status == 200
    assert await count(database_url, "notification_preferences") == 0


async def test_metrics_protected(make_client: Any) -> None:
    client = await make_client(metrics_protected=True)
    resp = await client.get("/metrics")
    await problem(resp, 401, "UNAUTHENTICATED")
    resp = await client.get("/metrics", headers=SERVICE)
    assert resp.status == 200


# --------------------------------------------------------------------------- bad input


async def test_bad_input_never_stored(client: Any, database_url: str) -> None:
    await with_template(client)
    user = uuid.uuid4()
    resp = await client.post(
        "/api/notifications/send",
        data=b"{not json",
        headers={**SERVICE, "Content-Type": "application/json"},
    )
    await problem(resp, 400, "BAD_REQUEST")
    resp = await client.post("/api/notifications/send", data=b"", headers=SERVICE)
    await problem(resp, 400, "BAD_REQUEST")
    resp = await client.post(
        "/api/notifications/send",
        json=send_body(user, to={"email": "nope"}, channel="email"),
        headers=SERVICE,
    )
    body = await problem(resp, 422, "BAD_USER_INPUT")
    assert body["errors"][0]["path"][:3] == ["body", "to", "email"]
    resp = await client.post(
        "/api/notifications/send", json=send_body(user, channel="fax"), headers=SERVICE
    )
    body = await problem(resp, 422, "BAD_USER_INPUT")
    assert ["body", "channel"] in [e["path"] for e in body["errors"]]
    resp = await client.post(
        "/api/notifications/send", json=send_body(user, subject="a\x00b"), headers=SERVICE
    )
    body = await problem(resp, 422, "BAD_USER_INPUT")
    assert body["errors"][0]["path"] == ["body", "subject"]
    resp = await client.post("/api/notifications/send", json=[1, 2], headers=SERVICE)
    await problem(resp, 422, "BAD_USER_INPUT")
    resp = await client.post(
        "/api/notifications/send", json=send_body(user, template="missing"), headers=SERVICE
    )
    await problem(resp, 404, "NOT_FOUND")
    big = send_body(user, variables={"user_name": "x" * 5000, "app_name": "y"})
    resp = await client.post("/api/notifications/send", json=big, headers=SERVICE)
    await problem(resp, 413, "PAYLOAD_TOO_LARGE")
    resp = await client.get("/api/notifications/not-a-uuid", headers=SERVICE)
    body = await problem(resp, 422, "BAD_USER_INPUT")
    assert body["errors"][0]["path"] == ["path", "id"]
    resp = await client.get("/api/notifications?limit=100000", headers=SERVICE)
    await problem(resp, 422, "BAD_USER_INPUT")
    resp = await client.get("/api/nothing-here", headers=SERVICE)
    await problem(resp, 404, "NOT_FOUND")
    resp = await client.delete("/api/notifications/send", headers=SERVICE)
    await problem(resp, 405, "METHOD_NOT_ALLOWED")
    assert await count(database_url, "notifications") == 0


async def test_rate_limit(make_client: Any) -> None:
    client = await make_client(api_rate_limit=3, api_burst_limit=1)
    statuses = [(await client.get("/api/templates", headers=SERVICE)).status for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    resp = await client.get("/api/templates", headers=SERVICE)
    body = await problem(resp, 429, "RATE_LIMITED")
    assert int(resp.headers["Retry-After"]) >= 1 and body["retry_after"] >= 1
    assert (await client.get("/health")).status == 200  # only /api is limited


# --------------------------------------------------------------------------- metrics, docs


async def test_metrics_parse(client: Any) -> None:
    await client.get("/api/templates", headers=SERVICE)
    resp = await client.get("/metrics")
    assert resp.status == 200
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    for name in ("notifications_sent", "notification_latency_seconds", "notification_queue_size",
                 "notification_http_requests"):  # fmt: skip
        assert name in families, sorted(families)
    routes = {s.labels.get("route") for s in families["notification_http_requests"].samples}
    assert "/api/templates" in routes


async def test_openapi_and_docs(client: Any) -> None:
    resp = await client.get("/openapi.json")
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    for path in (
        "/api/notifications/send",
        "/api/notifications/{id}",
        "/api/templates",
        "/api/templates/{name}",
        "/api/preferences",
        "/api/preferences/{user_id}",
        "/api/stats/delivery",
        "/api/stats/engagement",
        "/api/notifications/send-batch",
    ):
        assert path in doc["paths"], path  # fmt: skip
    send = doc["paths"]["/api/notifications/send"]["post"]
    ref = send["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.split("/")[-1] in doc["components"]["schemas"]
    resp = await client.get("/docs")
    assert resp.status == 200 and "/openapi.json" in await resp.text()
