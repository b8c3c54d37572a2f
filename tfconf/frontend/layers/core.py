"""Input, InnerProduct, ReLU, Dropout, SoftmaxWithLoss, Accuracy: the layers LeNet needs; and Parameter."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from tfconf.engine import api as tc

from ..fillers import ConstantFiller, FillerSpec, XavierFiller, coerce_filler, filler_tensor
from .base import LayerSpec, per_sample, register_layer
from .caffe_map import (
    ENGINE, LOSS_PARAM, SOFTMAX_PARAM, CaffeLayer, Dims, Fixed, filler, filler_list, flag, integer, number, shape,
)


def flatten_from(x, axis):
    """Collapse the axes from ``axis`` on into one (Caffe's InnerProduct/Flatten)."""
    shp = x.shape.as_list()
    tail = shp[axis:]
    if None in tail:
        raise ValueError(f"the axes from {axis} on must be known to flatten {x.name}; shape {shp}")
    if len(shp) == axis + 1:
        return x
    lead = [-1 if d is None else d for d in shp[:axis]]
    if lead.count(-1) > 1:
        raise ValueError(f"cannot flatten {x.name} of shape {shp}: more than one unknown leading axis")
    return tc.reshape(x, lead + [int(np.prod(tail))])


@register_layer
class Input(LayerSpec):
    """A placeholder per top: ``shape: [[-1, 1, 28, 28]]`` (-1 or null: the batch size, fed at run time)."""

    type: Literal["Input"] = "Input"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer({"input_param": {"shape": shape("shape", "list")}})
    onnx_absent = "its tops are the graph's inputs"
    shape: list[list[int | None]] = Field(min_length=1)
    dtype: Literal["float32", "float64", "int32", "int64"] = "float32"
    num_bottoms: ClassVar = (0, 0)
    num_tops: ClassVar = None

    @field_validator("shape", mode="before")
    @classmethod
    def _one(cls, v):
        if isinstance(v, list) and v and not isinstance(v[0], list):
            return [v]
        if isinstance(v, dict) and "dim" in v:
            return [v["dim"]]
        return v

    def build(self, ctx, bottoms):
        names = self.output_names()
        if len(names) != len(self.shape):
            raise ValueError(f"{len(names)} tops but {len(self.shape)} shapes")
        out = []
        for n, s in zip(names, self.shape):
            dims = [None if d is None or d < 0 else d for d in s]
            out.append(ctx.input(n, dims, self.dtype))
        return out


@register_layer
class DummyData(LayerSpec):
    """Caffe's DummyData: tops made by fillers, anew each iteration unless constant (Caffe refills
    them likewise): ``shape: [[64, 1, 28, 28], [64]]`` with ``data_filler: [gaussian, constant]``
    (one filler for every top, or one per top; none: constant 0). Caffe's legacy ``num``,
    ``channels``, ``height``, ``width`` (one value, or one per top) give 4-D shapes. No bottoms."""

    type: Literal["DummyData"] = "DummyData"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer({"dummy_data_param": {"shape": shape("shape", "list"), "data_filler": filler_list("data_filler"),
                                             "num": integer("num", "list"), "channels": integer("channels", "list"),
                                             "height": integer("height", "list"), "width": integer("width", "list")}})
    onnx_absent = "its tops are made by fillers, not inputs: export the net with an Input layer in its place"
    makes_inputs: ClassVar[bool] = True
    shape: list[Dims] = Field(default_factory=list)
    data_filler: list[FillerSpec] = Field(default_factory=list)
    num: list[int] = Field(default_factory=list)
    channels: list[int] = Field(default_factory=list)
    height: list[int] = Field(default_factory=list)
    width: list[int] = Field(default_factory=list)
    num_bottoms: ClassVar = (0, 0)
    num_tops: ClassVar = None

    @field_validator("data_filler", mode="before")
    @classmethod
    def _fillers(cls, v):
        return [coerce_filler(f) for f in v] if isinstance(v, list) else [coerce_filler(v)]

    @model_validator(mode="before")
    @classmethod
    def _legacy_dims(cls, data):
        """Caffe's legacy num/channels/height/width → 4-D shapes (the spec keeps only ``shape``)."""
        keys = ("num", "channels", "height", "width")
        if not isinstance(data, dict) or not any(data.get(k) for k in keys):
            return data
        legacy = [data.get(k) or [] for k in keys]
        legacy = [v if isinstance(v, list) else [v] for v in legacy]
        if data.get("shape"):
            raise ValueError("give shape or the legacy num/channels/height/width, not both (as in Caffe)")
        n = max(len(v) for v in legacy)
        if any(len(v) not in (1, n) for v in legacy):
            raise ValueError("num, channels, height and width each take one value or one per top "
                             f"({n}). Received: {[len(v) for v in legacy]}")
        if not all(legacy):
            raise ValueError("the legacy 4-D dims need all of num, channels, height and width (or give shape)")
        out = {k: v for k, v in data.items() if k not in keys}
        out["shape"] = [[v[i if len(v) > 1 else 0] for v in legacy] for i in range(n)]
        return out

    @model_validator(mode="after")
    def _shapes(self):
        if not self.shape:
            raise ValueError("needs shape: one list of sizes per top, e.g. [[64, 1, 28, 28], [64]]")
        if any(d < 1 for s in self.shape for d in s):
            raise ValueError(f"every size must be positive. Received: {self.shape}")
        if len(self.data_filler) not in (0, 1, len(self.shape)):
            raise ValueError(f"data_filler takes one filler for every top or one per top ({len(self.shape)}). "
                             f"Received {len(self.data_filler)}")
        return self

    def build(self, ctx, bottoms):
        names = self.output_names()
        if len(names) != len(self.shape):
            raise ValueError(f"{len(names)} tops but {len(self.shape)} shapes")
        fillers = self.data_filler * len(self.shape) if len(self.data_filler) == 1 else self.data_filler
        fillers = fillers or [ConstantFiller()] * len(self.shape)
        return [filler_tensor(f, s) for f, s in zip(fillers, self.shape)]


@register_layer
class Parameter(LayerSpec):
    """A learned array as the top (Caffe's ParameterLayer: a net's free parameter, such as a
    learned embedding table or bias that other layers read as a bottom): ``shape: [10, 4]``
    (Caffe's ``shape: {dim: [10, 4]}`` too), initialised from ``filler`` (default 0, as Caffe's
    blob, which has no filler; a .caffemodel gives its values). No bottoms."""

    type: Literal["Parameter"] = "Parameter"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer({"parameter_param": {"shape": shape("shape")}}, blobs=("param",))
    shape: Dims = Field(min_length=1)
    filler: FillerSpec = Field(default_factory=ConstantFiller)
    num_bottoms: ClassVar = (0, 0)

    @field_validator("shape")
    @classmethod
    def _positive(cls, v):
        if any(d <= 0 for d in v):
            raise ValueError(f"every size must be positive. Received: {v}")
        return v

    def build(self, ctx, bottoms):
        return [tc.identity(ctx.param(0, "param", list(self.shape), self.filler), name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        b.node("Identity", [b.param(0, "param")], [b.y(0)])


@register_layer
class InnerProduct(LayerSpec):
    """y = flatten(x, axis) · Wᵀ + b with W of shape [num_output, K] (Caffe's layout)."""

    type: Literal["InnerProduct"] = "InnerProduct"
    caffe = CaffeLayer({"inner_product_param": {
        "num_output": integer("num_output"), "bias_term": flag("bias_term"),
        "weight_filler": filler("weight_filler"), "bias_filler": filler("bias_filler"),
        "axis": integer("axis"), "transpose": flag("transpose")}}, blobs=("weights", "bias"),
        legacy_ranks={"weights": 2})
    num_output: int = Field(gt=0)
    bias_term: bool = True
    axis: int = 1
    transpose: bool = False
    weight_filler: FillerSpec = Field(default_factory=XavierFiller)
    bias_filler: FillerSpec = Field(default_factory=ConstantFiller)

    _coerce = field_validator("weight_filler", "bias_filler", mode="before")(lambda cls, v: coerce_filler(v))

    def flops(self, bottoms, outs, weights, axis=0) -> int:
        # 2 · out elements · K (weights [num_output, K]), + out elements for the bias
        out = sum(per_sample(s, axis) for s in outs)
        return 2 * out * math.prod(weights[0][1:]) + (out if len(weights) > 1 else 0)

    def build(self, ctx, bottoms):
        (x,) = bottoms
        rank = len(x.shape.as_list())
        axis = self.axis % rank
        h = flatten_from(x, axis)
        k = h.shape.as_list()[-1]
        if self.transpose:
            w = ctx.param(0, "weights", [k, self.num_output], self.weight_filler)
            y = tc.matmul(h, w) if axis == 1 else _matmul_last(h, w, False)
        else:
            w = ctx.param(0, "weights", [self.num_output, k], self.weight_filler)
            y = tc.matmul(h, w, transpose_b=True) if axis == 1 else _matmul_last(h, w, True)
        if self.bias_term:
            y = y + ctx.param(1, "bias", [self.num_output], self.bias_filler)
        return [tc.identity(y, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        rank = len(ins[0])
        axis = self.axis % rank
        x = xs[0]
        if not (rank == 2 and axis == 1):
            x = b.node("Flatten", [x], axis=axis)   # [prod(shape[:axis]), prod(shape[axis:])]
        inputs = [x, b.param(0, "weights")] + ([b.param(1, "bias")] if self.bias_term else [])
        trans_b = 0 if self.transpose else 1
        if axis == 1 or (rank == 1 and axis == 0):
            b.node("Gemm", inputs, [b.y(0)], transB=trans_b)
        else:
            b.reshape_to(b.node("Gemm", inputs, transB=trans_b), outs[0])


def _matmul_last(h, w, transpose_b):
    """Apply a [K, N] (or [N, K]) weight over the last axis of a rank > 2 tensor."""
    shp = h.shape.as_list()
    flat = tc.reshape(h, [-1, shp[-1]])
    y = tc.matmul(flat, w, transpose_b=transpose_b)
    n = w.shape.as_list()[0 if transpose_b else 1]
    lead = [-1 if d is None else d for d in shp[:-1]]
    return tc.reshape(y, lead + [n])


@register_layer
class ReLU(LayerSpec):
    """y = max(x, 0) + negative_slope · min(x, 0)."""

    type: Literal["ReLU"] = "ReLU"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({"relu_param": {"negative_slope": number("negative_slope"), "engine": ENGINE}})
    negative_slope: float = 0.0

    def build(self, ctx, bottoms):
        (x,) = bottoms
        if self.negative_slope == 0:
            return [tc.nn.relu(x, name=self.name)]
        return [tc.nn.leaky_relu(x, alpha=self.negative_slope, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        if self.negative_slope == 0:
            b.node("Relu", [xs[0]], [b.y(0)])
        else:
            b.node("LeakyRelu", [xs[0]], [b.y(0)], alpha=float(self.negative_slope))


@register_layer
class Dropout(LayerSpec):
    """Train: zero with probability dropout_ratio and scale by 1/(1-ratio). Test: identity."""

    type: Literal["Dropout"] = "Dropout"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer({"dropout_param": {
        "dropout_ratio": number("dropout_ratio"),
        "scale_train": Fixed(True, "tfconf scales at train time, as Caffe does")}})
    dropout_ratio: float = Field(0.5, ge=0, lt=1)

    def build(self, ctx, bottoms):
        (x,) = bottoms
        if not ctx.training or self.dropout_ratio == 0:
            return [x]
        return [tc.nn.dropout(x, rate=self.dropout_ratio)]

    def to_onnx(self, b, xs, ins, outs):
        b.node("Identity", [xs[0]], [b.y(0)])  # the test phase's identity


def _classes_last(x, axis):
    """``x`` with its class axis ``axis`` moved last (the cross-entropy and top-k ops' axis)."""
    rank = len(x.shape.as_list())
    axis %= rank
    if axis == rank - 1:
        return x
    return tc.transpose(x, [i for i in range(rank) if i != axis] + [axis])


class _LossBase(LayerSpec):
    is_loss: ClassVar[bool] = True
    onnx_absent = "a deploy net drops its losses (export --softmax turns SoftmaxWithLoss into a Softmax)"
    normalization: Literal["full", "valid", "batch_size", "none"] = "valid"
    normalize: bool | None = None  # Caffe's legacy flag: false means batch_size

    @field_validator("normalization", mode="before")
    @classmethod
    def _lower(cls, v):
        return v.lower() if isinstance(v, str) else v

    def norm_mode(self):
        if self.normalize is False:
            return "batch_size"
        return self.normalization


@register_layer
class SoftmaxWithLoss(_LossBase):
    """Mean (per ``normalization``) of -log softmax(x)[label] over the class axis, skipping
    ``ignore_label``. Computed by the fused, stable sparse cross-entropy op."""

    type: Literal["SoftmaxWithLoss"] = "SoftmaxWithLoss"
    caffe = CaffeLayer({"softmax_param": SOFTMAX_PARAM, "loss_param": LOSS_PARAM})
    num_bottoms: ClassVar = (2, 2)
    axis: int = 1
    ignore_label: int | None = None

    def build(self, ctx, bottoms):
        x, label = bottoms
        x = _classes_last(x, self.axis)
        label = tc.cast(label, tc.int64) if label.dtype != tc.int64 else label
        lshape = x.shape.as_list()[:-1]
        label = tc.reshape(label, [-1 if d is None else d for d in lshape])
        if self.ignore_label is not None:
            valid = tc.not_equal(label, tc.constant(self.ignore_label, dtype=tc.int64))
            safe = tc.where(valid, label, tc.zeros_like(label))
            per = tc.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=x)
            mask = tc.cast(valid, per.dtype)
            total = tc.reduce_sum(per * mask)
            count = tc.maximum(tc.reduce_sum(mask), tc.constant(1.0, dtype=per.dtype))
        else:
            per = tc.nn.sparse_softmax_cross_entropy_with_logits(labels=label, logits=x)
            total = tc.reduce_sum(per)
            count = tc.cast(tc.size(per), per.dtype)
        mode = self.norm_mode()
        if mode in ("valid", "full"):
            denom = count if mode == "valid" else tc.cast(tc.size(per), per.dtype)
        elif mode == "batch_size":
            denom = tc.cast(tc.shape(x)[0], per.dtype)
        else:
            denom = None
        loss = total / denom if denom is not None else total
        return [tc.identity(loss, name=self.name)]


@register_layer
class Accuracy(LayerSpec):
    """Fraction of examples whose label is among the top_k scores (ignore_label skipped)."""

    type: Literal["Accuracy"] = "Accuracy"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer({"accuracy_param": {"top_k": integer("top_k"), "axis": integer("axis"),
                                           "ignore_label": integer("ignore_label")}})
    onnx_absent = "a deploy net drops its metrics"
    num_bottoms: ClassVar = (2, 2)
    top_k: int = Field(1, gt=0)
    axis: int = 1
    ignore_label: int | None = None

    def build(self, ctx, bottoms):
        x, label = bottoms
        x = _classes_last(x, self.axis)
        c = x.shape.as_list()[-1]
        if c is not None and self.top_k > c:
            raise ValueError(f"top_k={self.top_k} exceeds the {c} classes of {x.name}")
        x2 = tc.reshape(x, [-1, c])
        label = tc.reshape(tc.cast(label, tc.int64), [-1])
        true_score = tc.reduce_sum(x2 * tc.one_hot(label, c, dtype=x2.dtype), 1, keepdims=True)
        # Caffe (accuracy_layer.cpp) counts an example correct when fewer than top_k *other*
        # classes score at least as high as the true one: ties count against it, so constant
        # scores are not 100% accurate. ``at_least`` includes the true class itself.
        at_least = tc.reduce_sum(tc.cast(tc.greater_equal(x2, true_score), tc.int32), 1)
        hit = tc.cast(tc.less_equal(at_least, self.top_k), x2.dtype)
        if self.ignore_label is not None:
            valid = tc.cast(tc.not_equal(label, tc.constant(self.ignore_label, dtype=tc.int64)), x2.dtype)
            acc = tc.reduce_sum(hit * valid) / tc.maximum(tc.reduce_sum(valid), 1.0)
        else:
            acc = tc.reduce_mean(hit)
        return [tc.identity(acc, name=self.name)]
