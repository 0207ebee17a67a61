"""The README documents every setting and every CLI command group (docs cannot drift)."""

from __future__ import annotations

from app.cli import app as cli_app
from app.settings import PROJECT_ROOT, Settings

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def test_every_environment_variable_is_documented() -> None:
    missing = [
        field.validation_alias.choices[0]  # type: ignore[union-attr]
        for field in Settings.model_fields.values()
        if f"`{field.validation_alias.choices[0]}`" not in README  # type: ignore[union-attr]
    ]
    assert missing == []


def test_every_cli_command_group_is_documented() -> None:
    groups = [g.name for g in cli_app.registered_groups] + [
        c.name or c.callback.__name__  # type: ignore[union-attr]
        for c in cli_app.registered_commands
    ]
    assert len(groups) >= 12
    missing = [name for name in groups if f"notifications {name}" not in README]
    assert missing == []
