"""Hasura glue: the action metadata generated from the Strawberry schema, and the action runner.

    export_actions_sdl()        hasura/metadata/actions.graphql, printed from the schema
    actions_metadata()          hasura/metadata/actions.yaml (actions + custom types)
    write_metadata(path)        writes both (the CLI's `notifications hasura export`)
    run_action(body, ctx)       executes one action call through the same schema

Each action is the schema's mutation of the same name; its arguments arrive
under `input` by their declared names, which are exactly our GraphQL variables.
Strawberry's scalars are printed as Hasura's Postgres scalars (uuid, timestamptz,
jsonb) so an action output can join a tracked table (notificationId -> notifications.id).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLType,
    get_named_type,
)

from app.graphql.schema import schema

HANDLER = "{{NOTIFICATIONS_ACTION_BASE_URL}}/hasura/actions"
SECRET_HEADER = "X-Notifications-Action-Secret"
SECRET_ENV = "NOTIFICATIONS_ACTION_SECRET"

# Strawberry scalar -> Hasura (Postgres) scalar usable in action types.
SCALARS = {"UUID": "uuid", "DateTime": "timestamptz", "JSON": "jsonb"}
BUILTIN_SCALARS = {"String", "Int", "Float", "Boolean", "ID"}


@dataclass(frozen=True)
class Action:
    name: str
    kind: str = "synchronous"
    user: bool = False  # role `user` may call it (admin always may)
    comment: str = ""


ACTIONS = (
    Action("sendNotification", user=True, comment="Send one notification"),
    Action("sendNotifications", kind="asynchronous", comment="Bulk send, one template"),
    Action("cancelNotification", user=True, comment="Cancel a notification not sent yet"),
    Action("upsertPreference", user=True, comment="Create or change a preference"),
    Action("createTemplate", comment="Admin: create a template"),
    Action("updateTemplate", comment="Admin: update a template"),
    Action("deleteTemplate", comment="Admin: delete a template"),
)
ACTION_NAMES = {a.name: a for a in ACTIONS}

# Action output type -> relationships to tracked tables.
RELATIONSHIPS: dict[str, list[dict[str, Any]]] = {
    "SendNotificationPayload": [
        {
            "name": "notification",
            "type": "object",
            "source": "default",
            "remote_table": {"schema": "public", "name": "notifications"},
            "field_mapping": {"notificationId": "id"},
        }
    ]
}


def mutation_field(name: str) -> GraphQLField:
    mutation = schema._schema.mutation_type
    assert mutation is not None
    return mutation.fields[name]


def hasura_type(type_: GraphQLType) -> str:
    """A type reference as Hasura spells it (our scalars mapped to Postgres ones)."""
    if isinstance(type_, GraphQLNonNull):
        return f"{hasura_type(type_.of_type)}!"
    if isinstance(type_, GraphQLList):
        return f"[{hasura_type(type_.of_type)}]"
    named = get_named_type(type_)
    return SCALARS.get(named.name, named.name)


def _collect(type_: GraphQLType, seen: dict[str, GraphQLNamedType]) -> None:
    named = get_named_type(type_)
    if named.name in seen or named.name in BUILTIN_SCALARS or named.name in SCALARS:
        return
    seen[named.name] = named
    if isinstance(named, GraphQLInputObjectType | GraphQLObjectType):
        for field in named.fields.values():
            _collect(field.type, seen)


def action_types() -> dict[str, GraphQLNamedType]:
    """Every named type the actions use (arguments and outputs), by name."""
    seen: dict[str, GraphQLNamedType] = {}
    for action in ACTIONS:
        field = mutation_field(action.name)
        for arg in field.args.values():
            _collect(arg.type, seen)
        _collect(field.type, seen)
    return dict(sorted(seen.items()))


def _print_type(named: GraphQLNamedType) -> str:
    if isinstance(named, GraphQLEnumType):
        values = "\n".join(f"  {v}" for v in named.values)
        return f"enum {named.name} {{\n{values}\n}}"
    if isinstance(named, GraphQLScalarType):
        return f"scalar {named.name}"
    keyword = "input" if isinstance(named, GraphQLInputObjectType) else "type"
    assert isinstance(named, GraphQLInputObjectType | GraphQLObjectType)
    fields = "\n".join(f"  {n}: {hasura_type(f.type)}" for n, f in named.fields.items())
    return f"{keyword} {named.name} {{\n{fields}\n}}"


def export_actions_sdl() -> str:
    """hasura/metadata/actions.graphql: the Mutation fields of the actions and their types."""
    lines = []
    for action in ACTIONS:
        field = mutation_field(action.name)
        args = ", ".join(f"{n}: {hasura_type(a.type)}" for n, a in field.args.items())
        lines.append(f"  {action.name}({args}): {hasura_type(field.type)}")
    blocks = ["type Mutation {\n" + "\n".join(lines) + "\n}"]
    blocks += [_print_type(t) for t in action_types().values()]
    return "\n\n".join(blocks) + "\n"


def actions_metadata() -> dict[str, Any]:
    """hasura/metadata/actions.yaml."""
    actions = []
    for action in ACTIONS:
        entry: dict[str, Any] = {
            "name": action.name,
            "definition": {
                "kind": action.kind,
                "handler": HANDLER,
                "forward_client_headers": False,
                "headers": [{"name": SECRET_HEADER, "value_from_env": SECRET_ENV}],
                "timeout": 30,
            },
            "comment": action.comment,
        }
        if action.user:
            entry["permissions"] = [{"role": "user"}]
        actions.append(entry)
    types = action_types().values()
    return {
        "actions": actions,
        "custom_types": {
            "enums": [{"name": t.name} for t in types if isinstance(t, GraphQLEnumType)],
            "input_objects": [
                {"name": t.name} for t in types if isinstance(t, GraphQLInputObjectType)
            ],
            "objects": [
                {
                    "name": t.name,
                    **({"relationships": RELATIONSHIPS[t.name]} if t.name in RELATIONSHIPS else {}),
                }
                for t in types
                if isinstance(t, GraphQLObjectType)
            ],
            "scalars": [{"name": t.name} for t in types if isinstance(t, GraphQLScalarType)],
        },
    }


def actions_yaml() -> str:
    return yaml.safe_dump(actions_metadata(), sort_keys=False, default_flow_style=False)


def write_metadata(path: Path | str) -> list[Path]:
    """Write actions.graphql and actions.yaml into the metadata directory `path`."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("actions.graphql", export_actions_sdl()), ("actions.yaml", actions_yaml())):
        target = directory / name
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


# --------------------------------------------------------------------------- runner


def _selection(type_: GraphQLType, depth: int = 0) -> str:
    named = get_named_type(type_)
    if not isinstance(named, GraphQLObjectType):
        return ""
    parts = []
    for name, field in named.fields.items():
        if any(isinstance(a.type, GraphQLNonNull) for a in field.args.values()) or depth > 4:
            continue
        inner = _selection(field.type, depth + 1)
        if isinstance(get_named_type(field.type), GraphQLObjectType) and not inner:
            continue
        parts.append(f"{name}{inner}")
    return " { " + " ".join(parts) + " }" if parts else ""


@cache
def operation(name: str) -> str:
    """The GraphQL document that runs action `name` with its input as variables."""
    field = mutation_field(name)
    variables = ", ".join(f"${n}: {a.type}" for n, a in field.args.items())
    arguments = ", ".join(f"{n}: ${n}" for n in field.args)
    head = f"mutation {name[0].upper()}{name[1:]}" + (f"({variables})" if variables else "")
    call = f"{name}({arguments})" if arguments else name
    return f"{head} {{ {call}{_selection(field.type)} }}"


def action_name(body: dict[str, Any]) -> str | None:
    """`action` is {"name": ...} (Hasura v2) or a bare string (older Hasura)."""
    action = body.get("action")
    if isinstance(action, dict):
        action = action.get("name")
    return action if isinstance(action, str) else None


def argument_values(name: str, given: Any) -> dict[str, Any]:
    field = mutation_field(name)
    if not isinstance(given, dict):
        return {}
    return {k: v for k, v in given.items() if k in field.args}
