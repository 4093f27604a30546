"""Session-wide setup. Real servers for tests live in tests/servers/, one module each, loaded
here as pytest plugins so every test module can ask for them by name."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Everything the tests' clients and workers write (payload store, SQLite, caches) goes to a
# folder of this session, never into the checkout or a developer's data folder.
os.environ["TIDEFLOW_HOME"] = tempfile.mkdtemp(prefix="tideflow-tests-")
for name in ("TIDEFLOW_CONFIG", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
    os.environ.pop(name, None)
# One payload store for the session, as in a deployment: every client, worker and command the
# tests start (whatever its own TIDEFLOW_HOME) reads and writes the same references.
os.environ["TIDEFLOW_PAYLOAD_STORE"] = (Path(os.environ["TIDEFLOW_HOME"]) / "payloads").as_uri()

# The workflow runs inside the Temporal SDK's sandbox in every test (and in every worker process
# a test starts): production workers run it without (activities/settings.py), so a call the
# sandbox forbids in the interpreter fails here rather than replaying wrong there.
# test_engine_config runs the production runner.
os.environ["TIDEFLOW_WORKFLOW_SANDBOX"] = "1"

pytest_plugins = sorted(
    f"tests.servers.{path.stem}"
    for path in (Path(__file__).parent / "servers").glob("*.py")
    if not path.stem.startswith("_")
)
