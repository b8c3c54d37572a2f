"""The ``sweep:`` section of a training config.

.. code-block:: yaml

    sweep:
      grid:                               # the cartesian product of these lists
        solver.base_lr: [0.1, 0.01]
        layers.conv1.num_output: [20, 32]   # layers by name; list items by index (solver.stepvalue.0)
      zip:                                # groups of paired lists: each group is one more axis
        - {solver.momentum: [0.9, 0.0], solver.weight_decay: [0.0005, 0.0]}
      random:                             # `samples` draws (per grid point) from a seeded generator
        samples: 4
        seed: 0
        params:
          solver.base_lr: {loguniform: [1.0e-4, 0.1]}
          solver.momentum: {uniform: [0.8, 0.99]}
          layers.ip1.num_output: {int: [64, 512]}     # both ends included
          solver.type: {choice: [SGD, Adam]}
      metric: test.accuracy               # test.NAME (a scalar top of the test net) or train.loss
      mode: max                           # max | min
      scheduler: {type: successive_halving, min_iter: 100, eta: 3}

A key is a ``--set`` key (``tfconf train --set KEY=VALUE``): the same loader code applies it, so
keys reach what ``--set`` reaches, and a key that does not exist is reported at its line.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Discriminator, Field, Tag, model_validator

from tfconf.frontend.schema_base import StrictModel, located

__all__ = ["Choice", "IntRange", "LogUniform", "Random", "SuccessiveHalving", "SweepSpec", "Uniform"]

Key = Annotated[str, Field(min_length=1)]


def _check_range(lo: float, hi: float, name: str, positive: bool = False):
    if not hi > lo:
        raise located((name,), "needs [low, high] with low < high", [lo, hi])
    if positive and lo <= 0:
        raise located((name,), "needs a low end > 0 (it samples log-uniformly)", [lo, hi])


class Uniform(StrictModel):
    """``{uniform: [low, high]}``: a float drawn uniformly from [low, high)."""

    uniform: Annotated[list[float], Field(min_length=2, max_length=2)]

    @model_validator(mode="after")
    def _check(self):
        _check_range(*self.uniform, "uniform")
        return self

    def draw(self, rng) -> float:
        lo, hi = self.uniform
        return float(lo + (hi - lo) * rng.random())


class LogUniform(StrictModel):
    """``{loguniform: [low, high]}``: a float whose log is uniform in [log low, log high)."""

    loguniform: Annotated[list[float], Field(min_length=2, max_length=2)]

    @model_validator(mode="after")
    def _check(self):
        _check_range(*self.loguniform, "loguniform", positive=True)
        return self

    def draw(self, rng) -> float:
        lo, hi = (math.log(v) for v in self.loguniform)
        return float(math.exp(lo + (hi - lo) * rng.random()))


class IntRange(StrictModel):
    """``{int: [low, high]}``: an integer drawn uniformly from low..high, both included."""

    int_: Annotated[list[int], Field(min_length=2, max_length=2)] = Field(alias="int")

    @model_validator(mode="after")
    def _check(self):
        lo, hi = self.int_
        if hi < lo:
            raise located(("int",), "needs [low, high] with low <= high", [lo, hi])
        return self

    def draw(self, rng) -> int:
        lo, hi = self.int_
        return int(rng.integers(lo, hi + 1))


class Choice(StrictModel):
    """``{choice: [a, b, ...]}``: one of the values, each equally likely (any YAML values)."""

    choice: list[Any] = Field(min_length=1)

    def draw(self, rng) -> Any:
        return self.choice[int(rng.integers(len(self.choice)))]


_KINDS = ("uniform", "loguniform", "int", "choice")


def _distribution_tag(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _KINDS:
        return next(iter(value))
    return None  # Random's before-validator reports these first


Distribution = Annotated[Union[Annotated[Uniform, Tag("uniform")], Annotated[LogUniform, Tag("loguniform")],
                               Annotated[IntRange, Tag("int")], Annotated[Choice, Tag("choice")]],
                         Discriminator(_distribution_tag)]


class Random(StrictModel):
    """``random:``: ``samples`` draws of ``params`` from a generator seeded with ``seed``."""

    samples: int = Field(gt=0)
    seed: int = Field(default=0, ge=0)
    params: dict[Key, Distribution] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_distribution_each(cls, data: Any):
        if isinstance(data, dict) and isinstance(data.get("params"), dict):
            for key, value in data["params"].items():
                if _distribution_tag(value) is None:
                    raise located(("params", key), "a distribution is one of {uniform: [low, high]}, "
                                  "{loguniform: [low, high]}, {int: [low, high]}, {choice: [values]}", value)
        return data


class SuccessiveHalving(StrictModel):
    """Train every trial to ``min_iter``, keep the best 1/eta, train those eta times longer, and so
    on until ``max_iter`` (the solver's). The others stop where they are and are recorded so."""

    type: Literal["successive_halving"]
    min_iter: int = Field(gt=0)
    eta: int = Field(default=3, ge=2)

    def rungs(self, max_iter: int) -> list[int]:
        """The iterations at which trials are compared: min_iter, min_iter*eta, ..., max_iter."""
        out, it = [], self.min_iter
        while it < max_iter:
            out.append(it)
            it *= self.eta
        return out + [max_iter]


class SweepSpec(StrictModel):
    """The whole ``sweep:`` section."""

    grid: dict[Key, list[Any]] = Field(default_factory=dict)
    zip: list[dict[Key, list[Any]]] = Field(default_factory=list)
    random: Optional[Random] = None
    metric: Optional[str] = None
    mode: Optional[Literal["max", "min"]] = None
    scheduler: Optional[SuccessiveHalving] = None

    __synonyms__ = {"grid_search": "grid", "search": "grid", "sample": "random", "objective": "metric",
                    "direction": "mode", "early_stopping": "scheduler", "paired": "zip"}

    @model_validator(mode="after")
    def _check(self):
        for key, values in self.grid.items():
            if not values:
                raise located(("grid", key), "needs at least one value", values)
        for g, group in enumerate(self.zip):
            if not group:
                raise located(("zip", g), "a zip group needs at least one key")
            lengths = {k: len(v) for k, v in group.items()}
            first = next(iter(group))
            for key, n in lengths.items():
                if n == 0:
                    raise located(("zip", g, key), "needs at least one value", group[key])
                if n != lengths[first]:
                    raise located(("zip", g, key), f"the lists of a zip group advance together, so they need "
                                  f"the same length: {first!r} has {lengths[first]} values, this one {n}")
        seen: dict[str, tuple] = {}
        places = [(("grid", k), k) for k in self.grid]
        places += [(("zip", g, k), k) for g, group in enumerate(self.zip) for k in group]
        places += [(("random", "params", k), k) for k in (self.random.params if self.random else {})]
        for path, key in places:
            if key.split(".")[0] in ("sweep", "base"):
                raise located(path, f"a sweep cannot set {key.split('.')[0]!r}")
            if key in seen:
                raise located(path, f"{key!r} is swept twice (also at sweep.{'.'.join(map(str, seen[key]))})")
            seen[key] = path
        if not places:
            raise located((), "a sweep needs grid:, zip: or random: keys to vary")
        if self.metric is not None:
            phase, _, name = self.metric.partition(".")
            if phase not in ("test", "train") or not name or (phase == "train" and name != "loss"):
                raise located(("metric",), "must be test.NAME (a scalar output of the test net, such as "
                              "test.accuracy or test.loss) or train.loss", self.metric)
        return self
