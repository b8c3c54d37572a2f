"""Data made where it is used: each worker task reads its own shard of the training data.

``ClusterSession.add_source(task, name, "shard", spec)`` gives a task a data source; a feed value
``SourceFeed(task, name, index, element)`` then says "element ``element`` of batch ``index`` of that
source", and the task makes the value itself instead of receiving it from the client.

A shard is the data-parallel split of a single-process batch stream: with ``num_shards`` workers of
``batch_size`` samples each, shard ``k`` of batch ``i`` is rows ``k·B .. k·B+B-1`` of batch ``i`` of the
one-process stream whose batch size is ``num_shards·B`` (same seed, same shuffle, same crops and flips).
So N synchronous workers see, between them, exactly the samples one process sees with N times the batch.
"""

from __future__ import annotations

import dataclasses
import threading


@dataclasses.dataclass(frozen=True)
class SourceFeed:
    """A feed value made on ``task`` from its data source ``source``: element ``element`` (0 data,
    1 label, ...) of batch ``index``."""

    task: str
    source: str
    index: int
    element: int = 0


class ShardSource:
    """Shard ``shard`` of ``num_shards`` of a data spec's batch stream (see the module docstring).

    ``spec``: {"data": DataSpec (its batch_size is one shard's), "phase", "root", "seed",
    "shard", "num_shards"}. Batch ``i + 1`` is prepared in a background thread while step ``i`` runs."""

    def __init__(self, spec):
        from tfconf.data import DataSpec, make_dataset

        data = spec["data"]
        if not isinstance(data, DataSpec):
            data = DataSpec.model_validate(dict(data))
        self.batch_size = int(data.batch_size)
        self.shard, self.num_shards = int(spec["shard"]), int(spec["num_shards"])
        if not 0 <= self.shard < self.num_shards:
            raise ValueError(f"shard {self.shard} of {self.num_shards}")
        data = data.model_copy(update={"batch_size": self.batch_size * self.num_shards})
        self.base = make_dataset(data, spec.get("phase", "train"), root=spec.get("root"), seed=spec.get("seed"))
        self._lock = threading.Lock()
        self._ahead = None  # (index, thread, result holder)

    def _make(self, i):
        base, b, k = self.base, self.batch_size, self.shard
        if base.transform.is_random:  # crops/flips are drawn for the whole batch: draw them all, keep ours
            x, y = base.batch_at(i)
            return x[k * b:(k + 1) * b], y[k * b:(k + 1) * b]
        idx = base.indices_at(i)[k * b:(k + 1) * b]
        return base.transform(base.x[idx], None), base.y[idx]

    def batch(self, i):
        with self._lock:
            ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == i:
            ahead[1].join()
            out = ahead[2].get("batch")
            if out is None:
                raise ahead[2]["error"]
        else:
            out = self._make(i)
        holder = {}

        def work(j=i + 1):
            try:
                holder["batch"] = self._make(j)
            except BaseException as e:  # noqa: BLE001 - raised when batch j is asked for
                holder["error"] = e

        t = threading.Thread(target=work, daemon=True, name="tfconf-shard-prefetch")
        t.start()
        with self._lock:
            self._ahead = (i + 1, t, holder)
        return out

    def close(self):
        with self._lock:
            ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead[1].join()
        self.base.close()


_KINDS = {"shard": ShardSource}


def make_source(kind, spec):
    try:
        cls = _KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown data source kind {kind!r}; known: {', '.join(_KINDS)}") from None
    return cls(spec)
