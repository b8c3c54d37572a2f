"""Compile a validated list of layer specs into the engine's graph.

Layers are walked in order. A layer's ``bottom`` defaults to the previous layer's first top (the
first layer's to ``data``), its ``top`` to its name. Rebinding a top name (Caffe's in-place
layers: ``bottom: ip1, top: ip1``) is allowed. The train and test nets are built into one graph
and share every parameter, created on first use and looked up by name afterwards."""

from __future__ import annotations

import dataclasses

from tfconf.errors import did_you_mean
from tfconf.engine import api as tc

from .layers.base import BuildContext, NetState


class NetBuildError(ValueError):
    """A layer could not be built; ``index`` and ``layer`` say which, ``field`` what (if known)."""

    def __init__(self, index, layer, message, field=None):
        super().__init__(message)
        self.index = index
        self.layer = layer
        self.field = field
        self.message = message


@dataclasses.dataclass
class BuiltNet:
    phase: str
    tops: dict            # top name → Tensor (final binding)
    loss: object          # weighted total loss (Tensor) or None
    losses: dict          # loss top name → (Tensor, weight)
    outputs: dict         # tops no later layer consumed (what a deploy net returns)
    layer_tops: dict      # layer name → its output tensors
    updates: list         # ops to run with each training step (e.g. BatchNorm moving averages)
    layers: list          # the included layer specs, in order


def device_name(value):
    """A config's ``device`` value as an engine device name: ``auto``/None → no constraint (the
    cost model places), ``cpu``/``gpu`` → any device of that type, ``gpu:1`` → that one; full
    names (``/job:localhost/device:CPU:0``) pass through."""
    if value is None or value == "auto":
        return None
    v = value.strip()
    low = v.lower()
    if low in ("cpu", "gpu"):
        return f"/device:{low.upper()}:*"
    if ":" in low and low.split(":")[0] in ("cpu", "gpu") and "/" not in low:
        kind, _, idx = low.partition(":")
        return f"/device:{kind.upper()}:{idx}"
    return v


def build_net(layers, state: NetState, graph, params, param_meta, inputs, dtype=tc.float32, device=None,
              scope=None):
    """Add one phase of the net to ``graph``. ``inputs`` maps data top names (e.g. ``data``,
    ``label``) to placeholders; Input layers add theirs to it. ``device`` is the net's default
    device (a layer's own ``device`` wins). Its ops are named under ``scope`` (default the phase:
    ``train/conv1/Conv2D``; a further test net's name: ``test-on-train/conv1/Conv2D``)."""
    ctx = BuildContext(graph, state, params, param_meta, dtype, inputs)
    tops = dict(inputs)
    consumed = set()
    layer_tops = {}
    losses = {}
    included = []
    prev = "data" if "data" in tops else None
    with graph.as_default(), graph.name_scope((scope or state.phase) + "/"):
        for i, spec in enumerate(layers):
            if not spec.included(state):
                continue
            included.append(spec)
            lo, hi = spec.num_bottoms
            names = spec.bottom if spec.bottom is not None else ([prev] if lo > 0 and prev else [])
            if len(names) < lo or (hi is not None and len(names) > hi):
                want = f"{lo}" if lo == hi else f"{lo} to {hi if hi is not None else 'any number of'}"
                raise NetBuildError(i, spec, f"takes {want} bottoms. Received: {names}", "bottom")
            bottoms = []
            for n in names:
                if n not in tops:
                    hint = did_you_mean(n, tops)
                    known = ", ".join(sorted(tops)) or "none"
                    raise NetBuildError(i, spec, f"bottom {n!r} is not produced by any earlier layer.{hint} "
                                                 f"Available: {known}", "bottom")
                bottoms.append(tops[n])
                consumed.add(n)
            ctx.layer = spec
            dev = device_name(spec.device if spec.device is not None else device)
            try:
                with graph.name_scope(spec.name), graph.device(dev):
                    outs = spec.build(ctx, bottoms)
            except NetBuildError:
                raise
            except (ValueError, TypeError) as e:
                shapes = ", ".join(f"{n} {t.shape.as_list() if t.shape.ndims is not None else '?'}"
                                   for n, t in zip(names, bottoms))
                raise NetBuildError(i, spec, f"{_strip_op_prefix(str(e))} (bottoms: {shapes or 'none'})") from None
            out_names = spec.output_names()
            if spec.num_tops is not None and len(out_names) != len(outs):
                raise NetBuildError(i, spec, f"produces {len(outs)} tops but names {len(out_names)}: {out_names}", "top")
            for n, t in zip(out_names, outs):
                tops[n] = t
                consumed.discard(n)
            layer_tops[spec.name] = list(outs)
            weights = spec.loss_weight
            if weights is None:
                weights = [1.0] + [0.0] * (len(outs) - 1) if spec.is_loss else [0.0] * len(outs)
            if len(weights) != len(outs):
                raise NetBuildError(i, spec, f"loss_weight has {len(weights)} entries for {len(outs)} tops", "loss_weight")
            for n, t, w in zip(out_names, outs, weights):
                if w:
                    losses[n] = (t, w)
            if outs:
                prev = out_names[0]
        total = None
        for t, w in losses.values():
            term = t if w == 1 else t * w
            term = tc.reduce_sum(term) if term.shape.ndims else term
            total = term if total is None else total + term
    outputs = {n: t for n, t in tops.items() if n not in consumed and n not in inputs}
    return BuiltNet(state.phase, tops, total, losses, outputs, layer_tops, ctx.updates, included)


def _strip_op_prefix(msg: str) -> str:
    """Engine errors start with "op 'x' (type T) created at file:line: " — a config user needs the rest."""
    if msg.startswith("op '") and ": " in msg:
        head, _, rest = msg.partition(": ")
        if " created at " in head:
            return rest
    return msg
