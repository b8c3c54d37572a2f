"""Hyperparameter sweeps: a config's ``sweep:`` section expanded into trials (each the config plus
``--set``-style overrides, all validated before any runs) and run as local processes or Ray tasks,
with status bookkeeping, resume, failure isolation and successive halving. See docs/sweeps.md.

    from tfconf.sweep import expand_sweep, start, run_sweep
    sweep = expand_sweep("configs/lenet_sweep.yaml")       # = tfconf.sweep.expand.expand
    outcome = run_sweep(start(sweep, "sweeps/lenet"), workers=2)
"""

import importlib

_EXPORTS = {
    "Sweep": "expand", "Trial": "expand", "load_spec": "expand",
    "SweepOutcome": "run", "resume": "run", "run_sweep": "run", "start": "run",
    "SweepSpec": "spec", "SweepDir": "status", "SweepDirError": "status",
}
__all__ = sorted([*_EXPORTS, "expand_sweep"])


def __getattr__(name):  # imported lazily: `tfconf --help` does not pay for pydantic
    if name == "expand_sweep":  # (`expand` is the submodule's name)
        from .expand import expand

        return expand
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
