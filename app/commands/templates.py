"""`notifications template ...`: manage templates (the CLI acts as admin "cli")."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import typer
import yaml
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from app.commands.common import (
    CLI_CALLER,
    JsonOption,
    _cell,
    console,
    fail,
    print_json,
    run,
)

# =========================================================================== template

template_app = typer.Typer(help="Manage templates (Handlebars subject, text and HTML bodies).",
                           no_args_is_help=True)  # fmt: skip

FILE_KEYS = {
    "name": "name", "category": "category", "channels": "channels", "subject": "subject",
    "body_text": "body_text", "body": "body_text", "text": "body_text",
    "body_html": "body_html", "html": "body_html", "variables": "variables", "active": "active",
}  # fmt: skip


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def read_template_file(path: str) -> dict[str, Any]:
    """A YAML or JSON template file (`-` reads stdin) -> template fields."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}", 2) from None
    return parse_template_document(text, source=path)


def parse_template_document(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise fail(f"{source}: not valid YAML/JSON{where}", 2) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise fail(f"{source}: expected a mapping of template fields", 2)
    unknown = sorted(str(k) for k in data if k not in FILE_KEYS)
    if unknown:
        raise fail(f"{source}: unknown field(s) {', '.join(unknown)}; "
                   f"use {', '.join(sorted(set(FILE_KEYS.values())))}", 2)  # fmt: skip
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("channels", "variables") and isinstance(value, str):
            value = _split(value)
        fields[FILE_KEYS[key]] = value
    return fields


def _flag_fields(**flags: Any) -> dict[str, Any]:
    fields = {k: v for k, v in flags.items() if v is not None}
    for key in ("channels", "variables"):
        if key in fields:
            fields[key] = _split(fields[key])
    return fields


EDITOR_HEADER = (
    "# Edit the template, save and close the editor. Lines starting with # are ignored.\n"
    "# Fields: name, category, channels, subject, body_text, body_html, variables, active\n"
)


def _edit(initial: dict[str, Any]) -> dict[str, Any]:
    """Open $EDITOR on a YAML document; an unchanged or empty result aborts."""
    document = EDITOR_HEADER + yaml.safe_dump(initial, sort_keys=False, allow_unicode=True)
    edited = click.edit(document, extension=".yaml", require_save=True)
    if edited is None or not edited.strip() or edited == document:
        raise fail("no changes: editor closed without saving", 1)
    return parse_template_document(edited, source="editor")


def _template_doc(row: Any) -> dict[str, Any]:
    return {
        "name": row["name"], "category": row["category"], "channels": list(row["channels"] or []),
        "subject": row["subject"], "body_text": row["body_text"], "body_html": row["body_html"],
        "variables": list(row["variables"] or []), "active": row["active"],
    }  # fmt: skip


def _variables_cell(raw: Any) -> str:
    return ", ".join(
        v if isinstance(v, str) else str(v.get("name")) for v in (raw or []) if v is not None
    )


@template_app.command("list")
def template_list(
    active: bool | None = typer.Option(None, "--active/--inactive", help="only (in)active ones"),
    as_json: bool = JsonOption,
) -> None:
    """List templates."""
    from app.services import templates

    rows = run(lambda rt: templates.list_all(rt, active=active))
    if as_json:
        print_json([_template_doc(r) | {"updated_at": r["updated_at"]} for r in rows])
        return
    if not rows:
        console.print("no templates yet: `notifications template create NAME ...`")
        return
    table = Table(title=f"{len(rows)} template(s)", title_justify="left", header_style="bold")
    for column in ("name", "category", "channels", "subject", "variables", "active", "updated"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r["name"], _cell(r["category"]), _cell(list(r["channels"] or [])),
            _cell(r["subject"]), _variables_cell(r["variables"]) or "-", _cell(r["active"]),
            _cell(r["updated_at"]),
        )  # fmt: skip
    console.print(table)


@template_app.command("show")
def template_show(name: str, as_json: bool = JsonOption) -> None:
    """Show one template with its sources."""
    from app.services import templates

    row = run(lambda rt: templates.get(rt, name))
    if as_json:
        print_json(_template_doc(row) | {"created_at": row["created_at"],
                                         "updated_at": row["updated_at"]})  # fmt: skip
        return
    head = Table(show_header=False, title=name, title_justify="left")
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    for key in ("category", "channels", "subject", "variables", "active", "created_at",
                "updated_at"):  # fmt: skip
        value = _variables_cell(row[key]) if key == "variables" else _cell(row[key])
        head.add_row(key, value or "-")
    console.print(head)
    for key in ("body_text", "body_html"):
        if row[key]:
            console.print(Panel(Text(row[key]), title=key, title_align="left"))


TemplateFile = typer.Option(
    None, "--file", "-f", help="YAML or JSON file with the fields (- = stdin)"
)
SubjectOpt = typer.Option(None, "--subject", help="subject (Handlebars)")
TextOpt = typer.Option(None, "--body-text", help="plain-text body (Handlebars)")
HtmlOpt = typer.Option(None, "--body-html", help="HTML body (Handlebars)")
ChannelsOpt = typer.Option(None, "--channels", help="comma-separated: email,push,sms")
CategoryOpt = typer.Option(None, "--category", help="e.g. transactional, marketing")
VariablesOpt = typer.Option(None, "--variables", help="comma-separated names; 'name?' = optional")
ActiveOpt = typer.Option(None, "--active/--inactive", help="enable or disable the template")


@template_app.command("create")
def template_create(
    name: str | None = typer.Argument(None, help="template name (or `name:` in the file)"),
    file: str | None = TemplateFile,
    subject: str | None = SubjectOpt,
    body_text: str | None = TextOpt,
    body_html: str | None = HtmlOpt,
    channels: str | None = ChannelsOpt,
    category: str | None = CategoryOpt,
    variables: str | None = VariablesOpt,
    active: bool | None = ActiveOpt,
    as_json: bool = JsonOption,
) -> None:
    """Create a template from flags, a file (--file), or in $EDITOR when given neither."""
    from app.services import templates

    flags = _flag_fields(subject=subject, body_text=body_text, body_html=body_html,
                         channels=channels, category=category, variables=variables,
                         active=active)  # fmt: skip
    fields: dict[str, Any] = read_template_file(file) if file else {}
    if not file and not flags:
        skeleton = {"name": name or "my_template", "category": "transactional",
                    "channels": ["email"], "subject": "Hello {{name}}",
                    "body_text": "Hi {{name}},\n", "body_html": None,
                    "variables": ["name"]}  # fmt: skip
        fields = _edit(skeleton)
    fields.update(flags)
    final_name = name or fields.pop("name", None)
    fields.pop("name", None)
    if not final_name:
        raise fail("give the template name: `notifications template create NAME ...`", 2)
    row = run(lambda rt: templates.create(rt, CLI_CALLER, str(final_name), fields))
    if as_json:
        print_json(_template_doc(row))
    else:
        console.print(f"created template [bold]{row['name']}[/]", highlight=False)


@template_app.command("update")
def template_update(
    name: str,
    file: str | None = TemplateFile,
    subject: str | None = SubjectOpt,
    body_text: str | None = TextOpt,
    body_html: str | None = HtmlOpt,
    channels: str | None = ChannelsOpt,
    category: str | None = CategoryOpt,
    variables: str | None = VariablesOpt,
    active: bool | None = ActiveOpt,
    as_json: bool = JsonOption,
) -> None:
    """Update a template: only the given fields change. No flags and no file opens $EDITOR."""
    from app.services import templates

    flags = _flag_fields(subject=subject, body_text=body_text, body_html=body_html,
                         channels=channels, category=category, variables=variables,
                         active=active)  # fmt: skip
    fields: dict[str, Any] = read_template_file(file) if file else {}
    if not file and not flags:
        current = run(lambda rt: templates.get(rt, name))
        fields = _edit(_template_doc(current))
    fields.update(flags)
    renamed = fields.pop("name", name)
    if renamed != name:
        raise fail(f"renaming is not supported (file says {renamed!r}, updating {name!r})", 2)
    if not fields:
        raise fail("nothing to update: give --subject, --body-text, ... or --file", 2)
    row = run(lambda rt: templates.update(rt, CLI_CALLER, name, fields))
    if as_json:
        print_json(_template_doc(row))
    else:
        console.print(f"updated template [bold]{name}[/]: {', '.join(sorted(fields))}",
                      highlight=False)  # fmt: skip


@template_app.command("delete")
def template_delete(
    name: str, yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation")
) -> None:
    """Delete a template."""
    from app.services import templates

    if not yes and not typer.confirm(f"delete template {name!r}?"):
        raise fail("aborted", 1)
    run(lambda rt: templates.delete(rt, CLI_CALLER, name))
    console.print(f"deleted template [bold]{name}[/]", highlight=False)
