"""The ``cluster:`` and ``distributed:`` sections of a training config.

    cluster: {backend: ray, address: local, jobs: {ps: 1, worker: 2}}
    distributed: {workers: 2, strategy: parameter_server, sync: true}

``tfconf train CONFIG --cluster ADDR`` sets ``cluster.address``. With either section the run is
data-parallel on the cluster (see :mod:`tfconf.train.distributed`); ``data.train.batch_size`` is
each worker's batch, so N workers train as one process would with N times that batch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .schema_base import NonNegInt, PositiveFloat, PositiveInt, StrictModel, located


class ClusterSection(StrictModel):
    """Where a distributed training runs: a Ray cluster and its jobs."""

    backend: Literal["ray"] = "ray"
    address: str = Field("local", description="local (start Ray on this machine), auto (join the cluster "
                         "`ray start --head` started on this machine) or HOST:PORT of a Ray head node.")
    jobs: dict[str, NonNegInt] | None = Field(None, description="Tasks per job, e.g. {ps: 1, worker: 2}. "
                                              "Default: distributed.workers workers, plus one ps task for "
                                              "the parameter_server strategy.")
    cpus_per_task: PositiveFloat | None = Field(None, description="CPUs each task asks Ray for (default 1, "
                                                "or an equal share when the cluster has fewer).")
    device_count: dict[str, NonNegInt] | None = Field(None, description="Devices of each task, e.g. "
                                                      "{CPU: 1, GPU: 1}.")
    link_gbps: PositiveFloat = Field(10.0, description="Network speed between tasks (Gb/s) for the placement "
                                     "cost model.")


class DistributedSection(StrictModel):
    """Synchronous data-parallel training: each worker reads its own shard of every batch."""

    workers: PositiveInt = Field(1, description="Worker tasks; each trains on data.train.batch_size samples "
                                 "per iteration, so the effective batch is workers x batch_size.")
    strategy: Literal["parameter_server", "allreduce"] = Field(
        "parameter_server", description="parameter_server: weights and updates on the ps tasks, workers "
        "send gradients and receive weights; allreduce: every worker keeps a replica and gradients are "
        "summed with a ring all-reduce.")
    sync: bool = Field(True, description="Synchronous updates (the only mode implemented).")

    @model_validator(mode="after")
    def _check(self):
        if not self.sync:
            raise located(("sync",), "asynchronous training (sync: false) is not implemented; use sync: true")
        return self
