"""Handlebars templates (pybars3): validation, a compile cache and the spec's helpers.

Escaping: HTML bodies escape variables (`{{name}}`) as Handlebars does; subjects,
text bodies and SMS/push text do not (a text email must say "Tom & Jerry", not
"Tom &amp; Jerry"). pybars3 has no per-render switch, so its render-time
functions are replaced once (app.template_runtime, which also makes them faster)
by ones that consult a context variable; the switch is set only around a render
and is safe under asyncio.

pybars3 silently renders some broken templates as "" (an unclosed `{{#if}}`, a
stray `{{`), so `validate()` checks block balance itself and reports the line
and column, before the compiler's own errors.
"""

from __future__ import annotations

import contextvars
import functools
import linecache
import re
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import nh3

from app.errors import InvalidInput

_escaping: contextvars.ContextVar[bool] = contextvars.ContextVar("escaping", default=True)


@functools.cache
def _pybars() -> Any:
    """Import pybars on first use (building its grammar costs ~1 s), with the faster
    render-time functions of app.template_runtime installed, which also make escaping
    switchable: its generated code calls them at render time."""
    import pybars._compiler as compiler

    from app import template_runtime

    template_runtime.install(escaping=_escaping)
    return compiler


def warm_up() -> None:
    """Build pybars' grammar now (start-up) rather than on the first request."""
    _compiler()


def safe(text: str) -> Any:
    """Mark helper output as already-safe HTML (pybars never escapes a strlist)."""
    return _pybars().strlist([text])


# --------------------------------------------------------------------------- helpers

CURRENCY_SYMBOLS = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "INR": "₹",
    "CAD": "CA$",
    "AUD": "A$",
    "CHF": "CHF ",
    "CNY": "CN¥",
    "BRL": "R$",
}
ZERO_DECIMAL = {"JPY", "KRW", "VND", "CLP"}
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _memoized(*kinds: type) -> Callable[[Callable[..., str]], Callable[..., str]]:
    """Cache a (value, option) -> text formatter for values of exactly these types.

    Why: the formatting helpers (Decimal arithmetic, ISO date parsing) were most of
    a cached render, and notifications repeat the same prices and dates. Exact
    types only, as 1, 1.0 and True are equal keys that may format differently
    (typed=True keeps int and float apart; bools, subclasses and unhashable values
    are formatted on every call)."""

    def decorate(formatter: Callable[..., str]) -> Callable[..., str]:
        cached = functools.lru_cache(maxsize=4096, typed=True)(formatter)

        @functools.wraps(formatter)
        def format_value(value: Any, option: str) -> str:
            if type(value) in kinds:
                return cached(value, option)
            return formatter(value, option)

        return format_value

    return decorate


def _currency(_this: Any, value: Any, currency: Any = "USD", *_: Any) -> str:
    """{{currency total 'EUR'}} -> €79.98 (en-US style, like Intl.NumberFormat)."""
    return _currency_text(value, str(currency or "USD").upper())


@_memoized(str, int, float)
def _currency_text(value: Any, code: str) -> str:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    digits = 0 if code in ZERO_DECIMAL else 2
    sign = "-" if amount < 0 else ""
    formatted = f"{abs(amount):,.{digits}f}"
    symbol = CURRENCY_SYMBOLS.get(code, code + " ")
    return f"{sign}{symbol}{formatted}"


def _to_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _format_date(_this: Any, value: Any, style: Any = "long", *_: Any) -> str:
    """{{formatDate order_date 'medium'}}: short 1/5/26, medium Jan 5, 2026, long, full."""
    return _date_text(value, str(style or "long"))


@_memoized(str)  # not timestamps: they are shown in the local time zone, which may change
def _date_text(value: Any, style: str) -> str:
    when = _to_datetime(value)
    if when is None:
        return str(value)
    month = MONTHS[when.month - 1]
    if style == "short":
        return f"{when.month}/{when.day}/{when.year % 100:02d}"
    if style == "medium":
        return f"{month[:3]} {when.day}, {when.year}"
    if style == "full":
        return f"{DAYS[when.weekday()]}, {month} {when.day}, {when.year}"
    return f"{month} {when.day}, {when.year}"


def _pluralize(_this: Any, count: Any, singular: Any, plural: Any = None, *_: Any) -> str:
    try:
        one = float(count) == 1
    except (TypeError, ValueError):
        one = False
    return str(singular) if one else str(plural if plural is not None else f"{singular}s")


def _url_encode(_this: Any, value: Any, *_: Any) -> str:
    """encodeURIComponent semantics."""
    return _encode_uri_component(str(value if value is not None else ""))


@functools.lru_cache(maxsize=4096)
def _encode_uri_component(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.!~*'()")


def _sanitized_html(_this: Any, value: Any, *_: Any) -> Any:
    """{{{sanitizedHtml body}}}: whitelisted HTML via nh3 (ammonia), never escaped again."""
    return safe(nh3.clean(str(value if value is not None else "")))


def _default(_this: Any, value: Any, fallback: Any = "", *_: Any) -> Any:
    return fallback if value in (None, "", [], {}) else value


def _eq(_this: Any, left: Any, right: Any, *_: Any) -> bool:
    return bool(left == right or str(left) == str(right))


HELPERS: dict[str, Callable[..., Any]] = {
    "currency": _currency,
    "formatDate": _format_date,
    "pluralize": _pluralize,
    "urlEncode": _url_encode,
    "sanitizedHtml": _sanitized_html,
    "uppercase": lambda _this, value="", *_: str(value).upper(),
    "lowercase": lambda _this, value="", *_: str(value).lower(),
    "default": _default,
    "eq": _eq,
}


# --------------------------------------------------------------------------- validation

_TOKEN = re.compile(r"\{\{(?P<body>.*?)\}\}", re.DOTALL)
_BUILTIN_BLOCKS = {"if", "unless", "each", "with"}


def _position(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return line, column


def validate(source: str, field: str = "template") -> None:
    """Raise InvalidInput with the position of the first structural error."""
    if source in _compiled or "{{" not in source:
        return  # compiled before, so valid; or plain text
    stack: list[tuple[str, int]] = []
    end = 0
    for match in _TOKEN.finditer(source):
        body = match.group("body").strip("{}~ \t\r\n")
        if body.startswith("!"):
            end = match.end()
            continue
        if body.startswith(("#", "^")) and len(body) > 1:
            name = body[1:].split()[0] if body[1:].split() else ""
            stack.append((name, match.start()))
        elif body.startswith("/"):
            name = body[1:].strip()
            if not stack:
                _fail(source, match.start(), field, f"{{{{/{name}}}}} closes a block never opened")
            opened, _ = stack.pop()
            if opened != name:
                _fail(
                    source,
                    match.start(),
                    field,
                    f"{{{{/{name}}}}} does not match the open {{{{#{opened}}}}}",
                )
        end = match.end()
    stray = source.find("{{", end)
    if stray != -1:
        _fail(source, stray, field, "'{{' is never closed with '}}'")
    if stack:
        name, offset = stack[-1]
        _fail(source, offset, field, f"block {{{{#{name}}}}} is never closed")
    try:
        compile_source(source)
    except Exception as exc:  # pybars raises PybarsError and bare parse errors
        raise InvalidInput(f"{field}: {exc}", details={"field": field}) from None


def _fail(source: str, offset: int, field: str, message: str) -> None:
    line, column = _position(source, offset)
    raise InvalidInput(
        f"{field}: line {line}, column {column}: {message}",
        details={"field": field, "line": line, "column": column},
    )


# --------------------------------------------------------------------------- compile cache


@functools.cache
def _compiler() -> Any:
    return _pybars().Compiler()


Compiled = Callable[..., Any]
_compiled: dict[str, Compiled] = {}
MAX_COMPILED = 2048


def compile_source(source: str) -> Compiled:
    """Compile once per distinct source (compiling costs ~15 ms, rendering ~35 us)."""
    found = _compiled.get(source)
    if found is None:
        if len(_compiled) >= MAX_COMPILED:
            _evict(next(iter(_compiled)))
        found = _compiler().compile(source)
        _compiled[source] = found
    return found


def _evict(source: str) -> None:
    """Forget a compiled template. pybars registers each one as a module (sys.modules, and
    its source in linecache); without dropping those, evicting freed nothing and a churn
    of distinct sources grew the process without bound."""
    template = _compiled.pop(source)
    name = getattr(template, "__module__", None)
    if name and name.startswith("pybars._templates.") and sys.modules.pop(name, None):
        filename = name.replace("pybars.", "").replace(".", "/") + ".py"
        linecache.cache.pop(filename, None)


def render(source: str | None, variables: Mapping[str, Any], *, html: bool) -> str | None:
    """Render one template string; `html` decides whether variables are escaped."""
    if source is None:
        return None
    if "{{" not in source:
        return source  # nothing to substitute
    template = compile_source(source)
    token = _escaping.set(html)
    try:
        return str(template(dict(variables), helpers=HELPERS))
    except Exception as exc:
        raise InvalidInput(f"template could not be rendered: {exc}") from None
    finally:
        _escaping.reset(token)


# --------------------------------------------------------------------------- variables


@dataclass(frozen=True)
class VariableSpec:
    name: str
    required: bool = True
    default: Any = None


def parse_variable_specs(raw: Any) -> list[VariableSpec]:
    """template.variables: ["name", "optional?", {"name": ..., "required": false}]."""
    specs: list[VariableSpec] = []
    for item in raw or []:
        if isinstance(item, str):
            optional = item.endswith("?")
            specs.append(VariableSpec(item.rstrip("?"), required=not optional))
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            specs.append(
                VariableSpec(item["name"], bool(item.get("required", True)), item.get("default"))
            )
    return specs


MAX_VARIABLE_DEPTH = 6


def check_variables(variables: Mapping[str, Any], specs: list[VariableSpec]) -> dict[str, Any]:
    """Fill defaults, reject missing required ones (naming them) and odd types."""
    _check_types(variables, "variables", 0)
    merged = dict(variables)
    missing = []
    for spec in specs:
        if merged.get(spec.name) in (None, ""):
            if spec.default is not None:
                merged[spec.name] = spec.default
            elif spec.required:
                missing.append(spec.name)
    if missing:
        raise InvalidInput(
            f"missing required template variables: {', '.join(missing)}",
            details={"missing": missing},
        )
    return merged


def _check_types(value: Any, path: str, depth: int) -> None:
    if depth > MAX_VARIABLE_DEPTH:
        raise InvalidInput(f"{path}: nested too deeply (max {MAX_VARIABLE_DEPTH})")
    if isinstance(value, dict):
        for key, inner in value.items():
            _check_types(inner, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _check_types(inner, f"{path}[{index}]", depth + 1)
    elif not isinstance(value, str | int | float | bool) and value is not None:
        raise InvalidInput(f"{path}: unsupported type {type(value).__name__}")


def single_line(text: str | None) -> str | None:
    """Subjects become headers: no CR/LF may survive rendering (header injection)."""
    if text is None:
        return None
    return re.sub(r"[\r\n\x00]+", " ", text).strip()
