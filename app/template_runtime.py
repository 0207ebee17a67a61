"""Faster drop-ins for the pybars3 functions that compiled templates call at render time.

Why: a cached render of a rich e-mail spent most of its time in pybars' generic
runtime rather than in our helpers. `resolve` sends every path segment through
`Scope.get`'s chain of `@root`/`@index`/... comparisons and `pick`'s try/except;
`prepare` calls `escape`, a regex with a Python callback per special character;
`strlist.grow` makes one recursive call per output fragment; `{{#each}}` builds a
keyword dict per item.

Each replacement returns exactly what the original returns: `resolve` walks plain
names through plain dicts itself, as pybars' `pick` would, and hands every other
case (lists, `this`, `@data`, `../`, other objects) to pybars' own `resolve`;
escaping replaces the same six characters with the same entities.

Importing this module imports pybars, which builds its grammar (~1 s), so import
it lazily; `install()` must run before the first compile, because a generated
template module binds `resolve` and `prepare` when it is executed.
"""

from __future__ import annotations

import contextvars
import re
from typing import Any

import pybars._compiler as compiler

_pybars_resolve = compiler.resolve
_Scope = compiler.Scope
_strlist = compiler.strlist
_MISSING = object()
_HTML_SPECIAL = re.compile(r"[&\"'`<>]")

# set by install(): does the current render escape `{{x}}`?
_escaping = contextvars.ContextVar("template_escaping", default=True)

# path segments (as the generated code passes them) -> the names to walk,
# or () when the path needs pybars' own rules
_plans: dict[tuple[str, ...], tuple[str, ...]] = {}
MAX_PLANS = 4096


def install(escaping: contextvars.ContextVar[bool]) -> None:
    """Swap the faster functions into pybars; `escaping` decides, per render, whether
    `{{x}}` is HTML-escaped (pybars itself has no such switch)."""
    global _escaping
    _escaping = escaping
    compiler.escape = escape
    compiler.resolve = resolve
    compiler.prepare = prepare
    compiler.strlist.grow = grow
    compiler._pybars_["helpers"]["each"] = each


def html_escape(text: str) -> str:
    """Exactly the six characters and entities of pybars' (and Handlebars') escape.
    '&' goes first so the '&' of an inserted entity is never escaped again."""
    if _HTML_SPECIAL.search(text) is None:
        return text  # the common case: one regex search instead of six replaces
    return _entities(text)


def _entities(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
        .replace("`", "&#x60;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


def escape(text: str, *_: Any) -> str:
    """pybars' module-level `escape`, obeying the switch (only `prepare` calls it)."""
    return html_escape(text) if _escaping.get() else text


def prepare(value: Any, should_escape: bool) -> Any:
    """pybars' `prepare`: a value as output text (None -> "", booleans in lower case),
    escaped if asked and switched on; a strlist is helper output that is already safe.
    Tests for str, the commonest type, first."""
    kind = type(value)
    if kind is str:
        text = value
    elif value is None:
        return ""
    elif kind is _strlist:
        return value
    elif kind is bool:
        text = "true" if value else "false"
    else:
        text = str(value)
    if should_escape and _escaping.get() and _HTML_SPECIAL.search(text) is not None:
        return _entities(text)  # html_escape(), inlined: this runs for every {{x}}
    return text


def resolve(context: Any, *segments: str) -> Any:
    """pybars' `resolve(context, 'order', '', 'id')`, walking plain dicts directly.
    Anything else starts over in pybars' own `resolve`: the steps taken so far (dict
    lookups and attributes) have no side effects, so it reaches the same value."""
    names = _plans.get(segments)
    if names is None:
        names = _plan(segments)
    value = context
    for name in names:
        if value is None:
            return None
        if type(value) is _Scope and not value.overrides:
            value = value.context  # Scope.get of a plain name is pick(scope.context, name)
        if type(value) is not dict:
            return _pybars_resolve(context, *segments)
        found = value.get(name, _MISSING)
        # pybars' pick() on a missing key: a dict attribute of that name (`keys`...), else None
        value = getattr(value, name, None) if found is _MISSING else found
    return value if names else _pybars_resolve(context, *segments)


def _plan(segments: tuple[str, ...]) -> tuple[str, ...]:
    """The non-empty segments of a plain path (pybars skips empty ones), or () for
    a bare `this` or when a segment is `this` or `@data` (`@../index` even changes
    the segment after it), which only pybars' `resolve` handles."""
    names = tuple(segment for segment in segments if segment)
    if any(name.startswith("@") or name == "this" for name in names):
        names = ()
    if len(_plans) >= MAX_PLANS:
        _plans.clear()  # paths come from template sources; churning them must not grow this
    _plans[segments] = names
    return names


def grow(self: Any, thing: Any) -> None:
    """`strlist.grow`: append a string, flatten anything else; one call per nested
    list instead of one per fragment."""
    if type(thing) is str:
        self.append(thing)
        return
    for element in thing:
        if type(element) is str:
            self.append(element)
        else:
            self.grow(element)


def each(this: Any, options: dict[str, Any], context: Any) -> Any:
    """pybars' `{{#each}}` helper, without building a keyword dict for every item."""
    try:
        last_index = len(context) - 1
        if last_index < 0:
            raise IndexError()
    except (TypeError, IndexError):
        return options["inverse"](this)
    has_keys = hasattr(context, "keys")  # a mapping: iterate its keys, expose @key
    render, root = options["fn"], options["root"]
    result = _strlist()
    for index, item in enumerate(context):
        key, value = (item, context[item]) if has_keys else (None, item)
        scope = _Scope(value, this, root, None, index, key, index == 0, index == last_index)
        try:
            result.grow(render(scope))
        except TypeError:  # as pybars: a block that renders None, as {{^each}} can
            pass
    return result
