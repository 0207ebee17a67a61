"""Template rendering benchmark: app.templating.render, cached and uncached.

    python -m bench.templates [--seconds 3]

cached:   (a rich order e-mail, and a simple 3-line body) the same source every time: compiled once (app.templating's compile cache),
          then each call is a render (HTML escaping on, helpers, #if / #each).
uncached: a new source every call (a unique comment appended): compile + render,
          the cost a template edit or a first use pays.
Also: the plain-text fast path (a source without "{{" is returned as is), and a short
subject line. Target: >= 20,000 cached renders/s. Writes bench/results/templates.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from bench import common

TARGET_CACHED_PER_SECOND = 20_000

BODY_HTML = """<h1>Hi {{name}},</h1>
<p>Your order <strong>#{{order.id}}</strong> of {{formatDate order.date "long"}} has shipped.</p>
{{#if order.express}}<p>Express delivery: it arrives tomorrow.</p>{{/if}}
<table>
{{#each order.items}}  <tr><td>{{this.title}}</td><td>{{this.quantity}}</td><td>{{currency this.price "EUR"}}</td></tr>
{{/each}}</table>
<p>Total: {{currency order.total "EUR"}} for {{pluralize order.count "item" "items"}}.</p>
<p><a href="https://example.com/track?id={{urlEncode order.id}}">Track your parcel</a></p>
<p>{{default signature "The Example team"}}</p>
"""

BODY_SIMPLE = """<p>Hi {{name}},</p>
<p>Your order #{{order.id}} has shipped.{{#if order.express}} It arrives tomorrow.{{/if}}</p>
<p>The Example team</p>
"""

SUBJECT = "{{name}}, your order #{{order.id}} has shipped"

VARIABLES: dict[str, Any] = {
    "name": "Ada <Lovelace>",
    "order": {
        "id": "A-1042",
        "date": "2026-03-14T10:00:00Z",
        "express": True,
        "items": [
            {"title": "Notebook", "quantity": 2, "price": 4.5},
            {"title": "Fountain pen", "quantity": 1, "price": 39.9},
            {"title": "Ink & cartridges", "quantity": 3, "price": 6.25},
        ],
        "total": 67.65,
        "count": 6,
    },
}


def _rate(call: Callable[[int], Any], seconds: float, min_calls: int = 3) -> dict[str, Any]:
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while calls < min_calls or time.perf_counter() < deadline:
        call(calls)
        calls += 1
    elapsed = time.perf_counter() - started
    return {
        "calls": calls,
        "seconds": round(elapsed, 3),
        "per_second": round(calls / elapsed, 1),
        "us_per_call": round(elapsed / calls * 1e6, 1),
    }


def run(seconds: float) -> dict[str, Any]:
    from app import templating
    from app.runtime import tune_gc

    templating.warm_up()  # pybars' grammar, built once at process start-up
    tune_gc()  # renders run in the API and worker, whose runtime tunes the GC like this
    first = templating.render(BODY_HTML, VARIABLES, html=True)
    assert first is not None and "Ada &lt;Lovelace&gt;" in first, first

    cached = _rate(lambda _i: templating.render(BODY_HTML, VARIABLES, html=True), seconds)
    simple = _rate(lambda _i: templating.render(BODY_SIMPLE, VARIABLES, html=True), seconds / 2)
    subject = _rate(lambda _i: templating.render(SUBJECT, VARIABLES, html=False), seconds / 2)
    plain = _rate(
        lambda _i: templating.render("Your order has shipped.", VARIABLES, html=False),
        seconds / 4,
    )
    uncached = _rate(
        lambda i: templating.render(
            f"{BODY_HTML}{{{{!-- bench {i} {time.perf_counter_ns()} --}}}}", VARIABLES, html=True
        ),
        seconds,
    )
    return {
        "cached_render": {
            **cached,
            "meets_target": cached["per_second"] >= TARGET_CACHED_PER_SECOND,
        },
        "cached_render_simple": {
            **simple,
            "meets_target": simple["per_second"] >= TARGET_CACHED_PER_SECOND,
        },
        "cached_subject_render": subject,
        "plain_text_fast_path": plain,
        "uncached_compile_and_render": uncached,
        "template": {
            "body_html_chars": len(BODY_HTML),
            "features": "variables, nested paths, #if, #each over 3 items, currency, "
            "formatDate, pluralize, urlEncode, default; HTML escaping on",
            "simple_body_chars": len(BODY_SIMPLE),
            "simple_features": "2 variables, one #if; HTML escaping on",
        },
        "target": {"cached_renders_per_second": TARGET_CACHED_PER_SECOND},
        "notes": [
            "One Python process, one core; app.templating.render (pybars3).",
            "The GC is tuned as in the API and worker processes (app.runtime.tune_gc: the "
            "start-up heap frozen, a higher young-generation threshold).",
            "uncached appends a unique comment so every call compiles a new source "
            "(it also churns the compile cache, MAX_COMPILED entries).",
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3)
    args = parser.parse_args()
    result = run(args.seconds)
    path = common.write_result("templates", result)
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
