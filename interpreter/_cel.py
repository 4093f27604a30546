"""The CEL engine (the ``common-expression-language`` package's Rust extension), without the
package's command line: ``import cel`` also imports its REPL (typer, prompt_toolkit, pygments),
which costs a worker and every ``tideflow`` command about a second at start and is never used.
The extension module is loaded on its own instead (and shared with ``import cel``, should
anything else import the package later)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_NAME = "cel.cel"


def _load() -> ModuleType:
    loaded = sys.modules.get(_NAME)
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("cel")  # locates the package without running it
    if package is None or not package.submodule_search_locations:
        raise ImportError("the common-expression-language package is not installed")
    folder = Path(next(iter(package.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / f"cel{suffix}"
        if path.exists():
            loader = importlib.machinery.ExtensionFileLoader(_NAME, str(path))
            spec = importlib.util.spec_from_file_location(_NAME, path, loader=loader)
            assert spec is not None
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
            sys.modules[_NAME] = module
            return module
    import cel  # an unusual layout: the slow way

    return cel


engine = _load()
"""The module with ``compile`` and ``Context``."""
