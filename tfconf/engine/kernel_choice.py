"""Compile stage "choose kernels": which kernel runs each op of a plan.

For every op placed on a CPU, the first enabled provider (``kernels.providers.PROVIDERS`` order)
whose hook on the op's declaration (``OpDef.kernels``) accepts the op supplies its kernel; every
other op runs its declaration's own ``make_kernel`` (the reference). What was chosen, and why an
op a provider could serve was left to the reference, is reported in ``Session.plan_info``.

Which providers are enabled: ``SessionConfig(kernels=...)`` — ``"auto"`` (the default: every
provider whose library loads, unless the ``TFCONF_KERNELS`` environment variable names a choice),
``"numpy"`` (reference kernels only, to compare any result against), ``"onednn"`` (required: an
error when it cannot load), or a sequence of provider names.
"""

from __future__ import annotations

import collections
import os
import threading

import numpy as np

from .kernels.providers import PROVIDERS

ENV = "TFCONF_KERNELS"


def provider_available(name):
    """None when provider ``name`` can run here, else why not."""
    if name == "onednn":
        from .kernels.onednn.lib import unavailable_reason

        return unavailable_reason()
    return f"unknown kernel provider {name!r}"


def describe_providers():
    """One line per provider for ``tfconf devices``: what runs the CPU kernels here."""
    lines = []
    for name in PROVIDERS:
        why = provider_available(name)
        if why is None and name == "onednn":
            from .kernels.onednn.lib import library

            lib = library()
            lines.append(f"CPU kernels: oneDNN {lib.version_string} ({lib.path}) for convolution, pooling, "
                         f"matrix products, LRN, batch norm, softmax, ReLU, elementwise chains, LSTM and GRU "
                         f"layers and parameter updates; numpy for the rest (TFCONF_KERNELS=numpy for "
                         f"the reference only)")
        elif why is not None:
            lines.append(f"CPU kernels: numpy reference kernels only ({name} unavailable: {why})")
    return lines


def resolve_providers(setting="auto"):
    """The enabled providers (a tuple, in preference order) for a ``kernels`` setting."""
    explicit = True
    if setting is None or setting == "auto":
        setting = os.environ.get(ENV, "").strip() or "auto"
        explicit = setting != "auto"
    if isinstance(setting, str):
        names = () if setting in ("numpy", "reference", "none") else (
            PROVIDERS if setting == "auto" else tuple(s.strip() for s in setting.split(",") if s.strip()))
    else:
        names = tuple(setting)
    for n in names:
        if n not in PROVIDERS:
            raise ValueError(f"kernels={setting!r}: unknown kernel provider {n!r}; known: numpy (the reference), "
                             + ", ".join(PROVIDERS) + f" or auto (environment variable {ENV} when set)")
    enabled = []
    for n in names:
        why = provider_available(n)
        if why is None:
            enabled.append(n)
        elif explicit:
            raise ValueError(f"kernels={setting!r}: the {n} provider cannot run here: {why}")
    return tuple(enabled)


class KernelPlan:
    """The kernel choice and layout plan of one compiled plan.

    ``choose`` runs once over the plan's ops (after placement, before any kernel is made);
    ``make(op, ctx)`` then gives each op its kernel. Provider factories read the plan through
    ``blocked(tensor)`` (may this output stay in the provider's layout), ``consumers(tensor)`` and
    ``kernel_of(op)`` (the kernel already made for an earlier op, e.g. a max pool for its
    gradient)."""

    def __init__(self, providers):
        self.providers = tuple(providers)
        self.hooks = {}          # op -> KernelHook chosen
        self.declined = {}       # op type -> reason a provider left it to the reference
        self._consumers = collections.defaultdict(list)
        self._blocked = set()
        self._kernels = {}
        self._lock = threading.RLock()  # one provider kernel call at a time (see make)

    def choose(self, order, placement, fetches):
        from .layouts import plan_layouts

        for op in order:
            for i, t in enumerate(op.inputs):
                self._consumers[t].append(op)
            dev = placement.get(op) if placement else None
            if not self.providers or (dev is not None and dev.xp is not np):
                continue
            hooks = op.op_def.kernels
            for name in self.providers:
                hook = hooks.get(name)
                if hook is None:
                    continue
                why = hook.accepts(op)
                if why is None:
                    self.hooks[op] = hook
                    break
                self.declined.setdefault(op.type, why)
        devices = {d.name for d in placement.values()} if placement else set()
        if self.hooks and len(devices) <= 1:
            self._blocked = plan_layouts(order, self.hooks, self._consumers, fetches)
        return self

    # ------------------------------------------------------------------ read by factories
    def blocked(self, t):
        return t in self._blocked

    def consumers(self, t):
        return self._consumers.get(t, ())

    def kernel_of(self, op):
        return self._kernels.get(op)

    def uses(self, provider):
        return any(h.provider == provider for h in self.hooks.values())

    def fallbacks(self):
        """{op name: why} for provider kernels that ran some input shape on the reference kernel
        (a shape the library refused); filled as runs meet new shapes."""
        out = {}
        for op, k in self._kernels.items():
            why = getattr(k, "declined", None) if op in self.hooks else None
            if why:
                out[op.name] = why
        return out

    def provider_of(self, op):
        hook = self.hooks.get(op)
        return hook.provider if hook is not None else None

    # ------------------------------------------------------------------ kernels
    def make(self, op, ctx):
        hook = self.hooks.get(op)
        if hook is None:
            k = self._kernels[op] = op.op_def.make_kernel(op, ctx)
            return k
        k = self._kernels[op] = hook.make(op, ctx, self)
        # NOTE: a provider's kernels keep state between calls (primitives, reorder buffers, a
        # forward's workspace its gradient reads): concurrent runs of the plan (several threads,
        # a thread-pool executor) take turns through them. They would only contend anyway: each
        # call already uses every core.
        lock = self._lock

        def locked(*args):
            with lock:
                return k(*args)

        return locked

    def info(self):
        """For plan_info: kernels per provider, the op types each provider ran, what was left to
        the reference and why, and how many tensors stay in a provider's layout."""
        by = collections.Counter(h.provider for h in self.hooks.values())
        types = collections.defaultdict(collections.Counter)
        for op, h in self.hooks.items():
            types[h.provider][op.type] += 1
        return {"providers": list(self.providers), "kernels": dict(by),
                "types": {p: dict(c) for p, c in types.items()}, "declined": dict(self.declined),
                "blocked_tensors": len(self._blocked)}
