"""`notifications provider ...`: provider rows (several per channel, by priority).

Configs are stored encrypted when NOTIFICATIONS_ENCRYPT_CONFIG=true; `list` never
prints a config's values, only its keys.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from app import security
from app.commands.common import CLI_CALLER, JsonOption, console, emit, fail, run
from app.runtime import Runtime
from app.services import provider_admin
from app.store import providers as store

provider_app = typer.Typer(
    help="Provider rows: add, list, remove, rotate the config key.", no_args_is_help=True
)


def _config_keys(raw: Any, key: str | None) -> str:
    if not raw:
        return "(from the environment)"
    if security.is_encrypted(raw):
        try:
            names = sorted(security.decrypt_config(raw, key))
        except security.ConfigDecryptionError:
            return "(encrypted, key does not fit)"
        return "(encrypted) " + ", ".join(names)
    return ", ".join(sorted(raw))


@provider_app.command("list")
def provider_list(as_json: bool = JsonOption) -> None:
    """Providers by channel and priority, with health and breaker state."""

    async def work(rt: Runtime) -> list[dict[str, Any]]:
        rows = await store.list_(rt.db)
        return [
            {
                "name": r["name"],
                "channel": r["channel"],
                "priority": r["priority"],
                "enabled": r["enabled"],
                "breaker": r["breaker_state"],
                "failures": r["failure_count"],
                "last_success_at": r["last_success_at"],
                "config": _config_keys(r["config"], rt.settings.encryption_key),
            }
            for r in rows
        ]

    emit(run(work), as_json, "providers")


@provider_app.command("add")
def provider_add(
    name: str = typer.Argument(..., help="row name, e.g. resend or resend-eu"),
    channel: str = typer.Option(..., help="email, push or sms"),
    priority: int = typer.Option(0, help="higher is tried first"),
    config: str = typer.Option("{}", help='JSON config, e.g. \'{"api_key": "re_..."}\''),
    disabled: bool = typer.Option(False, "--disabled", help="store it disabled"),
) -> None:
    """Add or update a provider row (the config is encrypted when configured to be)."""
    try:
        parsed = json.loads(config)
    except ValueError as exc:
        raise fail(f"--config is not JSON: {exc}", 2) from None
    if not isinstance(parsed, dict):
        raise fail("--config must be a JSON object", 2)
    run(
        lambda rt: provider_admin.upsert(
            rt, CLI_CALLER, name, channel, priority, parsed, not disabled
        )
    )
    console.print(f"provider {name}/{channel} saved (priority {priority})", highlight=False)


@provider_app.command("remove")
def provider_remove(name: str, channel: str = typer.Option(..., help="email, push or sms")) -> None:
    """Remove a provider row."""
    run(lambda rt: provider_admin.remove(rt, CLI_CALLER, name, channel))
    console.print(f"provider {name}/{channel} removed", highlight=False)


@provider_app.command("rotate-key")
def provider_rotate_key(
    new_key: str = typer.Option(
        ..., envvar="NOTIFICATIONS_NEW_ENCRYPTION_KEY", help="the new key (32+ characters)"
    ),
) -> None:
    """Re-encrypt every provider config under a new key (the current key decrypts).

    Then set NOTIFICATIONS_ENCRYPTION_KEY to the new key and restart API and workers.
    """

    async def work(rt: Runtime) -> int:
        return await provider_admin.rotate_key(rt, CLI_CALLER, rt.settings.encryption_key, new_key)

    count = run(work)
    console.print(
        f"re-encrypted {count} provider config(s); now set NOTIFICATIONS_ENCRYPTION_KEY to the"
        " new key and restart the API and workers",
        highlight=False,
    )
