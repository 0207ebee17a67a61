"""Webhook benchmark: provider events applied per second through the real app over HTTP.

    python -m bench.webhooks [--duration 10] [--connections 32]
                             [--resend-requests 30000] [--sendgrid-requests 1000]

One API process (`python -m app.cli server`) with NOTIFICATIONS_WEBHOOK_VERIFY=true,
on a fresh database holding one `sent` notification per event (inserted with COPY:
provider, provider_id = the provider's message id). wrk (bench/wrk/replay.lua) sends
pre-signed requests, each exactly once, split between its threads:

  (i)  Resend: POST /webhooks/resend, one `email.delivered` event per request, signed
       with Svix (svix-id / svix-timestamp / svix-signature, HMAC-SHA256 with a whsec_
       secret), concurrency 32;
  (ii) SendGrid: POST /webhooks/sendgrid, batches of 100 `delivered` events per request,
       signed with ECDSA P-256 (X-Twilio-Email-Event-Webhook-Signature / -Timestamp).

events/s = events stored in notification_events within wrk's run time of the first
one (created_at), divided by that run time (a run ends at --duration or when its
pre-signed requests are used up); requests still in flight when wrk stops land later
and count in events_stored only. Target >= 2,000 events/s.
Writes bench/results/webhooks.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench import common

TARGET_EVENTS_PER_SECOND = 2000
SENDGRID_BATCH = 100


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


async def _insert_notifications(database_url: str, provider: str, message_ids: list[str]) -> None:
    """One `sent` notification per message id, with COPY."""
    now = datetime.now(UTC)
    records = [
        (
            uuid.uuid4(),
            uuid.uuid4(),
            "email",
            f"r{i}@example.com",
            "Hello",
            "Hi",
            "sent",
            provider,
            mid,
            now,
            now,
        )
        for i, mid in enumerate(message_ids)
    ]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.copy_records_to_table(
            "notifications",
            records=records,
            columns=[
                "id",
                "user_id",
                "channel",
                "to_address",
                "subject",
                "body",
                "status",
                "provider",
                "provider_id",
                "sent_at",
                "created_at",
            ],
        )
        await conn.execute("ANALYZE notifications")
    finally:
        await conn.close()


def _resend_requests(path: Path, secret: bytes, message_ids: list[str]) -> None:
    """One signed `email.delivered` per line: svix headers, then the body."""
    now = time.time()
    with path.open("w") as out:
        for i, mid in enumerate(message_ids):
            body = json.dumps(
                {
                    "type": "email.delivered",
                    "created_at": _iso(now),
                    "data": {
                        "email_id": mid,
                        "from": "bench@example.com",
                        "to": [f"r{i}@example.com"],
                        "subject": "Hello",
                        "created_at": _iso(now - 1),
                    },
                }
            )
            svix_id = f"msg_{uuid.uuid4().hex}"
            stamp = str(int(now))
            signature = base64.b64encode(
                hmac.new(secret, f"{svix_id}.{stamp}.{body}".encode(), hashlib.sha256).digest()
            ).decode()
            out.write(
                f"svix-id={svix_id}\tsvix-timestamp={stamp}\tsvix-signature=v1,{signature}\t{body}\n"
            )


def _sendgrid_requests(path: Path, key: ec.EllipticCurvePrivateKey, message_ids: list[str]) -> None:
    """Batches of SENDGRID_BATCH `delivered` events per line, ECDSA-signed."""
    now = int(time.time())
    with path.open("w") as out:
        for start in range(0, len(message_ids), SENDGRID_BATCH):
            events = [
                {
                    "email": f"r{start + j}@example.com",
                    "timestamp": now - 1,
                    "event": "delivered",
                    "sg_event_id": uuid.uuid4().hex,
                    "sg_message_id": f"{mid}.filterdrecv-5645d9c87f-78xgx-1-5F6D8D0C-1.0",
                    "smtp-id": f"<{mid}@example.com>",
                    "response": "250 OK",
                }
                for j, mid in enumerate(message_ids[start : start + SENDGRID_BATCH])
            ]
            body = json.dumps(events)
            stamp = str(now)
            signature = base64.b64encode(
                key.sign(stamp.encode() + body.encode(), ec.ECDSA(hashes.SHA256()))
            ).decode()
            out.write(
                f"X-Twilio-Email-Event-Webhook-Signature={signature}\t"
                f"X-Twilio-Email-Event-Webhook-Timestamp={stamp}\t{body}\n"
            )


async def _event_counts(database_url: str, provider: str, window: float) -> dict[str, Any]:
    """Events stored for `provider`: in total (once requests still in flight when wrk
    stopped have landed) and within `window` seconds of the first one."""
    conn = await asyncpg.connect(database_url)
    try:
        previous = -1
        for _ in range(40):  # settle: wait until the count stops moving
            total = int(
                await conn.fetchval(
                    "SELECT count(*) FROM notification_events WHERE provider = $1", provider
                )
            )
            if total == previous:
                break
            previous = total
            await asyncio.sleep(0.5)
        row = await conn.fetchrow(
            """
            WITH e AS (SELECT created_at FROM notification_events WHERE provider = $1),
                 f AS (SELECT min(created_at) AS first FROM e)
            SELECT count(*) AS total,
                   count(*) FILTER (WHERE e.created_at <= f.first + make_interval(secs => $2))
                     AS in_window
            FROM e, f
            """,
            provider,
            window,
        )
        delivered = int(
            await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE provider = $1 AND status = 'delivered'",
                provider,
            )
        )
    finally:
        await conn.close()
    assert row is not None
    return {"total": int(row["total"]), "in_window": int(row["in_window"]), "delivered": delivered}


def _wrk(port: int, path: str, requests_file: Path, duration: float, connections: int) -> Any:
    return common.run_wrk(
        f"http://127.0.0.1:{port}{path}",
        "replay.lua",
        duration=duration,
        connections=connections,
        threads=2,
        env={
            "BENCH_WRK_DIR": str(common.WRK_DIR),
            "BENCH_REQUESTS": str(requests_file),
            "BENCH_THREADS": "2",
        },
    )


def _section(raw: dict[str, Any], counts: dict[str, int], per_request: int) -> dict[str, Any]:
    per_second = counts["in_window"] / raw["seconds"]
    return {
        "requests": raw["requests"],
        "seconds": raw["seconds"],
        "requests_per_second": raw["requests_per_second"],
        "non_2xx": raw["non_2xx"],
        "socket_errors": raw["socket_errors"],
        "events_per_request": per_request,
        "events_stored": counts["total"],
        "events_in_window": counts["in_window"],
        "notifications_delivered": counts["delivered"],
        "events_per_second": round(per_second, 1),
        "p50_ms": raw["p50_ms"],
        "p95_ms": raw["p95_ms"],
        "p99_ms": raw["p99_ms"],
        "command": raw["command"],
        "meets_target": per_second >= TARGET_EVENTS_PER_SECOND,
    }


async def run(
    server_dsn: str,
    redis_url: str,
    duration: float,
    connections: int,
    resend_requests: int,
    sendgrid_requests: int,
    profile: bool = False,
) -> dict[str, Any]:
    common.ensure_wrk()
    common.WORK_DIR.mkdir(parents=True, exist_ok=True)
    svix_secret = os.urandom(24)
    whsec = "whsec_" + base64.b64encode(svix_secret).decode()
    sg_key = ec.generate_private_key(ec.SECP256R1())
    sg_public = base64.b64encode(
        sg_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    resend_ids = [str(uuid.uuid4()) for _ in range(resend_requests)]
    sendgrid_ids = [
        uuid.uuid4().hex[:22] for _ in range(sendgrid_requests * SENDGRID_BATCH)
    ]  # SendGrid X-Message-Id style
    async with common.fresh_database(server_dsn, "webhooks") as database_url:
        await common.flush_redis(redis_url)
        started = time.perf_counter()
        await _insert_notifications(database_url, "resend", resend_ids)
        await _insert_notifications(database_url, "sendgrid", sendgrid_ids)
        copy_seconds = time.perf_counter() - started
        port = common.free_port()
        env = common.app_env(
            database_url,
            redis_url,
            PORT=str(port),
            HOST="127.0.0.1",
            NOTIFICATIONS_API_RATE_LIMIT="0",
            NOTIFICATIONS_WEBHOOK_VERIFY="true",
            NOTIFICATIONS_RESEND_WEBHOOK_SECRET=whsec,
            NOTIFICATIONS_SENDGRID_WEBHOOK_PUBLIC_KEY=sg_public,
        )
        prof = common.WORK_DIR / "webhooks_api.prof" if profile else None
        api = common.start_process(["-m", "app.cli", "server"], env, "webhooks_api", profile=prof)
        try:
            common.wait_http(port, api)
            # signed just before each run: the tolerance is 300 s
            resend_file = common.WORK_DIR / "resend_requests.tsv"
            _resend_requests(resend_file, svix_secret, resend_ids)
            with common.RssSampler([api.pid]) as rss:
                with common.CpuMeter(api.pid) as cpu_resend:
                    resend = _wrk(port, "/webhooks/resend", resend_file, duration, connections)
                resend_counts = await _event_counts(database_url, "resend", resend["seconds"])
                sendgrid_file = common.WORK_DIR / "sendgrid_requests.tsv"
                _sendgrid_requests(sendgrid_file, sg_key, sendgrid_ids)
                with common.CpuMeter(api.pid) as cpu_sendgrid:
                    sendgrid = _wrk(
                        port, "/webhooks/sendgrid", sendgrid_file, duration, connections
                    )
                sg_counts = await _event_counts(database_url, "sendgrid", sendgrid["seconds"])
            if api.poll() is not None:
                raise RuntimeError(f"API exited: {common.log_tail('webhooks_api')}")
        finally:
            common.stop_process(api)
    result: dict[str, Any] = {
        "resend_svix_single": {
            **_section(resend, resend_counts, 1),
            "cpu": cpu_resend.report(resend["requests"]),
        },
        "sendgrid_ecdsa_batch": {
            **_section(sendgrid, sg_counts, SENDGRID_BATCH),
            "cpu": cpu_sendgrid.report(sendgrid["requests"]),
        },
        "api_peak_rss_mb": rss.peak_mb()[api.pid],
        "prepared": {
            "resend_requests": resend_requests,
            "sendgrid_requests": sendgrid_requests,
            "notifications_copied": resend_requests + sendgrid_requests * SENDGRID_BATCH,
            "copy_seconds": round(copy_seconds, 3),
        },
        "duration_cap_seconds": duration,
        "connections": connections,
        "target": {"events_per_second": TARGET_EVENTS_PER_SECOND},
        "notes": [
            "NOTIFICATIONS_WEBHOOK_VERIFY=true: every request's signature is checked "
            "(Svix HMAC for Resend, ECDSA P-256 for SendGrid).",
            "Each pre-signed request is sent once (wrk threads split the file and stop "
            "when it is used up), so no request is a replay; events_stored counts rows in "
            "notification_events, events_in_window those within wrk's run time of the first "
            "event (the events/s numerator), notifications_delivered the sent -> delivered "
            "transitions.",
            "Every event matches one notification by provider_id (one event per notification).",
            "NOTIFICATIONS_API_RATE_LIMIT=0 (per-IP limiter off for the single-IP load generator).",
        ],
    }
    if prof is not None:
        result.update(common.profile_summary(prof))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--resend-requests", type=int, default=30_000)
    parser.add_argument("--sendgrid-requests", type=int, default=1_000)
    parser.add_argument("--profile", action="store_true", help="API under cProfile")
    args = parser.parse_args()
    with common.services() as (server_dsn, redis_url):
        result = asyncio.run(
            run(
                server_dsn,
                redis_url,
                args.duration,
                args.connections,
                args.resend_requests,
                args.sendgrid_requests,
                args.profile,
            )
        )
    if args.profile:
        print(
            json.dumps({k: v for k, v in result.items() if not k.startswith("profile")}, indent=2)
        )
        common.print_profile(result, "API process")
        return
    path = common.write_result("webhooks", result)
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
