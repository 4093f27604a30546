"""The registry: deploy validates and tests before recording an immutable version, history shows
the diff between versions, runs of a deployed name keep their version while later ones are
deployed, rollback and undeploy, schedules put into effect, the HTTP API; on SQLite and on
PostgreSQL."""

from __future__ import annotations

import functools
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from temporalio.service import RPCError

from starter.api.app import create_app
from starter.client import TideflowClient
from starter.registry import Registry, RegistryError, registry_catalog
from starter.store import open_store
from starter.triggers import new_catalog, sync_schedules
from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow
from tests.test_api import _serving
from tests.test_cli import Cli

GREET = """
name: Registry greet
version: "{display}"
inputs:
  who: {{type: string, required: true}}
vars:
  greeting: ""
tasks:
  - id: hold
    type: approval
  - id: compose
    type: set
    depends_on: [hold]
    config: {{greeting: "{word} ${{{{ inputs.who }}}}"}}
outputs:
  greeting: ${{{{ vars.greeting }}}}
"""

GREET_TEST = """
cases:
  - name: greets once approved
    inputs: {{who: ana}}
    send: [approve: hold]
    expect:
      outputs: {{greeting: {word} ana}}
"""


def write_greet(folder: Path, word: str, *, test_word: str | None = None) -> Path:
    """``greet.yaml`` saying ``word``, and its test file expecting ``test_word``."""
    path = folder / "greet.yaml"
    path.write_text(textwrap.dedent(GREET.format(display="1.0", word=word)).lstrip())
    test = GREET_TEST.format(word=test_word or word)
    (folder / "greet.test.yaml").write_text(textwrap.dedent(test).lstrip())
    return path


@pytest.fixture
def cli(tideflow: Tideflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``tideflow`` on the session's server and worker, with its own home (and registry)."""
    return cli_with_home(tideflow, tmp_path, monkeypatch)


def cli_with_home(tideflow: Tideflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``tideflow`` on the session's server and worker, with a home of its own below
    ``tmp_path`` (so a registry of its own), acting as ana."""
    env = {
        "TEMPORAL_ADDRESS": tideflow.address,
        "TIDEFLOW_HOME": str(tmp_path / "home"),
        "TIDEFLOW_TASK_QUEUE": tideflow.task_queue,
        "TIDEFLOW_USER": "ana",
    }
    monkeypatch.delenv("TIDEFLOW_STORE_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Cli(env, tideflow.task_queue)


async def _deployed(cli: Cli) -> list[dict[str, Any]]:
    done = await cli("definitions", "--json")
    assert done.code == 0, done.stderr
    found: list[dict[str, Any]] = done.json()
    return found


async def test_deploy_refuses_failing_tests_and_invalid_files(cli: Cli, tmp_path: Path) -> None:
    path = write_greet(tmp_path, "hello", test_word="bonjour")
    refused = await cli("deploy", str(path), "-m", "first")
    assert refused.code == 1
    assert refused.stdout.startswith(f"FAIL {tmp_path}/greet.test.yaml:2: greets once approved:")
    assert refused.stderr.strip() == (
        "deploy: refused: the tests failed (0 passed, 1 failed in greet.test.yaml): "
        "nothing was deployed"
    )
    assert await _deployed(cli) == []

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: Broken\ntasks:\n  - {id: a, type: sett}\n")
    invalid = await cli("deploy", str(path), str(broken))
    assert invalid.code == 2
    assert (
        invalid.stderr.strip() == f"{broken}:3:19: unknown node type 'sett' (did you mean 'set'?)"
    )
    assert await _deployed(cli) == []

    (tmp_path / "greet.test.yaml").write_text(
        "cases:\n  - name: x\n    mocks: {nope: {output: 1}}\n"
    )
    bad_tests = await cli("deploy", str(path))
    assert bad_tests.code == 2
    assert "the definition has no node 'nope'" in bad_tests.stderr
    assert await _deployed(cli) == []


async def test_versions_history_and_a_run_in_flight_keeping_its_version(
    cli: Cli, tideflow: Tideflow, tmp_path: Path
) -> None:
    client = TideflowClient(tideflow.client, task_queue=tideflow.task_queue)
    path = write_greet(tmp_path, "hello")
    first = await cli("deploy", str(path), "-m", "first")
    assert first.code == 0, first.stderr
    assert first.stdout.splitlines()[-1].startswith("deployed registry-greet version 1 (sha256 ")
    assert first.stdout.splitlines()[-1].endswith(", by ana)")

    started = await cli("start", "registry-greet", "-i", "who=ana")
    assert started.code == 0, started.stderr
    in_flight = client.get_run(started.stdout.strip())
    await eventually(
        lambda: in_flight.state(timeout=5), lambda s: "hold" in s.approvals, "v1 waiting"
    )

    write_greet(tmp_path, "bonjour")
    second = await cli("deploy", str(path), "-m", "say bonjour")
    assert second.code == 0, second.stderr
    assert "deployed registry-greet version 2" in second.stdout
    unchanged = await cli("deploy", str(path))
    assert "registry-greet is unchanged: version 2 has the same content" in unchanged.stdout

    later = await cli("start", "registry-greet", "-i", "who=bob")
    pinned = await cli("start", "registry-greet@1", "-i", "who=cy")
    runs = [in_flight, client.get_run(later.stdout.strip()), client.get_run(pinned.stdout.strip())]
    for run in runs:
        await eventually(functools.partial(run.state, timeout=5), lambda s: "hold" in s.approvals)
        await run.approve("hold")
    reports = [await run.report() for run in runs]
    assert [r.outputs["greeting"] for r in reports] == ["hello ana", "bonjour bob", "hello cy"]
    memos = [await (await run.describe()).memo() for run in runs]
    assert [m["tideflow_registry"]["version"] for m in memos] == [1, 2, 1]

    listed = await _deployed(cli)
    assert [(d["name"], d["active_version"], d["latest_version"]) for d in listed] == [
        ("registry-greet", 2, 2)
    ]
    assert listed[0]["message"] == "say bonjour"

    history = await cli("history", "registry-greet")
    assert history.code == 0
    text = history.stdout
    assert "deploy   version 1 (sha256 " in text and "by ana  first" in text
    assert "--- registry-greet@1\n+++ registry-greet@2\n" in text
    assert '-    config: {greeting: "hello ${{ inputs.who }}"}\n' in text
    assert '+    config: {greeting: "bonjour ${{ inputs.who }}"}\n' in text

    back = await cli("rollback", "registry-greet", "1", "-m", "bonjour was wrong")
    assert back.code == 0
    assert back.stdout.startswith("registry-greet is at version 1 again")
    again = await cli("rollback", "registry-greet", "1")
    assert again.code == 2
    assert again.stderr.strip() == "rollback: registry-greet is at version 1 already"
    gone = await cli("undeploy", "registry-greet")
    assert gone.stdout.startswith("undeployed registry-greet (was version 1)")
    refused = await cli("start", "registry-greet", "-i", "who=dee")
    assert refused.code == 2
    assert refused.stderr.strip() == (
        "registry-greet: no such file, and registry-greet is not deployed (undeployed); "
        "its versions 1-2 can still be run as registry-greet@VERSION"
    )
    as_json = await cli("history", "registry-greet", "--json")
    changes = as_json.json()
    assert [(c["action"], c["version"], c["previous_version"]) for c in changes] == [
        ("deploy", 1, None),
        ("deploy", 2, 1),
        ("rollback", 1, 2),
        ("undeploy", None, 1),
    ]
    assert changes[1]["diff"].startswith("--- registry-greet@1\n")
    unknown = await cli("history", "registry-gret")
    assert unknown.code == 2
    assert "did you mean 'registry-greet'?" in unknown.stderr


SCHEDULED = """
name: Registry tick
triggers:
  - {type: schedule, every: 1h}
steps:
  - {id: a, type: set}
"""


async def _schedule_ids(client: TideflowClient) -> set[str]:
    return {s.id async for s in await client.temporal.list_schedules()}


async def test_deploy_puts_schedules_into_effect_and_undeploy_removes_them(
    cli: Cli, tideflow: Tideflow, tmp_path: Path
) -> None:
    client = TideflowClient(tideflow.client, task_queue=tideflow.task_queue)
    path = tmp_path / "tick.yaml"
    path.write_text(textwrap.dedent(SCHEDULED).lstrip())
    done = await cli("deploy", str(path))
    assert done.code == 0, done.stderr
    sid = "tideflow-deployed.registry-tick-0"
    assert f"schedule {sid}: created every 3600s" in done.stdout
    assert f"note: {path} has no tests" in done.stderr
    await eventually(lambda: _schedule_ids(client), lambda ids: sid in ids, "the schedule")
    description = await client.temporal.get_schedule_handle(sid).describe()
    assert description.schedule.action.memo["tideflow_registry"]  # type: ignore[attr-defined]

    # A folder's sync leaves the registry's schedules alone.
    empty = tmp_path / "folder"
    empty.mkdir()
    changes = await sync_schedules(client, new_catalog(empty))
    assert sid not in {c.schedule_id for c in changes}
    assert sid in await _schedule_ids(client)

    gone = await cli("undeploy", "registry-tick")
    assert f"schedule {sid}: deleted" in gone.stdout
    with pytest.raises(RPCError):
        await client.temporal.get_schedule_handle(sid).describe()


async def test_http_api_serves_the_registry(tideflow: Tideflow, tmp_path: Path, cli: Cli) -> None:
    path = write_greet(tmp_path, "hello")
    assert (await cli("deploy", str(path), "-m", "first")).code == 0
    write_greet(tmp_path, "salut")
    assert (await cli("deploy", str(path), "-m", "salut")).code == 0
    registry = Registry.open()
    app = create_app(client=tideflow.client, catalog=registry_catalog(registry), triggers=False)
    async with _serving(app) as api:
        listed = (await api.get("/registry")).json()
        assert [(d["name"], d["active"]["version"]) for d in listed] == [("registry-greet", 2)]
        history = (await api.get("/registry/registry-greet/history")).json()
        assert [c["action"] for c in history] == ["deploy", "deploy"]
        assert '+    config: {greeting: "salut ${{ inputs.who }}"}' in history[1]["diff"]
        versions = (await api.get("/registry/registry-greet")).json()
        assert [v["message"] for v in versions["versions"]] == ["first", "salut"]
        source = (await api.get("/registry/registry-greet/versions/1")).json()
        assert "hello" in source["content"]
        # The registry's definitions are the catalog: listed and started like a folder's.
        assert [d["slug"] for d in (await api.get("/definitions")).json()] == ["registry-greet"]
        started = await api.post(
            "/registry/registry-greet/runs", json={"inputs": {"who": "ana"}, "version": 1}
        )
        assert started.status_code == 201, started.text
        run_id = started.json()["workflow_id"]
        client = TideflowClient(tideflow.client)
        run = client.get_run(run_id)
        await eventually(lambda: run.state(timeout=5), lambda s: "hold" in s.approvals)
        await run.approve("hold")
        assert (await run.report()).outputs == {"greeting": "hello ana"}
        missing = await api.post("/registry/registry-greet/runs", json={"version": 9})
        assert missing.status_code == 404
        assert missing.json()["detail"] == "registry-greet has no version 9"


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_records_on_sqlite_and_postgresql(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from starter.client import load

    url = (
        request.getfixturevalue("postgres_url")
        if store == "postgresql"
        else f"sqlite:///{tmp_path / 'control.db'}"
    )
    registry = Registry(open_store(url))
    name = f"records-{store}"
    path = tmp_path / "def.yaml"
    texts = [f"name: {name}\nsteps:\n  - {{id: a, type: set}}\n", f"name: {name}\nsteps: []\n"]
    texts[1] = f"name: {name}\nsteps:\n  - {{id: b, type: set}}\n"
    versions = []
    for text in texts:
        path.write_text(text)
        version, new = registry.record(load(path), text, file=str(path), by="ana", message="m")
        assert new
        versions.append(version)
    assert [v.version for v in versions] == [1, 2]
    _, new = registry.record(load(path), texts[1], file=str(path), by="ana", message="same")
    assert not new
    assert registry.version(name).version == 2
    assert registry.version(name, 1).content == texts[0]
    assert [n.id for n in registry.version(name, 1).definition().graph()] == ["a"]
    registry.rollback(name, 1, by="bob", message="back")
    assert registry.version(name).version == 1
    registry.undeploy(name, by="bob")
    with pytest.raises(RegistryError, match="is not deployed"):
        registry.version(name)
    assert [c.action for c in registry.changes(name)] == [
        "deploy",
        "deploy",
        "rollback",
        "undeploy",
    ]
    assert registry.changes(name)[2].by == "bob"
    assert json.loads(json.dumps(registry.versions(name)[0].definition_json))["name"] == name


async def test_event_triggers_of_deployed_definitions(
    cli: Cli, tideflow: Tideflow, tmp_path: Path
) -> None:
    path = tmp_path / "listener.yaml"
    path.write_text(
        "name: Registry listener\ninputs:\n  event: {type: object}\n"
        "triggers:\n  - {type: event, name: registry-ping}\n"
        "steps:\n  - {id: a, type: set}\noutputs:\n  got: ${{ inputs.event.n }}\n"
    )
    assert (await cli("deploy", str(path))).code == 0
    emitted = await cli("emit", "registry-ping", "--data", '{"n": 7}', "--registry")
    assert emitted.code == 0, emitted.stderr
    assert "emit registry-ping: started 1 run(s)" in emitted.stdout
    workflow_id = emitted.stdout.splitlines()[-1].split()[0]
    run = TideflowClient(tideflow.client).get_run(workflow_id)
    assert (await run.report()).outputs == {"got": 7}
    memo = await (await run.describe()).memo()
    assert memo["tideflow_registry"] == {
        "name": "registry-listener",
        "version": 1,
        "hash": Registry.open().version("registry-listener").content_hash,
    }
    # Without --registry the folder is used: nothing listens there.
    (tmp_path / "empty").mkdir()
    folder = await cli("emit", "registry-ping", "--definitions", str(tmp_path / "empty"))
    assert "started 0 run(s)" in folder.stdout
