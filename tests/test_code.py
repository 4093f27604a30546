"""code.python: real runs in the sandboxed child process, through the node's activity."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities import WorkerSettings, registry
from activities.settings import CodeSettings
from tests.nodes import run_node

SCOPE: dict[str, Any] = {
    "inputs": {"threshold": 10, "region": "EU"},
    "vars": {"reviewed": False, "rate": 0.2},
    "nodes": {
        "parse": {
            "output": {"text": "Invoice 42\nTotal: 1,234.50", "pages": [{"number": 1}]},
            "status": "completed",
        },
        "stock": {
            "output": [{"sku": "A", "qty": 3}, {"sku": "B", "qty": 40}],
            "status": "completed",
        },
    },
    "item": {"sku": "C", "qty": 7},
    "index": 2,
    "run": {"id": "wf-1", "started_at": "2024-05-01T10:00:00Z"},
}


async def run_code(code: str, *, scope: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """The output of a code node running ``code`` (dedented)."""
    settings = kwargs.pop("settings", None)
    config = {"code": textwrap.dedent(code), **kwargs}
    result = await run_node("code.python", config, scope=scope, settings=settings)
    return result.output


async def code_error(code: str, **kwargs: Any) -> ApplicationError:
    """The failure of a code node running ``code``; user-code failures are never retried."""
    with pytest.raises(ApplicationError) as caught:
        await run_code(code, **kwargs)
    error = caught.value
    assert error.non_retryable, error.message
    return error


def test_aliases() -> None:
    assert registry.canonical("code") == "code.python"
    assert registry.canonical("python") == "code.python"


# --------------------------------------------------------------------------------------------
# Computing from the scope


async def test_computes_from_inputs_vars_nodes_item_and_index() -> None:
    output = await run_code(
        """
        low = [s["sku"] for s in nodes["stock"]["output"] if s["qty"] < inputs["threshold"]]
        total = float(nodes.parse.output.text.split("Total: ")[1].replace(",", ""))
        return {
            "reorder": low,
            "total": total,
            "tax": round(total * vars.rate, 2),
            "pages": len(nodes.parse.output.pages),
            "status": nodes.parse.status,
            "item": f"{index}:{item.sku}",
            "region": inputs.region,
            "run": run.id,
            "reviewed": vars["reviewed"],
        }
        """,
        scope=SCOPE,
    )
    assert output == {
        "reorder": ["A"],
        "total": 1234.5,
        "tax": 246.9,
        "pages": 1,
        "status": "completed",
        "item": "2:C",
        "region": "EU",
        "run": "wf-1",
        "reviewed": False,
    }


async def test_without_scope_names_are_empty_and_no_return_is_null() -> None:
    assert await run_code("return [inputs, vars, nodes, item, index]") == [{}, {}, {}, None, None]
    assert await run_code("x = 1") is None


async def test_a_missing_key_read_as_attribute_names_the_keys() -> None:
    error = await code_error("return nodes.parsed.output", scope=SCOPE)
    assert "AttributeError at line 1" in error.message
    assert "no key 'parsed' (keys: parse, stock)" in error.message


async def test_everyday_python_works() -> None:
    output = await run_code(
        """
        counts = {}
        for word in ["a", "b", "a", "c", "a"]:
            counts[word] = counts.get(word, 0)
            counts[word] += 1
        grid = {"x": {"n": 1}}
        grid["x"]["n"] *= 5
        first, *rest = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))

        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        class Box:
            def __init__(self, size):
                self.size = size

            def double(self):
                self.size = self.size * 2
                return self

        with decimal.localcontext() as ctx:
            ctx.prec = 3
            third = str(decimal.Decimal(1) / 3)

        try:
            {}["missing"]
        except KeyError as e:
            caught = f"caught {e!r}"
        total = 0
        for i, (k, v) in enumerate(counts.items()):
            total += i * v
        print("counted", len(counts))
        return {
            "counts": counts, "first": list(first), "rest": len(rest), "grid": grid,
            "fib": fib(15), "box": Box(3).double().size, "third": third, "caught": caught,
            "total": total,
            "squares": {n: n * n for n in range(4)}, "zip": list(zip("ab", reversed([1, 2]))),
            "any": any(v > 2 for v in counts.values()), "tuple": (1, "two"),
            "type": type(counts) is dict, "printed": printed,
        }
        """
    )
    assert output == {
        "counts": {"a": 3, "b": 1, "c": 1},
        "first": ["a", 3],
        "rest": 2,
        "grid": {"x": {"n": 5}},
        "fib": 610,
        "box": 6,
        "third": "0.333",
        "caught": "caught KeyError('missing')",
        "total": 3,
        "squares": {"0": 0, "1": 1, "2": 4, "3": 9},
        "zip": [["a", 2], ["b", 1]],
        "any": True,
        "tuple": [1, "two"],
        "type": True,
        "printed": "counted 3\n",
    }


async def test_curated_modules_are_usable_preimported_or_imported() -> None:
    output = await run_code(
        r"""
        import json as j
        from datetime import date, timedelta
        d = decimal.Decimal("0.10") + decimal.Decimal("0.20")
        return {
            "json": j.loads(json.dumps({"a": [1, 2]})),
            "math": math.floor(math.sqrt(17) * 100),
            "date": date(2024, 2, 28) + timedelta(days=1),
            "weekday": datetime.date(2024, 5, 1).isoweekday(),
            "re": re.findall(r"\d+", "a1b22c333"),
            "decimal": d,
            "decimal_exact": d == decimal.Decimal("0.3"),
            "mean": statistics.mean([1, 2, 3, 4]),
            "median": statistics.median([3, 1, 2]),
            "stdev": round(statistics.stdev([2, 4, 4, 4, 5, 5, 7, 9]), 4),
        }
        """
    )
    assert output == {
        "json": {"a": [1, 2]},
        "math": 412,
        "date": "2024-02-29",
        "weekday": 3,
        "re": ["1", "22", "333"],
        "decimal": "0.30",
        "decimal_exact": True,
        "mean": 2.5,
        "median": 2,
        "stdev": 2.1381,
    }


async def test_dates_format_parse_and_know_today() -> None:
    # datetime's C code imports time and _strptime by itself; the sandbox serves them to it.
    output = await run_code(
        r"""
        from datetime import date
        today = datetime.date.today()
        moment = datetime.datetime.strptime("09/03/2024 17:30", "%d/%m/%Y %H:%M")
        day = date(2024, 3, 9)
        return {
            "today": (datetime.datetime.now().date() - today).days in (0, 1),
            "strftime": day.strftime("%Y-%m-%d %a"),
            "strptime": moment,
            "fstring": f"{moment:%H:%M on %d %b}",
            "timetuple": day.timetuple().tm_yday,
            "utc": datetime.datetime(2024, 3, 9, tzinfo=datetime.timezone.utc).strftime("%Z"),
        }
        """
    )
    assert output == {
        "today": True,
        "strftime": "2024-03-09 Sat",
        "strptime": "2024-03-09T17:30:00",
        "fstring": "17:30 on 09 Mar",
        "timetuple": 69,
        "utc": "UTC",
    }


@pytest.mark.parametrize("module", ["time", "_strptime"])
async def test_the_modules_dates_use_stay_out_of_reach(module: str) -> None:
    error = await code_error(f"import {module}\nreturn 1")
    assert f"import of {module!r} is blocked" in error.message


async def test_changes_to_the_scope_stay_inside_the_node() -> None:
    output = await run_code(
        'vars["reviewed"] = True\ninputs["new"] = 1\nreturn [vars.reviewed, inputs.new]',
        scope=SCOPE,
    )
    assert output == [True, 1]
    assert SCOPE["vars"]["reviewed"] is False


# --------------------------------------------------------------------------------------------
# Escapes


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import os\nreturn os.getcwd()", "import of 'os' is blocked"),
        ("from subprocess import run", "import of 'subprocess' is blocked"),
        ("import json.decoder", "import of 'json.decoder' is blocked"),
        ("from json import decoder", "json has no 'decoder' in code nodes"),
        ("from statistics import sys", "statistics has no 'sys' in code nodes"),
        ("return ().__class__.__bases__[0].__subclasses__()", '"__subclasses__" is an invalid'),
        ("return fib.__globals__", '"__globals__" is an invalid attribute name'),
        ("return [].__class__", '"__class__" is an invalid attribute name'),
        ("__builtins__", '"__builtins__" is an invalid variable name'),
        ("return eval('1 + 1')", "Eval calls are not allowed"),
        ("exec('x = 1')", "Exec calls are not allowed"),
        ("def g():\n    yield 1\nreturn g().gi_frame", '"gi_frame" is a restricted name'),
    ],
)
async def test_escapes_are_rejected_before_running(code: str, expected: str) -> None:
    error = await code_error(code)
    assert "code rejected by the sandbox at line" in error.message
    assert expected in error.message


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("return open('/etc/passwd').read()", "open() is blocked: code nodes have no file"),
        ("f = compile\nreturn f('1', 'x', 'eval')", "compile() is blocked"),
        ("g = getattr\nreturn g(len, '__self__')", "access to the attribute '__self__' is"),
        ("return getattr((), '__class__')", "access to the attribute '__class__' is blocked"),
        ("return hasattr(len, '__self__')", "access to the attribute '__self__' is blocked"),
        ("return getattr(iter([]), 'gi_frame')", "access to the attribute 'gi_frame' is blocked"),
        ("return '{0.__class__}'.format(1)", "str.format() is blocked"),
        ("return getattr(str, 'format_map')", "str.format_map() is blocked"),
        ("return globals()", "globals() is blocked"),
        ("return dir(json)", "dir() is blocked"),
        ("return statistics.sys.modules", "module 'statistics' has no attribute 'sys'"),
        ("return json.codecs", "module 'json' has no attribute 'codecs'"),
        ("import json\njson.loads = len", "changing an object of type module is blocked"),
        ("return str(len.x)", "'builtin_function_or_method' object has no attribute 'x'"),
        ("range(3).start = 1", "changing an object of type range is blocked"),
        ("return __import__", '"__import__" is an invalid variable name'),
    ],
)
async def test_escapes_are_blocked_when_running(code: str, expected: str) -> None:
    error = await code_error(code)
    assert expected in error.message


async def test_blocked_operation_reports_its_line() -> None:
    error = await code_error("x = 1\ny = 2\nreturn open('f')")
    assert error.message.startswith("node 'node' (code.python): code blocked at line 3: open()")


async def test_the_scope_reaches_no_worker_objects() -> None:
    # Everything the code sees is plain data, a curated builtin or a module view.
    output = await run_code(
        "return sorted(k for k in ['os', 'sys', 'subprocess', 'socket'] if hasattr(json, k))"
    )
    assert output == []


# --------------------------------------------------------------------------------------------
# Limits


async def test_infinite_loop_is_stopped_by_the_cpu_limit() -> None:
    settings = WorkerSettings(code=CodeSettings(cpu_seconds=1, wall_seconds=60))
    error = await code_error("n = 0\nwhile True:\n    n += 1", settings=settings)
    assert "code exceeded its time limit of 1 s (CPU time)" in error.message


async def test_node_timeout_is_a_wall_clock_limit() -> None:
    error = await code_error("while True:\n    pass", timeout=1.5)
    assert "code exceeded its time limit of 1.5 s (wall clock)" in error.message


async def test_node_timeout_is_capped_by_the_worker() -> None:
    settings = WorkerSettings(code=CodeSettings(cpu_seconds=30, wall_seconds=1))
    error = await code_error("while True:\n    pass", timeout=600, settings=settings)
    assert "time limit of 1 s" in error.message


@pytest.mark.parametrize(
    "code",
    [
        'x = "x" * 10**10\nreturn len(x)',
        "x = [0] * 10**9\nreturn len(x)",
        'chunks = []\nwhile True:\n    chunks.append("y" * 10**7)',
    ],
)
async def test_huge_allocations_hit_the_memory_limit(code: str) -> None:
    settings = WorkerSettings(code=CodeSettings(memory_mb=256))
    error = await code_error(code, settings=settings)
    assert "code exceeded its memory limit of 256 MB" in error.message


# --------------------------------------------------------------------------------------------
# Errors in user code


async def test_syntax_error_names_the_line_of_user_code() -> None:
    error = await code_error(
        """
        total = 0
        for x in [1, 2]:
            total = = x
        return total
        """
    )
    # Line 1 is the empty line after the opening quotes.
    assert "syntax error in code at line 4: invalid syntax: 'total = = x'" in error.message


async def test_user_exception_surfaces_with_type_message_and_line() -> None:
    error = await code_error(
        """
        rows = [{"qty": 2}, {"qty": 0}]
        print("checking", len(rows), "rows")
        ratios = []
        for row in rows:
            ratios.append(10 / row["qty"])
        return ratios
        """
    )
    assert "code raised ZeroDivisionError at line 6: division by zero" in error.message
    assert "(last printed: checking 2 rows)" in error.message


async def test_raised_value_error_from_a_nested_function() -> None:
    error = await code_error(
        'def check(v):\n    if v < 0:\n        raise ValueError(f"negative: {v}")\nreturn check(-3)'
    )
    assert "code raised ValueError at line 3: negative: -3" in error.message


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("return {1, 2}", "the return value is a set (use list(...))"),
        ("return {'a': [len]}", "the return value['a'][0] is a builtin_function_or_method"),
        ("return float('nan')", "the return value is nan"),
        ("x = []\nx.append(x)\nreturn x", "the return value[0] makes a cycle"),
        ("return {(1, 2): 3}", "has a key of type tuple"),
    ],
)
async def test_non_json_return_is_a_clear_error(code: str, expected: str) -> None:
    error = await code_error(code)
    assert "code returned a value that is not JSON" in error.message
    assert expected in error.message


async def test_bad_timeout_is_a_config_error() -> None:
    with pytest.raises(ApplicationError) as caught:
        await run_node("code.python", {"code": "return 1", "timeout": -1})
    assert caught.value.non_retryable and caught.value.type == "NodeConfigError"
