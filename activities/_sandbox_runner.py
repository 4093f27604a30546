"""The child process of ``code.python``: runs one piece of user code under RestrictedPython.

Started by :mod:`activities.code` as ``python -I -S -B _sandbox_runner.py LIMITS`` and never
imported by the worker. It only needs the standard library and RestrictedPython (whose folder
LIMITS names, since ``-S`` skips site-packages). It lowers its own resource limits first (CPU
seconds, address space, open files, no core files, no new processes, no file writes), then reads
one JSON request from stdin, ``{"code": str, "scope": {...}}``, and writes one JSON response to
stdout:

- ``{"ok": true, "result": <JSON>, "logs": [str]}``
- ``{"ok": false, "kind": K, "message": str, "line": int | null, "logs": [str]}`` where K is
  ``syntax`` (does not parse), ``rejected`` (the sandbox refuses it before running: private
  names, exec/eval, imports of other modules), ``blocked`` (a refused operation at run time),
  ``error`` (the code raised; ``type`` names the exception), ``memory`` (the address-space limit
  was hit) or ``output`` (the return value is not JSON).

Running out of CPU time kills the process with SIGXCPU; the parent reports it.
"""

from __future__ import annotations

import ast
import copy
import importlib
import json
import math
import operator
import resource
import sys
import textwrap
import types
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

FILENAME = "<code>"
"""The file name of user code in tracebacks: frames with it are the user's."""
FUNCTION = "tideflow_code"

MODULES = ("json", "math", "datetime", "re", "decimal", "statistics")
"""The modules user code can use, pre-imported under their names or through ``import``."""

MAX_LOG_CHARS = 64 * 1024
"""Printed text kept per run; the rest is dropped with a marker."""


class SandboxViolation(Exception):
    """User code tried something code nodes may not do."""


# --------------------------------------------------------------------------------------------
# Limits


def _apply_limits(cpu_seconds: int, memory_bytes: int, max_open_files: int) -> None:
    # The hard CPU limit is one second above the soft one: SIGXCPU at the soft limit kills the
    # process (its default action), SIGKILL at the hard one catches a handler that survives.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max_open_files, max_open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # No regular file may grow (stdout and stdin are pipes, which this does not limit).
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    # No new processes or threads; root ignores this, the code has no way to fork anyway.
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))


# --------------------------------------------------------------------------------------------
# What user code sees


class Record(dict[str, Any]):
    """A dict whose keys also read as attributes: ``nodes.parse.output`` is
    ``nodes["parse"]["output"]``. Dict methods win over keys (``record["items"]``)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            keys = ", ".join(sorted(map(str, self))) or "none"
            raise AttributeError(f"no key {name!r} (keys: {keys})") from None


class _ModuleView(types.SimpleNamespace):
    """The public, non-module attributes of an allowed module.

    The real module object would lead elsewhere: ``statistics.sys.modules["os"]``,
    ``json.codecs.open``. A view holds only the names of ``__all__`` (or the public names) that
    are not themselves modules.
    """

    def __getattr__(self, name: str) -> Any:
        module = self.__dict__.get("__view_name__", "?")
        raise AttributeError(f"module {module!r} has no attribute {name!r} in code nodes")

    def __repr__(self) -> str:
        return f"<module {self.__dict__.get('__view_name__', '?')!r} (sandboxed)>"


_views: dict[str, _ModuleView] = {}


def _module(name: str) -> _ModuleView:
    view = _views.get(name)
    if view is None:
        module = importlib.import_module(name)
        names = getattr(module, "__all__", None) or [n for n in dir(module) if n[:1] != "_"]
        attrs = {
            n: getattr(module, n)
            for n in names
            if n[:1] != "_" and not isinstance(getattr(module, n, None), types.ModuleType)
        }
        view = _views[name] = _ModuleView(**attrs)
        view.__dict__["__view_name__"] = name
    return view


INTERNAL_MODULES = ("time", "_strptime")
"""Modules the allowed modules' C code imports by itself: ``datetime`` imports ``time`` for
``today()``, ``strftime`` and ``timetuple`` and ``_strptime`` for ``strptime``. C code imports
through the ``__import__`` of the calling frame's builtins, here user code's :func:`_import`, so
that is where they must be served. They are imported before the limits are applied and handed
only to that C code: user code cannot name them (``import time`` is refused when the code is
compiled, and ``__import__`` and ``__builtins__`` are private names)."""


def _import(
    name: str,
    globals: Any = None,
    locals: Any = None,
    fromlist: Iterable[str] | None = (),
    level: int = 0,
) -> Any:
    if level == 0 and name in MODULES:
        return _module(name)
    if level == 0 and name in INTERNAL_MODULES and name in sys.modules:
        return sys.modules[name]
    raise SandboxViolation(f"import of {name!r} is blocked; code nodes can import {_modules()}")


def _modules() -> str:
    return ", ".join(MODULES)


def _guard_name(obj: Any, name: Any) -> str:
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    if name.startswith("_"):
        raise SandboxViolation(
            f"access to the attribute {name!r} is blocked (names starting with '_' are private)"
        )
    if name in _INSPECT_ATTRIBUTES:
        raise SandboxViolation(
            f"access to the attribute {name!r} is blocked (it exposes interpreter internals)"
        )
    if name in ("format", "format_map") and (
        isinstance(obj, str) or (isinstance(obj, type) and issubclass(obj, str))
    ):
        raise SandboxViolation(
            f"str.{name}() is blocked (its fields can reach private attributes); use an f-string"
        )
    return name


def _getattr(obj: Any, name: Any, *default: Any) -> Any:
    return getattr(obj, _guard_name(obj, name), *default)


def _hasattr(obj: Any, name: Any) -> bool:
    return hasattr(obj, _guard_name(obj, name))


def _getitem(obj: Any, key: Any) -> Any:
    return obj[key]


class _ReadOnly:
    """What ``_write_`` hands back for objects other than dicts and lists."""

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def _refuse(self, *args: Any) -> NoReturn:
        target = object.__getattribute__(self, "_target")
        kind = "module" if isinstance(target, _ModuleView) else type(target).__name__
        raise SandboxViolation(
            f"changing an object of type {kind} is blocked; code nodes may change only dicts, "
            "lists and objects of their own classes"
        )

    __setattr__ = __delattr__ = __setitem__ = __delitem__ = _refuse


class _UserClass(type):
    """The metaclass of classes defined in user code, so their instances can be changed."""


def _write(obj: Any) -> Any:
    """What ``x[k] = v`` and ``x.a = v`` may change: dicts, lists, instances of the user's own
    classes and decimal contexts (``ctx.prec = 50``); anything else is read-only."""
    if isinstance(obj, (dict, list)) or isinstance(type(obj), _UserClass):
        return obj
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(obj, decimal.Context):
        return obj
    return _ReadOnly(obj)


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    return _INPLACE[op](target, value)


def _apply(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)


class _Log:
    """The text ``print`` wrote, up to MAX_LOG_CHARS."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.truncated = False

    def write(self, text: str) -> None:
        room = MAX_LOG_CHARS - self.size
        if len(text) > room:
            text, self.truncated = text[:room], True
        if text:
            self.parts.append(text)
            self.size += len(text)

    def lines(self) -> list[str]:
        lines = "".join(self.parts).splitlines()
        if self.truncated:
            lines.append(f"[printed output cut at {MAX_LOG_CHARS} characters]")
        return lines


_log = _Log()


class _Printer:
    """RestrictedPython turns ``print(...)`` into ``_print_(_getattr_)._call_print(...)``."""

    def __init__(self, _getattr_: Any = None) -> None:
        self.start = _log.size

    def _call_print(
        self, *objects: Any, sep: str | None = " ", end: str | None = "\n", **_: Any
    ) -> None:
        _log.write((" " if sep is None else sep).join(map(str, objects)))
        _log.write("\n" if end is None else end)

    def __call__(self) -> str:
        # The `printed` name: what this function printed so far.
        return "".join(_log.parts)[self.start :]


def _blocked(name: str, why: str) -> Callable[..., NoReturn]:
    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise SandboxViolation(f"{name}() is blocked: {why}")

    refuse.__name__ = name
    return refuse


def _type(obj: Any) -> type:
    """``type(x)``; the three-argument form (making classes) is not offered."""
    return type(obj)


_NO_IO = "code nodes have no file, network or process access"
_NO_CODE = "code nodes cannot compile or run other code"
_NO_INTROSPECTION = "code nodes cannot inspect the interpreter"

# The builtins user code gets as they are (more below, wrapped or blocked).
_SAFE_BUILTINS = (  # noqa: SIM905 (a word list reads better than sixty lines)
    "abs all any ascii bin bool bytes callable chr complex dict divmod enumerate filter float "
    "format frozenset hash hex int isinstance issubclass iter len list map max min next oct ord "
    "pow range repr reversed round set slice sorted str sum tuple zip ArithmeticError "
    "AssertionError AttributeError Exception IndexError KeyError LookupError NameError "
    "NotImplementedError OverflowError RecursionError RuntimeError StopIteration TypeError "
    "UnicodeError ValueError ZeroDivisionError"
).split()


def _builtins() -> dict[str, Any]:
    import builtins

    table: dict[str, Any] = {name: getattr(builtins, name) for name in _SAFE_BUILTINS}
    table.update(
        {
            "None": None,
            "True": True,
            "False": False,
            "getattr": _getattr,
            "hasattr": _hasattr,
            "type": _type,
            "__import__": _import,
            "__build_class__": builtins.__build_class__,
        }
    )
    for name, why in {
        "open": _NO_IO,
        "input": _NO_IO,
        "breakpoint": _NO_IO,
        "help": _NO_IO,
        "exit": _NO_IO,
        "quit": _NO_IO,
        "eval": _NO_CODE,
        "exec": _NO_CODE,
        "compile": _NO_CODE,
        "globals": _NO_INTROSPECTION,
        "locals": _NO_INTROSPECTION,
        "vars": _NO_INTROSPECTION,
        "dir": _NO_INTROSPECTION,
        "setattr": "change dicts and lists by key or index instead",
        "delattr": "change dicts and lists by key or index instead",
        "memoryview": _NO_INTROSPECTION,
    }.items():
        table[name] = _blocked(name, why)
    return table


# --------------------------------------------------------------------------------------------
# Compiling


_INSPECT_ATTRIBUTES: frozenset[str] = frozenset()


def _simple(node: ast.expr) -> bool:
    """An expression that is safe to evaluate twice: names, constants, keys, attributes."""
    if isinstance(node, (ast.Name, ast.Constant)):
        return True
    if isinstance(node, ast.Attribute):
        return _simple(node.value)
    if isinstance(node, ast.Subscript):
        return _simple(node.value) and _simple(node.slice)
    if isinstance(node, ast.Tuple):
        return all(_simple(e) for e in node.elts)
    return False


def _policy() -> type:
    from RestrictedPython.transformer import IOPERATOR_TO_STR, RestrictingNodeTransformer

    class Policy(RestrictingNodeTransformer):
        """RestrictedPython's policy, plus ``counts[key] += 1``.

        RestrictedPython refuses augmented assignment to items; this rewrites it to
        ``counts[key] = _inplacevar_("+=", counts[key], 1)`` when the target's expressions have
        no side effects (so evaluating them twice is the same as once).
        """

        def visit_AugAssign(self, node: ast.AugAssign) -> Any:
            target = node.target
            if not (
                isinstance(target, ast.Subscript)
                and _simple(target.value)
                and _simple(target.slice)
            ):
                return super().visit_AugAssign(node)
            load = ast.Subscript(value=target.value, slice=target.slice, ctx=ast.Load())
            load = ast.fix_missing_locations(ast.copy_location(load, target))
            read = self.visit(copy.deepcopy(load))
            store = self.visit(target)
            value = self.visit(node.value)
            call = ast.Call(
                func=ast.Name("_inplacevar_", ast.Load()),
                args=[ast.Constant(IOPERATOR_TO_STR[type(node.op)]), read, value],
                keywords=[],
            )
            assign = ast.Assign(targets=[store], value=call)
            return ast.fix_missing_locations(ast.copy_location(assign, node))

    return Policy


class _Rejected(Exception):
    def __init__(self, kind: str, message: str, line: int | None) -> None:
        super().__init__(message)
        self.kind, self.message, self.line = kind, message, line


def _compile(source: str) -> tuple[types.CodeType, set[str]]:
    """Compile the function body; returns the code and the allowed modules it names."""
    source = textwrap.dedent(source)
    try:
        tree = ast.parse(source, FILENAME, "exec")
    except SyntaxError as e:
        text = (e.text or "").strip()
        raise _Rejected("syntax", f"{e.msg}" + (f": {text!r}" if text else ""), e.lineno) from None
    problems: list[tuple[int, str]] = []
    named: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = ["." * node.level + (node.module or "")]
            if names[0] in MODULES:
                view = _module(names[0])
                problems.extend(
                    (node.lineno, f"{names[0]} has no {a.name!r} in code nodes")
                    for a in node.names
                    if a.name not in view.__dict__ or a.name.startswith("_")
                )
        else:
            if isinstance(node, ast.Name) and node.id in MODULES:
                named.add(node.id)
            continue
        for name in names:
            if name not in MODULES:
                problems.append(
                    (
                        node.lineno,
                        f"import of {name!r} is blocked; code nodes can import {_modules()}",
                    )
                )
    from RestrictedPython.compile import compile_restricted_function

    try:
        result = compile_restricted_function("", tree, FUNCTION, FILENAME, policy=_policy())
    except SyntaxError as e:
        # From Python's own compile step, after parsing: 'nonlocal x' at the top, say.
        raise _Rejected("syntax", e.msg, e.lineno) from None
    for error in result.errors:
        # RestrictedPython's errors read 'Line N: message'.
        head, _, message = error.partition(": ")
        line = int(head[5:]) if head.startswith("Line ") and head[5:].isdigit() else None
        problems.append((line or 0, (message if line is not None else error).rstrip(".")))
    if problems:
        # The first problem in the code; the others may be consequences of the same fix.
        problems.sort(key=lambda p: p[0] or math.inf)
        line, message = problems[0]
        if len(problems) > 1:
            message += f" (and {len(problems) - 1} more)"
        raise _Rejected("rejected", message, line or None)
    assert result.code is not None
    return result.code, named


# --------------------------------------------------------------------------------------------
# Running


def _user_line(error: BaseException) -> int | None:
    """The line of user code the exception went through last."""
    line = None
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class _NotJSON(Exception):
    pass


def _jsonable(value: Any, path: str, seen: set[int]) -> Any:
    """A plain-JSON copy of ``value``; dates become ISO text and Decimals exact text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJSON(f"{path} is {value}, which JSON cannot represent")
        return float(value)
    if isinstance(value, (dict, list, tuple)):
        if id(value) in seen:
            raise _NotJSON(f"{path} makes a cycle (it is a value that contains it)")
        seen.add(id(value))
        try:
            if isinstance(value, dict):
                out: dict[str, Any] = {}
                for key, item in value.items():
                    if isinstance(key, bool) or not isinstance(key, (str, int)):
                        raise _NotJSON(
                            f"{path} has a key of type {type(key).__name__} ({key!r}); "
                            "JSON keys are strings"
                        )
                    out[str(key)] = _jsonable(item, f"{path}[{key!r}]", seen)
                return out
            return [_jsonable(item, f"{path}[{i}]", seen) for i, item in enumerate(value)]
        finally:
            seen.discard(id(value))
    datetime = sys.modules.get("datetime")
    if datetime is not None and isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(value, decimal.Decimal) and value.is_finite():
        return str(value)
    hint = " (use list(...))" if isinstance(value, (set, frozenset)) else ""
    raise _NotJSON(
        f"{path} is a {type(value).__name__}{hint}; return dicts, lists, strings, numbers, "
        "booleans or None"
    )


def _run(request: dict[str, Any]) -> dict[str, Any]:
    global _INSPECT_ATTRIBUTES
    try:
        code, named = _compile(request["code"])
    except _Rejected as e:
        return {"ok": False, "kind": e.kind, "message": e.message, "line": e.line}

    from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
    from RestrictedPython.transformer import INSPECT_ATTRIBUTES

    _INSPECT_ATTRIBUTES = frozenset(INSPECT_ATTRIBUTES)
    scope: dict[str, Any] = request.get("scope") or {}
    namespace: dict[str, Any] = {
        "__builtins__": _builtins(),
        "__name__": "tideflow_code",
        "__metaclass__": _UserClass,
        "_getattr_": _getattr,
        "_getitem_": _getitem,
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": _write,
        "_inplacevar_": _inplacevar,
        "_apply_": _apply,
        "_print_": _Printer,
    }
    namespace.update({name: _module(name) for name in named})
    for name in ("inputs", "vars", "nodes", "run"):
        namespace[name] = Record()
    namespace["item"] = namespace["index"] = None
    namespace.update(
        {k: v for k, v in scope.items() if isinstance(k, str) and k.isidentifier() and k[:1] != "_"}
    )
    try:
        exec(code, namespace)
        value = namespace[FUNCTION]()
    except MemoryError as e:
        return {"ok": False, "kind": "memory", "message": "", "line": _user_line(e)}
    except SandboxViolation as e:
        return {"ok": False, "kind": "blocked", "message": str(e), "line": _user_line(e)}
    except BaseException as e:
        return {
            "ok": False,
            "kind": "error",
            "type": type(e).__name__,
            "message": str(e),
            "line": _user_line(e),
        }
    try:
        result = _jsonable(value, "the return value", set())
    except _NotJSON as e:
        return {"ok": False, "kind": "output", "message": str(e), "line": None}
    except RecursionError:
        return {
            "ok": False,
            "kind": "output",
            "message": "the return value is nested too deeply",
            "line": None,
        }
    return {"ok": True, "result": result}


def main() -> None:
    """Apply the limits in argv[1], run the request from stdin, answer on stdout."""
    limits = json.loads(sys.argv[1])
    sys.path.extend(limits["path"])
    for name in INTERNAL_MODULES:
        importlib.import_module(name)
    _apply_limits(limits["cpu_seconds"], limits["memory_bytes"], limits["max_open_files"])
    request = json.loads(sys.stdin.buffer.read(), object_hook=Record)
    try:
        response = _run(request)
    except MemoryError:
        response = {"ok": False, "kind": "memory", "message": "", "line": None}
    response["logs"] = _log.lines()
    out = json.dumps(response, ensure_ascii=True, allow_nan=False).encode("ascii")
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
