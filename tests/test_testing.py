"""``tideflow test``: test files run on a time-skipping test server the command starts itself,
mocked nodes answered by its worker, the other nodes run for real; one line per case, a summary
line, exit 1 on a failure and 2 (nothing run) for a bad test file."""

from __future__ import annotations

import asyncio
import io
import json
import textwrap
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from starter.cli import main as cli_main
from tests.servers.webhook import WebhookServer
from tests.test_cli import Done

REPO = Path(__file__).resolve().parent.parent

_ONE_AT_A_TIME = asyncio.Lock()


async def tideflow(*args: str) -> Done:
    """``tideflow ARGS`` in this process (in a thread: it runs its own event loop)."""

    def call() -> Done:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = cli_main(list(args))
        return Done(code, out.getvalue(), err.getvalue())

    async with _ONE_AT_A_TIME:
        return await asyncio.wait_for(asyncio.to_thread(call), 120)


def write(folder: Path, name: str, text: str) -> Path:
    """A file in ``folder``."""
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


ORDER = """
name: Order check
inputs:
  amount: {type: number, required: true}
  endpoint: {type: string, default: "http://127.0.0.1:9/never"}
vars:
  reviewed_by: ""
tasks:
  - id: fetch
    type: http.request
    config: {url: "${{ inputs.endpoint }}"}
    retry: {max_attempts: 3, initial_interval: 30s}
  - id: cool_off
    type: wait
    depends_on: [fetch]
    config: {duration: 2d}
  - id: review
    type: approval
    depends_on: [cool_off]
    when: ${{ inputs.amount > 100.0 }}
  - id: payment
    type: wait_for_event
    depends_on: [cool_off, review]
    config: {event: paid}
  - id: charge
    type: code
    depends_on: [payment]
    on_error: pause
    config:
      code: |
        return {"charged": inputs["amount"]}
  - id: note
    type: set
    depends_on: [charge]
    config:
      reviewed_by: "${{ nodes.review.status == 'completed' ? nodes.review.output.by : 'nobody' }}"
outputs:
  ok: ${{ nodes.fetch.output.json.ok }}
  charged: ${{ nodes.charge.output.charged }}
"""


async def test_passing_and_failing_cases_give_one_line_each_and_a_summary(tmp_path: Path) -> None:
    write(tmp_path, "order.yaml", ORDER)
    write(
        tmp_path,
        "order.test.yaml",
        """
        cases:
          - name: a flaky endpoint is retried and a big order is reviewed
            inputs: {amount: 120.0}
            mocks:
              fetch:
                - {error: "503 from upstream", retryable: true}
                - {output: {status_code: 200, json: {ok: true}}}
            send:
              - approve: {node: review, by: ana}
              - event: {name: paid, payload: {amount: 120.0}}
            expect:
              status: completed
              outputs: {ok: true, charged: 120.0}
              nodes:
                fetch: {status: completed, attempts: 2}
                cool_off: completed
                review: {status: completed, output: {approved: true, by: ana}}
              vars: {reviewed_by: ana}
          - name: a wrong expectation fails
            inputs: {amount: 120.0}
            mocks:
              fetch: {output: {json: {ok: false}}}
            send:
              - approve: review
              - event: paid
            expect:
              outputs: {ok: true}
              nodes: {review: skipped, fetch: {attempts: 2}}
        """,
    )
    done = await tideflow("test", str(tmp_path / "order.test.yaml"))
    assert done.code == 1, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(
        f"PASS {tmp_path}/order.test.yaml:2: a flaky endpoint is retried and a big order is "
        "reviewed ("
    )
    assert lines[1] == (
        f"FAIL {tmp_path}/order.test.yaml:19: a wrong expectation fails: outputs.ok: expected "
        "true, got false; node review: expected skipped, got completed; node fetch attempts: "
        "expected 2, got 1"
    )
    assert lines[2] == "1 passed, 1 failed"

    as_json = await tideflow("test", "--json", str(tmp_path / "order.yaml"))
    assert as_json.code == 1
    body = json.loads(as_json.stdout)
    assert (body["passed"], body["failed"]) == (1, 1)
    first = body["cases"][0]
    assert first["passed"] and first["report"]["nodes"]["cool_off"]["status"] == "completed"
    assert body["cases"][1]["problems"][0] == "outputs.ok: expected true, got false"


async def test_operator_actions_and_a_stuck_run(tmp_path: Path) -> None:
    write(tmp_path, "order.yaml", ORDER)
    write(
        tmp_path,
        "order.test.yaml",
        """
        cases:
          - name: an operator retries a node that needs attention
            inputs: {amount: 5.0}
            mocks:
              fetch: {output: {json: {ok: true}}}
              charge: [{error: "card declined", retryable: false}, {output: {charged: 5.0}}]
            send:
              - event: paid
              - retry: charge
            expect:
              status: completed
              outputs: {charged: 5.0}
              nodes: {charge: {status: completed, attempts: 1}}
          - name: nobody approves
            inputs: {amount: 500.0}
            mocks:
              fetch: {output: {json: {ok: true}}}
            expect: {status: completed}
          - name: an operator fails the charge
            inputs: {amount: 5.0}
            mocks:
              fetch: {output: {json: {ok: true}}}
              charge: {error: "card declined", retryable: false}
            send:
              - event: paid
              - fail: {node: charge, reason: no card on file}
            expect:
              status: failed
              error: no card on file
        """,
    )
    done = await tideflow("test", str(tmp_path))
    lines = done.stdout.splitlines()
    assert lines[0].startswith("PASS"), lines[0]
    assert lines[1].endswith(
        "nobody approves: the run waits and nothing is sent to it (status waiting; waiting: "
        "review for approval)"
    ), lines[1]
    assert lines[2].startswith("PASS"), lines[2]
    assert lines[-1] == "2 passed, 1 failed"
    assert done.code == 1


async def test_unmocked_nodes_run_for_real_and_foreach_items_are_mocked(
    tmp_path: Path, webhook_server: WebhookServer
) -> None:
    write(
        tmp_path,
        "calls.yaml",
        """
        name: Calls
        inputs:
          base: {type: string, required: true}
        tasks:
          - id: real
            type: http.request
            config: {url: "${{ inputs.base }}/real"}
          - id: each
            type: http.request
            depends_on: [real]
            foreach: ${{ [1, 2, 3] }}
            config: {url: "${{ inputs.base }}/each/${{ item }}", method: POST}
        outputs:
          each: ${{ nodes.each.output.map(o, o.status_code) }}
        """,
    )
    webhook_server.respond("/real", json={"hello": "world"})
    write(
        tmp_path,
        "calls.test.yaml",
        f"""
        cases:
          - name: one real call, three mocked ones
            inputs: {{base: "{webhook_server.base_url}"}}
            mocks:
              each: {{output: {{status_code: 202}}}}
            expect:
              outputs: {{each: [202, 202, 202]}}
              nodes: {{real: {{status: completed, output: {{json: {{hello: world}}}}}}}}
        """,
    )
    done = await tideflow("test", str(tmp_path / "calls.test.yaml"))
    assert done.code == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "1 passed, 0 failed"
    assert [r.path for r in webhook_server.requests] == ["/real"]


async def test_a_bad_test_file_is_refused_with_located_lines_and_runs_nothing(
    tmp_path: Path, webhook_server: WebhookServer
) -> None:
    write(
        tmp_path,
        "call.yaml",
        """
        name: Call
        inputs:
          url: {type: string, required: true}
        tasks:
          - {id: call, type: http.request, config: {url: "${{ inputs.url }}"}}
          - {id: hold, type: approval, depends_on: [call]}
        """,
    )
    write(
        tmp_path,
        "call.test.yaml",
        f"""
        cases:
          - name: fine on its own
            inputs: {{url: "{webhook_server.url("/hit")}"}}
            send: [approve: hold]
          - name: typos
            inputs: {{url: x, colour: red}}
            mocks:
              cal: {{output: 1}}
              hold: {{output: 1}}
              call: {{output: 1, retry: true}}
            send:
              - aprove: hold
            expect:
              nodes: {{calll: completed}}
        """,
    )
    done = await tideflow("test", str(tmp_path / "call.test.yaml"))
    assert done.code == 2
    assert done.stdout == ""
    test_file = tmp_path / "call.test.yaml"
    assert done.stderr.splitlines() == [
        f"{test_file}:6:22: input 'colour': not declared by this workflow",
        f"{test_file}:8:7: mock: the definition has no node 'cal' (did you mean 'call'?)",
        f"{test_file}:9:7: mock: node 'hold' is of type approval, which the workflow runs "
        "itself: answer it with `send: [approve: NODE]` (or reject)",
        f"{test_file}:10:25: call: unknown key 'retry' (did you mean 'retryable'?); one of "
        "output, error, retryable, type, usage",
        f"{test_file}:12:9: send: unknown action 'aprove' (did you mean 'approve'?); one of "
        "approve, reject, skip, retry, fail, event, set_vars, pause, resume, cancel",
        f"{test_file}:14:15: expect: the definition has no node 'calll' (did you mean 'call'?)",
    ]
    assert webhook_server.requests == []  # the valid case did not run either

    validate = await tideflow("validate", str(test_file))
    assert validate.code == 2
    assert len(validate.stdout.splitlines()) == 6


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cases: []\n", "1:8: cases: give a list of cases (name, inputs, mocks, expect)"),
        ("definition: nope.yaml\ncases: [{name: x}]\n", "1:13: definition: no file 'nope.yaml'"),
        ("cases: [{inputs: {}}]\n", "1:9: the case needs a name"),
    ],
)
async def test_a_test_file_without_what_it_needs(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, "x.yaml", "name: X\nsteps:\n  - {id: a, type: set}\n")
    (tmp_path / "x.test.yaml").write_text(text)
    done = await tideflow("test", str(tmp_path / "x.test.yaml"))
    assert done.code == 2
    assert done.stderr.splitlines()[0].startswith(f"{tmp_path / 'x.test.yaml'}:{message}")


async def test_every_example_has_tests_and_they_pass() -> None:
    examples = sorted(
        p for p in (REPO / "examples").glob("*.yaml") if not p.name.endswith(".test.yaml")
    )
    for example in examples:
        assert example.with_name(example.stem + ".test.yaml").is_file(), example
    done = await tideflow("test", str(REPO / "examples"))
    assert done.code == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert all(line.startswith("PASS ") for line in lines[:-1]), done.stdout
    assert lines[-1] == f"{len(lines) - 1} passed, 0 failed"
    assert len(lines) - 1 >= 2 * len(examples)
