"""`make bench`: every benchmark in order, a summary table, bench/results/summary.json.

    python -m bench.run [--quick] [--only NAME ...] [--skip NAME ...]

    templates  app.templating.render, cached and uncached           bench/templates.py
    intake     POST /api/notifications/send and /hasura/actions     bench/intake.py
    bulk       100k campaign recipients accepted (+ delivered)      bench/campaign.py's run()
    e2e        50k delivered to a fake Resend answering in 20 ms    bench/e2e.py
    webhooks   Resend (Svix) and SendGrid (ECDSA batches) events    bench/webhooks.py

Each writes bench/results/NAME.json (bulk: bulk.json); every module also runs alone
(`python -m bench.e2e`). One set of servers (DATABASE_URL / REDIS_URL, else embedded
under .data/bench) serves them all, a fresh database per benchmark. wrk is installed
with apt-get when missing. --quick shortens every run (for a smoke test; its figures
are not the targets' measurements).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import common

ORDER = ("templates", "intake", "bulk", "e2e", "webhooks")


def _row(
    bench: str, metric: str, value: Any, target: str, ok: bool | None, unit: str = ""
) -> dict[str, Any]:
    return {
        "benchmark": bench,
        "metric": metric,
        "value": value,
        "unit": unit,
        "target": target,
        "ok": ok,
    }


def rows_for(name: str, r: dict[str, Any]) -> list[dict[str, Any]]:
    if "error" in r:
        return [_row(name, "error", r["error"].splitlines()[-1][:80], "", False)]
    rows: list[dict[str, Any]] = []
    if name == "templates":
        c, s = r["cached_render"], r["cached_render_simple"]
        rows.append(
            _row(
                name,
                "cached renders/s (rich e-mail)",
                c["per_second"],
                ">= 20,000",
                c["per_second"] >= 20_000,
            )
        )
        rows.append(
            _row(
                name,
                "cached renders/s (simple body)",
                s["per_second"],
                ">= 20,000",
                s["per_second"] >= 20_000,
            )
        )
        rows.append(
            _row(
                name,
                "uncached compile+render/s",
                r["uncached_compile_and_render"]["per_second"],
                "",
                None,
            )
        )
    elif name == "intake":
        for label, e in r["endpoints"].items():
            short = "REST send" if "/api/" in label else "Hasura action"
            rows.append(
                _row(
                    name,
                    f"{short} accepted/s",
                    e["ok_per_second"],
                    ">= 2,000",
                    e["ok_per_second"] >= 2000,
                )
            )
            rows.append(
                _row(
                    name,
                    f"{short} p50 / p95 / p99 ms",
                    f"{e['p50_ms']} / {e['p95_ms']} / {e['p99_ms']}",
                    "p99 <= 30",
                    e["p99_ms"] <= 30,
                )
            )
            rows.append(_row(name, f"{short} non-2xx", e["non_2xx"], "0", e["non_2xx"] == 0))
        rows.append(_row(name, "API peak RSS MB", r["api_peak_rss_mb"], "", None))
    elif name == "bulk":
        complete = r.get("sent") == r["recipients"]
        rows.append(
            _row(
                name,
                f"accept {r['recipients']:,} recipients s",
                r["accept_seconds"],
                "<= 3 s (campaign)",
                r["accept_seconds"] <= 3,
            )
        )
        rows.append(_row(name, "accepted recipients/s", r["accept_per_second"], "", None))
        rows.append(
            _row(name, "sent / recipients", f"{r.get('sent')} / {r['recipients']}", "all", complete)
        )
        rows.append(
            _row(
                name,
                "campaign delivered/s",
                r["delivered_per_second"],
                ">= 1,500",
                complete and r["delivered_per_second"] >= 1500,
            )
        )
    elif name == "e2e":
        rows.append(
            _row(
                name,
                f"delivered/s ({r['sent']:,} sent)",
                r["delivered_per_second"],
                ">= 1,500",
                r["meets_target"]["delivered_per_second"],
            )
        )
        rows.append(
            _row(name, "delivered/s incl. worker start", r["delivered_per_second_wall"], "", None)
        )
        q = r["queue_latency_ms"]
        rows.append(_row(name, "queue latency p50 / p99 ms", f"{q['p50']} / {q['p99']}", "", None))
        rows.append(_row(name, "accept (send_many) /s", r["accept"]["per_second"], "", None))
        rows.append(
            _row(
                name,
                "worker peak RSS MB",
                max(r["worker_peak_rss_mb"]),
                "<= 200",
                r["meets_target"]["worker_rss"],
            )
        )
    elif name == "webhooks":
        for key, label in (
            ("resend_svix_single", "Resend (1/request)"),
            ("sendgrid_ecdsa_batch", "SendGrid (100/request)"),
        ):
            w = r[key]
            rows.append(
                _row(
                    name, f"{label} events/s", w["events_per_second"], ">= 2,000", w["meets_target"]
                )
            )
            rows.append(_row(name, f"{label} p99 ms", w["p99_ms"], "", None))
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="benchmarks")
        for column in ("benchmark", "metric", "value", "target", "ok"):
            table.add_column(column, justify="right" if column == "value" else "left")
        for r in rows:
            ok = "" if r["ok"] is None else ("yes" if r["ok"] else "NO")
            value = f"{r['value']:,}" if isinstance(r["value"], int | float) else str(r["value"])
            table.add_row(r["benchmark"], r["metric"], value, r["target"], ok)
        Console(width=130).print(table)
    except ImportError:  # pragma: no cover
        for r in rows:
            print(f"{r['benchmark']:<10} {r['metric']:<40} {r['value']!s:>20} {r['target']:<12}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--only", nargs="*", choices=ORDER)
    parser.add_argument("--skip", nargs="*", choices=ORDER, default=[])
    parser.add_argument("--bulk-recipients", type=int, default=100_000)
    args = parser.parse_args()
    chosen = [n for n in ORDER if (not args.only or n in args.only) and n not in args.skip]
    quick = args.quick
    common.ensure_wrk()

    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    with common.services() as (dsn, redis):
        from bench import campaign, e2e, intake, templates, webhooks

        jobs: dict[str, Callable[[], dict[str, Any]]] = {
            "templates": lambda: templates.run(1 if quick else 3),
            "intake": lambda: asyncio.run(intake.run(dsn, redis, 3 if quick else 20, 32)),
            "bulk": lambda: asyncio.run(
                campaign.run(dsn, redis, 5_000 if quick else args.bulk_recipients, 2, 20)
            ),
            "e2e": lambda: asyncio.run(e2e.run(dsn, redis, 5_000 if quick else 50_000, 2, 20)),
            "webhooks": lambda: asyncio.run(
                webhooks.run(
                    dsn,
                    redis,
                    3 if quick else 10,
                    32,
                    3_000 if quick else 30_000,
                    100 if quick else 1_000,
                )
            ),
        }
        for name in chosen:
            print(f"== {name}", flush=True)
            t0 = time.perf_counter()
            try:
                result = jobs[name]()
                if name == "bulk":
                    result["source"] = "bench.campaign.run (app.services.campaigns.create)"
                result["quick"] = quick
                common.write_result(name, result)
            except Exception as exc:  # one failing benchmark must not hide the others
                traceback.print_exc()
                result = {"error": f"{type(exc).__name__}: {exc}"}
            result["elapsed_seconds"] = round(time.perf_counter() - t0, 1)
            results[name] = result
            print(f"   {name} done in {result['elapsed_seconds']} s", flush=True)

    rows = [row for name in chosen for row in rows_for(name, results[name])]
    print_table(rows)
    summary = {
        "rows": rows,
        "benchmarks": chosen,
        "quick": quick,
        "total_seconds": round(time.perf_counter() - started, 1),
        "results": {n: r.get("error", f"bench/results/{n}.json") for n, r in results.items()},
    }
    path = common.write_result("summary", summary)
    print(f"summary written to {path}")
    failed = [n for n, r in results.items() if "error" in r]
    if failed:
        raise SystemExit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
