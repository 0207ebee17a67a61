"""Campaign benchmark: accept 100k recipients, then deliver them with ARQ workers.

    python -m bench.campaign [--recipients 100000] [--workers 2] [--max-jobs 20]

1. accept: `app.services.campaigns.create` on a 100k-recipient list (template with
   per-recipient variables; preferences, idempotency keys, notifications + queue rows,
   deliver_many jobs). Target <= 3 s.
2. deliver: the in-process test provider answering in 20 ms (delay 0.02), drained by
   `--workers` ARQ worker processes in burst mode. Target >= 1,500 delivered/s.

Uses DATABASE_URL / REDIS_URL when set, else embedded servers under .data/bench, and
a fresh database that is dropped afterwards. Writes bench/results/campaign.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from app.embedded import ensure_services
from app.models import Caller, Role
from app.runtime import open_runtime
from app.settings import PROJECT_ROOT, Settings

RESULTS = Path(__file__).parent / "results" / "campaign.json"
ADMIN = Caller(role=Role.ADMIN, source="bench")


def _settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "database_pool_min": 2,
        "database_pool_max": 20,
        "worker_metrics_port": 0,
        "user_email_limit": 0,  # a campaign to 100k distinct users; no per-user cap hit anyway
    }
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


def _worker_process(database_url: str, redis_url: str, max_jobs: int) -> None:
    """One ARQ worker process, burst mode: runs every queued job, then exits."""
    from arq.worker import Worker

    from workers import campaign_tasks, tasks

    async def main() -> None:
        settings = _settings(database_url, redis_url, database_pool_max=10)
        async with open_runtime(settings) as rt:
            worker = Worker(
                functions=[tasks.deliver, tasks.deliver_many, campaign_tasks.campaign_expand],
                redis_pool=rt.redis,
                burst=True,
                poll_delay=0.05,
                max_jobs=max_jobs,
                handle_signals=False,
                ctx={"rt": rt},
                keep_result=60,
                max_tries=1000,
            )
            await worker.main()

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())


async def _prepare_db(server_dsn: str) -> tuple[str, str]:
    from app.store.migrate import migrate

    name = f"bench_campaign_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = server_dsn.rpartition("/")[0] + "/" + name
    await migrate(url)
    return url, name


async def _drop_db(server_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def run(
    server_dsn: str, redis_url: str, n: int, workers: int, max_jobs: int
) -> dict[str, Any]:
    from app.services import campaigns
    from app.services import templates as template_service
    from app.services.providers import provider_set
    from app.store import providers as provider_store

    database_url, db_name = await _prepare_db(server_dsn)
    try:
        settings = _settings(database_url, redis_url)
        async with open_runtime(settings) as rt:
            await rt.redis.flushdb()
            await provider_store.upsert(
                rt.db, "bench", "email", 100, {"provider": "test", "delay": 0.02}
            )
            provider_set(rt).invalidate()
            await template_service.create(
                rt,
                ADMIN,
                "newsletter",
                {
                    "subject": "{{name}}, this month's news",
                    "body_text": "Hi {{name}},\n\nHere is what is new at {{company}}.\n",
                    "body_html": "<p>Hi {{name}},</p><p>Here is what is new at {{company}}.</p>",
                    "variables": ["name", "company"],
                    "category": "marketing",
                },
            )
            recipients = [
                {
                    "user_id": uuid.uuid4(),
                    "to": {"email": f"reader{i}@example.com"},
                    "variables": {"name": f"Reader {i}"},
                }
                for i in range(n)
            ]
            started = time.perf_counter()
            campaign_id = await campaigns.create(
                rt, ADMIN, "bench", "newsletter", "email", recipients,
                variables={"company": "Example"},
            )  # fmt: skip
            accept_seconds = time.perf_counter() - started
            progress = await campaigns.progress(rt, ADMIN, campaign_id)
            assert progress["accepted"] == n, progress

            ctx = multiprocessing.get_context("spawn")
            started = time.perf_counter()
            procs = [
                ctx.Process(target=_worker_process, args=(database_url, redis_url, max_jobs))
                for _ in range(workers)
            ]
            for proc in procs:
                proc.start()
            sent = 0
            while True:
                sent = int(
                    await rt.db.fetchval(
                        "SELECT count(*) FROM notifications WHERE campaign_id = $1"
                        " AND status = 'sent'",
                        campaign_id,
                    )
                )
                if sent >= n or not any(p.is_alive() for p in procs):
                    break
                await asyncio.sleep(0.2)
            deliver_seconds = time.perf_counter() - started
            for proc in procs:
                proc.join(timeout=30)
            stats = await campaigns.stats(rt, ADMIN, campaign_id)
            delivered = int(await rt.redis.llen("test-provider:bench:sent"))  # type: ignore[misc]
        return {
            "recipients": n,
            "accept_seconds": round(accept_seconds, 3),
            "accept_per_second": round(n / accept_seconds),
            "accept_target_seconds": 3.0,
            "sent": sent,
            "provider_calls_recorded": delivered,
            "deliver_seconds": round(deliver_seconds, 3),
            "delivered_per_second": round(sent / deliver_seconds),
            "delivered_target_per_second": 1500,
            "provider_delay_seconds": 0.02,
            "worker_processes": workers,
            "worker_max_jobs": max_jobs,
            "counts": stats["counts"],
        }
    finally:
        await _drop_db(server_dsn, db_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-jobs", type=int, default=20)
    args = parser.parse_args()
    data_dir = PROJECT_ROOT / ".data" / "bench"
    with ensure_services(os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"), data_dir) as (
        db,
        redis,
        _,
    ):
        server_dsn = db
        result = asyncio.run(run(server_dsn, redis, args.recipients, args.workers, args.max_jobs))
    result["machine"] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
