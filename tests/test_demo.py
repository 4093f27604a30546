"""The README's first command: ``tideflow demo`` extracts invoice fields with the real local
model (the extraction's default Qwen2.5-Coder model through xllamacpp) and prints them, checked,
with the Web UI links."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from activities._local_model import KNOWN_MODELS
from activities._models import TASK_DEFAULTS

ROOT = Path(__file__).resolve().parent.parent


def test_demo_extracts_invoice_fields_with_the_local_model(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "TIDEFLOW_"))
    }
    env.update(
        TIDEFLOW_HOME=str(tmp_path / "home"),
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        TIDEFLOW_TASK_QUEUE="demo-test",
        TIDEFLOW_UI_URL="http://localhost:8233",
    )
    done = subprocess.run(
        [sys.executable, "-m", "starter.cli", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    assert "INV-10487" in out  # the Acme invoice's number, read from the PDF by the model
    assert "Acme Corporation" in out
    assert "checks" in out  # the column of what the extraction's checks found
    # The extraction's default local model (the evaluation's choice) answered.
    served = KNOWN_MODELS[TASK_DEFAULTS["extract"].removeprefix("local:")].name
    assert f"local:{served}" in out
    tokens = int(out.split(" tokens in all")[0].rsplit("· ", 1)[1])
    assert tokens > 0
    assert out.count("Web UI: http://localhost:8233/namespaces/default/workflows/") >= 2
    assert "table invoices: " in out
