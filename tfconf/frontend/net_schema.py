"""The whole training config: ``name``, ``data``, ``layers``, ``solver`` (and ``sweep``, read by
the sweep tools). Each layer type owns its schema; ``layers`` is their discriminated union on
``type``, so adding a layer never edits a central schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field

from tfconf.data.schema import DataSection
from .cluster_schema import ClusterSection, DistributedSection

from .layers import LAYERS
from .schema_base import FileName, StrictModel
from .solver_schema import SolverConfig


def _layer_union():
    members = tuple(LAYERS[k] for k in sorted(LAYERS))
    return Annotated[Union[members], Field(discriminator="type")]  # type: ignore[valid-type]


LayerUnion = _layer_union()


class NetConfig(StrictModel):
    """A complete config: the net, its data and its solver."""

    name: FileName = "net"
    data: DataSection | None = None
    layers: list[LayerUnion] = Field(min_length=1)  # type: ignore[valid-type]
    solver: SolverConfig | None = None
    sweep: dict[str, Any] | None = None
    device: str = Field("auto", description="Default device of every layer: auto (placed by the cost "
                        "model), cpu, gpu, gpu:1 or a full device name.")
    device_count: dict[str, int] | None = Field(None, description="Devices the session creates, e.g. "
                                                "{CPU: 2} for two virtual CPU devices.")
    memory: Literal["default", "recompute"] = Field(
        "default", description="recompute: keep only every k-th forward activation (k = √n) for the "
        "backward pass and recompute the others there: less memory for about one more forward pass.")
    cluster: ClusterSection | None = Field(None, description="Train on a Ray cluster (tfconf train --cluster "
                                           "ADDR sets cluster.address); see docs/distributed.md.")
    distributed: DistributedSection | None = Field(None, description="Synchronous data-parallel training: "
                                                   "workers, strategy (parameter_server or allreduce).")
