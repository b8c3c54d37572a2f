"""Convolution, Deconvolution and Pooling (NCHW, Caffe's parameters flattened)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tfconf.engine import api as tc

from ..fillers import ConstantFiller, FillerSpec, XavierFiller, coerce_filler
from .base import LayerSpec, per_sample, register_layer


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


@register_layer
class Convolution(_ConvBase):
    """y = conv(x, W) + b with W of shape [num_output, C/group, kh, kw] (Caffe's layout)."""

    type: Literal["Convolution"] = "Convolution"

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


@register_layer
class Deconvolution(_ConvBase):
    """The adjoint of Convolution (Caffe's layout: W is [C_in, num_output/group, kh, kw])."""

    type: Literal["Deconvolution"] = "Deconvolution"

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


@register_layer
class Pooling(_Spatial):
    """Max or average pooling with Caffe's output size: ceil((H + 2·pad - k) / stride) + 1."""

    type: Literal["Pooling"] = "Pooling"
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
