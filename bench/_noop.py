"""``bench.noop``: a node type that does nothing, so a benchmark measures the engine alone.

Importing this module registers the type into ``activities.registry``; import it before the
worker is built (``worker.build_worker`` / ``worker.running_worker``) and before definitions
that use it are loaded. Never imported by the project itself.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from activities import NodeContext, node_type, registry

NOOP_TYPE = "bench.noop"


class NoopConfig(BaseModel):
    """Config of ``bench.noop``."""

    model_config = ConfigDict(extra="forbid")

    value: int = Field(default=0, description="echoed back as the output's value")


async def noop(config: NoopConfig, ctx: NodeContext) -> dict[str, int]:
    """Return ``{"value": config.value}`` at once."""
    return {"value": config.value}


if registry.get(NOOP_TYPE) is None:  # run as a file and imported as a module: register once
    node_type(NOOP_TYPE, NoopConfig)(noop)
