"""Parameters and forward FLOPs per sample of a config's net, from the built test-phase net's shapes.

FLOPs count a multiply-add as 2 and are per sample (the batch dimension is 1; for sequence data
[T, N, ...] a sample is one stream of T steps). What each layer costs:

==========================================  =============================================================
Convolution                                 2 · out elements · (C_in/group · kh · kw), + out elements for the bias
Deconvolution                               2 · in elements · (C_out/group · kh · kw), + out elements for the bias
InnerProduct                                2 · out elements · K (K = inputs per output), + out elements for the bias
Embed                                       0 (a lookup)
other layers with weights (LSTM, GRU, RNN)  2 · (weights of their matrices) · out positions (a recurrent step's matmuls)
Pooling                                     out elements · kh · kw
LRN                                         out elements · (local_size + 3)  (squares, window sum, power, divide)
BatchNorm, Scale with bias, MVN             2 · out elements
Eltwise                                     (bottoms - 1) · out elements (· 2 with coefficients)
Softmax                                     3 · out elements (exp, sum, divide)
activations (ReLU, Sigmoid, TanH, ...)      out elements
losses, Accuracy, Dropout (test), data,     0 (not part of a deployed forward pass)
reshaping (Flatten, Concat, Split, ...)
==========================================  =============================================================
"""

from __future__ import annotations

import dataclasses
import math

ZERO = {"Input", "Flatten", "Reshape", "Concat", "Slice", "Split", "Crop", "Tile", "Dropout", "Embed",
        "Accuracy", "ArgMax", "Python", "Silence"}
TWO_PER_ELEMENT = {"BatchNorm", "MVN"}
ACTIVATIONS = {"ReLU", "PReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "Power", "Exp", "Log", "BNLL",
               "Threshold", "Clip", "Swish", "Bias"}


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


def _per_sample(shape, batch_axis=0) -> int:
    if shape is None:
        return 0
    dims = [1 if (i == batch_axis or d is None) else d for i, d in enumerate(shape)]
    return int(math.prod(dims))


def layer_flops(spec, bottoms, outs, weights, axis=0) -> int:
    """Forward FLOPs per sample of one layer: ``bottoms``/``outs`` are shapes, ``weights`` the
    shapes of its parameters in creation order (weights first, then bias...)."""
    t = spec.type
    out = sum(_per_sample(s, axis) for s in outs)
    if t in ZERO or getattr(spec, "is_loss", False):
        return 0
    if t == "Convolution":
        w = weights[0]
        return 2 * out * math.prod(w[1:]) + (out if len(weights) > 1 else 0)
    if t == "Deconvolution":
        w = weights[0]
        return 2 * _per_sample(bottoms[0], axis) * math.prod(w[1:]) + (out if len(weights) > 1 else 0)
    if t == "InnerProduct":
        w = weights[0]  # [num_output, K]
        return 2 * out * math.prod(w[1:]) + (out if len(weights) > 1 else 0)
    if t == "Pooling":
        if spec.global_pooling:
            b = bottoms[0]
            return _per_sample(b, axis)
        kh, kw = spec.kernel()
        return out * kh * kw
    if t == "LRN":
        return out * (spec.local_size + 3)
    if t in TWO_PER_ELEMENT:
        return 2 * out
    if t == "Scale":
        return out * (2 if len(weights) > 1 or getattr(spec, "bias_term", False) else 1)
    if t == "Eltwise":
        n = max(len(bottoms) - 1, 1)
        return n * out * (2 if spec.coeff and spec.operation == "sum" else 1)
    if t == "Softmax":
        return 3 * out
    if t in ACTIVATIONS:
        return out
    if weights:  # LSTM, GRU, RNN and other layers with matrices: one matmul per output position
        mats = sum(math.prod(w) for w in weights if len(w) >= 2)
        hidden = outs[0][-1] if outs and outs[0] and outs[0][-1] else 1
        return 2 * mats * max(_per_sample(outs[0], axis) // hidden, 1) if outs else 0
    return out  # an elementwise layer not listed above: one per output element


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
        costs.append(LayerCost(spec.name, spec.type, n_params, layer_flops(spec, bottoms, outs, wshapes, axis),
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
