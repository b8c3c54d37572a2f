"""The ``solver:`` section: Caffe's SolverParameter, flattened, plus cosine decay and linear warmup.

Example (the LeNet solver)::

    solver:
      type: SGD
      base_lr: 0.01
      momentum: 0.9
      weight_decay: 0.0005
      lr_policy: {type: inv, gamma: 0.0001, power: 0.75}   # or Caffe's flat form:
      # lr_policy: inv
      # gamma: 0.0001
      # power: 0.75
      max_iter: 10000
      display: 100
      test_interval: 500
      test_iter: 100
      snapshot: 5000

The learning-rate policy is written either as a mapping ``{type: step, gamma: 0.1, stepsize: 1000}`` or,
as in Caffe, as a name with its parameters (``gamma``, ``power``, ``stepsize``, ``stepvalue``) beside it in
the solver section. Each parameter may be given in one place only, and a parameter the policy does not
use is an error (a ``stepsize`` under ``lr_policy: fixed`` is almost always a mistake).

:func:`learning_rate` computes the rate at an iteration with Caffe's formulas (``iter`` counts from 0):

=========  ==============================================================
fixed      ``base_lr``
step       ``base_lr * gamma ^ floor(iter / stepsize)``
exp        ``base_lr * gamma ^ iter``
inv        ``base_lr * (1 + gamma * iter) ^ (-power)``
multistep  ``base_lr * gamma ^ k``, k = number of ``stepvalue`` entries <= iter
poly       ``base_lr * (1 - iter / max_iter) ^ power``
sigmoid    ``base_lr / (1 + exp(-gamma * (iter - stepsize)))``
cosine     ``0.5 * base_lr * (1 + cos(pi * iter / max_iter))``
=========  ==============================================================

(poly and cosine use the policy's ``max_iter`` or else the solver's, and hold their final value past it.)
With ``warmup: {iters: N, start_factor: f}`` (or ``warmup: N``) the rate is multiplied by a factor that
grows linearly from ``f`` at iteration 0 to 1 at iteration N.

**Test nets.** By default there is one: the net in the test phase, reading ``data.test`` for
``test_iter`` batches. Caffe's several test nets (``test_state { stage: ... }`` with one
``test_iter`` each) are ``test_nets``, each the net built in the test phase with its stages (and
level), reading its own data source (``data: NAME``; default ``data.<its name>`` where the data
section has that source, else ``data.test``; ``data: train`` tests on the training source)::

    solver:
      test_interval: 500
      test_nets:
        - {name: test-on-train, stage: test-on-train, test_iter: 500}
        - {name: test-on-test, stage: test-on-test, test_iter: 100}

(or Caffe's form: ``test_iter: [500, 100]`` beside ``test_nets``, one value per net in order.) A test
net's ``name`` defaults to its stages joined by ``+``. With several test nets, every test metric is
reported under its net's name (``test-on-train/l2_error``); a single test net's metrics keep their
own names.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from .schema_base import (
    FilePrefix, FiniteFloat, Name, NonNegFloat, NonNegInt, PositiveFloat, PositiveInt, StrictModel, located,
    located_errors,
)

__all__ = ["LR_POLICIES", "SOLVER_TYPES", "LrPolicy", "SolverConfig", "TestNet", "TestPhase", "Warmup",
           "learning_rate", "test_phases"]

SolverType = Literal["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam", "AdamW"]
PolicyName = Literal["fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid", "cosine"]
SOLVER_TYPES: tuple[str, ...] = SolverType.__args__  # type: ignore[attr-defined]
LR_POLICIES: tuple[str, ...] = PolicyName.__args__  # type: ignore[attr-defined]

# policy -> (required parameters, optional parameters)
_POLICY_PARAMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fixed": ((), ()),
    "step": (("gamma", "stepsize"), ()),
    "exp": (("gamma",), ()),
    "inv": (("gamma", "power"), ()),
    "multistep": (("gamma", "stepvalue"), ()),
    "poly": (("power",), ("max_iter",)),
    "sigmoid": (("gamma", "stepsize"), ()),
    "cosine": ((), ("max_iter",)),
}
_FLAT_PARAMS = ("gamma", "power", "stepsize", "stepvalue")
_ADAM_LIKE = ("Adam", "AdamW")

Fraction = Annotated[float, Field(ge=0, lt=1)]


class LrPolicy(StrictModel):
    """A learning-rate policy: ``type`` and the parameters that policy uses (see the module docstring)."""

    __synonyms__ = {"name": "type", "policy": "type", "step_size": "stepsize", "steps": "stepvalue",
                    "milestones": "stepvalue", "step_values": "stepvalue", "max_iters": "max_iter",
                    "decay": "gamma", "factor": "gamma"}

    type: PolicyName
    gamma: Optional[FiniteFloat] = None
    power: Optional[FiniteFloat] = None
    stepsize: Optional[PositiveInt] = None
    stepvalue: Optional[list[PositiveInt]] = None
    max_iter: Optional[PositiveInt] = None


def _policy_from_name(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


def _warmup_from_int(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return {"iters": value}
    return value


class Warmup(StrictModel):
    """Linear warmup: the rate is scaled from ``start_factor`` at iteration 0 up to 1 at ``iters``."""

    __synonyms__ = {"iterations": "iters", "iter": "iters", "steps": "iters", "start": "start_factor",
                    "factor": "start_factor"}

    iters: PositiveInt
    start_factor: Annotated[float, Field(ge=0, le=1)] = 0.1


def _net_name(value: Any) -> Any:
    """A test net's name: it prefixes the net's metrics (``NAME/loss``) and may name a data source."""
    if not isinstance(value, str):
        return value  # the str type check reports it
    bad = None
    if not value.strip():
        bad = "is empty"
    elif value != value.strip():
        bad = "starts or ends with a space"
    elif "/" in value:
        bad = "contains '/' (which separates a test net's name from its metrics' names)"
    elif any(ord(c) < 32 or ord(c) == 127 for c in value):
        bad = "contains a control character"
    elif value == "train":
        bad = "is 'train', the train net's"
    if bad:
        raise PydanticCustomError("test_net_name", "a test net's name {bad}", {"bad": bad})
    return value


def _stages(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class TestNet(StrictModel):
    """One test net (Caffe's ``test_state`` with its ``test_iter``): the net built in the test phase
    with these stages and level, reading the data source ``data`` for ``test_iter`` batches."""

    __test__ = False  # (not a pytest test class)
    __synonyms__ = {"stages": "stage", "state": "stage", "iters": "test_iter", "iterations": "test_iter",
                    "iter": "test_iter", "source": "data", "phase": "name"}

    name: Annotated[str, BeforeValidator(_net_name)]
    """Names the net's metrics (``NAME/loss`` when there are several test nets); default: its
    stages joined by ``+``."""
    stage: Annotated[list[Name], BeforeValidator(_stages)] = Field(default_factory=list)
    """The net's stages: layers choose by ``include``/``exclude`` rules with ``stage``/``not_stage``."""
    level: int = 0
    """The net's level (rules' ``min_level``/``max_level``)."""
    test_iter: Optional[PositiveInt] = None
    """Test batches per test pass (default the solver's ``test_iter``)."""
    data: Optional[Name] = None
    """The data source it reads: ``test``, ``train`` or a named source of the data section (default
    ``data.<name>`` where the data section has that source, else ``data.test``)."""

    @model_validator(mode="before")
    @classmethod
    def _name_from_stages(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" not in data:
            stages = _stages(data.get("stage"))
            if not stages or not isinstance(stages, list) or not all(isinstance(v, str) for v in stages):
                raise located((), "a test net needs a name (or a stage to be named after)")
            data = {**data, "name": "+".join(stages)}
        return data


@dataclasses.dataclass(frozen=True)
class TestPhase:
    """A test net as the trainer runs it (:func:`test_phases`): its name, NetState (``stages``,
    ``level``), batches per pass (None: the default) and the data section key it reads."""

    __test__ = False  # (not a pytest test class)

    name: str
    stages: tuple[str, ...] = ()
    level: int = 0
    test_iter: Optional[int] = None
    data: str = "test"
    index: Optional[int] = None  # its place in solver.test_nets (None: the default test net)


class SolverConfig(StrictModel):
    """The ``solver:`` section (Caffe's SolverParameter, flattened). Defaults follow Caffe unless noted."""

    # NOTE: the training driver that runs one is tfconf.train.solver.Solver; the JSON Schema keeps
    # the section's Caffe name as its title
    model_config = ConfigDict(title="Solver")

    __synonyms__ = {"lr": "base_lr", "learning_rate": "base_lr", "eps": "delta", "epsilon": "delta",
                    "beta1": "momentum", "beta2": "momentum2", "decay": "weight_decay",
                    "solver_type": "type", "optimizer": "type", "max_iters": "max_iter",
                    "iterations": "max_iter", "seed": "random_seed", "clip_grad": "clip_gradients",
                    "clip_norm": "clip_gradients", "policy": "lr_policy", "step_size": "stepsize",
                    "steps": "stepvalue", "milestones": "stepvalue", "accumulate": "iter_size"}

    type: SolverType = "SGD"
    """The optimizer. Adam uses momentum (beta1), momentum2 (beta2) and delta (eps); RMSProp uses
    rms_decay and delta; AdaDelta uses momentum (the decay) and delta; AdamW decouples weight_decay."""
    base_lr: PositiveFloat
    lr_policy: Annotated[LrPolicy, BeforeValidator(_policy_from_name)] = Field(
        default_factory=lambda: LrPolicy(type="fixed"))
    gamma: Optional[FiniteFloat] = None
    power: Optional[FiniteFloat] = None
    stepsize: Optional[PositiveInt] = None
    stepvalue: Optional[list[PositiveInt]] = None
    warmup: Annotated[Optional[Warmup], BeforeValidator(_warmup_from_int)] = None
    momentum: Fraction = 0.0
    """SGD/Nesterov momentum, Adam's beta1, AdaDelta's decay (default 0, or 0.9 for Adam/AdamW)."""
    momentum2: Fraction = 0.999
    delta: PositiveFloat = 1e-8
    rms_decay: Fraction = 0.99
    weight_decay: NonNegFloat = 0.0
    regularization_type: Literal["L2", "L1"] = "L2"
    clip_gradients: Optional[PositiveFloat] = None
    """Scale gradients so that their global L2 norm is at most this (null: no clipping)."""
    iter_size: PositiveInt = 1
    """Accumulate gradients over this many batches per update."""
    max_iter: PositiveInt
    display: NonNegInt = 0
    average_loss: PositiveInt = 1
    test_interval: NonNegInt = 0
    """Test every this many iterations (0: never)."""
    test_iter: Optional[Union[PositiveInt, list[PositiveInt]]] = None
    """Test batches per test (null: one pass over the test set); with ``test_nets``, Caffe's form: one
    value per test net, in order (or one value for all of them)."""
    test_nets: Optional[Annotated[list[TestNet], Field(min_length=1)]] = None
    """Several test nets (Caffe's ``test_state``s), each with its stages, data source and test_iter;
    default: one, the net in the test phase reading ``data.test``."""
    test_initialization: bool = True
    snapshot: NonNegInt = 0
    snapshot_prefix: Optional[FilePrefix] = None
    """Names the snapshot files (Caffe's path prefix: only its last component; they go to RUN/snapshots/)."""
    snapshot_after_train: bool = True
    random_seed: Optional[NonNegInt] = None

    @model_validator(mode="before")
    @classmethod
    def _type_defaults(cls, data: Any) -> Any:
        # NOTE: Caffe leaves Adam's beta1 (momentum) at 0 unless set; 0.9 is what everyone means.
        if isinstance(data, dict) and data.get("type") in _ADAM_LIKE and "momentum" not in data:
            data = {**data, "momentum": 0.9}
        return data

    @model_validator(mode="after")
    def _check(self) -> "SolverConfig":
        errors = []
        policy = self.lr_policy
        required, optional = _POLICY_PARAMS[policy.type]
        allowed = set(required) | set(optional)
        values: dict[str, tuple[Any, tuple]] = {}  # name -> (value, path it came from)
        for name in _FLAT_PARAMS + ("max_iter",):
            inner = getattr(policy, name)
            flat = getattr(self, name) if name in _FLAT_PARAMS else None
            if inner is not None and flat is not None:
                errors.append(located((name,), "is also set in lr_policy; set it in one place", flat))
            if inner is not None:
                values[name] = (inner, ("lr_policy", name))
            elif flat is not None:
                values[name] = (flat, (name,))
        for name, (value, path) in values.items():
            if name not in allowed:
                uses = ", ".join(required + optional) or "no parameters"
                errors.append(located(path, f"is not used by lr_policy {policy.type!r} (it uses {uses})"))
        missing = [n for n in required if n not in values]
        if missing:
            errors.append(located(("lr_policy",), f"lr_policy {policy.type!r} needs "
                                  f"{' and '.join(missing)} (set in lr_policy or beside it)"))
        if "gamma" in values and "gamma" in allowed:
            gamma, path = values["gamma"]
            if policy.type == "sigmoid":
                if gamma == 0:
                    errors.append(located(path, "must not be 0 for lr_policy 'sigmoid'", gamma))
            elif gamma <= 0:
                errors.append(located(path, f"must be > 0 for lr_policy {policy.type!r}", gamma))
        if "power" in values and "power" in allowed:
            power, path = values["power"]
            if power <= 0:
                errors.append(located(path, f"must be > 0 for lr_policy {policy.type!r}", power))
        if "stepvalue" in values and "stepvalue" in allowed:
            steps, path = values["stepvalue"]
            if not steps:
                errors.append(located(path, "must list at least one iteration", steps))
            elif any(b <= a for a, b in zip(steps, steps[1:])):
                errors.append(located(path, "must be strictly increasing", steps))
        if self.warmup is not None and self.warmup.iters > self.max_iter:
            errors.append(located(("warmup", "iters"), f"must be <= max_iter ({self.max_iter})",
                                  self.warmup.iters))
        errors += self._test_net_errors()
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise located_errors(type(self).__name__, errors)
        return self

    def _test_net_errors(self) -> list:
        errors = []
        iters, nets = self.test_iter, self.test_nets or []
        if isinstance(iters, list):
            want = len(nets) or 1
            if len(iters) != want:
                if nets:
                    why = (f"lists {len(iters)} values for {len(nets)} test net{'s' if len(nets) > 1 else ''}: one "
                           "per test net, in the order of test_nets")
                else:
                    why = (f"lists {len(iters)} values, one per test net, but the config has one test net (the "
                           "test phase, reading data.test): declare the others in test_nets")
                errors.append(located(("test_iter",), why, iters))
            for i, net in enumerate(nets):
                if net.test_iter is not None:
                    errors.append(located(("test_nets", i, "test_iter"), "is also given by the solver's test_iter "
                                          "list; set it in one place", net.test_iter))
        seen: dict[str, int] = {}
        for i, net in enumerate(nets):
            if net.name in seen:
                errors.append(located(("test_nets", i, "name"), f"test_nets[{seen[net.name]}] has this name too; "
                                      "test nets need different names (they name their metrics)", net.name))
            seen.setdefault(net.name, i)
        return errors

    def policy(self) -> LrPolicy:
        """The lr policy with parameters gathered from both places and ``max_iter`` filled in where used."""
        params: dict[str, Any] = {"type": self.lr_policy.type}
        required, optional = _POLICY_PARAMS[self.lr_policy.type]
        for name in required + optional:
            value = getattr(self.lr_policy, name)
            if value is None and name in _FLAT_PARAMS:
                value = getattr(self, name)
            if value is None and name == "max_iter":
                value = self.max_iter
            params[name] = value
        return LrPolicy(**params)

    def learning_rate(self, iteration: int) -> float:
        return learning_rate(self, iteration)


def learning_rate(solver: SolverConfig, iteration: int) -> float:
    """The learning rate at ``iteration`` (from 0), with Caffe's formulas and the optional warmup.

    >>> s = SolverConfig(base_lr=0.01, lr_policy="step", gamma=0.1, stepsize=100, max_iter=1000)
    >>> round(learning_rate(s, 250), 12)
    0.0001
    """
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    p = solver.policy()
    base = solver.base_lr
    it = iteration
    kind = p.type
    if kind == "fixed":
        rate = base
    elif kind == "step":
        rate = base * p.gamma ** (it // p.stepsize)
    elif kind == "exp":
        rate = base * p.gamma ** it
    elif kind == "inv":
        rate = base * (1.0 + p.gamma * it) ** (-p.power)
    elif kind == "multistep":
        rate = base * p.gamma ** bisect.bisect_right(p.stepvalue, it)
    elif kind == "poly":
        rate = base * (1.0 - min(it, p.max_iter) / p.max_iter) ** p.power
    elif kind == "sigmoid":
        z = -p.gamma * (it - p.stepsize)  # rate = base / (1 + e^z), computed without overflow
        rate = base * (math.exp(-z) / (1.0 + math.exp(-z)) if z > 0 else 1.0 / (1.0 + math.exp(z)))
    elif kind == "cosine":
        rate = 0.5 * base * (1.0 + math.cos(math.pi * min(it, p.max_iter) / p.max_iter))
    else:  # pragma: no cover - the schema admits only the policies above
        raise ValueError(f"unknown lr_policy {kind!r}")
    warmup = solver.warmup
    if warmup is not None and it < warmup.iters:
        rate *= warmup.start_factor + (1.0 - warmup.start_factor) * it / warmup.iters
    return rate


def test_phases(solver: Optional[SolverConfig], data: Any = None) -> list[TestPhase]:
    """The test nets of a config, in order: ``solver.test_nets`` with each one's test_iter and data
    source resolved, or else the one default test net (``test``, reading ``data.test``). ``data`` is
    the config's data section (or None); that the sources exist is checked by frontend/config.py."""
    iters = solver.test_iter if solver is not None else None
    nets = (solver.test_nets if solver is not None else None) or []
    if not nets:
        return [TestPhase("test", test_iter=iters[0] if isinstance(iters, list) else iters)]
    named = set(data.sources()) if data is not None and hasattr(data, "sources") else set()
    out = []
    for i, net in enumerate(nets):
        n = net.test_iter
        if n is None:
            n = iters[i] if isinstance(iters, list) and i < len(iters) else (iters if isinstance(iters, int) else None)
        key = net.data or (net.name if net.name in named else "test")
        out.append(TestPhase(net.name, tuple(net.stage), net.level, n, key, i))
    return out
