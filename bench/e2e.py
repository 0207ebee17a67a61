"""End-to-end delivery benchmark: 50k notifications to a local fake Resend answering in 20 ms.

    python -m bench.e2e [--notifications 50000] [--workers 2] [--concurrency 20] [--profile]

1. a fake Resend (bench/fake_provider.py, POST /emails -> 200 {"id"} after 20 ms) in a
   subprocess on 127.0.0.1;
2. accept: `app.services.notifications.send_many` in this process, chunks of 1,000
   (inline content, random users, channel email);
3. deliver: `--workers` real worker processes (`python -m app.cli worker`,
   WORKER_CONCURRENCY=20) with NOTIFICATIONS_EMAIL_PROVIDER=resend pointed at the fake
   (NOTIFICATIONS_RESEND_RATE_LIMIT=0), until every notification is `sent`.

Reports delivered/s (over the span of sent_at, and over the wall clock from the workers'
start), queue latency p50/p99 (sent_at - created_at) and each worker's peak RSS
(sampled every 100 ms). Targets: >= 1,500 delivered/s; worker RSS <= 200 MB.
Writes bench/results/e2e.json. --profile runs the workers under cProfile and prints
where their time goes (.data/bench/work/e2e_worker*.prof).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import urllib.request
import uuid
from typing import Any

import asyncpg
import psutil

from bench import common

TARGET_DELIVERED_PER_SECOND = 1500
TARGET_WORKER_RSS_MB = 200
PROVIDER_DELAY = 0.02


async def accept(database_url: str, redis_url: str, n: int, chunk: int = 1000) -> dict[str, Any]:
    from app.models import Caller, Role, SendRequest
    from app.runtime import open_runtime
    from app.services import notifications

    caller = Caller(role=Role.ADMIN, source="bench")
    requests = [
        SendRequest.model_validate(
            {
                "user_id": uuid.uuid4(),
                "channel": "email",
                "to": {"email": f"reader{i}@example.com"},
                "subject": "Your weekly summary",
                "body": f"Hello reader {i}, here is what happened this week.",
            }
        )
        for i in range(n)
    ]
    settings = common.bench_settings(database_url, redis_url)
    async with open_runtime(settings) as rt:
        started = time.perf_counter()
        accepted = 0
        for start in range(0, n, chunk):
            outcomes = await notifications.send_many(rt, requests[start : start + chunk], caller)
            accepted += sum(1 for o in outcomes if o.success)
        seconds = time.perf_counter() - started
    if accepted != n:
        raise RuntimeError(f"only {accepted} of {n} notifications were accepted")
    return {"accepted": accepted, "seconds": round(seconds, 3), "per_second": round(n / seconds)}


async def _count_sent(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'sent') AS sent,"
        " count(*) FILTER (WHERE status = 'failed') AS failed FROM notifications"
    )
    assert row is not None
    return int(row["sent"]), int(row["failed"])


def _cpu(procs: list[Any]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = psutil.Process(proc.pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def _cpu_report(
    workers: list[Any], fake: Any, start: tuple[float, int, float] | None, sent: int
) -> dict[str, Any]:
    """Worker CPU per notification between the first `sent` row and the last poll (excludes
    the workers' start-up), the fake provider's CPU (whole run) and the machine's load."""
    out: dict[str, Any] = {"load_average": [round(x, 2) for x in os.getloadavg()]}
    if start is not None and sent > start[1]:
        cpu, first_sent, t0 = start
        used = _cpu(workers) - cpu
        elapsed = time.perf_counter() - t0
        out["worker_cpu_seconds"] = round(used, 2)
        out["worker_cores_used"] = round(used / elapsed, 2)
        out["worker_cpu_ms_per_notification"] = round(1000 * used / (sent - first_sent), 3)
    out["fake_provider_cpu_seconds_total"] = round(_cpu([fake]), 2)
    return out


def _provider_count(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
        return int(json.loads(response.read())["emails"])


async def run(
    server_dsn: str,
    redis_url: str,
    n: int,
    workers: int,
    concurrency: int,
    profile: bool = False,
    timeout: float = 300,
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    provider_port = common.free_port()
    fake = common.start_process(
        ["-m", "bench.fake_provider", "--port", str(provider_port), "--delay", str(PROVIDER_DELAY)],
        common.app_env("", ""),
        "e2e_fake_provider",
    )
    procs: list[Any] = []
    profiles = [common.WORK_DIR / f"e2e_worker{i}.prof" for i in range(workers)]
    try:
        common.wait_http(provider_port, fake)
        async with common.fresh_database(server_dsn, "e2e") as database_url:
            await common.flush_redis(redis_url)
            accepted = await accept(database_url, redis_url, n)
            env = common.app_env(
                database_url,
                redis_url,
                WORKER_CONCURRENCY=str(concurrency),
                NOTIFICATIONS_EMAIL_ENABLED="true",
                NOTIFICATIONS_EMAIL_PROVIDER="resend",
                NOTIFICATIONS_EMAIL_API_KEY="re_bench",
                NOTIFICATIONS_EMAIL_FROM="bench@example.com",
                NOTIFICATIONS_RESEND_BASE_URL=f"http://127.0.0.1:{provider_port}",
                NOTIFICATIONS_RESEND_RATE_LIMIT="0",
            )
            conn = await asyncpg.connect(database_url)
            try:
                started = time.perf_counter()
                for i in range(workers):
                    procs.append(
                        common.start_process(
                            ["-m", "app.cli", "worker"],
                            env,
                            f"e2e_worker{i}",
                            profile=profiles[i] if profile else None,
                        )
                    )
                sent = failed = 0
                cpu_start: tuple[float, int, float] | None = None
                with common.RssSampler([p.pid for p in procs]) as rss:
                    deadline = time.monotonic() + timeout
                    while time.monotonic() < deadline:
                        sent, failed = await _count_sent(conn)
                        if cpu_start is None and sent:
                            cpu_start = (_cpu(procs), sent, time.perf_counter())
                        if sent + failed >= n:
                            break
                        if all(p.poll() is not None for p in procs):
                            raise RuntimeError(
                                "all workers exited: " + common.log_tail("e2e_worker0")
                            )
                        await asyncio.sleep(0.25)
                wall = time.perf_counter() - started
                cpu = _cpu_report(procs, fake, cpu_start, sent)
                span = await conn.fetchrow(
                    """
                    SELECT min(sent_at) AS first, max(sent_at) AS last,
                      percentile_cont(0.5) WITHIN GROUP
                        (ORDER BY extract(epoch FROM sent_at - created_at)) AS p50,
                      percentile_cont(0.99) WITHIN GROUP
                        (ORDER BY extract(epoch FROM sent_at - created_at)) AS p99,
                      max(extract(epoch FROM sent_at - created_at)) AS max
                    FROM notifications WHERE status = 'sent'
                    """
                )
                left = int(await conn.fetchval("SELECT count(*) FROM notification_queue"))
            finally:
                await conn.close()
            for proc in procs:
                common.stop_process(proc)
            provider_calls = _provider_count(provider_port)
            assert span is not None
            sent_span = (span["last"] - span["first"]).total_seconds() if sent else 0.0
            peaks = list(rss.peak_mb().values())
            result = {
                "notifications": n,
                "accept": accepted,
                "sent": sent,
                "failed": failed,
                "queue_rows_left": left,
                "provider_calls": provider_calls,
                "deliver_wall_seconds": round(wall, 3),
                "delivered_per_second_wall": round(sent / wall) if wall else None,
                "sent_span_seconds": round(sent_span, 3),
                "delivered_per_second": round(sent / sent_span) if sent_span else None,
                "queue_latency_ms": {
                    "p50": round(float(span["p50"]) * 1000, 1) if sent else None,
                    "p99": round(float(span["p99"]) * 1000, 1) if sent else None,
                    "max": round(float(span["max"]) * 1000, 1) if sent else None,
                },
                "worker_peak_rss_mb": peaks,
                "cpu_while_delivering": cpu,
                "worker_processes": workers,
                "worker_concurrency": concurrency,
                "provider": "fake Resend (bench/fake_provider.py) on 127.0.0.1",
                "provider_delay_seconds": PROVIDER_DELAY,
                "target": {
                    "delivered_per_second": TARGET_DELIVERED_PER_SECOND,
                    "worker_rss_mb": TARGET_WORKER_RSS_MB,
                },
                "meets_target": {
                    "delivered_per_second": (
                        sent == n
                        and sent_span > 0
                        and sent / sent_span >= TARGET_DELIVERED_PER_SECOND
                    ),
                    "worker_rss": bool(peaks) and max(peaks) <= TARGET_WORKER_RSS_MB,
                },
                "notes": [
                    "delivered_per_second = sent / (max(sent_at) - min(sent_at)): the drain "
                    "rate once the workers run; delivered_per_second_wall includes the "
                    "workers' start-up (imports, pools) from process spawn.",
                    "All notifications are accepted BEFORE the workers start, so queue latency "
                    "(sent_at - created_at) includes the accept phase and the workers' start-up "
                    "and grows with the backlog position: it measures draining a 50k backlog, "
                    "not a steady-state queue wait.",
                    "Accept goes through send_many in chunks of 1,000: each chunk is one insert "
                    "and deliver_many jobs of 100 notifications.",
                ],
                "profiled": profile,
            }
    finally:
        for proc in procs:
            common.stop_process(proc)
        common.stop_process(fake)
    if profile:
        import pstats

        existing = [str(p) for p in profiles if p.exists()]
        if existing:
            merged = common.WORK_DIR / "e2e_workers.prof"
            stats = pstats.Stats(*existing)
            stats.dump_stats(str(merged))
            result.update(common.profile_summary(merged))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notifications", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with common.services() as (server_dsn, redis_url):
        result = asyncio.run(
            run(
                server_dsn,
                redis_url,
                args.notifications,
                args.workers,
                args.concurrency,
                args.profile,
            )
        )
    if args.profile:
        summary = {k: v for k, v in result.items() if not k.startswith("profile_")}
        print(json.dumps(summary, indent=2))
        common.print_profile(result, "worker processes")
        return
    path = common.write_result("e2e", result)
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
