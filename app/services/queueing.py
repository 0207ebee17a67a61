"""Putting delivery jobs on ARQ, many at a time, in one Redis round trip.

`ArqRedis.enqueue_job` costs a WATCH/MULTI transaction per job (PERFORMANCE.md).
`enqueue` writes the very same keys (arq's `serialize_job`, `arq:job:<id>` with
arq's expiry, `ZADD arq:queue`) for a whole batch in one Lua call, skipping ids
that already have a job or a result, exactly as enqueue_job's dedup does. Every
job stays a normal ARQ job that workers, `arq --check` and dashboards understand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from arq.connections import ArqRedis
from arq.constants import default_queue_name, expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job

log = logging.getLogger(__name__)

DELIVER = "deliver"
DELIVER_MANY = "deliver_many"
MANY_CHUNK = 100  # notifications per deliver_many job

_ENQUEUE = """
local added = 0
local n = #KEYS / 2
for i = 1, n do
  local job_key = KEYS[2 * i - 1]
  local result_key = KEYS[2 * i]
  if redis.call('EXISTS', job_key, result_key) == 0 then
    local base = (i - 1) * 4
    redis.call('PSETEX', job_key, ARGV[base + 1], ARGV[base + 2])
    redis.call('ZADD', ARGV[base + 3], ARGV[base + 4], string.sub(job_key, #ARGV[#ARGV] + 1))
    added = added + 1
  end
end
return added
"""


@dataclass(frozen=True)
class JobSpec:
    function: str
    args: tuple[Any, ...]
    job_id: str
    defer_until: float | None = None  # unix seconds


def deliver_job_id(notification_id: UUID) -> str:
    return f"{DELIVER}:{notification_id}"


def deliver_many_job_id() -> str:
    return f"{DELIVER_MANY}:{uuid4().hex}"


def plan_jobs(
    immediate: Sequence[UUID], deferred: Sequence[tuple[UUID, float]]
) -> tuple[list[JobSpec], dict[UUID, str]]:
    """One `deliver` per lone or deferred notification, `deliver_many` per chunk of the rest."""
    jobs: list[JobSpec] = []
    job_of: dict[UUID, str] = {}
    if len(immediate) == 1:
        nid = immediate[0]
        jobs.append(JobSpec(DELIVER, (str(nid),), deliver_job_id(nid)))
        job_of[nid] = jobs[-1].job_id
    else:
        for start in range(0, len(immediate), MANY_CHUNK):
            chunk = immediate[start : start + MANY_CHUNK]
            job_id = deliver_many_job_id()
            jobs.append(JobSpec(DELIVER_MANY, ([str(n) for n in chunk],), job_id))
            for nid in chunk:
                job_of[nid] = job_id
    for nid, when in deferred:
        jobs.append(JobSpec(DELIVER, (str(nid),), deliver_job_id(nid), defer_until=when))
        job_of[nid] = jobs[-1].job_id
    return jobs, job_of


async def enqueue(redis: ArqRedis, jobs: Sequence[JobSpec], queue: str = default_queue_name) -> int:
    """Enqueue ARQ jobs in one round trip per 500; return how many were new."""
    added = 0
    for start in range(0, len(jobs), 500):
        added += await _enqueue_chunk(redis, jobs[start : start + 500], queue)
    return added


async def _enqueue_chunk(redis: ArqRedis, jobs: Sequence[JobSpec], queue: str) -> int:
    if not jobs:
        return 0
    now_ms = int(time.time() * 1000)
    keys: list[str] = []
    args: list[Any] = []
    for job in jobs:
        score = int(job.defer_until * 1000) if job.defer_until else now_ms
        score = max(score, now_ms)
        expires = score - now_ms + expires_extra_ms
        payload = serialize_job(
            job.function, job.args, {}, None, now_ms, serializer=redis.job_serializer
        )
        keys += [job_key_prefix + job.job_id, result_key_prefix + job.job_id]
        args += [expires, payload, queue, score]
    args.append(job_key_prefix)
    return int(await redis.eval(_ENQUEUE, len(keys), *keys, *args))  # type: ignore[misc,arg-type]
