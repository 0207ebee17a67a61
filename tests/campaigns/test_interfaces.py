"""REST routes (the real app) and the `campaign` CLI commands."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from uuid import uuid4

from typer.testing import CliRunner

from app.commands.campaigns import campaign_app
from app.main import create_app

ADMIN_SECRET = "admin-secret-0123456789"
ADMIN = {"X-Notifications-Admin-Secret": ADMIN_SECRET}
API_KEY = "svc-key-0123456789abcdef"


async def _client(aiohttp_client: Any, db_settings: Any) -> Any:
    app = create_app(
        db_settings(admin_secret=ADMIN_SECRET, api_keys=API_KEY, dry_run=True, api_rate_limit=0)
    )
    return await aiohttp_client(app)


async def test_rest_campaign_lifecycle(aiohttp_client: Any, db_settings: Any) -> None:
    client = await _client(aiohttp_client, db_settings)
    body = {
        "name": "launch", "channel": "email", "subject": "Hi {{name}}", "body": "Hello {{name}}",
        "recipients": [
            {"user_id": str(uuid4()), "to": {"email": f"r{i}@example.com"},
             "variables": {"name": f"r{i}"}} for i in range(20)
        ] + [{"user_id": "nope", "to": {"email": "bad@example.com"}}],
    }  # fmt: skip
    resp = await client.post("/api/campaigns", json=body, headers=ADMIN)
    assert resp.status == 202, await resp.text()
    created = await resp.json()
    assert created["accepted"] == 20 and created["rejected"] == 1
    assert created["counts"] == {} and created["staged"] == 20  # expanded by the workers
    resp = await client.get(f"/api/campaigns/{created['id']}", headers={"X-API-Key": API_KEY})
    assert resp.status == 200 and (await resp.json())["pending"] == 20
    resp = await client.post(f"/api/campaigns/{created['id']}/cancel", headers=ADMIN)
    data = await resp.json()
    assert resp.status == 200 and data["cancelled"] == 20 and data["pending"] == 0
    resp = await client.post(f"/api/campaigns/{created['id']}/cancel", headers=ADMIN)
    assert resp.status == 409
    assert resp.headers["Content-Type"].startswith("application/problem+json")


async def test_rest_errors_are_problems(aiohttp_client: Any, db_settings: Any) -> None:
    client = await _client(aiohttp_client, db_settings)
    resp = await client.post("/api/campaigns", json={"name": "x"})
    assert resp.status == 401
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    resp = await client.post("/api/campaigns", json={"name": "x", "recipients": []}, headers=ADMIN)
    assert resp.status == 422 and (await resp.json())["code"] == "BAD_USER_INPUT"
    resp = await client.get(f"/api/campaigns/{uuid4()}", headers=ADMIN)
    assert resp.status == 404 and (await resp.json())["code"] == "NOT_FOUND"
    resp = await client.get("/api/campaigns/not-a-uuid", headers=ADMIN)
    assert resp.status == 422


async def test_rest_sequence(aiohttp_client: Any, db_settings: Any) -> None:
    client = await _client(aiohttp_client, db_settings)
    body = {"user_id": str(uuid4()), "name": "onb", "to": {"email": "a@example.com"},
            "steps": [{"day": 0, "body": "hi"}, {"day": 2, "body": "later"}]}  # fmt: skip
    resp = await client.post("/api/sequences", json=body, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    data = await resp.json()
    assert [i["status"] for i in data["items"]] == ["queued", "scheduled"]
    resp = await client.post(f"/api/sequences/{data['id']}/cancel", headers=ADMIN)
    assert (await resp.json())["cancelled"] == 2


async def test_cli_send_status_cancel(tmp_path: Path, database_url: str, redis_url: str) -> None:
    csv_file = tmp_path / "list.csv"
    rows = ["user_id,email,name"] + [f"{uuid4()},c{i}@example.com,C{i}" for i in range(50)]
    rows.append("not-a-uuid,x@example.com,X")
    csv_file.write_text("\n".join(rows) + "\n")
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "DATABASE_POOL_MIN": "1",
           "NOTIFICATIONS_DRY_RUN": None, "COLUMNS": "200"}  # fmt: skip

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(campaign_app, list(args), env=env, catch_exceptions=False)

    result = await asyncio.to_thread(
        invoke, "send", str(csv_file), "--name", "cli", "--subject", "Hi {{name}}",
        "--body", "Hello {{name}} from {{team}}", "--var", "team=Acme", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["accepted"], data["rejected"], data["staged"]) == (50, 1, 50)
    status = await asyncio.to_thread(invoke, "status", data["id"], "--json")
    assert json.loads(status.stdout)["pending"] == 50
    cancel = await asyncio.to_thread(invoke, "cancel", data["id"])
    assert cancel.exit_code == 0 and "cancelled 50 notification(s)" in cancel.stdout
    missing = await asyncio.to_thread(invoke, "status", str(uuid4()))
    assert missing.exit_code == 1 and "not found" in missing.stderr
