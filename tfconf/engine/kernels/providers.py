"""Kernel providers: fast kernels an op declares beside its reference kernel.

An op declaration lists them in ``kernels = {provider name: KernelHook}``; the kernel-choice
stage of the compile pipeline (``engine/kernel_choice.py``) picks, per op and device, the first
enabled provider whose hook accepts the op, else the op's own ``make_kernel`` (the numpy/CuPy
reference, which stays the oracle every provider is tested against and the fallback for what a
provider does not cover: float64, unusual attributes, a machine without the library).

This module is imported by the op modules, so it stays light: a hook names its factory by
module and function and imports it only when a plan is compiled.
"""

from __future__ import annotations

import importlib

#: every provider tfconf knows, in order of preference
PROVIDERS = ("onednn",)
#: ``blocked_inputs`` of a hook whose every input may come in the provider's layout
ALL = "all"


class KernelHook:
    """A provider's kernel for one op type.

    ``blocked_inputs``: input positions that accept a value in the provider's own layout (so the
    layout stage may leave the producer's output in it), or ``ALL`` (any number of inputs, each
    taking one: elementwise ops); ``blocked_output``: whether the kernel
    can leave its output in the provider's layout. The factory module defines
    ``accepts_<name>(op) -> str | None`` (None: accepted, else the reason the reference runs it)
    and ``make_<name>(op, ctx, plan) -> kernel``."""

    __slots__ = ("provider", "module", "name", "blocked_inputs", "blocked_output")

    def __init__(self, provider, module, name, blocked_inputs=(), blocked_output=False):
        self.provider, self.module, self.name = provider, module, name
        self.blocked_inputs = blocked_inputs if blocked_inputs is ALL else tuple(blocked_inputs)
        self.blocked_output = bool(blocked_output)

    def takes_blocked(self, i):
        """Whether input ``i`` may come in the provider's layout."""
        return self.blocked_inputs is ALL or i in self.blocked_inputs

    def _fn(self, prefix):
        return getattr(importlib.import_module(self.module), f"{prefix}_{self.name}")

    def accepts(self, op):
        """None when this provider runs ``op``, else why not (for plan_info)."""
        return self._fn("accepts")(op)

    def make(self, op, ctx, plan):
        return self._fn("make")(op, ctx, plan)


def onednn(name, blocked_inputs=(), blocked_output=False):
    """A hook into ``tfconf.engine.kernels.onednn.provider``."""
    return KernelHook("onednn", "tfconf.engine.kernels.onednn.provider", name, blocked_inputs, blocked_output)
