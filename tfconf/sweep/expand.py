"""From a config with a ``sweep:`` section to its trials, every one validated before any runs.

A trial is the base config plus a list of ``--set``-style overrides (``solver.base_lr=0.01``): the
loader's own override code applies them, so a sweep key reaches exactly what ``--set`` reaches
(any value, layers by name, list items by index), and each trial config is then validated and its
net built into a scratch graph as ``tfconf train`` would (:func:`tfconf.frontend.config.load`).
A key that does not exist is reported once at its line in the sweep section; a value that makes a
trial invalid is reported at that value, naming the trial::

    lenet_sweep.yaml:7:22: solver.base_lr: trial t001 (solver.base_lr=-1): must be > 0. Received: -1
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any, Iterable

import yaml

from tfconf.frontend import config as cfgmod
from tfconf.frontend.errors import ConfigError, ConfigIssue, format_path
from tfconf.frontend.loader import Dumper, LoadedConfig, load_config, parse_override
from tfconf.frontend.schema_base import validate_section

from .spec import SweepSpec

__all__ = ["Sweep", "Trial", "expand", "load_spec", "override_text"]

MAX_REPORTED = 10  # error lines shown for trials that fail validation


@dataclasses.dataclass
class Trial:
    """One point of the sweep: ``params`` (key → value) as ``overrides`` of the base config."""

    id: str
    index: int
    params: dict
    overrides: list
    # override text → (path of its key, path of its value) in the sweep config, for located errors
    sources: dict = dataclasses.field(default_factory=dict, repr=False)
    cfg: Any = dataclasses.field(default=None, repr=False)  # the validated Config

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_short(v)}" for k, v in self.params.items())

    @property
    def config_text(self) -> str:
        return self.cfg.loaded.dump()

    def as_dict(self) -> dict:
        return {"id": self.id, "params": self.params, "overrides": self.overrides}


@dataclasses.dataclass
class Sweep:
    """An expanded sweep: the config it came from, its spec, its trials (validated when expanded)."""

    config_path: str
    loaded: LoadedConfig
    spec: SweepSpec
    trials: list
    metric: str
    mode: str
    max_iter: int
    overrides: tuple = ()

    @property
    def keys(self) -> list:
        keys: list = []
        for t in self.trials:
            keys += [k for k in t.params if k not in keys]
        return keys

    @property
    def rungs(self) -> list:
        """The iterations trials stop at to be compared: [max_iter] without a scheduler."""
        return self.spec.scheduler.rungs(self.max_iter) if self.spec.scheduler else [self.max_iter]


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return override_text(v)


def override_text(value: Any) -> str:
    """``value`` as YAML on one line that the loader reads back to the same value."""
    text = yaml.dump(value, Dumper=Dumper, default_flow_style=True, width=10**9, allow_unicode=True)
    text = text.strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    elif text.endswith("..."):
        text = text[:-3].strip()
    return text


def load_spec(path, overrides: Iterable[str] = ()) -> tuple[LoadedConfig, SweepSpec]:
    """The config (with its ``base:`` chain and ``--set`` overrides) and its validated ``sweep:``."""
    loaded = load_config(path, overrides)
    if not isinstance(loaded.data.get("sweep"), dict):
        where = ("sweep",) if "sweep" in loaded.data else ()
        raise loaded.error(where, "a sweep config needs a 'sweep:' section (grid:, zip: or random:), "
                           "for example sweep: {grid: {solver.base_lr: [0.1, 0.01]}}")
    return loaded, validate_section(SweepSpec, loaded, ("sweep",))


def _points(spec: SweepSpec) -> list[list[tuple]]:
    """Grid × zip points: each a list of (key, value, key path, value path)."""
    axes: list[list[list[tuple]]] = []
    for key, values in spec.grid.items():
        axes.append([[(key, v, ("sweep", "grid", key), ("sweep", "grid", key, i))] for i, v in enumerate(values)])
    for g, group in enumerate(spec.zip):
        n = len(next(iter(group.values())))
        axes.append([[(key, vals[i], ("sweep", "zip", g, key), ("sweep", "zip", g, key, i))
                      for key, vals in group.items()] for i in range(n)])
    return [sum(combo, []) for combo in itertools.product(*axes)] if axes else [[]]


def _trials(spec: SweepSpec) -> list[Trial]:
    import numpy as np

    points = _points(spec)
    rng = np.random.default_rng(spec.random.seed) if spec.random else None
    samples = spec.random.samples if spec.random else 1
    total = len(points) * samples
    width = max(3, len(str(total - 1)))
    trials = []
    for point in points:
        for _ in range(samples):
            entries = list(point)
            if spec.random:
                for key, dist in spec.random.params.items():
                    path = ("sweep", "random", "params", key)
                    entries.append((key, dist.draw(rng), path, path))
            i = len(trials)
            t = Trial(f"t{i:0{width}d}", i, {}, [])
            for key, value, key_path, value_path in entries:
                text = f"{key}={override_text(value)}"
                assert parse_override(text)[1] == value or value != value, text  # round-trips
                t.params[key] = value
                t.overrides.append(text)
                t.sources[text] = (key_path, value_path)
            trials.append(t)
    return trials


def _default_metric(cfg) -> tuple[str, str]:
    types = {layer.type for layer in cfg.net.layers}
    if "Accuracy" in types and cfg.net.data is not None and cfg.net.data.test is not None:
        return "test.accuracy", "max"
    if cfg.net.data is not None and cfg.net.data.test is not None:
        return "test.loss", "min"
    return "train.loss", "min"


def _relocate(err: ConfigError, trial: Trial, loaded: LoadedConfig) -> tuple[list, list]:
    """(key issues, value issues) of a trial's ConfigError, located in the sweep section. A value
    issue is (location, path, cause, message, received): ``cause`` is the swept value it is about
    (``solver.base_lr=-1``) when the issue points at one, else the trial's whole label."""
    keys, values = [], []
    for issue in err.issues:
        loc, cause = issue.location, None  # None: not about a swept value (the base config's own problem)
        text = loc.file[len("--set "):] if loc is not None and loc.is_override else None
        if text in trial.sources:
            key_path, value_path = trial.sources[text]
            if not issue.path:  # the loader could not apply the key at all
                keys.append(ConfigIssue(loc and loaded.location(key_path), format_path(key_path, loaded.data),
                                        issue.message, issue.received))
                continue
            loc, cause = loaded.location(value_path), text
        values.append((loc, issue.path, cause, issue.message, issue.received, trial.id))
    return keys, values


def _grouped(values: list, labels: dict) -> list:
    """One line per distinct problem, naming every trial that has it (``labels``: trial id → label)."""
    groups: dict = {}
    for loc, path, cause, message, received, tid in values:
        key = (str(loc), path, cause, message, repr(received))
        groups.setdefault(key, [loc, path, cause, message, received, []])[5].append(tid)
    out = []
    for loc, path, cause, message, received, ids in groups.values():
        shown = ", ".join(ids[:6]) + (f" and {len(ids) - 6} more" if len(ids) > 6 else "")
        noun = "trial" if len(ids) == 1 else "trials"
        if cause is None:  # the same problem in every trial it is in: one line, labelled when it is one trial
            cause = labels[ids[0]] if len(ids) == 1 else None
        out.append(ConfigIssue(loc, path, f"{noun} {shown}{f' ({cause})' if cause else ''}: {message}", received))
    return out


def expand(path, overrides: Iterable[str] = ()) -> Sweep:
    """Expand the sweep of config ``path`` into trials and validate every one of them.

    ``overrides`` (``--set`` texts) apply to the base config before each trial's. Raises a located
    ConfigError for a bad sweep section, a key that does not exist, or any trial that is not a
    valid config (all of them are checked before this returns; at most :data:`MAX_REPORTED` lines
    are shown)."""
    overrides = tuple(overrides)
    loaded, spec = load_spec(path, overrides)
    trials = _trials(spec)
    bad: list = []
    failed = 0
    metric = mode = None
    max_iter = 0
    for t in trials:
        try:
            cfg = cfgmod.load(path, (*overrides, *t.overrides, "sweep=null"))
        except ConfigError as e:
            keys, values = _relocate(e, t, loaded)
            if keys:  # the same for every trial: say it once
                raise ConfigError(_unique(keys)) from None
            failed += 1
            bad += values
            continue
        cfg.loaded.data.pop("sweep", None)  # a trial's config.yaml is a plain training config
        if cfg.net.solver is None:
            raise loaded.error(("solver",) if "solver" in loaded.data else (),
                               "a sweep trains its trials: the config needs a solver section")
        t.cfg = cfg
        max_iter = max(max_iter, cfg.net.solver.max_iter)
        if metric is None:
            metric, mode = _default_metric(cfg)
    if bad:
        lines = _grouped(bad, {t.id: t.label for t in trials})
        if len(lines) > MAX_REPORTED:
            more = len(lines) - MAX_REPORTED
            lines = lines[:MAX_REPORTED] + [ConfigIssue(None, "", f"... and {more} more issue"
                                                        f"{'s' if more > 1 else ''} ({failed} of {len(trials)} "
                                                        "trials are invalid)")]
        raise ConfigError(lines)
    if spec.scheduler is not None:
        iters = {t.cfg.net.solver.max_iter for t in trials if t.cfg is not None}
        if len(iters) > 1:
            raise loaded.error(("sweep", "scheduler"), "successive halving compares trials at the same "
                               "iterations, so every trial needs the same solver.max_iter", sorted(iters))
        if spec.scheduler.min_iter >= max_iter:
            raise loaded.error(("sweep", "scheduler", "min_iter"),
                               f"must be < solver.max_iter ({max_iter})", spec.scheduler.min_iter)
    metric = spec.metric or metric or "train.loss"
    mode = spec.mode or (mode if spec.metric is None else ("max" if "acc" in metric else "min"))
    if trials:
        _check_metric(loaded, metric, trials[0].cfg)
    return Sweep(os.path.abspath(os.fspath(path)), loaded, spec, trials, metric, mode or "min", max_iter,
                 overrides)


def _check_metric(loaded: LoadedConfig, metric: str, cfg) -> None:
    """A test.NAME metric needs test passes and a scalar output NAME of the test net."""
    phase, _, name = metric.partition(".")
    if phase != "test":
        return
    where = ("sweep", "metric") if "metric" in loaded.data["sweep"] else ("sweep",)
    s = cfg.net.solver
    if cfg.net.data is None or cfg.net.data.test is None or not s.test_interval:
        raise loaded.error(where, f"the metric {metric} is measured by test passes: the config needs "
                           "data.test and solver.test_interval (or use metric: train.loss)")
    nets, _ = cfgmod.check_net(cfg)
    net = nets["test"]
    names = set(getattr(net, "outputs", {})) | set(getattr(net, "losses", {}))
    for layer in getattr(net, "layers", []):
        if getattr(layer, "type", None) == "Accuracy" and hasattr(layer, "output_names"):
            names.update(layer.output_names())
    extra = {"bits_per_char", "unigram_bits"}  # the runner adds these for character (text) data
    if names and name not in names | extra:
        from tfconf.frontend.errors import did_you_mean

        raise loaded.error(where, f"the test net has no scalar output {name!r} (it has "
                           f"{', '.join('test.' + n for n in sorted(names))}){did_you_mean(name, sorted(names))}",
                           metric)


def _unique(issues: list) -> list:
    seen, out = set(), []
    for issue in issues:
        if str(issue) not in seen:
            seen.add(str(issue))
            out.append(issue)
    return out
