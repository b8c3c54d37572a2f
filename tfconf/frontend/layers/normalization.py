"""Normalization layers: BatchNorm, Scale, Bias, LRN, MVN, Softmax."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from tfconf.engine import api as tc

from ...engine.ops.nn import channel_affine, fused_batch_norm_training
from ..fillers import ConstantFiller, FillerSpec, coerce_filler
from .base import LayerSpec, per_sample, register_layer
from .caffe_map import ENGINE, SOFTMAX_PARAM, CaffeLayer, choice, filler, flag, integer, number
from .shape import canonical_axis, dim_of, reshape_to


def _caffe_batch_norm_blobs(name, blobs):
    """Caffe's BatchNorm blobs (running sums of mean and variance, and their scale factor) → the
    averages tfconf stores (each sum divided by the factor) and the factor."""
    if len(blobs) != 3:
        raise ValueError(f"a BatchNorm layer has 3 blobs (mean, variance, scale factor); this one has {len(blobs)}")
    mean, var, sf = blobs
    s = float(sf.ravel()[0]) if sf.size else 0.0
    scale = 0.0 if s == 0 else 1.0 / s
    return {f"{name}/moving_mean": (mean.ravel() * scale).astype(np.float32),
            f"{name}/moving_variance": (var.ravel() * scale).astype(np.float32),
            f"{name}/scale_factor": np.asarray(s, dtype=np.float32)}


def _per_channel(v, rank):
    """A [C] tensor shaped to broadcast over axis 1 of an N×C×... input."""
    return v if rank <= 2 else tc.reshape(v, [-1] + [1] * (rank - 2))


@register_layer
class BatchNorm(LayerSpec):
    """y = (x - mean) / sqrt(var + eps) per channel (axis 1), statistics over every other axis.

    Train phase: the batch's statistics, and update ops (in ``ctx.updates``) that fold them into
    the moving estimates as Caffe does: with f = moving_average_fraction and Caffe's scale factor
    s (``scale_factor``, s ← f·s + 1), the stored mean is the f-weighted average of the batch
    means, Σ fᵏ·meanₖ / Σ fᵏ, and the stored variance the same average of the batch variances
    times m/(m-1) (m values per channel). The first update therefore stores the first batch's
    statistics exactly. Test phase, or ``use_global_stats: true``: the stored estimates.
    No learned scale or shift: follow with a Scale layer (``bias_term: true``)."""

    type: Literal["BatchNorm"] = "BatchNorm"
    flops_per_output: ClassVar[int | None] = 2
    caffe = CaffeLayer({"batch_norm_param": {"use_global_stats": flag("use_global_stats"),
                                             "moving_average_fraction": number("moving_average_fraction"),
                                             "eps": number("eps")}},
                       read_blobs=_caffe_batch_norm_blobs)
    use_global_stats: bool | None = None
    moving_average_fraction: float = Field(0.999, gt=0, le=1)
    eps: float = Field(1e-5, gt=0)

    def build(self, ctx, bottoms):
        (x,) = bottoms
        shp = x.shape.as_list()
        if len(shp) < 2 or shp[1] is None:
            raise ValueError(f"BatchNorm needs an N×C×... input with a known channel count; shape {shp}")
        c, rank = shp[1], len(shp)
        dt = ctx.dtype.np
        mean_v = ctx.state_var("moving_mean", np.zeros([c], dt))
        var_v = ctx.state_var("moving_variance", np.ones([c], dt))
        sf_v = ctx.state_var("scale_factor", np.zeros([], dt))
        use_global = (not ctx.training) if self.use_global_stats is None else self.use_global_stats
        if use_global:
            mean = _per_channel(tc.cast(mean_v, x.dtype), rank)
            var = _per_channel(tc.cast(var_v, x.dtype), rank)
            return [tc.multiply(x - mean, tc.rsqrt(var + self.eps), name=self.name)]
        # one op (engine FusedBatchNorm: oneDNN's batch normalisation where it runs) for what
        # moments, subtract, rsqrt and multiply compute
        y, mean, var = fused_batch_norm_training(x, self.eps, name=self.name)
        # Moving estimates (no gradient flows into them).
        f = self.moving_average_fraction
        bm = tc.stop_gradient(mean)
        bv = tc.stop_gradient(var)
        if None in shp:
            m = tc.cast(tc.size(x), x.dtype) / float(c)
            corr = m / tc.maximum(m - 1.0, tc.constant(1.0, dtype=x.dtype))
        else:
            m = int(np.prod(shp, dtype=np.int64)) // c
            corr = m / (m - 1) if m > 1 else 1.0
        dv = mean_v.dtype
        bm, bv = tc.cast(bm, dv), tc.cast(bv * corr, dv)
        old = sf_v.value() * f
        new_sf = old + 1.0
        with ctx.graph.name_scope("update"):
            ctx.updates.append(mean_v.assign((mean_v.value() * old + bm) / new_sf))
            ctx.updates.append(var_v.assign((var_v.value() * old + bv) / new_sf))
            ctx.updates.append(sf_v.assign(new_sf))
        return [y]

    def to_onnx(self, b, xs, ins, outs):
        x = xs[0]
        c, rank = ins[0][1], len(ins[0])
        if self.use_global_stats is False:  # the batch's own statistics even at test time
            d, var = b.moments(x, [0] + list(range(2, rank)))
            rstd = b.node("Reciprocal", [b.node("Sqrt", [b.node("Add", [var, b.const(self.eps, "eps")])])])
            b.node("Mul", [d, rstd], [b.y(0)])
            return
        ones, zeros = b.const(np.ones([c]), "scale"), b.const(np.zeros([c]), "bias")
        b.node("BatchNormalization", [x, ones, zeros, b.state("moving_mean"), b.state("moving_variance")],
               [b.y(0)], epsilon=float(self.eps))


def _operand_shape(x_shape, axis, num_axes, what):
    rank = len(x_shape)
    a = canonical_axis(axis, rank, "axis")
    end = rank if num_axes == -1 else a + num_axes
    if end > rank:
        raise ValueError(f"{what}: axis {axis} with num_axes {num_axes} exceeds the rank {rank}")
    shape = x_shape[a:end]
    if None in shape:
        raise ValueError(f"{what}: the sizes of axes {a}..{end - 1} must be known; shape {x_shape}")
    return a, shape


def _align(v, x_rank, axis):
    """Shape ``v`` (covering axes axis .. axis+rank(v)-1 of x) to broadcast against x."""
    vs = v.shape.as_list()
    trailing = x_rank - axis - len(vs)
    if trailing < 0:
        raise ValueError(f"an operand of shape {vs} at axis {axis} does not fit a rank-{x_rank} input")
    if trailing == 0:
        return v
    return reshape_to(v, [dim_of(v, i) for i in range(len(vs))] + [1] * trailing)


def _second_bottom(x, v, axis, what):
    xs, vs = x.shape.as_list(), v.shape.as_list()
    a = canonical_axis(axis, len(xs), "axis")
    want = xs[a:a + len(vs)]
    if len(want) != len(vs) or any(p is not None and q is not None and p != q for p, q in zip(want, vs)):
        raise ValueError(f"{what}: the second bottom's shape {vs} must equal axes {a}.. of the first "
                         f"bottom's shape {xs}")
    return a


class _ScaleBiasBase(LayerSpec):
    axis: int = 1
    num_axes: int = Field(1, ge=-1)
    num_bottoms: ClassVar = (1, 2)

    _coerce = field_validator("filler", "bias_filler", mode="before", check_fields=False)(
        lambda cls, v: coerce_filler(v))

    def to_onnx(self, b, xs, ins, outs):
        x, shp = xs[0], ins[0]
        rank = len(shp)
        a = self.axis % rank
        with_bias = self.type == "Scale" and self.bias_term
        if len(xs) == 2:  # the operand is the second bottom, covering axes a.. of x
            n = len(ins[1])
            trailing = rank - a - n
            operand = xs[1] if trailing == 0 else b.node(
                "Reshape", [xs[1], b.const([0] * n + [1] * trailing, "shape", b.INT64)])
            shape, bias_index = ([int(d) for d in ins[1]] if with_bias else []), 0
        else:  # a learned parameter of x.shape[axis : axis + num_axes]
            end = rank if self.num_axes == -1 else a + self.num_axes
            shape, bias_index = [int(d) for d in shp[a:end]], 1
        bshape = shape + [1] * (rank - a - len(shape))
        if len(xs) == 1:
            operand = b.param(0, "bias" if self.type == "Bias" else "scale", reshape=bshape)
        y = b.node("Add" if self.type == "Bias" else "Mul", [x, operand], None if with_bias else [b.y(0)])
        if with_bias:
            b.node("Add", [y, b.param(bias_index, "bias", reshape=bshape)], [b.y(0)])


@register_layer
class Scale(_ScaleBiasBase):
    """y = x · s (+ b), with s broadcast over the axes of x it does not cover. One bottom: s is
    learned, of shape x.shape[axis : axis + num_axes] (num_axes -1: to the end, 0: a scalar),
    from ``filler`` (default 1). Two bottoms: s is the second bottom, covering axes from
    ``axis``. ``bias_term`` adds a learned b of s's shape from ``bias_filler`` (default 0)."""

    type: Literal["Scale"] = "Scale"
    caffe = CaffeLayer({"scale_param": {"axis": integer("axis"), "num_axes": integer("num_axes"),
                                        "filler": filler("filler"), "bias_term": flag("bias_term"),
                                        "bias_filler": filler("bias_filler")}},
                       blobs=("scale", "bias"),
                       blobs_for=lambda spec: ("bias",) if len(spec.get("bottom") or []) == 2 else ("scale", "bias"))
    filler: FillerSpec = Field(default_factory=lambda: ConstantFiller(value=1.0))
    bias_term: bool = False
    bias_filler: FillerSpec = Field(default_factory=ConstantFiller)

    def flops(self, bottoms, outs, weights, axis=0) -> int:
        # a multiply per output element, and an add with a bias
        out = sum(per_sample(s, axis) for s in outs)
        return out * (2 if len(weights) > 1 or self.bias_term else 1)

    def build(self, ctx, bottoms):
        x = bottoms[0]
        rank = len(x.shape.as_list())
        if len(bottoms) == 2:
            s = bottoms[1]
            a = _second_bottom(x, s, self.axis, "Scale")
            shape, bias_index = s.shape.as_list(), 0
            if self.bias_term and None in shape:
                raise ValueError(f"Scale with bias_term needs a second bottom of known shape; received {shape}")
        else:
            a, shape = _operand_shape(x.shape.as_list(), self.axis, self.num_axes, "Scale")
            s, bias_index = ctx.param(0, "scale", shape, self.filler), 1
            if a == 1 and len(shape) == 1 and rank >= 2:
                # the usual form (a learned scale per channel after a BatchNorm): one op, which
                # oneDNN runs in the layout the batch norm leaves its output in
                b = ctx.param(bias_index, "bias", shape, self.bias_filler) if self.bias_term else None
                return [tc.identity(channel_affine(x, s, b), name=self.name)]
        y = x * _align(s, rank, a)
        if self.bias_term:
            b = ctx.param(bias_index, "bias", shape, self.bias_filler)
            y = y + _align(b, rank, a)
        return [tc.identity(y, name=self.name)]


@register_layer
class Bias(_ScaleBiasBase):
    """y = x + b, with b broadcast like Scale's s: learned (``filler``, default 0) of shape
    x.shape[axis : axis + num_axes], or the second bottom."""

    type: Literal["Bias"] = "Bias"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({"bias_param": {"axis": integer("axis"), "num_axes": integer("num_axes"),
                                       "filler": filler("filler")}},
                       blobs=("bias",), blobs_for=lambda spec: () if len(spec.get("bottom") or []) == 2 else ("bias",))
    filler: FillerSpec = Field(default_factory=ConstantFiller)

    def build(self, ctx, bottoms):
        x = bottoms[0]
        rank = len(x.shape.as_list())
        if len(bottoms) == 2:
            b = bottoms[1]
            a = _second_bottom(x, b, self.axis, "Bias")
        else:
            a, shape = _operand_shape(x.shape.as_list(), self.axis, self.num_axes, "Bias")
            b = ctx.param(0, "bias", shape, self.filler)
        return [tc.add(x, _align(b, rank, a), name=self.name)]


@register_layer
class LRN(LayerSpec):
    """Local response normalization.

    across_channels: y = x / (k + alpha/n · Σ x²)^beta, the sum over the n = local_size channels
    centred on each one (zero beyond the edges).
    within_channel: y = x / (1 + alpha/n² · Σ x²)^beta, the sum over an n×n spatial window
    (zero-padded) — Caffe builds it from Power, average Pooling and Power layers and ignores k
    here; so does this layer."""

    type: Literal["LRN"] = "LRN"
    caffe = CaffeLayer({"lrn_param": {
        "local_size": integer("local_size"), "alpha": number("alpha"), "beta": number("beta"), "k": number("k"),
        "norm_region": choice("norm_region", {"ACROSS_CHANNELS": "across_channels",
                                              "WITHIN_CHANNEL": "within_channel"}),
        "engine": ENGINE}})
    local_size: int = Field(5, gt=0)
    alpha: float = 1.0
    beta: float = 0.75
    k: float = 1.0
    norm_region: Literal["across_channels", "within_channel"] = "across_channels"

    @field_validator("norm_region", mode="before")
    @classmethod
    def _lower(cls, v):
        return v.lower() if isinstance(v, str) else v

    @field_validator("local_size")
    @classmethod
    def _odd(cls, v):
        if v % 2 == 0:
            raise ValueError(f"must be odd (the window is centred). Received: {v}")
        return v

    def flops(self, bottoms, outs, weights, axis=0) -> int:
        # squares, window sum, power, divide per output element
        return sum(per_sample(s, axis) for s in outs) * (self.local_size + 3)

    def build(self, ctx, bottoms):
        (x,) = bottoms
        if len(x.shape.as_list()) != 4:
            raise ValueError(f"LRN needs an NCHW input; shape {x.shape.as_list()}")
        n = self.local_size
        if self.norm_region == "across_channels":
            return [tc.nn.lrn(x, depth_radius=(n - 1) // 2, bias=self.k, alpha=self.alpha / n,
                              beta=self.beta, name=self.name)]
        pad = (n - 1) // 2
        mean_sq = tc.nn.avg_pool(tc.square(x), (n, n), (1, 1), padding=(pad, pad), count_include_pad=True)
        denom = mean_sq * self.alpha + 1.0
        if self.beta == 0.75:
            scale = tc.rsqrt(denom) * tc.rsqrt(tc.sqrt(denom))  # denom^-0.75
        else:
            scale = tc.exp(tc.log(denom) * -self.beta)
        return [tc.multiply(x, scale, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        n = self.local_size
        if self.norm_region == "across_channels":
            b.node("LRN", [xs[0]], [b.y(0)], size=int(n), alpha=float(self.alpha), beta=float(self.beta),
                   bias=float(self.k))
            return
        x = xs[0]
        pad = (n - 1) // 2
        mean_sq = b.node("AveragePool", [b.node("Mul", [x, x])], kernel_shape=[n, n], strides=[1, 1],
                         pads=[pad, pad, pad, pad], count_include_pad=1)
        denom = b.affine(mean_sq, self.alpha, 1.0)
        b.node("Mul", [x, b.node("Pow", [denom, b.const(-self.beta, "neg_beta")])], [b.y(0)])


@register_layer
class MVN(LayerSpec):
    """Mean-variance normalization: y = x - mean, and with ``normalize_variance`` divided by
    (std + eps) — eps is added to the standard deviation, as in Caffe. The statistics are per
    example and channel over the spatial axes, or per example over all axes (``across_channels``)."""

    type: Literal["MVN"] = "MVN"
    flops_per_output: ClassVar[int | None] = 2
    caffe = CaffeLayer({"mvn_param": {"normalize_variance": flag("normalize_variance"),
                                      "across_channels": flag("across_channels"), "eps": number("eps")}})
    normalize_variance: bool = True
    across_channels: bool = False
    eps: float = Field(1e-9, ge=0)

    def build(self, ctx, bottoms):
        (x,) = bottoms
        rank = len(x.shape.as_list())
        axes = list(range(1 if self.across_channels else 2, rank))
        if not axes:
            raise ValueError(f"MVN needs axes to normalize over; input rank {rank} "
                             f"(across_channels={self.across_channels})")
        mean, var = tc.nn.moments(x, axes, keepdims=True)
        y = x - mean
        if self.normalize_variance:
            y = y / (tc.sqrt(var) + self.eps)
        return [tc.identity(y, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        rank = len(ins[0])
        d, var = b.moments(xs[0], range(1 if self.across_channels else 2, rank))
        if not self.normalize_variance:
            b.node("Identity", [d], [b.y(0)])
            return
        b.node("Div", [d, b.node("Add", [b.node("Sqrt", [var]), b.const(self.eps, "eps")])], [b.y(0)])


@register_layer
class Softmax(LayerSpec):
    """y = exp(x) / Σ exp(x) along ``axis`` (stable)."""

    type: Literal["Softmax"] = "Softmax"
    flops_per_output: ClassVar[int | None] = 3
    caffe = CaffeLayer({"softmax_param": SOFTMAX_PARAM})
    axis: int = 1

    def build(self, ctx, bottoms):
        (x,) = bottoms
        a = canonical_axis(self.axis, len(x.shape.as_list()))
        return [tc.nn.softmax(x, axis=a, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        b.node("Softmax", [xs[0]], [b.y(0)], axis=self.axis % len(ins[0]))
