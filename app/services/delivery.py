"""Delivery: claimed queue rows -> provider calls -> statuses, in batches.

For each notification: try the channel's providers by priority, skipping those
whose circuit breaker is open and those over their rate limit; the first success
wins. Then, for the whole batch, one transaction per outcome kind:

    sent       status sent, provider, provider_id, sent_at; queue row deleted
    permanent  status failed with the provider's reason; queue row deleted
    transient  attempts+1, next_retry_at = now + backoff (RETRY_DELAY * 2^n, jittered,
               capped at MAX_RETRY_DELAY, at least the provider's Retry-After);
               after RETRY_ATTEMPTS, status failed with the last error

The caller (ARQ job or postgres poller) re-arms the retries (`Outcome.retries`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from app import metrics
from app.models import DELIVERABLE, Channel, Recipient
from app.providers.base import (
    OutboundMessage,
    PermanentProviderError,
    Provider,
    ProviderError,
    ProviderRateLimited,
    TransientProviderError,
)
from app.providers.registry import DRY_RUN
from app.runtime import Runtime
from app.services import breaker, drips, ratelimit
from app.services.providers import provider_set
from app.store import notifications as store
from app.store import providers as provider_store

log = logging.getLogger(__name__)

MIRROR_EVERY = 5.0  # seconds between last_success_at writes per provider and process
RATE_LIMIT_MAX_WAIT = 2.0


@dataclass
class Sent:
    provider: str
    provider_id: str | None


@dataclass
class Failed:
    provider: str | None
    error: str


@dataclass
class Retry:
    error: str
    retry_after: float | None = None


@dataclass
class Outcome:
    sent: list[UUID] = field(default_factory=list)
    failed: list[UUID] = field(default_factory=list)
    retries: list[tuple[UUID, float, str | None]] = field(default_factory=list)  # id, delay, job
    skipped: list[UUID] = field(default_factory=list)


def backoff(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """RETRY_DELAY * 2^(attempt-1), jittered down by up to 25%, capped; never below Retry-After."""
    raw = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = raw * random.uniform(0.75, 1.0)
    if retry_after:
        delay = max(delay, min(retry_after, cap))
    return min(delay, cap) if cap > 0 else delay


def breakers(rt: Runtime) -> breaker.Breakers:
    found = rt.state.get("breakers")
    if found is None:
        s = rt.settings
        found = breaker.Breakers(
            rt.redis,
            s.circuit_breaker_threshold,
            s.circuit_breaker_timeout,
            trial_timeout=max(s.provider_timeout * 2, 5.0),
        )
        rt.state["breakers"] = found
    return found  # type: ignore[no-any-return]


def message_from_row(row: Any) -> OutboundMessage:
    metadata = dict(row["metadata"] or {})
    data = metadata.get("data") if isinstance(metadata.get("data"), dict) else {}
    return OutboundMessage(
        notification_id=row["id"],
        channel=Channel(row["channel"]),
        to=_recipient(row["recipient"] or _legacy_recipient(row)),
        subject=row["subject"],
        text=row["body"],
        html=row["body_html"],
        category=row["category"],
        priority=int(row["priority"] or 0),
        from_address=metadata.get("from"),
        reply_to=metadata.get("reply_to"),
        unsubscribe_url=metadata.get("unsubscribe_url"),
        data={str(k): str(v) for k, v in (data or {}).items()},
        metadata=metadata,
    )


_RECIPIENT_FIELDS = dict.fromkeys(Recipient.model_fields)


def _recipient(data: dict[str, Any]) -> Recipient:
    """Stored recipients were validated at accept time, so they are rebuilt without
    validation. pydantic's model_construct still costs ~30 us (defaults, fields_set); this
    sets the same four attributes directly. A Web Push subscription (a nested model) is
    validated again."""
    if "subscription" in data:
        return Recipient.model_validate(data)
    recipient = Recipient.__new__(Recipient)
    object.__setattr__(recipient, "__dict__", {**_RECIPIENT_FIELDS, **data})
    object.__setattr__(recipient, "__pydantic_fields_set__", set(data))
    object.__setattr__(recipient, "__pydantic_extra__", None)
    object.__setattr__(recipient, "__pydantic_private__", None)
    return recipient


def _legacy_recipient(row: Any) -> dict[str, str]:
    """Rows inserted by hand (the spec's SQL examples) only have to_address."""
    key = {"email": "email", "sms": "phone", "push": "device_token"}[row["channel"]]
    return {key: row["to_address"]}


# --------------------------------------------------------------------------- one message


class _Mirror:
    """Writes provider health to PostgreSQL: failures always, successes at most every 5 s."""

    def __init__(self) -> None:
        self.last_success_write: dict[str, float] = {}

    async def success(self, rt: Runtime, name: str, state_changed: bool) -> None:
        now = time.monotonic()
        metrics.labeled(metrics.provider_last_success, name).set(time.time())
        metrics.labeled(metrics.provider_breaker_state, name).set(0)
        if state_changed or now - self.last_success_write.get(name, 0) >= MIRROR_EVERY:
            self.last_success_write[name] = now
            await provider_store.record_outcome(rt.db, name, success=True, breaker_state="closed")

    async def failure(self, rt: Runtime, name: str, state: str, error: str) -> None:
        metrics.labeled(metrics.provider_breaker_state, name).set(
            0 if state == breaker.CLOSED else 1
        )
        await provider_store.record_outcome(
            rt.db, name, success=False, breaker_state=state, error=error[:1000]
        )


def _mirror(rt: Runtime) -> _Mirror:
    found = rt.state.get("mirror")
    if found is None:
        found = _Mirror()
        rt.state["mirror"] = found
    return found  # type: ignore[no-any-return]


async def _try_provider(
    rt: Runtime, name: str, provider: Provider, message: OutboundMessage
) -> Sent | Failed | ProviderError:
    limit, period = rt.settings.provider_rate(getattr(provider, "name", name))
    wait = await ratelimit.reserve_provider_slot(
        rt.redis, name, limit, period, max_wait=RATE_LIMIT_MAX_WAIT
    )
    if wait < 0:
        return ProviderRateLimited("local rate limit reached", provider=name, retry_after=-wait)
    if wait > 0:
        await asyncio.sleep(wait)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(rt.settings.provider_timeout):
            result = await provider.send(message)
    except PermanentProviderError as exc:
        metrics.labeled(metrics.provider_requests_total, name, "permanent").inc()
        return Failed(name, str(exc))
    except ProviderError as exc:
        metrics.labeled(metrics.provider_requests_total, name, type(exc).__name__).inc()
        return exc
    except TimeoutError:
        metrics.labeled(metrics.provider_requests_total, name, "timeout").inc()
        return TransientProviderError(
            f"timed out after {rt.settings.provider_timeout:g}s", provider=name
        )
    except Exception as exc:  # a provider bug must not lose the notification
        log.exception("provider %s raised unexpectedly", name)
        return TransientProviderError(f"unexpected error: {exc!r}", provider=name)
    elapsed = time.perf_counter() - started
    metrics.labeled(metrics.provider_requests_total, name, "ok").inc()
    metrics.labeled(metrics.notification_latency_seconds, message.channel.value, name).observe(
        elapsed
    )
    return Sent(name, result.provider_message_id)


async def deliver_message(rt: Runtime, message: OutboundMessage) -> Sent | Failed | Retry:
    """Send one message through the first provider that takes it."""
    if rt.settings.dry_run:
        return Sent(DRY_RUN, f"dry-run-{message.notification_id}")
    chain = await provider_set(rt).for_channel(rt, message.channel)
    if not chain:
        return Retry(f"no provider is configured for channel {message.channel}")
    board = breakers(rt)
    allowed = await board.allow([name for name, _ in chain])
    errors: list[str] = []
    retry_after: float | None = None
    for (name, provider), ok in zip(chain, allowed, strict=True):
        if not ok:
            errors.append(f"{name}: circuit open")
            continue
        result = await _try_provider(rt, name, provider, message)
        if isinstance(result, Sent):
            before, _ = await board.record(name, True)
            await _mirror(rt).success(rt, name, state_changed=before != breaker.CLOSED)
            return result
        if isinstance(result, Failed):
            return result
        _, state = await board.record(name, False)
        await _mirror(rt).failure(rt, name, state, str(result))
        errors.append(str(result))
        if isinstance(result, ProviderRateLimited) and result.retry_after:
            retry_after = max(retry_after or 0.0, result.retry_after)
    return Retry("; ".join(errors) or "all providers failed", retry_after)


# --------------------------------------------------------------------------- batches


async def _apply_early_events(rt: Runtime, provider_ids: list[str]) -> None:
    """Webhook events can beat the worker's own write of provider_id; apply those now.
    One indexed query per batch finds them (unmatched events are few)."""
    if not provider_ids:
        return
    from app.services import events

    waiting = await rt.db.fetch(
        "SELECT DISTINCT provider_message_id FROM notification_events"
        " WHERE notification_id IS NULL AND provider_message_id = ANY($1::varchar[])",
        provider_ids,
    )
    for row in waiting:
        await events.reconcile(rt, None, row["provider_message_id"])


def retry_job_id(notification_id: UUID, attempt: int) -> str:
    """A fresh ARQ job id per retry, so a finished job's kept result never blocks it."""
    return f"deliver:{notification_id}:{attempt}"


async def deliver_rows(
    rt: Runtime,
    rows: Sequence[Any],
    concurrency: int = 50,
    job_id_for_retry: Any = retry_job_id,
) -> Outcome:
    """Deliver claimed rows concurrently; write all outcomes in a few statements.

    `job_id_for_retry(id, attempt)` names the job that will carry each retry (the
    single-notification job keeps its own id: it retries through arq's Retry).
    """
    outcome = Outcome()
    sent: list[tuple[UUID, str, str | None, str | None, str | None, str | None]] = []
    failed: list[tuple[UUID, str | None, str]] = []
    retries: list[tuple[UUID, float, str, str | None]] = []
    not_deliverable: list[UUID] = []
    gate = asyncio.Semaphore(concurrency)
    settings = rt.settings
    rows = await drips.filter_wanted(rt.db, rows)  # drip steps the user no longer wants

    async def one(row: Any) -> None:
        if row["status"] not in DELIVERABLE:
            not_deliverable.append(row["id"])
            return
        try:
            message = message_from_row(row)
        except Exception as exc:
            failed.append((row["id"], None, f"stored recipient is invalid: {exc}"))
            return
        async with gate:
            result = await deliver_message(rt, message)
        if isinstance(result, Sent):
            sent.append((row["id"], result.provider, result.provider_id, None, None, None))
            metrics.labeled(
                metrics.notifications_sent_total, row["channel"], result.provider, "sent"
            ).inc()
        elif isinstance(result, Failed):
            failed.append((row["id"], result.provider, result.error))
            metrics.labeled(
                metrics.notifications_sent_total,
                row["channel"],
                result.provider or "none",
                "failed",
            ).inc()
        else:
            attempt = int(row["attempts"]) + 1
            if attempt >= int(row["max_attempts"] or settings.retry_attempts):
                failed.append(
                    (row["id"], None, f"gave up after {attempt} attempts: {result.error}")
                )
                metrics.labeled(
                    metrics.notifications_sent_total, row["channel"], "none", "failed"
                ).inc()
            else:
                delay = backoff(
                    attempt,
                    settings.retry_delay_seconds,
                    settings.max_retry_delay_seconds,
                    result.retry_after,
                )
                retries.append(
                    (row["id"], delay, result.error, job_id_for_retry(row["id"], attempt))
                )

    await asyncio.gather(*(one(row) for row in rows))
    await store.mark_sent(rt.db, sent)
    await _apply_early_events(rt, [s[2] for s in sent if s[2]])
    await store.mark_failed(rt.db, failed)
    await store.schedule_retry(rt.db, retries)
    if not_deliverable:
        await store.drop_queue_rows(rt.db, not_deliverable)
    outcome.sent = [s[0] for s in sent]
    outcome.failed = [f[0] for f in failed]
    outcome.retries = [(r[0], r[1], r[3]) for r in retries]
    outcome.skipped = not_deliverable
    return outcome


async def deliver_ids(
    rt: Runtime, ids: Sequence[UUID], job_id_for_retry: Any = retry_job_id
) -> Outcome:
    """Claim these notifications' queue rows (others are done, locked or not due) and deliver."""
    rows = await store.claim(rt.db, ids, rt.name, rt.settings.lock_timeout)
    if not rows:
        return Outcome()
    return await deliver_rows(rt, rows, job_id_for_retry=job_id_for_retry)
