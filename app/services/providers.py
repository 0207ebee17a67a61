"""Which providers serve a channel, in which order, each built from its own config.

Sources, merged: provider rows in notification_providers (several per channel,
by priority, config possibly encrypted; `config.provider` picks the
implementation when the row's name is an alias such as "resend-eu") and the
provider selected by environment variables (NOTIFICATIONS_EMAIL_PROVIDER, ...),
which fills in any config keys its row leaves out. Instances are cached per
(name, config) and the list is reloaded every `RELOAD_SECONDS`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from app import security
from app.models import Channel
from app.providers import registry
from app.providers.base import Provider, ProviderContext
from app.runtime import Runtime
from app.store import providers as store

log = logging.getLogger(__name__)

RELOAD_SECONDS = 10.0


@dataclass(frozen=True)
class ProviderEntry:
    name: str  # the row's name (what notifications.provider records)
    kind: str  # the implementation (registry name)
    channel: str
    priority: int
    config: dict[str, Any]


def env_entries(settings: Any) -> list[ProviderEntry]:
    """Providers configured purely by environment variables."""
    entries = []
    for name in registry.PROVIDERS:
        if name == "test":
            continue
        try:
            cls = registry.provider_class(name)
        except (ImportError, AttributeError):
            continue
        config = cls.config_from_settings(settings)
        if config is not None:
            entries.append(ProviderEntry(name, name, cls.channel.value, 0, config))
    return entries


def merge_entries(rows: list[Any], settings: Any) -> list[ProviderEntry]:
    env = {e.name: e for e in env_entries(settings)}
    entries: list[ProviderEntry] = []
    for row in rows:
        if not row["enabled"]:
            env.pop(row["name"], None)
            continue
        try:
            config = security.decrypt_config(row["config"], settings.encryption_key)
        except security.ConfigDecryptionError as exc:
            log.error("provider %s skipped: %s", row["name"], exc)
            continue
        kind = str(config.get("provider", row["name"]))
        base = env.pop(row["name"], None)
        merged = {**(base.config if base else {}), **config, "name": row["name"]}
        entries.append(ProviderEntry(row["name"], kind, row["channel"], row["priority"], merged))
    entries.extend(env.values())
    entries.sort(key=lambda e: (-e.priority, e.name))
    return entries


@dataclass
class ProviderSet:
    loaded_at: float = 0.0
    entries: list[ProviderEntry] = field(default_factory=list)
    instances: dict[tuple[str, str], Provider] = field(default_factory=dict)
    chains: dict[str, list[tuple[str, Provider]]] = field(default_factory=dict)

    async def for_channel(self, rt: Runtime, channel: Channel | str) -> list[tuple[str, Provider]]:
        """The channel's providers in priority order (built at reload, not per send)."""
        await self._reload(rt)
        return self.chains.get(str(channel), [])

    async def _reload(self, rt: Runtime, force: bool = False) -> None:
        if not force and time.monotonic() - self.loaded_at < RELOAD_SECONDS and self.loaded_at:
            return
        rows = await store.list_(rt.db)
        self.entries = merge_entries(list(rows), rt.settings)
        chains: dict[str, list[tuple[str, Provider]]] = {}
        for entry in self.entries:
            provider = self._instance(rt, entry)
            if provider is not None:
                chains.setdefault(entry.channel, []).append((entry.name, provider))
        self.chains = chains
        self.loaded_at = time.monotonic()

    def _instance(self, rt: Runtime, entry: ProviderEntry) -> Provider | None:
        key = (entry.name, json.dumps(entry.config, sort_keys=True, default=str))
        found = self.instances.get(key)
        if found is None:
            try:
                cls = registry.provider_class(entry.kind)
            except (registry.UnknownProvider, ImportError, AttributeError) as exc:
                log.error("provider %s skipped: %s", entry.name, exc)
                return None
            ctx = ProviderContext(http=rt.http, settings=rt.settings, redis=rt.redis)
            found = cls(entry.config, ctx)
            self.instances[key] = found
        return found

    def invalidate(self) -> None:
        self.loaded_at = 0.0

    async def aclose(self) -> None:
        for provider in self.instances.values():
            try:
                await provider.aclose()
            except Exception:
                log.debug("closing provider failed", exc_info=True)


def provider_set(rt: Runtime) -> ProviderSet:
    found = rt.state.get("providers")
    if found is None:
        found = ProviderSet()
        rt.state["providers"] = found
    return found  # type: ignore[no-any-return]


async def register_env_providers(rt: Runtime) -> None:
    """Give env-configured providers a row (config {}: "from the environment") so the
    spec's provider_health view and the breaker mirror show them."""
    for entry in env_entries(rt.settings):
        await rt.db.execute(
            """
            INSERT INTO notification_providers (name, channel, priority, config, enabled)
            VALUES ($1, $2, 0, '{}'::jsonb, TRUE) ON CONFLICT (name, channel) DO NOTHING
            """,
            entry.name,
            entry.channel,
        )
