"""The production deployment files: docker-compose.yml, Dockerfile, .dockerignore, docker/.

No Docker engine runs here, so nothing is built or started. The compose file is validated
offline against the Compose Specification schema vendored in check-jsonschema, its structure is
checked, every file the Dockerfile copies or the compose file mounts must exist, and the two
scripts that run inside containers against Temporal (the namespace/search-attribute setup and
the worker healthcheck) are run for real against the embedded dev server.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent
# Any attempt to reach the network fails at once instead of hanging: validation must be offline.
OFFLINE = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
PINNED = re.compile(r"^[\w./-]+:\d+(\.\d+)+[\w.-]*$")


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _env(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    tool = BIN / "check-jsonschema"
    if not tool.exists():
        pytest.fail("check-jsonschema is missing: install the test extra (pip install -e .[test])")
    return subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **OFFLINE},
    )


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _service_depending(name: str, on: str) -> str:
    depends = _services()[name].get("depends_on") or {}
    assert isinstance(depends, dict), f"{name}: depends_on must name conditions"
    assert on in depends, f"{name} does not depend on {on}"
    condition = depends[on].get("condition")
    assert isinstance(condition, str)
    return condition


# -- the compose file ---------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    result = _check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


def test_the_validator_rejects_a_compose_file_that_breaks_the_spec(tmp_path: Path) -> None:
    data = _compose()
    data["services"]["worker"]["deploy"]["replicas"] = ["two"]
    data["services"]["worker"]["healthchek"] = {"test": ["CMD", "true"]}
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(data))
    result = _check_jsonschema(broken)
    assert result.returncode != 0
    assert "healthchek" in result.stdout + result.stderr


def test_temporal_runs_on_its_own_healthy_postgresql() -> None:
    services = _services()
    temporal = services["temporal"]
    assert temporal["image"].startswith("temporalio/server:")
    env = _env(temporal)
    assert env["DB"] == "postgres12"
    database = services[env["POSTGRES_SEEDS"]]
    assert database["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(database["healthcheck"]["test"])
    assert _service_depending("temporal", env["POSTGRES_SEEDS"]) == "service_healthy"
    # The schema job runs before the server and on the same database.
    schema = services["temporal-schema"]
    assert schema["image"].startswith("temporalio/admin-tools:")
    assert _env(schema)["POSTGRES_SEEDS"] == env["POSTGRES_SEEDS"]
    assert _service_depending("temporal", "temporal-schema") == "service_completed_successfully"
    assert _service_depending("temporal-schema", env["POSTGRES_SEEDS"]) == "service_healthy"
    assert temporal["healthcheck"]["test"]


def test_the_server_and_admin_tools_versions_agree() -> None:
    services = _services()
    server = services["temporal"]["image"].split(":", 1)[1]
    for name in ("temporal-schema", "temporal-setup"):
        assert services[name]["image"] == f"temporalio/admin-tools:{server}"


def test_every_image_is_pinned_to_an_explicit_version() -> None:
    for name, service in _services().items():
        image = service.get("image")
        assert image, f"{name} has no image"
        assert PINNED.match(image), f"{name}: {image} is not pinned to a version"


def test_the_web_ui_is_served_on_8080() -> None:
    ui = _services()["temporal-ui"]
    assert ui["image"].startswith("temporalio/ui:")
    assert any(str(port).endswith("8080:8080") for port in ui["ports"])
    assert _env(ui)["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert _service_depending("temporal-ui", "temporal") == "service_healthy"


def test_workers_build_from_the_dockerfile_and_scale_with_a_variable() -> None:
    worker = _services()["worker"]
    build = worker["build"]
    assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    assert "container_name" not in worker, "a fixed container name prevents replicas"
    replicas = str(worker["deploy"]["replicas"])
    assert re.fullmatch(r"\$\{TIDEFLOW_WORKERS:-\d+\}", replicas), replicas
    assert "worker.py" in " ".join(worker["command"])
    assert worker["healthcheck"]["test"]


def test_workers_get_their_configuration_from_the_environment() -> None:
    worker = _services()["worker"]
    env = _env(worker)
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["TIDEFLOW_PAYLOAD_STORE"]
    assert env["TIDEFLOW_DATABASE_DEFAULT_DATABASE"].startswith("postgresql://")
    # Passed through from the host: present without a value, so an unset variable stays unset
    # (an empty OPENAI_BASE_URL would count as a configured endpoint).
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        assert name in env and env[name] is None, name
    assert _service_depending("worker", "temporal") == "service_healthy"
    assert _service_depending("worker", "temporal-setup") == "service_completed_successfully"
    assert _service_depending("worker", "tideflow-db") == "service_healthy"
    # The payload store (file://) lives on a volume every replica shares.
    store = env["TIDEFLOW_PAYLOAD_STORE"].split(":-", 1)[-1].rstrip("}")
    assert store.startswith("file:///data")
    assert any(str(v).endswith(":/data") for v in worker["volumes"])
    assert "tideflow-data" in _compose()["volumes"]


def test_every_file_mounted_or_run_from_the_repository_exists() -> None:
    for name, service in _services().items():
        mounts: dict[str, Path] = {}
        for volume in service.get("volumes", []):
            source, target = str(volume).split(":")[:2]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} is missing"
                mounts[target] = ROOT / source
        command = service.get("command")
        for part in command if isinstance(command, list) else []:
            for mount, folder in mounts.items():
                if part.startswith(mount + "/"):
                    script = folder / part.removeprefix(mount + "/")
                    assert script.is_file(), f"{name}: {part} is not in {folder}"
        dynamic = _env(service).get("DYNAMIC_CONFIG_FILE_PATH")
        if dynamic:
            inside = "/etc/temporal/" + dynamic
            found = [
                folder / inside.removeprefix(mount + "/")
                for mount, folder in mounts.items()
                if inside.startswith(mount + "/")
            ]
            assert found and found[0].is_file(), f"{name}: {dynamic} is not mounted"
            assert isinstance(yaml.safe_load(found[0].read_text()), dict)


def test_the_setup_job_registers_every_tideflow_search_attribute() -> None:
    from starter.server import SEARCH_ATTRIBUTES

    setup = _services()["temporal-setup"]
    assert setup["image"].startswith("temporalio/admin-tools:")
    assert _service_depending("temporal-setup", "temporal") == "service_healthy"
    script = (ROOT / "docker/temporal/setup-namespace.sh").read_text()
    for key in SEARCH_ATTRIBUTES:
        assert key.name in script
    assert "search-attribute create" in script


# -- the Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_runs_the_worker() -> None:
    instructions = _dockerfile_instructions()
    runs = [args for word, args in instructions if word in ("CMD", "ENTRYPOINT")]
    assert runs, "the Dockerfile has no CMD or ENTRYPOINT"
    assert any("worker.py" in args for args in runs)
    base = next(args for word, args in instructions if word == "FROM")
    assert re.match(r"python:3\.11\.\d+-slim", base), base
    installs = " ".join(args for word, args in instructions if word == "RUN")
    assert "tesseract-ocr" in installs
    assert "pip install ." in installs


def test_every_file_the_dockerfile_copies_exists_and_reaches_the_build() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [args for word, args in _dockerfile_instructions() if word in ("COPY", "ADD")]
    assert copies
    seen = 0
    for args in copies:
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: missing"
            top = source.rstrip("/").split("/")[0]
            for pattern in ignored:
                assert not fnmatch.fnmatch(source, pattern), f"{source} is in .dockerignore"
                assert not fnmatch.fnmatch(top, pattern), f"{source} is in .dockerignore"
            seen += 1
    assert seen >= 5
    # The healthcheck the image declares is one of the copied files.
    health = " ".join(args for word, args in _dockerfile_instructions() if word == "HEALTHCHECK")
    assert "docker/healthcheck.py" in health
    assert (ROOT / "docker/healthcheck.py").is_file()


def test_every_package_pip_installs_is_copied() -> None:
    """``pip install .`` needs every package and module pyproject.toml names."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = " ".join(args for word, args in _dockerfile_instructions() if word == "COPY")
    setuptools = project["tool"]["setuptools"]
    # Top-level packages: found by their include patterns (``starter*`` takes its subpackages).
    packages = [pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]]
    assert packages
    for package in packages:
        assert re.search(rf"(^|\s){package}(\s|/)", copied), f"{package} is not copied"
    for module in setuptools.get("py-modules", []):
        assert f"{module}.py" in copied
    assert project["project"]["readme"] in copied


# -- the scripts that talk to Temporal, run for real ---------------------------------------------


def _address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


@pytest.fixture
async def polled_queue(temporal_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh task queue with a Tideflow worker of this process polling it."""
    from activities import WorkerSettings
    from worker import running_worker

    queue = f"compose-health-{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings.from_env({"TIDEFLOW_HOME": str(tmp_path)})
    async with running_worker(temporal_env.client, settings, task_queue=queue):
        await _wait_for_poller(temporal_env.client, queue)
        yield queue


async def _wait_for_poller(client: Client, queue: str) -> None:
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    for _ in range(200):
        described = await client.workflow_service.describe_task_queue(request)
        if described.pollers:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"the worker never polled {queue}")


async def _healthcheck(address: str, queue: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "TIDEFLOW_TASK_QUEUE": queue,
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(ROOT / "docker/healthcheck.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


async def test_worker_healthcheck_passes_while_this_host_polls(
    temporal_env: WorkflowEnvironment, polled_queue: str
) -> None:
    result = await _healthcheck(_address(temporal_env), polled_queue)
    assert result.returncode == 0, result.stderr


async def test_worker_healthcheck_fails_when_no_worker_polls(
    temporal_env: WorkflowEnvironment,
) -> None:
    queue = f"compose-nobody-{uuid.uuid4().hex[:8]}"
    result = await _healthcheck(_address(temporal_env), queue)
    assert result.returncode == 1
    assert queue in result.stderr


async def test_worker_healthcheck_fails_when_temporal_is_unreachable() -> None:
    result = await _healthcheck("127.0.0.1:9", "tideflow")
    assert result.returncode == 1
    assert "cannot reach Temporal at 127.0.0.1:9" in result.stderr


async def test_setup_script_creates_the_namespace_and_search_attributes(
    temporal_env: WorkflowEnvironment,
) -> None:
    from starter.server import SEARCH_ATTRIBUTES

    namespace = f"compose-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "TEMPORAL_ADDRESS": _address(temporal_env),
        "TEMPORAL_NAMESPACE": namespace,
        "TEMPORAL_RETENTION": "1d",
    }
    script = str(ROOT / "docker/temporal/setup-namespace.sh")
    for _ in range(2):  # the second run finds everything in place
        result = await asyncio.to_thread(
            subprocess.run, ["sh", script], capture_output=True, text=True, timeout=180, env=env
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert "exists" in result.stdout
    listed = await temporal_env.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    for key in SEARCH_ATTRIBUTES:
        assert key.name in listed.custom_attributes
