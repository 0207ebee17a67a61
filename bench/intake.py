"""Intake benchmark: POST /api/notifications/send and POST /hasura/actions (sendNotification).

    python -m bench.intake [--duration 20] [--connections 32] [--endpoint rest|hasura]
                           [--profile]

ONE API process (`python -m app.cli server`, a subprocess on a fresh database),
loaded by wrk (-t2 -c32) with bench/wrk/send.lua and bench/wrk/hasura_action.lua:
a random user_id per request, so neither deduplication nor the per-user hourly
limit interferes. NOTIFICATIONS_API_RATE_LIMIT=0 turns off the per-IP API limiter
(100 req/min per IP by default), which would otherwise throttle the single-IP load
generator. The API process's RSS is sampled every 100 ms.

Targets: >= 2,000 accepted/s with p99 <= 30 ms. Writes bench/results/intake.json.
--profile runs the API under cProfile instead (numbers then are not comparable) and
prints where its time goes; the profile is kept in .data/bench/work/intake_api.prof.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import urllib.request
import uuid
from typing import Any

import asyncpg

from bench import common

TARGET_ACCEPTED_PER_SECOND = 2000
TARGET_P99_MS = 30.0
ENDPOINTS = {
    "rest": ("/api/notifications/send", "send.lua", "POST /api/notifications/send"),
    "hasura": ("/hasura/actions", "hasura_action.lua", "POST /hasura/actions sendNotification"),
}


def _post(port: int, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _smoke(port: int) -> None:
    """One request per endpoint must be accepted before we load them."""
    user = str(uuid.uuid4())
    status, text = _post(
        port,
        "/api/notifications/send",
        {
            "user_id": user,
            "channel": "email",
            "to": {"email": "a@example.com"},
            "subject": "Hi",
            "body": "Hello",
        },
        {"X-API-Key": common.API_KEY},
    )
    if status != 200:
        raise RuntimeError(f"/api/notifications/send answered {status}: {text}")
    status, text = _post(
        port,
        "/hasura/actions",
        {
            "action": {"name": "sendNotification"},
            "input": {
                "input": {
                    "userId": str(uuid.uuid4()),
                    "channel": "EMAIL",
                    "to": {"email": "a@example.com"},
                    "subject": "Hi",
                    "body": "Hello",
                }
            },
            "session_variables": {"x-hasura-role": "admin"},
            "request_query": "mutation { sendNotification }",
        },
        {"X-Notifications-Action-Secret": common.ACTION_SECRET},
    )
    if status != 200 or not json.loads(text).get("success"):
        raise RuntimeError(f"/hasura/actions answered {status}: {text}")


def _wrk_env() -> dict[str, str]:
    return {
        "BENCH_WRK_DIR": str(common.WRK_DIR),
        "BENCH_API_KEY": common.API_KEY,
        "BENCH_ACTION_SECRET": common.ACTION_SECRET,
    }


def _summary(raw: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "requests",
        "seconds",
        "requests_per_second",
        "ok_per_second",
        "non_2xx",
        "socket_errors",
        "p50_ms",
        "p90_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "mean_ms",
        "command",
        "cpu",
    )
    out = {k: raw[k] for k in keys}
    out["meets_target"] = (
        raw["ok_per_second"] >= TARGET_ACCEPTED_PER_SECOND and raw["p99_ms"] <= TARGET_P99_MS
    )
    return out


async def run(
    server_dsn: str,
    redis_url: str,
    duration: float,
    connections: int,
    profile: bool = False,
    endpoints: tuple[str, ...] = ("rest", "hasura"),
    processes: int = 1,
) -> dict[str, Any]:
    common.ensure_wrk()
    async with common.fresh_database(server_dsn, "intake") as database_url:
        await common.flush_redis(redis_url)
        port = common.free_port()
        env = common.app_env(
            database_url,
            redis_url,
            PORT=str(port),
            HOST="127.0.0.1",
            NOTIFICATIONS_API_KEYS=common.API_KEY,
            NOTIFICATIONS_ACTION_SECRET=common.ACTION_SECRET,
            NOTIFICATIONS_API_RATE_LIMIT="0",
        )
        prof = common.WORK_DIR / "intake_api.prof" if profile else None
        command = ["-m", "app.cli", "server", *(["--processes", str(processes)] * (processes > 1))]
        api = common.start_process(command, env, "intake_api", profile=prof)
        results: dict[str, Any] = {}
        try:
            common.wait_http(port, api)
            _smoke(port)
            base = f"http://127.0.0.1:{port}"
            # warm-up (pools, caches, first-request imports); not measured
            common.run_wrk(
                f"{base}/api/notifications/send",
                "send.lua",
                duration=2,
                connections=connections,
                env=_wrk_env(),
            )
            measured: dict[str, dict[str, Any]] = {}
            with common.RssSampler([api.pid]) as rss:
                for key, (path, script, label) in ENDPOINTS.items():
                    if key in endpoints:
                        with common.CpuMeter(api.pid) as cpu:
                            measured[label] = common.run_wrk(
                                f"{base}{path}",
                                script,
                                duration=duration,
                                connections=connections,
                                env=_wrk_env(),
                            )
                        measured[label]["cpu"] = cpu.report(measured[label]["requests"])
            if api.poll() is not None:
                raise RuntimeError(f"API exited: {common.log_tail('intake_api')}")
            conn = await asyncpg.connect(database_url)
            try:
                stored = int(await conn.fetchval("SELECT count(*) FROM notifications"))
                queued = int(await conn.fetchval("SELECT count(*) FROM notification_queue"))
                # one insert statement = one transaction = one NOW(): rows per created_at
                batches = int(
                    await conn.fetchval("SELECT count(DISTINCT created_at) FROM notifications")
                )
            finally:
                await conn.close()
            results = {
                "endpoints": {label: _summary(raw) for label, raw in measured.items()},
                "api_peak_rss_mb": rss.peak_mb()[api.pid],
                "rss_samples": rss.samples,
                "notifications_stored": stored,
                "queue_rows": queued,
                "intake_batches": batches,
                "mean_notifications_per_insert": round(stored / batches, 2) if batches else None,
                "duration_seconds": duration,
                "connections": connections,
                "wrk_threads": 2,
                "api_processes": processes,
                "target": {
                    "accepted_per_second": TARGET_ACCEPTED_PER_SECOND,
                    "p99_ms": TARGET_P99_MS,
                },
                "notes": [
                    "NOTIFICATIONS_API_RATE_LIMIT=0: the per-IP API rate limiter is off so it "
                    "does not throttle the single-IP load generator; auth, validation, "
                    "preferences, per-user limits, dedup and the queue are all on.",
                    "A random user_id per request, so dedup and per-user limits never reject.",
                    "Inline subject/body (no template), channel email, API-key caller (REST) "
                    "and an admin Hasura session (action).",
                    "wrk, the API, PostgreSQL and Redis share the machine's cores.",
                    "A 2 s warm-up run precedes the measured runs (its rows are counted in "
                    "notifications_stored, as are the two smoke-test requests).",
                ],
                "profiled": profile,
            }
        finally:
            common.stop_process(api)
    if profile and prof is not None:
        results.update(common.profile_summary(prof))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), action="append")
    parser.add_argument(
        "--processes", type=int, default=1,
        help="API processes (server --processes N); the issue's target is for 1; N > 1 writes "
        "bench/results/intake_processes<N>.json",
    )  # fmt: skip
    args = parser.parse_args()
    endpoints = tuple(args.endpoint or ENDPOINTS)
    with common.services() as (server_dsn, redis_url):
        result = asyncio.run(
            run(
                server_dsn, redis_url, args.duration, args.connections, args.profile, endpoints,
                args.processes,
            )
        )  # fmt: skip
    if args.profile:
        print(json.dumps(result["endpoints"], indent=2))
        common.print_profile(result, "API process")
        return
    name = "intake" if args.processes == 1 else f"intake_processes{args.processes}"
    path = common.write_result(name, result)
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
