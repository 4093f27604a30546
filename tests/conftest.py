"""Session-wide fixtures. Real servers for tests live in tests/servers/, one module each, and are
loaded here as pytest plugins so every test module can ask for them by name."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = sorted(
    f"tests.servers.{path.stem}"
    for path in (Path(__file__).parent / "servers").glob("*.py")
    if not path.stem.startswith("_")
)
