"""``${{ … }}`` expressions: CEL, compiled and checked at load time, evaluated in the workflow.

A string value may hold expressions. When the whole value is one expression the result keeps its
type (``${{ nodes.parse.output.pages }}`` is a list); inside a longer string each result is
interpolated as text. Expressions are CEL (the Common Expression Language) through the
``common-expression-language`` package: deterministic, side-effect free, no I/O.

Two determinism guards matter inside a Temporal workflow:

* CEL maps have no defined iteration order and this implementation's order changes from process
  to process, so map results are rebuilt with sorted keys, and plain paths such as
  ``nodes.parse.output.text`` are looked up directly (faster, and the value keeps its order).
  Iterating a map with ``map``/``filter`` has no defined order: use ``keys(m)`` (sorted) instead.
* ``${{ secrets.NAME }}`` is never evaluated here: it is left as text for the worker to resolve,
  so no secret reaches the workflow history.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from interpreter._cel import engine as cel
from interpreter.inputs import json_type
from interpreter.limits import MAX_EXPRESSION_CHARS, MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_TERMS
from interpreter.values import SCOPE_MARK, is_ref, ref_size

ROOT_NAMES = frozenset(
    {"inputs", "vars", "nodes", "item", "index", "run", "error", "failed_node", "secrets", "event"}
)
"""Names an expression may start from."""

_OPEN = "${{"
_CLOSE = "}}"
_COMPREHENSION_VARS = re.compile(
    r"\.\s*(?:map|filter|all|exists|exists_one)\s*\(\s*([A-Za-z_]\w*)\s*,"
    r"(?:\s*([A-Za-z_]\w*)\s*,)?"
)
_STRING_LITERAL = re.compile(r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_ROOT_MEMBER = re.compile(rf"(?<![.\w])(inputs|vars|nodes)\s*\.\s*({_IDENT})")
_ROOT_INDEX = re.compile(r"""(?<![.\w])(inputs|vars|nodes)\s*\[\s*(["'])([^"']*)\2\s*\]""")
_NODES_ROOT = re.compile(r"(?<![.\w])nodes\b")
_PATH = re.compile(
    rf"""^\s*({_IDENT})((?:\s*\.\s*{_IDENT}|\s*\[\s*(?:"[^"]*"|'[^']*'|-?\d+)\s*\])*)\s*$"""
)
_PATH_STEP = re.compile(rf"""\.\s*({_IDENT})|\[\s*(?:"([^"]*)"|'([^']*)'|(-?\d+))\s*\]""")
_ERROR_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*?)(?:\n|$)")
_SECRET_ONLY = re.compile(rf"^\s*secrets\s*\.\s*{_IDENT}\s*$")


class ExpressionError(Exception):
    """An expression that does not compile, refers to something unknown, or fails to evaluate."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        """Character offset of the problem inside the string value that holds the expression."""


# --- functions beyond the CEL core (the strings/lists/math extensions most users expect) ----


def _keys(m: Mapping[str, Any]) -> list[Any]:
    return sorted(m)


def _values(m: Mapping[str, Any]) -> list[Any]:
    return [m[k] for k in sorted(m)]


def _max(*args: Any) -> Any:
    return max(args[0]) if len(args) == 1 else max(args)


def _min(*args: Any) -> Any:
    return min(args[0]) if len(args) == 1 else min(args)


def _split(s: str, sep: str, limit: int = -1) -> list[str]:
    return s.split(sep, limit if limit >= 0 else -1)


def _substring(s: str, start: int, end: int | None = None) -> str:
    return s[start:] if end is None else s[start:end]


def _distinct(items: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _flatten(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out.extend(item if isinstance(item, list) else [item])
    return out


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise ValueError(f"bool() takes true or false, got {value!r}")


def _round(x: float, digits: int = 0) -> float:
    return float(round(x, digits))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "keys": _keys,
    "values": _values,
    "sort": sorted,
    "distinct": _distinct,
    "flatten": _flatten,
    "reverse": lambda items: list(reversed(items)),
    "sum": lambda items: sum(items),
    "max": _max,
    "min": _min,
    "abs": abs,
    "ceil": lambda x: math.ceil(x),
    "floor": lambda x: math.floor(x),
    "round": _round,
    "lowerAscii": lambda s: s.lower(),
    "upperAscii": lambda s: s.upper(),
    "trim": lambda s: s.strip(),
    "split": _split,
    "join": lambda items, sep="": sep.join(str(i) for i in items),
    "replace": lambda s, old, new: s.replace(old, new),
    "indexOf": lambda s, sub: s.find(sub),
    "lastIndexOf": lambda s, sub: s.rfind(sub),
    "substring": _substring,
    "charAt": lambda s, i: s[i] if 0 <= i < len(s) else "",
    "matches": lambda s, pattern: re.search(pattern, s) is not None,
    "bool": _bool,
    "toJson": lambda v: json.dumps(v, sort_keys=True),
    "fromJson": json.loads,
}
"""Pure helper functions available in every expression, as functions or methods."""

_CORE_FUNCTIONS = frozenset(
    {
        "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double",
        "string", "bytes", "bool", "timestamp", "duration", "type", "dyn", "has", "all",
        "exists", "exists_one", "map", "filter", "getDate", "getDayOfMonth", "getDayOfWeek",
        "getDayOfYear", "getFullYear", "getHours", "getMilliseconds", "getMinutes", "getMonth",
        "getSeconds", "hasValue", "or", "orValue", "value",
    }
)  # fmt: skip
KNOWN_FUNCTIONS = _CORE_FUNCTIONS | frozenset(FUNCTIONS)


# --- compiled forms ---------------------------------------------------------------------------


@dataclass(frozen=True)
class References:
    """What an expression reads, found at compile time."""

    roots: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()
    inputs: frozenset[str] = frozenset()
    vars: frozenset[str] = frozenset()
    all_nodes: bool = False
    """True when a node is chosen at run time (``nodes[x]``): every node is in scope."""

    def __or__(self, other: References) -> References:
        return References(
            self.roots | other.roots,
            self.nodes | other.nodes,
            self.inputs | other.inputs,
            self.vars | other.vars,
            self.all_nodes or other.all_nodes,
        )


@dataclass(frozen=True)
class Expression:
    """One ``${{ … }}``: its source, where it sits in its string, and its compiled program."""

    source: str
    offset: int
    references: References
    program: Any = field(repr=False, compare=False)
    path: tuple[str | int, ...] | None = None
    """The steps of a plain path (``nodes.a.output.text``), looked up without CEL."""
    secret: bool = False


@dataclass(frozen=True)
class Template:
    """A string holding expressions: literal text and expressions in order."""

    parts: tuple[str | Expression, ...]

    @property
    def whole(self) -> Expression | None:
        """The expression when the string is exactly one expression (its type is kept)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Expression):
            return self.parts[0]
        return None


def split_template(text: str) -> list[tuple[str, int, bool]]:
    """Split a string into ``(piece, offset, is_expression)``; expression pieces exclude the
    braces. Quotes inside an expression are honoured, so ``"}}"`` in a literal is fine."""
    pieces: list[tuple[str, int, bool]] = []
    pos = 0
    while True:
        start = text.find(_OPEN, pos)
        if start < 0:
            break
        if start > pos:
            pieces.append((text[pos:start], pos, False))
        inner_start = start + len(_OPEN)
        i, quote = inner_start, ""
        while i < len(text):
            ch = text[i]
            if quote:
                if ch == "\\":
                    i += 1
                elif ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif text.startswith(_CLOSE, i):
                break
            i += 1
        else:
            raise ExpressionError("expression is not closed: missing '}}'", start)
        pieces.append((text[inner_start:i], inner_start, True))
        pos = i + len(_CLOSE)
    if pos < len(text) or not pieces:
        pieces.append((text[pos:], pos, False))
    return pieces


def has_expression(text: str) -> bool:
    """Whether a string holds a ``${{`` at all (cheap pre-check)."""
    return _OPEN in text


def compile_expression(source: str, offset: int = 0) -> Expression:
    """Compile one expression; raise :class:`ExpressionError` with the offset of the problem.

    Compiled forms are cached by source text: a definition is compiled when it is validated
    and again when it is planned, and many nodes share expressions (``${{ inputs.document }}``).
    """
    if not source.strip():
        raise ExpressionError("empty expression", offset)
    if len(source) > MAX_EXPRESSION_CHARS:  # checked before the cache: never a cache key
        raise ExpressionError(
            f"expression too long: {len(source):,} characters (at most "
            f"{MAX_EXPRESSION_CHARS:,}); compute parts of it in earlier nodes or vars",
            offset + len(source) - len(source.lstrip()),
        )
    compiled = _compile_source(source)
    if isinstance(compiled, ExpressionError):
        raise ExpressionError(compiled.message, offset + compiled.offset)
    return replace(compiled, offset=offset + len(source) - len(source.lstrip()))


@lru_cache(maxsize=32_768)
def _compile_source(source: str) -> Expression | ExpressionError:
    """The expression compiled at offset 0, or the error it gives (offsets relative to it)."""
    too_big = _beyond_limits(source)
    if too_big is not None:
        return too_big
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as e:
        return _compile_error(source, 0, str(e))
    at = len(source) - len(source.lstrip())  # point at the expression, not the blank
    variables = set(program.variables())
    for match in _COMPREHENSION_VARS.finditer(source):
        variables.difference_update(g for g in match.groups() if g)
    unknown = sorted(variables - ROOT_NAMES)
    if unknown:
        return ExpressionError(
            f"unknown name {unknown[0]!r} in expression `{_shown(source)}` "
            f"(names start from {', '.join(sorted(ROOT_NAMES - {'secrets'}))})",
            at,
        )
    for function in program.functions():
        if function[0].isalpha() and function not in KNOWN_FUNCTIONS:
            return ExpressionError(
                f"unknown function {function!r} in expression `{_shown(source)}`", at
            )
    refs = _references(source, frozenset(variables))
    secret = bool(_SECRET_ONLY.match(source))
    if "secrets" in refs.roots and not secret:
        return ExpressionError(
            "a secret can only be used on its own, as ${{ secrets.NAME }}: "
            "it is resolved on the worker and never enters the workflow",
            at,
        )
    return Expression(source, 0, refs, program, _path(source), secret)


def compile_string(text: str) -> Template | str:
    """Compile a string value: a :class:`Template` if it holds expressions, else the string."""
    if not has_expression(text):
        return text
    parts: list[str | Expression] = []
    for piece, offset, is_expr in split_template(text):
        if is_expr:
            parts.append(compile_expression(piece, offset))
        elif piece:
            parts.append(piece)
    return Template(tuple(parts))


def compile_value(value: Any) -> Any:
    """Compile every string of a JSON-like value; other values are kept as they are."""
    if isinstance(value, str):
        return compile_string(value)
    if isinstance(value, dict):
        return {k: compile_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compile_value(v) for v in value]
    return value


def iter_expressions(compiled: Any) -> Iterable[Expression]:
    """Every expression of a compiled value."""
    if isinstance(compiled, Template):
        for part in compiled.parts:
            if isinstance(part, Expression):
                yield part
    elif isinstance(compiled, dict):
        for v in compiled.values():
            yield from iter_expressions(v)
    elif isinstance(compiled, list):
        for v in compiled:
            yield from iter_expressions(v)


def references_of(compiled: Any) -> References:
    """Everything a compiled value reads."""
    refs = References()
    for expression in iter_expressions(compiled):
        refs = refs | expression.references
    return refs


# --- evaluation -------------------------------------------------------------------------------


def evaluate(compiled: Any, scope: Mapping[str, Any]) -> Any:
    """The value of a compiled value in ``scope`` (a mapping of root names to values)."""
    if isinstance(compiled, Template):
        whole = compiled.whole
        if whole is not None:
            return evaluate_expression(whole, scope)
        return "".join(
            part if isinstance(part, str) else as_text(evaluate_expression(part, scope))
            for part in compiled.parts
        )
    if isinstance(compiled, dict):
        return {k: evaluate(v, scope) for k, v in compiled.items()}
    if isinstance(compiled, list):
        return [evaluate(v, scope) for v in compiled]
    return compiled


def evaluate_expression(expression: Expression, scope: Mapping[str, Any]) -> Any:
    """Evaluate one expression; raise :class:`ExpressionError` on failure."""
    if expression.secret:
        return "${{" + expression.source + "}}"
    if expression.path is not None:
        return _lookup(expression, scope)
    stored = scope.get(SCOPE_MARK)
    if stored and (expression.references.all_nodes or expression.references.nodes & stored):
        names = ", ".join(sorted(expression.references.nodes & stored) or sorted(stored))
        raise ExpressionError(
            f"expression `{_shown(expression.source)}` reads the output of {names}, which holds "
            "a large value stored by reference (not in the workflow): read it in a node "
            "(code.python), or pass it on with a plain path",
            expression.offset,
        )
    context = cel.Context(
        variables={k: v for k, v in scope.items() if k in expression.references.roots},
        functions=FUNCTIONS,
    )
    try:
        result = expression.program.execute(context)
    except Exception as e:  # the binding raises KeyError, TypeError, ValueError, RuntimeError…
        raise ExpressionError(
            f"expression `{_shown(expression.source)}` failed: {_describe(e)}", expression.offset
        ) from None
    return to_json(result)


def as_text(value: Any) -> str:
    """How a value reads when interpolated into a longer string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, sort_keys=True, default=str)


def truthy(value: Any) -> bool:
    """How ``when`` reads a value: booleans as they are, null/empty/zero/"false" as false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "null")
    return bool(value)


def to_json(value: Any) -> Any:
    """A CEL result as plain JSON with sorted map keys (CEL map order is not stable)."""
    if isinstance(value, dict):
        return {str(k): to_json(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


# --- internals --------------------------------------------------------------------------------

# What the expression scan looks at: string openings (with their r/b prefixes), operators
# (two-character ones first; a dot before a digit is a decimal point), brackets and `in`.
_SCAN = re.compile(
    r"""(?<!\w)(?P<prefix>[rRbB]{1,2})?(?P<quote>\"\"\"|'''|"|')"""
    r"|&&|\|\||[=!<>]=|[-+*/%<>!?:\[\](){}]|\.(?!\d)|\bin\b"
)
_OPENING = frozenset("([{")
_CLOSING = frozenset(")]}")
_NOT_TERMS = frozenset("{)]}")
_STRING_REST = {
    (quote, raw): re.compile(
        ("[^{q}]*" if raw else r"(?:[^{q}\\]|\\.)*").format(q=quote) + quote
        if len(quote) == 1
        else (".*?" if raw else r"(?:[^\\]|\\.)*?") + quote,
        re.DOTALL,
    )
    for quote in ('"', "'", '"""', "'''")
    for raw in (False, True)
}


def _beyond_limits(source: str) -> ExpressionError | None:
    """An error if ``source`` is too long, has too many operators or nests too deeply.

    The CEL parser recurses once per operator and per bracket, on the C stack: about 20,000
    ``+`` terms or field accesses overflow it and the process dies with SIGSEGV (a worker, the
    API, ``tideflow validate``). So an expression is measured here, in one linear pass, before
    it reaches the parser. Text inside string literals is skipped (raw and triple-quoted too).
    """
    if len(source) > MAX_EXPRESSION_CHARS:
        return ExpressionError(f"expression too long: over {MAX_EXPRESSION_CHARS:,} characters")
    terms = depth = pos = 0
    while (found := _SCAN.search(source, pos)) is not None:
        pos = found.end()
        quote = found.group("quote")
        if quote is not None:
            raw = "r" in (found.group("prefix") or "").lower()
            rest = _STRING_REST[quote, raw].match(source, pos)
            pos = rest.end() if rest is not None else len(source)
            continue
        token = found.group()
        if token in _OPENING:
            depth += 1
            if depth > MAX_EXPRESSION_DEPTH:
                return ExpressionError(
                    f"expression nested too deeply: more than {MAX_EXPRESSION_DEPTH} "
                    "brackets or parentheses inside one another",
                    found.start(),
                )
        elif token in _CLOSING:
            depth = max(depth - 1, 0)
        if token not in _NOT_TERMS:
            terms += 1
            if terms > MAX_EXPRESSION_TERMS:
                return ExpressionError(
                    f"expression too complex: more than {MAX_EXPRESSION_TERMS} operators; "
                    "split it over earlier nodes or vars",
                    found.start(),
                )
    return None


def _shown(source: str) -> str:
    """An expression as quoted in a message: on one line, and cut short when long."""
    text = _LINE_BREAKS.sub(" ", source.strip())
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


_LINE_BREAKS = re.compile(r"\s*[\r\n]\s*")
_SHOWN_CHARS = 120


def _compile_error(source: str, offset: int, message: str) -> ExpressionError:
    found = _ERROR_POSITION.search(message)
    if found:
        line, col, what = int(found.group(1)), int(found.group(2)), found.group(3)
        lines = source.split("\n")
        local = sum(len(x) + 1 for x in lines[: line - 1]) + col
        return ExpressionError(
            f"bad expression `{_shown(source)}`: {what.strip()}", offset + min(local, len(source))
        )
    return ExpressionError(f"bad expression `{_shown(source)}`: {message.strip()}", offset)


def _references(source: str, roots: frozenset[str]) -> References:
    blanked = _STRING_LITERAL.sub(lambda m: '"' + " " * (len(m.group(0)) - 2) + '"', source)
    found: dict[str, set[str]] = {"inputs": set(), "vars": set(), "nodes": set()}
    for match in _ROOT_MEMBER.finditer(blanked):
        found[match.group(1)].add(match.group(2))
    for match in _ROOT_INDEX.finditer(source):
        found[match.group(1)].add(match.group(3))
    # A node chosen at run time (nodes[x], or `nodes` used as a whole) puts every node in scope.
    root_uses = len(_NODES_ROOT.findall(blanked))
    static_uses = sum(1 for m in _ROOT_MEMBER.finditer(blanked) if m.group(1) == "nodes") + sum(
        1 for m in _ROOT_INDEX.finditer(source) if m.group(1) == "nodes"
    )
    return References(
        roots=roots,
        nodes=frozenset(found["nodes"]),
        inputs=frozenset(found["inputs"]),
        vars=frozenset(found["vars"]),
        all_nodes="nodes" in roots and root_uses > static_uses,
    )


def _path(source: str) -> tuple[str | int, ...] | None:
    match = _PATH.match(source)
    if not match or match.group(1) not in ROOT_NAMES:
        return None  # `true`, `null` and other literals are CEL's to evaluate
    steps: list[str | int] = [match.group(1)]
    for step in _PATH_STEP.finditer(match.group(2)):
        name, dq, sq, number = step.groups()
        if name is not None:
            steps.append(name)
        elif number is not None:
            steps.append(int(number))
        else:
            steps.append(dq if dq is not None else sq)
    return tuple(steps)


def _lookup(expression: Expression, scope: Mapping[str, Any]) -> Any:
    assert expression.path is not None
    value: Any = scope
    walked = ""
    for step in expression.path:
        if is_ref(value):
            raise _path_error(
                expression,
                walked,
                f"is a large value stored by reference ({ref_size(value):,} bytes, not in the "
                "workflow): pass it to a node whole and read it there",
            )
        if isinstance(step, int):
            if not isinstance(value, list):
                raise _path_error(expression, walked, f"is {_kind(value)}, not a list")
            if not -len(value) <= step < len(value):
                raise _path_error(expression, walked, f"has {len(value)} items, no [{step}]")
            value = value[step]
            walked += f"[{step}]"
            continue
        if not isinstance(value, Mapping):
            raise _path_error(expression, walked, f"is {_kind(value)}, it has no field {step!r}")
        if step not in value:
            if walked:
                raise _path_error(expression, walked, f"has no field {step!r}")
            raise ExpressionError(
                f"expression `{_shown(expression.source)}` failed: {step!r} is not defined here",
                expression.offset,
            )
        value = value[step]
        walked += f".{step}" if walked else step
    return value


def _path_error(expression: Expression, walked: str, what: str) -> ExpressionError:
    return ExpressionError(
        f"expression `{_shown(expression.source)}` failed: {walked} {what}", expression.offset
    )


def _kind(value: Any) -> str:
    kind = {"array": "list"}.get(json_type(value), json_type(value))
    return kind if kind == "null" else ("an " if kind[0] in "aeiou" else "a ") + kind


def _describe(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"no such key {error.args[0]!r}" if error.args else "no such key"
    text = str(error).split(". Check")[0]
    return text or type(error).__name__
