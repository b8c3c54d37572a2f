"""A training run's errors that are the user's to fix: TrainError, and an op failing at run time
on the data it is fed, reported at the config layer that made the op."""

from __future__ import annotations

import contextlib
import re

from tfconf.errors import UserError
from tfconf.frontend.solver_schema import test_phases


class TrainError(UserError, ValueError):
    """A mistake of the user's found while setting up or running a training (printed without a
    traceback by the CLI): a weights file that does not fit the net, an unknown --reinit layer..."""


def _layer_index(cfg, op_name):
    """The index of the config layer that created op ``op_name`` (``train/ip2/MatMul``,
    ``gradients/train/ip2/MatMul_grad/...``), or None."""
    names = {layer.name: i for i, layer in enumerate(cfg.net.layers)}
    nets = {"train", "test"} | {t.name for t in test_phases(cfg.net.solver, cfg.net.data)}
    parts = op_name.split("/")
    if parts and parts[0] == "gradients":
        parts = parts[1:]
    if parts and parts[0] in nets:  # the net's scope: train, test, or a further test net's name
        parts = parts[1:]
    return names.get(parts[0]) if parts else None


#: the engine's op description (PlanOp.describe adds ", run fused with ... as one X" for an op the
#: plan runs fused with others)
_OP = re.compile(r"op '([^']+)' \(type (\w+)((?:, run fused with .*? as one \w+)?)\) created at \S+?:\d+")


def explain_op_message(cfg, message):
    """Replace the engine's "created at file:line" (a frame of tfconf's own code when the net comes
    from a config) by the config layer that made the op and its location."""
    def sub(m):
        i = _layer_index(cfg, m.group(1))
        if i is None:
            return f"op '{m.group(1)}' (type {m.group(2)}{m.group(3)})"
        return (f"op '{m.group(1)}' (type {m.group(2)}{m.group(3)}) of layer {cfg.net.layers[i].name!r} "
                f"({cfg.loaded.location(('layers', i))})")

    return _OP.sub(sub, message)


_KERNEL_ERROR = re.compile(r"(\w+) in op '([^']+)' \(type (\w+)\) created at \S+ with input shapes \((.*?)\): (.*)$")


@contextlib.contextmanager
def _op_errors_located(cfg):
    """An op that fails at run time on the data it is fed (a label out of range for the classes...)
    is the config's mistake: report it at the layer that made the op."""
    from tfconf.engine import api as tc

    try:
        yield
    except tc.errors.InvalidArgumentError as e:
        op = getattr(e, "op", None)
        i = _layer_index(cfg, op.name) if op is not None else None
        msg = " ".join(str(e.message).split())
        m = _KERNEL_ERROR.match(msg)
        if m:  # "ValueError in op 'x' (type T) created at f:l with input shapes (...): what" → what first
            msg = f"{m.group(5)} (op '{m.group(2)}' (type {m.group(3)}), input shapes ({m.group(4)}))"
        msg = explain_op_message(cfg, msg)
        if i is None:
            raise TrainError(msg) from None
        raise cfg.loaded.error(("layers", i), msg) from None
