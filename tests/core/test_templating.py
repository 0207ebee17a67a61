"""app.templating renders: exact output, so a speed-up can never change it silently.

The expected texts are what pybars3 with its own render-time functions produced
before app.template_runtime replaced them; the benchmark's rich order e-mail
(bench/templates.py) is copied here so that a change to the benchmark cannot
move the goalposts.
"""

from __future__ import annotations

from typing import Any

import pytest

from app import templating

RICH = """<h1>Hi {{name}},</h1>
<p>Your order <strong>#{{order.id}}</strong> of {{formatDate order.date "long"}} has shipped.</p>
{{#if order.express}}<p>Express delivery: it arrives tomorrow.</p>{{/if}}
<table>
{{#each order.items}}  <tr><td>{{this.title}}</td><td>{{this.quantity}}</td><td>{{currency this.price "EUR"}}</td></tr>
{{/each}}</table>
<p>Total: {{currency order.total "EUR"}} for {{pluralize order.count "item" "items"}}.</p>
<p><a href="https://example.com/track?id={{urlEncode order.id}}">Track your parcel</a></p>
<p>{{default signature "The Example team"}}</p>
"""

ORDER: dict[str, Any] = {
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

RICH_HTML = """<h1>Hi Ada &lt;Lovelace&gt;,</h1>
<p>Your order <strong>#A-1042</strong> of March 14, 2026 has shipped.</p>
<p>Express delivery: it arrives tomorrow.</p>
<table>
  <tr><td>Notebook</td><td>2</td><td>€4.50</td></tr>
  <tr><td>Fountain pen</td><td>1</td><td>€39.90</td></tr>
  <tr><td>Ink &amp; cartridges</td><td>3</td><td>€6.25</td></tr>
</table>
<p>Total: €67.65 for items.</p>
<p><a href="https://example.com/track?id=A-1042">Track your parcel</a></p>
<p>The Example team</p>
"""


def test_the_rich_order_email_renders_exactly() -> None:
    assert templating.render(RICH, ORDER, html=True) == RICH_HTML
    # again: the second render runs on the compile cache and the helpers' caches
    assert templating.render(RICH, ORDER, html=True) == RICH_HTML


def test_the_rich_order_email_as_text_is_not_escaped() -> None:
    text = RICH_HTML.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert templating.render(RICH, ORDER, html=False) == text


def test_a_second_order_takes_the_other_branches() -> None:
    order = {
        "name": "Tom & \"Jerry\" 'O`Neil'",
        "signature": "Shop <team>",
        "order": {
            "id": "B&7 42/é",
            "date": "2025-12-31T23:59:59+02:00",
            "express": False,
            "items": [{"title": "Gift card", "quantity": 1, "price": "1234.5"}],
            "total": -0.0,
            "count": 1,
        },
    }
    assert templating.render(RICH, order, html=True) == (
        "<h1>Hi Tom &amp; &quot;Jerry&quot; &#x27;O&#x60;Neil&#x27;,</h1>\n"
        "<p>Your order <strong>#B&amp;7 42/é</strong> of December 31, 2025 has shipped.</p>\n"
        "\n<table>\n"
        "  <tr><td>Gift card</td><td>1</td><td>€1,234.50</td></tr>\n"
        "</table>\n"
        "<p>Total: €0.00 for item.</p>\n"
        '<p><a href="https://example.com/track?id=B%267%2042%2F%C3%A9">Track your parcel</a></p>\n'
        "<p>Shop &lt;team&gt;</p>\n"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "{{#each list}}[{{@index}}:{{@first}}:{{@last}}:{{this}}:{{../outer}}:{{@root.outer}}]"
            "{{/each}}",
            "[0:true:false:1:OUT:OUT][1:false:false:&lt;two&gt;:OUT:OUT]"
            "[2:false:true:{&#x27;a&#x27;: 3}:OUT:OUT]",
        ),
        ("{{#each map}}{{@key}}={{this}} {{@index}};{{/each}}", "a=1 0;b=&amp; 1;"),
        ("{{#each empty}}x{{else}}none{{/each}}|{{#each missing}}x{{/each}}|", "none||"),
        (
            "{{#each rows}}({{#each this}}{{@../index}}.{{@index}}={{.}} {{/each}}){{/each}}",
            "(0.0=1 0.1=2 )(1.0=3 )",
        ),
        (
            "{{list.length}}|{{list.1}}|{{list.2.a}}|{{map.b}}|{{missing}}|{{missing.deep}}|{{none}}",
            "3|&lt;two&gt;|3|&amp;|||",
        ),
        (
            "{{yes}}|{{no}}|{{zero}}|{{#if no}}T{{else}}F{{/if}}|{{#unless none}}U{{/unless}}",
            "true|false|0|F|U",
        ),
        (
            "{{#with map}}{{b}}/{{../outer}}{{/with}}|{{#map}}{{a}}{{/map}}",
            "&amp;/|1",
        ),  # pybars: `../` inside #with is the with-ed value
        (
            "{{{list.1}}}|{{sanitizedHtml html}}|{{uppercase outer}}|{{default none 'd'}}",
            "<two>|<b>ok</b>|OUT|d",
        ),
    ],
)
def test_paths_blocks_and_data_variables(source: str, expected: str) -> None:
    variables = {
        "outer": "OUT",
        "list": [1, "<two>", {"a": 3}],
        "map": {"a": 1, "b": "&"},
        "empty": [],
        "rows": [[1, 2], [3]],
        "yes": True,
        "no": False,
        "zero": 0,
        "none": None,
        "html": "<b onclick='x()'>ok</b><script>bad()</script>",
    }
    assert templating.render(source, variables, html=True) == expected


def test_helper_caches_tell_equal_values_of_different_types_apart() -> None:
    source = "{{currency a}} {{currency a 'JPY'}}|{{urlEncode a}}"
    rendered = [templating.render(source, {"a": a}, html=False) for a in (1, 1.0, True, "1.0", 1)]
    assert rendered == [
        "$1.00 ¥1|1",
        "$1.00 ¥1|1.0",
        "True True|True",
        "$1.00 ¥1|1.0",
        "$1.00 ¥1|1",
    ]


def test_escaping_matches_pybars_own_escape() -> None:
    templating.warm_up()
    import pybars._compiler as compiler

    from app.template_runtime import html_escape

    def pybars_escape(text: str) -> str:
        return compiler._escape_re.sub(compiler.substitute, text)

    samples = ["", "plain", "Tom & Jerry", "<a href=\"x\" title='y'>`z`</a>", "&amp;", "é€ < > &"]
    for text in samples:
        assert html_escape(text) == pybars_escape(text)


def test_fast_resolve_agrees_with_pybars_resolve() -> None:
    templating.warm_up()  # installs app.template_runtime
    from pybars._compiler import Scope

    from app import template_runtime

    data: dict[str, Any] = {
        "a": 1,
        "map": {"b": "&", "n": None},
        "list": [1, {"c": 2}],
        "none": None,
    }
    contexts = [
        data,
        None,
        Scope(data, None, data),
        Scope(data, None, data, overrides={"a": "overridden"}),
        Scope(data["map"], data, data, index=0, key="b", first=True, last=False),
        Scope(data["list"], data, data),
        Scope(data["list"][1], data, data, index=1, first=False, last=True),
    ]
    paths = [
        ("a",), ("map", "", "b"), ("map", "n", "x"), ("map", "keys"), ("map", "nope", "x"),
        ("list", "length"), ("list", "1", "c"), ("none", "x"), ("",), ("", "", "c"), ("this",),
        ("@index",), ("@first",), ("@key",), ("@root", "", "a"), ("@_parent", "a"), ("nope",), ("c",),
    ]  # fmt: skip

    def outcome(resolve: Any, context: Any, path: tuple[str, ...]) -> Any:
        try:
            return resolve(context, *path)
        except Exception as exc:
            return type(exc)

    for context in contexts:
        for path in paths:
            expected = outcome(template_runtime._pybars_resolve, context, path)
            assert outcome(template_runtime.resolve, context, path) == expected, (context, path)


def test_evicted_templates_free_their_pybars_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """pybars registers every compiled template as a module; eviction must drop it, or a
    churn of distinct sources grows the process without bound."""
    import sys

    monkeypatch.setattr(templating, "MAX_COMPILED", 3)
    monkeypatch.setattr(templating, "_compiled", {})

    def registered() -> int:
        return sum(1 for name in sys.modules if name.startswith("pybars._templates."))

    templating.compile_source("{{a}} warm")
    before = registered()
    for i in range(20):
        assert templating.render(f"{{{{a}}}} churn {i}", {"a": "x"}, html=False) == f"x churn {i}"
    assert len(templating._compiled) == 3
    assert registered() <= before + 3
