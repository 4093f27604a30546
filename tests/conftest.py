"""Session-wide setup. Real servers for tests live in tests/servers/, one module each, loaded
here as pytest plugins so every test module can ask for them by name."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Everything the tests' clients and workers write (payload store, SQLite, caches) goes to a
# folder of this session, never into the checkout or a developer's data folder.
os.environ["TIDEFLOW_HOME"] = tempfile.mkdtemp(prefix="tideflow-tests-")
for name in ("TIDEFLOW_CONFIG", "TIDEFLOW_PAYLOAD_STORE", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
    os.environ.pop(name, None)

pytest_plugins = sorted(
    f"tests.servers.{path.stem}"
    for path in (Path(__file__).parent / "servers").glob("*.py")
    if not path.stem.startswith("_")
)
