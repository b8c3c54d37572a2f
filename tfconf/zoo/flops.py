"""Parameters and forward FLOPs per sample of a config's net, from the built test-phase net's shapes.

FLOPs count a multiply-add as 2 and are per sample (the batch dimension is 1; for sequence data
[T, N, ...] a sample is one stream of T steps). Each layer declares what it costs, next to its build
(``LayerSpec.flops`` and ``flops_per_output``): convolutions and inner products 2 · out elements ·
fan-in (+ the bias), pooling a window per output, recurrent layers their matmuls per step,
activations one per element, reshaping and losses nothing.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass
class LayerCost:
    name: str
    type: str
    params: int
    flops: int
    out_shape: list


@dataclasses.dataclass
class NetCost:
    params: int            # trainable parameters
    flops: int             # forward FLOPs per sample
    input_shape: list      # per-sample shape of ``data`` (None when the net has none)
    layers: list           # LayerCost per included test-phase layer


def _layer_of(meta, key):
    return meta.get(key, {}).get("layer", key.split("/")[0])


def count(cfg) -> NetCost:
    """Build ``cfg``'s test-phase net (shapes only: nothing runs) and count its parameters and FLOPs."""
    from tfconf.engine import api as tc
    from tfconf.frontend import config as cfgmod

    sample_shape = cfgmod.input_shapes(cfg) if cfg.net.data is not None else None
    g = tc.Graph()
    params, meta, inputs = {}, {}, None
    tops = cfgmod.data_tops(cfg)
    if tops is not None:
        with g.as_default():
            inputs = {n: tc.placeholder(tc.as_dtype(dt), shape, name=n) for n, (shape, dt) in tops.items()}
    # both phases share parameters; the train net may create some the test net does not use
    cfgmod.build_phase(cfg, "train", g, params, meta, inputs=dict(inputs) if inputs else None,
                       sample_shape=sample_shape)
    net = cfgmod.build_phase(cfg, "test", g, {}, {}, inputs=dict(inputs) if inputs else None,
                             sample_shape=sample_shape)
    by_layer: dict = {}
    for key, var in params.items():
        by_layer.setdefault(_layer_of(meta, key), []).append(var)
    data = net.tops.get("data")
    data_shape = data.shape.as_list() if data is not None and data.shape.ndims is not None else None
    axis = 1 if tops is not None and data_shape is not None and len(data_shape) == 2 else 0

    shapes = {n: (t.shape.as_list() if t.shape.ndims is not None else None) for n, t in net.tops.items()}
    prev = "data" if "data" in shapes else None
    costs = []
    for spec in net.layers:
        lo, _ = spec.num_bottoms
        names = spec.bottom if spec.bottom is not None else ([prev] if lo > 0 and prev else [])
        bottoms = [shapes.get(n) for n in names]
        out_t = net.layer_tops.get(spec.name, [])
        outs = [t.shape.as_list() if t.shape.ndims is not None else None for t in out_t]
        variables = by_layer.get(spec.name, [])
        wshapes = [v.shape.as_list() for v in variables]
        n_params = sum(math.prod(s) for s, v in zip(wshapes, variables) if v.trainable)
        costs.append(LayerCost(spec.name, spec.type, n_params, spec.flops(bottoms, outs, wshapes, axis),
                               outs[0] if outs else None))
        for n, s in zip(spec.output_names(), outs):
            shapes[n] = s
        if outs:
            prev = spec.output_names()[0]
    total_params = sum(math.prod(v.shape.as_list()) for v in params.values() if v.trainable)
    in_shape = None
    if data_shape is not None:
        in_shape = [d for i, d in enumerate(data_shape) if i != axis]
    return NetCost(total_params, sum(c.flops for c in costs), in_shape, costs)
