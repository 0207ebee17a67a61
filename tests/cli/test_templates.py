"""`notifications template ...`: CRUD from flags, files and $EDITOR, through the real service."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from tests.cli.conftest import Cli


async def test_crud_from_flags(cli: Cli, db: Any) -> None:
    result = await cli(
        "template", "create", "welcome_email", "--subject", "Welcome {{name}}",
        "--body-text", "Hi {{name}}, welcome!", "--body-html", "<p>Hi {{name}}</p>",
        "--channels", "email,sms", "--category", "transactional", "--variables", "name,plan?",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "created template welcome_email" in result.stdout

    listed = await cli.json("template", "list")
    assert [t["name"] for t in listed] == ["welcome_email"]
    assert listed[0]["channels"] == ["email", "sms"]
    assert listed[0]["variables"] == ["name", "plan?"]

    shown = await cli.json("template", "show", "welcome_email")
    assert shown["subject"] == "Welcome {{name}}"
    assert shown["body_html"] == "<p>Hi {{name}}</p>"
    assert shown["category"] == "transactional"

    result = await cli("template", "update", "welcome_email", "--subject", "Hello {{name}}",
                       "--inactive")  # fmt: skip
    assert result.exit_code == 0, result.output
    row = await db.fetchrow("SELECT * FROM notification_templates WHERE name = 'welcome_email'")
    assert row["subject"] == "Hello {{name}}" and row["active"] is False
    assert row["body_text"] == "Hi {{name}}, welcome!"  # untouched fields stay

    table = await cli("template", "list")
    assert "welcome_email" in table.stdout and "Hello {{name}}" in table.stdout

    result = await cli("template", "delete", "welcome_email", "--yes")
    assert result.exit_code == 0, result.output
    assert await cli.json("template", "list") == []
    actions = [r["action"] for r in await db.fetch(
        "SELECT action, actor FROM notification_audit_log ORDER BY created_at")]  # fmt: skip
    assert actions == ["template.create", "template.update", "template.delete"]
    assert await db.fetchval("SELECT DISTINCT actor FROM notification_audit_log") == "admin:cli"


async def test_create_from_yaml_and_update_from_json(cli: Cli, db: Any, tmp_path: Path) -> None:
    source = tmp_path / "order.yaml"
    source.write_text(
        "name: order_shipped\n"
        "category: transactional\n"
        "channels: [email, push]\n"
        "subject: 'Order {{order_id}} shipped'\n"
        "body: |\n  Your order {{order_id}} is on its way.\n"
        "variables: [order_id]\n"
    )
    result = await cli("template", "create", "--file", str(source))
    assert result.exit_code == 0, result.output
    row = await db.fetchrow("SELECT * FROM notification_templates WHERE name = 'order_shipped'")
    assert row["channels"] == ["email", "push"]
    assert row["body_text"] == "Your order {{order_id}} is on its way.\n"

    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps({"body_html": "<b>{{order_id}}</b>", "channels": "email"}))
    result = await cli("template", "update", "order_shipped", "-f", str(patch), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["channels"] == ["email"]
    row = await db.fetchrow("SELECT * FROM notification_templates WHERE name = 'order_shipped'")
    assert (
        row["body_html"] == "<b>{{order_id}}</b>" and row["subject"] == "Order {{order_id}} shipped"
    )


async def test_invalid_template_is_rejected_with_its_position(cli: Cli, db: Any) -> None:
    result = await cli("template", "create", "broken", "--subject", "Hi",
                       "--body-text", "Hello\n{{#if vip}}VIP")  # fmt: skip
    assert result.exit_code == 2
    assert "body_text: line 2, column 1" in result.stderr
    assert "never closed" in result.stderr
    assert "Traceback" not in result.output
    assert await db.fetchval("SELECT count(*) FROM notification_templates") == 0


async def test_bad_input_and_missing_templates(cli: Cli, tmp_path: Path) -> None:
    await cli("template", "create", "t1", "--body-text", "x")
    duplicate = await cli("template", "create", "t1", "--body-text", "y")
    assert duplicate.exit_code == 1 and "already exists" in duplicate.stderr
    missing = await cli("template", "show", "nope")
    assert missing.exit_code == 1 and "'nope' does not exist" in missing.stderr
    channels = await cli("template", "create", "t2", "--body-text", "x", "--channels", "fax")
    assert channels.exit_code == 2 and "unknown channel 'fax'" in channels.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t3\nbody_txt: typo\n")
    unknown = await cli("template", "create", "-f", str(bad))
    assert unknown.exit_code == 2 and "unknown field(s) body_txt" in unknown.stderr
    noname = await cli("template", "create", "--body-text", "x")
    assert noname.exit_code == 2 and "give the template name" in noname.stderr
    nothing = await cli("template", "delete", "t1", input="n\n")
    assert nothing.exit_code == 1


async def test_create_and_update_in_editor(cli: Cli, db: Any, tmp_path: Path) -> None:
    """With neither flags nor a file the template opens in $EDITOR (here: a script)."""
    content = tmp_path / "content.yaml"
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nsleep 0.01\ncat "' + str(content) + '" > "$1"\n')
    editor.chmod(editor.stat().st_mode | stat.S_IXUSR)
    content.write_text("name: edited\nsubject: From the editor\nbody_text: Hi {{name}}\n")
    result = await cli("template", "create", EDITOR=str(editor))
    assert result.exit_code == 0, result.output
    assert (
        await db.fetchval("SELECT subject FROM notification_templates WHERE name = 'edited'")
        == "From the editor"
    )

    content.write_text("name: edited\nsubject: Changed\nbody_text: Hi {{name}}\nactive: true\n")
    result = await cli("template", "update", "edited", EDITOR=str(editor))
    assert result.exit_code == 0, result.output
    assert (
        await db.fetchval("SELECT subject FROM notification_templates WHERE name = 'edited'")
        == "Changed"
    )
