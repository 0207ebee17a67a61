"""Hasura metadata, the generated action SDL, the schema snapshot and docker-compose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import jsonschema
import pytest
import yaml
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLObjectType,
    build_schema,
    get_named_type,
)

from app.graphql import hasura
from app.graphql.schema import print_schema, schema
from app.settings import PROJECT_ROOT

METADATA = PROJECT_ROOT / "hasura" / "metadata"
TABLES_DIR = METADATA / "databases" / "default" / "tables"
SNAPSHOT = Path(__file__).parent / "schema.graphql"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def include(base: Path, entry: str) -> Path:
    assert entry.startswith("!include "), entry
    return base / entry.removeprefix("!include ").strip()


def table_files() -> list[Path]:
    return [include(TABLES_DIR, e) for e in load(TABLES_DIR / "tables.yaml")]


def test_schema_snapshot() -> None:
    """tests/graphql/schema.graphql is the printed schema: a change to the API shows in review."""
    assert SNAPSHOT.read_text(encoding="utf-8") == print_schema()


def test_every_metadata_file_parses() -> None:
    files = sorted(METADATA.rglob("*.yaml"))
    assert len(files) >= 20
    for path in files:
        load(path)
    assert load(METADATA / "version.yaml") == {"version": 3}
    databases = load(METADATA / "databases" / "databases.yaml")
    assert databases[0]["name"] == "default" and databases[0]["kind"] == "postgres"
    assert include(METADATA / "databases", databases[0]["tables"]) == TABLES_DIR / "tables.yaml"
    assert all(p.exists() for p in table_files())


def test_generated_files_do_not_drift(tmp_path: Path) -> None:
    assert (METADATA / "actions.graphql").read_text() == hasura.export_actions_sdl()
    assert load(METADATA / "actions.yaml") == hasura.actions_metadata()
    written = hasura.write_metadata(tmp_path)
    assert {p.name for p in written} == {"actions.graphql", "actions.yaml"}
    for path in written:
        assert path.read_text() == (METADATA / path.name).read_text()


def _hasura_sdl_schema() -> Any:
    sdl = (METADATA / "actions.graphql").read_text()
    scalars = "\n".join(f"scalar {s}" for s in hasura.SCALARS.values())
    return build_schema(f"{sdl}\n{scalars}\ntype Query {{ _unused: Boolean }}\n")


def _kind(named: Any) -> type:
    for kind in (GraphQLEnumType, GraphQLInputObjectType, GraphQLObjectType):
        if isinstance(named, kind):
            return kind
    raise AssertionError(named)


def test_action_sdl_matches_the_strawberry_schema() -> None:
    parsed = _hasura_sdl_schema()
    ours = schema._schema
    assert parsed.mutation_type is not None and ours.mutation_type is not None
    for action in hasura.ACTIONS:
        theirs = parsed.mutation_type.fields[action.name]
        mine = ours.mutation_type.fields[action.name]
        assert str(theirs.type) == hasura.hasura_type(mine.type)
        assert {n: str(a.type) for n, a in theirs.args.items()} == {
            n: hasura.hasura_type(a.type) for n, a in mine.args.items()
        }
    for name, mine_type in hasura.action_types().items():
        their_type = parsed.type_map[name]
        assert isinstance(their_type, _kind(mine_type)), name
        if isinstance(mine_type, GraphQLEnumType):
            assert set(their_type.values) == set(mine_type.values), name  # type: ignore[attr-defined]
        if isinstance(mine_type, GraphQLInputObjectType | GraphQLObjectType):
            assert {n: str(f.type) for n, f in their_type.fields.items()} == {  # type: ignore[attr-defined]
                n: hasura.hasura_type(f.type) for n, f in mine_type.fields.items()
            }, name


def test_actions_yaml() -> None:
    data = load(METADATA / "actions.yaml")
    names = {a["name"] for a in data["actions"]}
    assert names == {a.name for a in hasura.ACTIONS}
    for entry in data["actions"]:
        definition = entry["definition"]
        assert definition["handler"] == "{{NOTIFICATIONS_ACTION_BASE_URL}}/hasura/actions"
        assert definition["headers"] == [
            {
                "name": "X-Notifications-Action-Secret",
                "value_from_env": "NOTIFICATIONS_ACTION_SECRET",
            }
        ]
        assert definition["kind"] in ("synchronous", "asynchronous")
    kinds = {a["name"]: a["definition"]["kind"] for a in data["actions"]}
    assert (
        kinds["sendNotifications"] == "asynchronous" and kinds["sendNotification"] == "synchronous"
    )
    user_actions = {
        a["name"] for a in data["actions"] if {"role": "user"} in a.get("permissions", [])
    }
    assert user_actions == {"sendNotification", "cancelNotification", "upsertPreference"}
    declared = {t["name"] for kind in data["custom_types"].values() for t in kind}
    assert declared == set(hasura.action_types())
    payload = next(
        o for o in data["custom_types"]["objects"] if o["name"] == "SendNotificationPayload"
    )
    rel = payload["relationships"][0]
    assert rel["type"] == "object" and rel["remote_table"] == {
        "schema": "public",
        "name": "notifications",
    }
    assert rel["field_mapping"] == {"notificationId": "id"}
    parsed = _hasura_sdl_schema()
    field = get_named_type(parsed.type_map["SendNotificationPayload"]).fields["notificationId"]  # type: ignore[attr-defined]
    assert str(field.type) == "uuid"


def _columns_in(permission: dict[str, Any]) -> set[str]:
    cols = set(permission.get("columns") or [])
    cols |= set((permission.get("set") or {}).keys())
    for key in ("filter", "check"):
        for name, cond in (permission.get(key) or {}).items():
            if not isinstance(cond, dict) or any(k.startswith("_") for k in cond):
                cols.add(name)
    return cols


async def test_tracked_tables_and_permission_columns_exist(database_url: str) -> None:
    """Every tracked table/view and every column a permission names exists after the migrations."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    columns: dict[str, set[str]] = {}
    for r in rows:
        columns.setdefault(r["table_name"], set()).add(r["column_name"])
    tracked = {}
    for path in table_files():
        data = load(path)
        assert data["table"]["schema"] == "public"
        tracked[data["table"]["name"]] = data
    spec = {"notifications", "notification_templates", "notification_preferences",
            "notification_queue", "notification_providers", "notification_batches",
            "notification_delivery_rates", "notification_engagement",
            "notification_provider_health", "notification_user_summary",
            "notification_queue_backlog"}  # fmt: skip
    assert spec <= set(tracked)
    for name, data in tracked.items():
        assert name in columns, f"{name} is tracked but not created by the migrations"
        for kind in ("select", "insert", "update", "delete"):
            for perm in data.get(f"{kind}_permissions", []):
                missing = _columns_in(perm["permission"]) - columns[name]
                assert not missing, f"{name} {kind} permission names unknown columns {missing}"
    own = {"user_id": {"_eq": "X-Hasura-User-Id"}}
    for name in ("notifications", "notification_preferences", "notification_user_summary"):
        select = [p for p in tracked[name]["select_permissions"] if p["role"] == "user"]
        assert select and select[0]["permission"]["filter"] == own
    prefs = tracked["notification_preferences"]
    assert prefs["insert_permissions"][0]["permission"]["check"] == own
    assert prefs["update_permissions"][0]["permission"]["filter"] == own
    assert "user_id" not in prefs["update_permissions"][0]["permission"]["columns"]
    events = tracked["notification_events"]["select_permissions"][0]["permission"]["filter"]
    assert events == {"notification": own}


# --------------------------------------------------------------------------- compose

COMPOSE = PROJECT_ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)  # type: ignore[no-any-return]


def test_compose_is_valid_against_the_compose_spec(compose: dict[str, Any]) -> None:
    import json

    spec = json.loads((Path(__file__).parents[1] / "fixtures" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(spec).validate(compose)


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "hasura", "api", "worker"}
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert services["api"]["command"] == ["notifications", "server"]
    assert services["worker"]["command"] == ["notifications", "worker"]
    assert services["api"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    hasura_svc = services["hasura"]
    assert hasura_svc["image"].startswith("hasura/graphql-engine:") and hasura_svc[
        "image"
    ].endswith(".cli-migrations-v3")
    assert "./hasura/metadata:/hasura-metadata:ro" in hasura_svc["volumes"]
    env = hasura_svc["environment"]
    assert env["NOTIFICATIONS_ACTION_BASE_URL"] == "http://api:3102"
    assert env["HASURA_GRAPHQL_JWT_SECRET"].startswith("${HASURA_GRAPHQL_JWT_SECRET")
    assert env["HASURA_GRAPHQL_ADMIN_SECRET"].startswith("${HASURA_GRAPHQL_ADMIN_SECRET")
    assert env["NOTIFICATIONS_ACTION_SECRET"].startswith("${NOTIFICATIONS_ACTION_SECRET")
    assert hasura_svc["depends_on"]["api"] == {"condition": "service_healthy"}
    assert (PROJECT_ROOT / "Dockerfile").exists()
