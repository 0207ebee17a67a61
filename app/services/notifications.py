"""The send path: validate, authorise, render, apply preferences and limits, persist, queue.

    send(rt, request, caller)       one notification (API, Hasura action, CLI)
    send_many(rt, requests, caller) a list; each item gets its own outcome

Both end in `accept_batch`: ONE statement inserts the notifications and their
queue rows (a transaction of its own), and only after it committed are the ARQ
jobs enqueued, in one Redis round trip. If Redis loses them, or is down, the
rows are still in PostgreSQL and the sweep re-enqueues them: nothing accepted is
ever lost. Concurrent single sends are coalesced into one batch by
`app.services.intake` (group commit), which is what makes the intake fast.

Content is rendered at accept time and stored, so what was accepted is what is
sent, the worker needs no template, and a template error is the caller's 4xx,
not a failed delivery later.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from app import jsoncodec, metrics, templating
from app.errors import Conflict, Forbidden, InvalidInput, NotFound, NotificationError, RateLimited
from app.models import TRANSACTIONAL, Caller, Channel, SendRequest, Status
from app.runtime import Runtime
from app.services import preferences, queueing, ratelimit
from app.services import templates as template_service
from app.store import notifications as store
from app.store import preferences as preference_store

log = logging.getLogger(__name__)


@dataclass
class SendOutcome:
    success: bool
    notification_id: UUID | None
    status: str
    message: str
    error: NotificationError | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "success": self.success,
            "notification_id": str(self.notification_id) if self.notification_id else None,
            "status": self.status,
            "message": self.message,
        }
        if self.error is not None:
            data["error"] = {"code": self.error.code, "message": self.error.message}
        return data


@dataclass
class Prepared:
    """A validated, rendered request, ready to be decided and inserted."""

    request: SendRequest
    row: store.NewNotification


# --------------------------------------------------------------------------- prepare


def authorise(caller: Caller, request: SendRequest) -> None:
    if not caller.is_privileged and caller.user_id != request.user_id:
        raise Forbidden("a user may only send notifications to itself")


def request_hash(request: SendRequest) -> str:
    """The request's identity for idempotency and dedup: canonical JSON (sorted keys) of
    everything but the idempotency key, hashed."""
    payload = request.model_dump(exclude={"idempotency_key"})
    return hashlib.sha256(jsoncodec.canonical(payload)).hexdigest()


def dedup_key(request: SendRequest, digest: str, window: int, now: float) -> str | None:
    """The spec's dedup window (user, template, hour) made exact: the same request (its
    `request_hash` digest) within the same window is a duplicate."""
    if window <= 0 or request.idempotency_key:
        return None
    return f"{digest[:48]}:{int(now // window)}"


async def _render(
    rt: Runtime, request: SendRequest, caller: Caller
) -> tuple[str | None, str | None, str | None, str | None]:
    """(subject, text, html, category) for the request."""
    if request.template:
        template = await template_service.get_active(rt, request.template, request.channel.value)
        variables = templating.check_variables(request.variables, list(template.variables))
        subject_src = request.subject or template.subject
        text_src, html_src = template.body_text, template.body_html
        category = request.category or template.category
        render_inline = True
    else:
        templating.check_variables(request.variables, [])
        variables = request.variables
        subject_src, text_src, html_src = request.subject, request.body, request.body_html
        category = request.category
        # Inline content is a template only for trusted callers; a user's is taken as is.
        render_inline = caller.is_privileged
    if render_inline:
        for name, source in (("subject", subject_src), ("body", text_src), ("body_html", html_src)):
            if source is not None and not request.template:
                templating.validate(source, field=name)
        subject = templating.render(subject_src, variables, html=False)
        text = templating.render(text_src, variables, html=False)
        html = templating.render(html_src, variables, html=True)
    else:
        subject, text, html = subject_src, text_src, html_src
    if request.channel is not Channel.EMAIL and not (text or subject):
        raise InvalidInput(f"channel {request.channel} needs a text body (template body_text)")
    return templating.single_line(subject), text, html, category


async def prepare(rt: Runtime, request: SendRequest, caller: Caller, now: float) -> Prepared:
    authorise(caller, request)
    subject, text, html, category = await _render(rt, request, caller)
    settings = rt.settings
    digest = request_hash(request)
    row = new_row(
        request,
        request_hash=digest,
        dedup_key=dedup_key(request, digest, settings.dedup_window, now),
        max_attempts=settings.retry_attempts,
        content=(subject, text, html, category),
    )
    return Prepared(request, row)


def new_row(
    request: SendRequest,
    *,
    request_hash: str,
    dedup_key: str | None,
    max_attempts: int,
    recipient: dict[str, Any] | None = None,
    content: tuple[str | None, str | None, str | None, str | None] | None = None,
) -> store.NewNotification:
    """The row for a request. `content` is its rendered (subject, text, html, category);
    without it the request's own fields are taken as already rendered. `recipient` saves
    dumping `request.to` again when the caller already has it as JSON."""
    subject, body, body_html, category = content or (
        request.subject, request.body, request.body_html, request.category
    )  # fmt: skip
    return store.NewNotification(
        id=uuid4(),
        user_id=request.user_id,
        channel=request.channel.value,
        template_name=request.template,
        to_address=request.to.address(request.channel),
        recipient=recipient or request.to.model_dump(mode="json", exclude_none=True),
        subject=subject,
        body=body,
        body_html=body_html,
        variables=request.variables,
        status=Status.QUEUED.value,
        category=category,
        priority=request.priority,
        idempotency_key=request.idempotency_key,
        request_hash=request_hash,
        dedup_key=dedup_key,
        scheduled_at=request.send_at,
        metadata=request.metadata,
        error=None,
        due_at=None,
        max_attempts=max_attempts,
        campaign_id=request.campaign_id,
    )


# --------------------------------------------------------------------------- accept


def _bypasses_preferences(prepared: Prepared) -> bool:
    return prepared.request.is_critical or (prepared.row.category or "") == TRANSACTIONAL


def _apply_preferences(batch: Sequence[Prepared], rows: Sequence[Any], now: datetime) -> None:
    by_user: dict[UUID, list[Any]] = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append(row)
    for p in batch:
        decision = preferences.decide(
            by_user.get(p.row.user_id, []),
            p.row.channel,
            p.row.category,
            bypass=_bypasses_preferences(p),
            now=now,
            send_at=p.request.send_at,
        )
        p.row.status = decision.status.value
        p.row.due_at = decision.due_at
        if decision.status in (Status.SUPPRESSED, Status.BATCHED):
            p.row.error = decision.reason
        if decision.status is Status.SCHEDULED and decision.reason:
            p.row.metadata = {**p.row.metadata, "deferred": decision.reason}


async def _take_user_slots(
    rt: Runtime, batch: Sequence[Prepared], now: float
) -> tuple[list[int], set[int], float]:
    """Count every non-critical send against its user's hourly limit (before the preference
    decision, so both run concurrently): (counted indices, rejected indices, retry-after)."""
    limits = rt.settings.user_limits
    counted = [i for i, p in enumerate(batch) if not p.request.is_critical]
    slots = [
        ratelimit.UserSlot(
            str(batch[i].row.user_id), batch[i].row.channel, limits.get(batch[i].row.channel, 0)
        )
        for i in counted
    ]
    try:
        rejected, retry_after = await ratelimit.take_user_slots(rt.redis, slots, now)
    except Exception as exc:  # Redis down: accept (PostgreSQL is the truth), limit later
        log.warning("per-user rate limits skipped, Redis unavailable: %s", exc)
        return [], set(), 0.0
    return counted, {counted[pos] for pos in rejected}, retry_after


def _limit_outcomes(
    rt: Runtime,
    batch: Sequence[Prepared],
    counted: list[int],
    rejected: set[int],
    retry_after: float,
    outcomes: dict[int, SendOutcome],
) -> list[int]:
    """Rate-limit errors for sends that would go out; return the indices whose slot must
    be given back (suppressed or batched after all, so nothing is sent now)."""
    limits = rt.settings.user_limits
    give_back = []
    for index in counted:
        p = batch[index]
        sending = p.row.status in (Status.QUEUED, Status.SCHEDULED)
        if index in rejected:
            if sending:
                outcomes[index] = _failure(
                    RateLimited(
                        f"user {p.row.user_id} reached the {p.row.channel} limit of "
                        f"{limits.get(p.row.channel)} per hour",
                        retry_after=retry_after,
                    )
                )
        elif not sending:
            give_back.append(index)
    return give_back


def _failure(error: NotificationError) -> SendOutcome:
    return SendOutcome(False, None, "rejected", error.message, error)


def _accepted_message(status: str) -> str:
    return {
        "queued": "Notification queued",
        "scheduled": "Notification scheduled",
        "batched": "Notification held for the user's digest",
        "suppressed": "Notification suppressed by the user's preferences",
    }.get(status, status)


async def accept_batch(rt: Runtime, batch: Sequence[Prepared]) -> list[SendOutcome]:
    """Decide and limit (concurrently), insert (one statement), resolve duplicates; the ARQ
    jobs are enqueued after the commit without holding the callers (the sweep covers a
    failed enqueue)."""
    now_ts = time.time()
    now = datetime.fromtimestamp(now_ts, UTC)
    outcomes: dict[int, SendOutcome] = {}
    pref_rows, (counted, rejected, retry_after) = await asyncio.gather(
        preference_store.for_users(rt.db, [p.row.user_id for p in batch]),
        _take_user_slots(rt, batch, now_ts),
    )
    _apply_preferences(batch, pref_rows, now)
    returned = _limit_outcomes(rt, batch, counted, rejected, retry_after, outcomes)
    live = [i for i in range(len(batch)) if i not in outcomes]
    immediate = [batch[i].row.id for i in live if batch[i].row.status == Status.QUEUED]
    deferred = [
        (batch[i].row.id, batch[i].row.due_at.timestamp())  # type: ignore[union-attr]
        for i in live
        if batch[i].row.status == Status.SCHEDULED and batch[i].row.due_at
    ]
    use_arq = rt.settings.queue_backend == "redis"
    jobs, job_of = queueing.plan_jobs(immediate, deferred) if use_arq else ([], {})
    for i in live:
        batch[i].row.job_id = job_of.get(batch[i].row.id)
    inserted = await store.insert_many(rt.db, [batch[i].row for i in live])
    duplicates = [i for i in live if batch[i].row.id not in inserted]
    if duplicates:
        await _resolve_duplicates(rt, batch, duplicates, outcomes)
        dup_ids = {batch[i].row.id for i in duplicates}
        returned += [i for i in duplicates if i in set(counted) and i not in rejected]
        jobs = [j for j in jobs if not _job_only_for(j, dup_ids)]
    if returned:
        await _give_back(rt, batch, returned, now_ts)
    for i in live:
        if i not in outcomes:
            status = batch[i].row.status
            outcomes[i] = SendOutcome(True, batch[i].row.id, status, _accepted_message(status))
            metrics.labeled(
                metrics.notifications_accepted_total, batch[i].row.channel, status
            ).inc()
    if jobs:
        rt.spawn(_enqueue_quietly(rt, jobs))
    return [outcomes[i] for i in range(len(batch))]


def _job_only_for(job: queueing.JobSpec, ids: set[UUID]) -> bool:
    targets = job.args[0] if isinstance(job.args[0], list) else [job.args[0]]
    return all(UUID(t) in ids for t in targets)


async def _give_back(
    rt: Runtime, batch: Sequence[Prepared], indices: list[int], now: float
) -> None:
    slots = [
        ratelimit.UserSlot(str(batch[i].row.user_id), batch[i].row.channel, 0) for i in indices
    ]
    try:
        await ratelimit.give_back_user_slots(rt.redis, slots, now)
    except Exception:
        log.debug("could not return rate-limit slots", exc_info=True)


async def _resolve_duplicates(
    rt: Runtime, batch: Sequence[Prepared], indices: list[int], outcomes: dict[int, SendOutcome]
) -> None:
    rows = await store.find_conflicts(
        rt.db,
        [k for i in indices if (k := batch[i].row.idempotency_key)],
        [k for i in indices if (k := batch[i].row.dedup_key)],
    )
    by_key = {r["idempotency_key"]: r for r in rows if r["idempotency_key"]}
    by_dedup = {r["dedup_key"]: r for r in rows if r["dedup_key"]}
    for i in indices:
        row = batch[i].row
        if row.idempotency_key and row.idempotency_key in by_key:
            existing = by_key[row.idempotency_key]
            if existing["request_hash"] != row.request_hash:
                outcomes[i] = _failure(
                    Conflict("idempotency key already used with a different request")
                )
            else:
                outcomes[i] = SendOutcome(
                    True, existing["id"], existing["status"], "Duplicate request (idempotency key)"
                )
        elif row.dedup_key and row.dedup_key in by_dedup:
            existing = by_dedup[row.dedup_key]
            outcomes[i] = SendOutcome(
                True,
                existing["id"],
                existing["status"],
                "Duplicate of a notification sent within the dedup window",
            )
        else:
            outcomes[i] = _failure(Conflict("a concurrent duplicate was accepted; retry"))


async def _enqueue_quietly(rt: Runtime, jobs: list[queueing.JobSpec]) -> None:
    """Enqueue after commit. A Redis failure is logged, never the caller's error: the sweep
    re-enqueues what is in PostgreSQL."""
    try:
        await queueing.enqueue(rt.redis, jobs)
    except Exception as exc:
        log.warning("enqueue failed (%s); the sweep will re-enqueue %d job(s)", exc, len(jobs))


# --------------------------------------------------------------------------- entry points


async def send(rt: Runtime, request: SendRequest, caller: Caller) -> SendOutcome:
    """Send one notification; raise the NotificationError that stopped it."""
    from app.services.intake import intake

    prepared = await prepare(rt, request, caller, time.time())
    outcome = await intake(rt).submit(prepared)
    if outcome.error is not None:
        raise outcome.error
    return outcome


async def send_many(
    rt: Runtime, requests: Sequence[SendRequest], caller: Caller, chunk: int = 1000
) -> list[SendOutcome]:
    """Send a list; a bad item gets its own error outcome and does not stop the rest."""
    outcomes: list[SendOutcome] = []
    now = time.time()
    for start in range(0, len(requests), chunk):
        prepared: list[Prepared] = []
        slots: list[int] = []
        part: list[SendOutcome | None] = []
        for request in requests[start : start + chunk]:
            try:
                prepared.append(await prepare(rt, request, caller, now))
                slots.append(len(part))
                part.append(None)
            except NotificationError as exc:
                part.append(_failure(exc))
        if prepared:
            for position, outcome in zip(slots, await accept_batch(rt, prepared), strict=True):
                part[position] = outcome
        outcomes.extend(o for o in part if o is not None)
    return outcomes


async def get(rt: Runtime, caller: Caller, notification_id: UUID) -> Any:
    row = await store.get(rt.db, notification_id)
    if row is None or (not caller.is_privileged and row["user_id"] != caller.user_id):
        raise NotFound(f"notification {notification_id} not found")
    return row


async def list_for(rt: Runtime, caller: Caller, **filters: Any) -> list[Any]:
    """Role user sees only its own notifications, whatever user_id it asks for."""
    if not caller.is_privileged:
        asked = filters.get("user_id")
        if asked is not None and asked != caller.user_id:
            raise Forbidden("a user may only list its own notifications")
        filters["user_id"] = caller.user_id
    limit = filters.pop("limit", None)
    limit = 50 if limit is None else int(limit)
    if not 1 <= limit <= 500:
        raise InvalidInput("limit must be between 1 and 500")
    offset = int(filters.pop("offset", 0) or 0)
    if offset < 0:
        raise InvalidInput("offset must not be negative")
    return list(await store.list_(rt.db, limit=limit, offset=offset, **filters))


async def cancel(rt: Runtime, caller: Caller, notification_id: UUID) -> SendOutcome:
    current = await get(rt, caller, notification_id)
    row = await store.cancel(rt.db, notification_id)
    if row is None:
        raise Conflict(
            f"notification {notification_id} is {current['status']} and can no longer be cancelled",
            details={"status": current["status"]},
        )
    return SendOutcome(True, notification_id, Status.CANCELLED.value, "Notification cancelled")
