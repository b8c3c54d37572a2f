"""Elementwise activations: PReLU, ELU, Sigmoid, TanH, AbsVal, Power, Exp, Log, BNLL, Threshold,
Clip, Swish. Each is a few graph ops; autodiff gives the backward (ReLU lives in core.py)."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from tfconf.engine import api as tc

from ..fillers import ConstantFiller, FillerSpec, coerce_filler
from .base import LayerSpec, register_layer
from .caffe_map import ENGINE, CaffeLayer, filler, flag, number

#: Caffe's exp_param and log_param
_BASE_SCALE_SHIFT_PARAM = {"base": number("base"), "scale": number("scale"), "shift": number("shift")}


def _onnx_unary(op_type):
    """``to_onnx`` of a layer that is one ONNX operator of its bottom."""

    def to_onnx(self, b, xs, ins, outs):
        b.node(op_type, [xs[0]], [b.y(0)])

    return to_onnx


def _channel_broadcast(v, rank):
    """A per-channel vector [C] shaped to broadcast against an N×C×... tensor of ``rank``."""
    return v if rank <= 2 else tc.reshape(v, [-1] + [1] * (rank - 2))


@register_layer
class PReLU(LayerSpec):
    """y = x if x > 0 else a·x, with a learned slope ``a`` per channel (axis 1) or one shared
    (``channel_shared``). The gradient w.r.t. x at 0 is ``a``, as in Caffe."""

    type: Literal["PReLU"] = "PReLU"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({"prelu_param": {"filler": filler("filler"), "channel_shared": flag("channel_shared")}},
                       blobs=("slope",))
    channel_shared: bool = False
    filler: FillerSpec = Field(default_factory=lambda: ConstantFiller(value=0.25))

    _coerce = field_validator("filler", mode="before")(lambda cls, v: coerce_filler(v))

    def build(self, ctx, bottoms):
        (x,) = bottoms
        shp = x.shape.as_list()
        if len(shp) < 2:
            raise ValueError(f"PReLU needs an input of rank >= 2 (N, C, ...); received shape {shp}")
        if self.channel_shared:
            a = ctx.param(0, "slope", [], self.filler)  # Caffe: a scalar blob
        else:
            if shp[1] is None:
                raise ValueError(f"the channel count (axis 1) of {x.name} must be known")
            a = _channel_broadcast(ctx.param(0, "slope", [shp[1]], self.filler), len(shp))
        return [tc.where(x > 0, x, x * a, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        rank = len(ins[0])
        slope = [] if self.channel_shared else [ins[0][1]] + [1] * (rank - 2)
        b.node("PRelu", [xs[0], b.param(0, "slope", reshape=slope)], [b.y(0)])


@register_layer
class ELU(LayerSpec):
    """y = x if x > 0 else alpha·(exp(x) - 1)."""

    type: Literal["ELU"] = "ELU"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({"elu_param": {"alpha": number("alpha")}})
    alpha: float = 1.0

    def build(self, ctx, bottoms):
        (x,) = bottoms
        if self.alpha == 1.0:
            return [tc.nn.elu(x, name=self.name)]
        neg = tc.expm1(tc.minimum(x, tc.zeros_like(x))) * self.alpha
        return [tc.where(x > 0, x, neg, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        b.node("Elu", [xs[0]], [b.y(0)], alpha=float(self.alpha))


@register_layer
class Sigmoid(LayerSpec):
    """y = 1 / (1 + exp(-x)) (stable for large |x|)."""

    type: Literal["Sigmoid"] = "Sigmoid"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({"sigmoid_param": {"engine": ENGINE}})

    def build(self, ctx, bottoms):
        return [tc.sigmoid(bottoms[0], name=self.name)]

    to_onnx = _onnx_unary("Sigmoid")


@register_layer
class TanH(LayerSpec):
    """y = tanh(x)."""

    type: Literal["TanH"] = "TanH"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({"tanh_param": {"engine": ENGINE}})

    def build(self, ctx, bottoms):
        return [tc.tanh(bottoms[0], name=self.name)]

    to_onnx = _onnx_unary("Tanh")


@register_layer
class AbsVal(LayerSpec):
    """y = |x|."""

    type: Literal["AbsVal"] = "AbsVal"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({})

    def build(self, ctx, bottoms):
        return [tc.abs(bottoms[0], name=self.name)]

    to_onnx = _onnx_unary("Abs")


def _affine(x, scale, shift):
    y = x if scale == 1 else x * scale
    return y if shift == 0 else y + shift


@register_layer
class Power(LayerSpec):
    """y = (shift + scale·x)^power."""

    type: Literal["Power"] = "Power"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({"power_param": {"power": number("power"), "scale": number("scale"),
                                        "shift": number("shift")}})
    power: float = 1.0
    scale: float = 1.0
    shift: float = 0.0

    def build(self, ctx, bottoms):
        (x,) = bottoms
        if self.scale == 0 or self.power == 0:
            # Caffe: a constant, and no gradient flows to x.
            value = 1.0 if self.power == 0 else self.shift ** self.power
            return [tc.identity(tc.zeros_like(x) + value, name=self.name)]
        base = _affine(x, self.scale, self.shift)
        if self.power == 1:
            return [tc.identity(base, name=self.name)]
        if self.power == 2:
            return [tc.square(base, name=self.name)]
        if self.power == 0.5:
            return [tc.sqrt(base, name=self.name)]
        return [tc.pow(base, tc.constant(self.power, dtype=x.dtype), name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        x = xs[0]
        if self.scale == 0 or self.power == 0:  # a constant of x's shape, as in Caffe
            value = 1.0 if self.power == 0 else self.shift ** self.power
            b.node("ConstantOfShape", [b.node("Shape", [x])], [b.y(0)], value=b.tensor([value]))
            return
        base = b.affine(x, self.scale, self.shift)
        if self.power == 1:
            b.node("Identity", [base], [b.y(0)])
        else:
            b.node("Pow", [base, b.const(self.power, "power")], [b.y(0)])


def _log_base(base, what):
    if base == -1:
        return 1.0
    if base <= 0:
        raise ValueError(f"{what}: base must be > 0 or -1 (for e). Received: {base}")
    return math.log(base)


class _BaseScaleShift(LayerSpec):
    base: float = -1.0  # -1: the natural base e
    scale: float = 1.0
    shift: float = 0.0

    @model_validator(mode="after")
    def _check_base(self):
        if self.base != -1 and self.base <= 0:
            raise ValueError(f"base must be > 0, or -1 for e. Received: {self.base}")
        return self


@register_layer
class Exp(_BaseScaleShift):
    """y = base^(shift + scale·x) (base -1 means e)."""

    type: Literal["Exp"] = "Exp"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({"exp_param": _BASE_SCALE_SHIFT_PARAM})

    def build(self, ctx, bottoms):
        (x,) = bottoms
        ln_b = _log_base(self.base, "Exp")
        return [tc.exp(_affine(x, self.scale * ln_b, self.shift * ln_b), name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        ln_b = _log_base(self.base, "Exp")
        b.node("Exp", [b.affine(xs[0], self.scale * ln_b, self.shift * ln_b)], [b.y(0)])


@register_layer
class Log(_BaseScaleShift):
    """y = log_base(shift + scale·x) (base -1 means e)."""

    type: Literal["Log"] = "Log"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({"log_param": _BASE_SCALE_SHIFT_PARAM})

    def build(self, ctx, bottoms):
        (x,) = bottoms
        ln_b = _log_base(self.base, "Log")
        y = tc.log(_affine(x, self.scale, self.shift))
        return [tc.identity(y if ln_b == 1.0 else y * (1.0 / ln_b), name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        ln_b = _log_base(self.base, "Log")
        y = b.node("Log", [b.affine(xs[0], self.scale, self.shift)], None if ln_b != 1.0 else [b.y(0)])
        if ln_b != 1.0:
            b.node("Mul", [y, b.const(1.0 / ln_b, "inv_ln_base")], [b.y(0)])


@register_layer
class BNLL(LayerSpec):
    """y = log(1 + exp(x)), computed stably (softplus)."""

    type: Literal["BNLL"] = "BNLL"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({})

    def build(self, ctx, bottoms):
        return [tc.softplus(bottoms[0], name=self.name)]

    to_onnx = _onnx_unary("Softplus")


@register_layer
class Threshold(LayerSpec):
    """y = 1 if x > threshold else 0 (no gradient, as in Caffe)."""

    type: Literal["Threshold"] = "Threshold"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({"threshold_param": {"threshold": number("threshold")}})
    threshold: float = 0.0

    def build(self, ctx, bottoms):
        (x,) = bottoms
        return [tc.cast(tc.greater(x, tc.constant(self.threshold, dtype=x.dtype)), x.dtype, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        above = b.node("Greater", [xs[0], b.const(self.threshold, "threshold")])
        b.cast(above, "float32", [b.y(0)])


@register_layer
class Clip(LayerSpec):
    """y = min(max(x, min), max); the gradient passes where min <= x <= max (Caffe)."""

    type: Literal["Clip"] = "Clip"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({"clip_param": {"min": number("min"), "max": number("max")}})
    min: float
    max: float

    @model_validator(mode="after")
    def _order(self):
        if self.max < self.min:
            raise ValueError(f"max must be >= min. Received: min={self.min}, max={self.max}")
        return self

    def build(self, ctx, bottoms):
        (x,) = bottoms
        lo = tc.constant(self.min, dtype=x.dtype)
        hi = tc.constant(self.max, dtype=x.dtype)
        return [tc.minimum(tc.maximum(x, lo), hi, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        b.node("Clip", [xs[0], b.const(self.min, "min"), b.const(self.max, "max")], [b.y(0)])


@register_layer
class Swish(LayerSpec):
    """y = x · sigmoid(beta·x)."""

    type: Literal["Swish"] = "Swish"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({"swish_param": {"beta": number("beta")}})
    beta: float = 1.0

    def build(self, ctx, bottoms):
        (x,) = bottoms
        s = tc.sigmoid(x if self.beta == 1 else x * self.beta)
        return [tc.multiply(x, s, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        x = xs[0]
        b.node("Mul", [x, b.node("Sigmoid", [b.affine(x, self.beta, 0.0)])], [b.y(0)])
