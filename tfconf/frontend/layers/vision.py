"""Convolution, Deconvolution and Pooling (NCHW, Caffe's parameters flattened)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tfconf.engine import api as tc

from ..fillers import ConstantFiller, FillerSpec, XavierFiller, coerce_filler
from .base import LayerSpec, per_sample, register_layer
from .caffe_map import ENGINE, CaffeLayer, Fixed, choice, filler, flag, integer

#: Caffe's convolution_param, for Convolution and Deconvolution
_CONV_PARAM = {
    "num_output": integer("num_output"), "bias_term": flag("bias_term"),
    "pad": integer("pad", "pair"), "kernel_size": integer("kernel_size", "pair"), "stride": integer("stride", "pair"),
    "dilation": integer("dilation", "pair"),
    "pad_h": integer("pad_h"), "pad_w": integer("pad_w"), "kernel_h": integer("kernel_h"),
    "kernel_w": integer("kernel_w"), "stride_h": integer("stride_h"), "stride_w": integer("stride_w"),
    "group": integer("group"), "weight_filler": filler("weight_filler"), "bias_filler": filler("bias_filler"),
    "engine": ENGINE,
    "axis": Fixed(1, "tfconf convolves NCHW images over axis 1"),
    "force_nd_im2col": Fixed(False, "tfconf has one 2-D convolution"),
}
_CONV_CAFFE = CaffeLayer({"convolution_param": _CONV_PARAM}, blobs=("weights", "bias"), legacy_ranks={"weights": 4})


def _pair(v, name):
    if v is None:
        return None
    if isinstance(v, int):
        return (v, v)
    v = list(v)
    if len(v) == 1:
        return (v[0], v[0])
    if len(v) != 2:
        raise ValueError(f"{name} takes one value or [h, w]. Received: {v}")
    return tuple(v)


class _Spatial(LayerSpec):
    kernel_size: int | list[int] | None = None
    kernel_h: int | None = Field(None, gt=0)
    kernel_w: int | None = Field(None, gt=0)
    stride: int | list[int] = 1
    stride_h: int | None = Field(None, gt=0)
    stride_w: int | None = Field(None, gt=0)
    pad: int | list[int] = 0
    pad_h: int | None = Field(None, ge=0)
    pad_w: int | None = Field(None, ge=0)

    @field_validator("kernel_size", "stride")
    @classmethod
    def _positive(cls, v):
        for a in [v] if isinstance(v, int) else (v or []):
            if a <= 0:
                raise ValueError("must be > 0")
        return v

    @field_validator("pad")
    @classmethod
    def _nonneg(cls, v):
        for a in [v] if isinstance(v, int) else v:
            if a < 0:
                raise ValueError("must be >= 0")
        return v

    def kernel(self):
        k = _pair(self.kernel_size, "kernel_size")
        kh = self.kernel_h or (k[0] if k else None)
        kw = self.kernel_w or (k[1] if k else None)
        return kh, kw

    def strides(self):
        s = _pair(self.stride, "stride")
        return (self.stride_h or s[0], self.stride_w or s[1])

    def pads(self):
        p = _pair(self.pad, "pad")
        return (self.pad_h if self.pad_h is not None else p[0], self.pad_w if self.pad_w is not None else p[1])


class _ConvBase(_Spatial):
    num_output: int = Field(gt=0)
    bias_term: bool = True
    group: int = Field(1, gt=0)
    dilation: int | list[int] = 1
    weight_filler: FillerSpec = Field(default_factory=XavierFiller)
    bias_filler: FillerSpec = Field(default_factory=ConstantFiller)

    _coerce = field_validator("weight_filler", "bias_filler", mode="before")(lambda cls, v: coerce_filler(v))

    @model_validator(mode="after")
    def _kernel_given(self):
        kh, kw = self.kernel()
        if kh is None or kw is None:
            raise ValueError("kernel_size (or kernel_h and kernel_w) is required")
        if self.num_output % self.group:
            raise ValueError(f"num_output must be divisible by group. Received: num_output={self.num_output}, group={self.group}")
        return self

    def dilations(self):
        return _pair(self.dilation, "dilation")

    def _onnx_conv(self, b, op_type, xs):
        kh, kw = self.kernel()
        (sh, sw), (ph, pw), (dh, dw) = self.strides(), self.pads(), self.dilations()
        inputs = [xs[0], b.param(0, "weights")] + ([b.param(1, "bias")] if self.bias_term else [])
        b.node(op_type, inputs, [b.y(0)], kernel_shape=b.ints([kh, kw]), strides=b.ints([sh, sw]),
               pads=b.ints([ph, pw, ph, pw]), dilations=b.ints([dh, dw]), group=int(self.group))


@register_layer
class Convolution(_ConvBase):
    """y = conv(x, W) + b with W of shape [num_output, C/group, kh, kw] (Caffe's layout)."""

    type: Literal["Convolution"] = "Convolution"
    caffe = _CONV_CAFFE

    def flops(self, bottoms, outs, weights, axis=0) -> int:
        # 2 · out elements · (C_in/group · kh · kw), + out elements for the bias
        out = sum(per_sample(s, axis) for s in outs)
        return 2 * out * math.prod(weights[0][1:]) + (out if len(weights) > 1 else 0)

    def build(self, ctx, bottoms):
        (x,) = bottoms
        c = x.shape[1]
        if c is None:
            raise ValueError(f"the channel count of bottom {x.name} must be known")
        if c % self.group:
            raise ValueError(f"input channels ({c}) are not divisible by group={self.group}")
        kh, kw = self.kernel()
        w = ctx.param(0, "weights", [self.num_output, c // self.group, kh, kw], self.weight_filler)
        ph, pw = self.pads()
        y = tc.nn.conv2d(x, w, strides=self.strides(), padding=(ph, pw), dilations=self.dilations(),
                         groups=self.group, name=self.name)
        if self.bias_term:
            y = tc.nn.bias_add(y, ctx.param(1, "bias", [self.num_output], self.bias_filler))
        return [y]

    def to_onnx(self, b, xs, ins, outs):
        self._onnx_conv(b, "Conv", xs)


@register_layer
class Deconvolution(_ConvBase):
    """The adjoint of Convolution (Caffe's layout: W is [C_in, num_output/group, kh, kw])."""

    type: Literal["Deconvolution"] = "Deconvolution"
    caffe = _CONV_CAFFE

    def flops(self, bottoms, outs, weights, axis=0) -> int:
        # 2 · in elements · (C_out/group · kh · kw), + out elements for the bias
        out = sum(per_sample(s, axis) for s in outs)
        return 2 * per_sample(bottoms[0], axis) * math.prod(weights[0][1:]) + (out if len(weights) > 1 else 0)

    def build(self, ctx, bottoms):
        (x,) = bottoms
        n, c, h, wd = x.shape.as_list()
        kh, kw = self.kernel()
        w = ctx.param(0, "weights", [c, self.num_output // self.group, kh, kw], self.weight_filler)
        (sh, sw), (ph, pw), (dh, dw) = self.strides(), self.pads(), self.dilations()
        oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + 1
        ow = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + 1
        if oh <= 0 or ow <= 0:
            raise ValueError(f"the output size would be {oh}x{ow} for input {x.shape.as_list()}")
        out_shape = tc.stack([tc.shape(x)[0], tc.constant(self.num_output), tc.constant(oh), tc.constant(ow)])
        y = tc.nn.conv2d_transpose(x, w, out_shape, strides=(sh, sw), padding=(ph, pw),
                                   dilations=(dh, dw), groups=self.group, name=self.name)
        y.set_shape([n, self.num_output, oh, ow])
        if self.bias_term:
            y = tc.nn.bias_add(y, ctx.param(1, "bias", [self.num_output], self.bias_filler))
        return [y]

    def to_onnx(self, b, xs, ins, outs):
        self._onnx_conv(b, "ConvTranspose", xs)


@register_layer
class Pooling(_Spatial):
    """Max or average pooling with Caffe's output size: ceil((H + 2·pad - k) / stride) + 1."""

    type: Literal["Pooling"] = "Pooling"
    caffe = CaffeLayer({"pooling_param": {
        "pool": choice("pool", {"MAX": "max", "AVE": "ave"},
                       {"STOCHASTIC": "STOCHASTIC pooling is not supported by tfconf (MAX, AVE are)"}),
        "kernel_size": integer("kernel_size", "pair"), "stride": integer("stride", "pair"),
        "pad": integer("pad", "pair"), "kernel_h": integer("kernel_h"), "kernel_w": integer("kernel_w"),
        "stride_h": integer("stride_h"), "stride_w": integer("stride_w"), "pad_h": integer("pad_h"),
        "pad_w": integer("pad_w"), "global_pooling": flag("global_pooling"),
        "round_mode": choice("round_mode", {"CEIL": "ceil", "FLOOR": "floor"}),
        "engine": ENGINE}})
    pool: Literal["max", "ave"] = "max"
    global_pooling: bool = False
    round_mode: Literal["ceil", "floor"] = "ceil"

    @field_validator("pool", "round_mode", mode="before")
    @classmethod
    def _lower(cls, v):
        return {"MAX": "max", "AVE": "ave", "AVG": "ave", "avg": "ave", "average": "ave",
                "CEIL": "ceil", "FLOOR": "floor"}.get(v, v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _kernel_given(self):
        kh, kw = self.kernel()
        if not self.global_pooling and (kh is None or kw is None):
            raise ValueError("kernel_size (or kernel_h and kernel_w) is required unless global_pooling is true")
        return self

    def flops(self, bottoms, outs, weights, axis=0) -> int:
        # out elements · kh · kw (global: one per input element)
        if self.global_pooling:
            return per_sample(bottoms[0], axis)
        kh, kw = self.kernel()
        return sum(per_sample(s, axis) for s in outs) * kh * kw

    def build(self, ctx, bottoms):
        (x,) = bottoms
        _, _, h, w = x.shape.as_list()
        if self.global_pooling:
            (kh, kw), (sh, sw), (ph, pw) = (h, w), (1, 1), (0, 0)
        else:
            (kh, kw), (sh, sw), (ph, pw) = self.kernel(), self.strides(), self.pads()
        if h is not None and (kh > h + 2 * ph or kw > w + 2 * pw):
            raise ValueError(f"a {kh}x{kw} window does not fit the {h}x{w} input of bottom {x.name} "
                             f"(pad {ph}x{pw}); input shape {x.shape.as_list()}")
        ceil = self.round_mode == "ceil"
        fn = tc.nn.max_pool if self.pool == "max" else tc.nn.avg_pool
        kwargs = {} if self.pool == "max" else {"count_include_pad": True}
        return [fn(x, (kh, kw), (sh, sw), padding=(ph, pw), ceil_mode=ceil, name=self.name, **kwargs)]

    def to_onnx(self, b, xs, ins, outs):
        x = xs[0]
        is_max = self.pool == "max"
        if self.global_pooling:
            b.node("GlobalMaxPool" if is_max else "GlobalAveragePool", [x], [b.y(0)])
            return
        _, _, h, w = ins[0]
        oh, ow = outs[0][2], outs[0][3]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel(), self.strides(), self.pads()
        # NOTE: ONNX's ceil_mode does not drop a last window that would start in the padding
        # (Caffe's rule), and runtimes disagree there: pad the end explicitly so that floor mode
        # gives tfconf's size; always less than the kernel minus the padding.
        eh = max(0, (oh - 1) * sh + kh - (h + 2 * ph))
        ew = max(0, (ow - 1) * sw + kw - (w + 2 * pw))
        common = dict(kernel_shape=b.ints([kh, kw]), strides=b.ints([sh, sw]))
        if is_max:  # padding never wins a max
            b.node("MaxPool", [x], [b.y(0)], pads=b.ints([ph, pw, ph + eh, pw + ew]), **common)
        elif eh == 0 and ew == 0:
            b.node("AveragePool", [x], [b.y(0)], pads=b.ints([ph, pw, ph, pw]), count_include_pad=1, **common)
        else:
            # Caffe's divisor counts the padding but not the overhang past it: pad with real zeros,
            # then let the overhang be ONNX padding that the divisor leaves out.
            if ph or pw:
                x = b.node("Pad", [x, b.const([0, 0, ph, pw, 0, 0, ph, pw], "pads", b.INT64)])
            b.node("AveragePool", [x], [b.y(0)], pads=b.ints([0, 0, eh, ew]), count_include_pad=0, **common)
