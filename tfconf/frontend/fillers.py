"""Caffe's fillers as initializer ops: each returns a tensor that a Variable is initialized from,
so initialization runs in the graph with the graph's random seed.

Shapes follow Caffe: fan_in = count / shape[0], fan_out = count / shape[1] (a Convolution filter
[out, in, kh, kw] has fan_in = in·kh·kw; an InnerProduct weight [out, in] has fan_in = in)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

import numpy as np
from pydantic import Field, model_serializer, model_validator

from tfconf.engine import api as tc

from .schema_base import StrictModel


class _Filler(StrictModel):
    """A Caffe filler; ``weight_filler: xavier`` is short for ``{type: xavier}``."""

    @model_serializer(mode="wrap")
    def _keep_type(self, handler):
        return {"type": self.type, **handler(self)}


class ConstantFiller(_Filler):
    type: Literal["constant"] = "constant"
    value: float = 0.0


class UniformFiller(_Filler):
    type: Literal["uniform"] = "uniform"
    min: float = 0.0
    max: float = 1.0

    @model_validator(mode="after")
    def _order(self):
        if self.max < self.min:
            raise ValueError(f"max must be >= min. Received: min={self.min}, max={self.max}")
        return self


class GaussianFiller(_Filler):
    type: Literal["gaussian"] = "gaussian"
    mean: float = 0.0
    std: float = Field(1.0, ge=0)
    sparse: int = -1


class XavierFiller(_Filler):
    type: Literal["xavier"] = "xavier"
    variance_norm: Literal["FAN_IN", "FAN_OUT", "AVERAGE"] = "FAN_IN"


class MSRAFiller(_Filler):
    type: Literal["msra"] = "msra"
    variance_norm: Literal["FAN_IN", "FAN_OUT", "AVERAGE"] = "FAN_IN"


class BilinearFiller(_Filler):
    type: Literal["bilinear"] = "bilinear"


class PositiveUnitballFiller(_Filler):
    type: Literal["positive_unitball"] = "positive_unitball"


FillerSpec = Annotated[
    Union[ConstantFiller, UniformFiller, GaussianFiller, XavierFiller, MSRAFiller, BilinearFiller,
          PositiveUnitballFiller],
    Field(discriminator="type"),
]
FILLER_NAMES = ["constant", "uniform", "gaussian", "xavier", "msra", "bilinear", "positive_unitball"]


def coerce_filler(value):
    """Accept the short form ``weight_filler: xavier`` as ``{type: xavier}``."""
    if isinstance(value, str):
        return {"type": value}
    return value


def _fans(shape):
    count = int(np.prod(shape))
    fan_in = count // shape[0] if len(shape) > 0 and shape[0] else count
    fan_out = count // shape[1] if len(shape) > 1 and shape[1] else count
    return fan_in, fan_out


def _norm(spec, shape):
    fan_in, fan_out = _fans(shape)
    return {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2.0}[spec.variance_norm]


def filler_tensor(spec, shape, dtype=tc.float32):
    """A tensor of ``shape`` filled as Caffe's filler ``spec`` would."""
    shape = [int(d) for d in shape]
    t = spec.type
    if t == "constant":
        # a Fill op, not a constant array: building (validating) a net allocates nothing
        return tc.fill(list(shape), np.asarray(spec.value, dtype=tc.as_dtype(dtype).np))
    if t == "uniform":
        return tc.random_uniform(shape, spec.min, spec.max, dtype=dtype)
    if t == "gaussian":
        w = tc.random_normal(shape, spec.mean, spec.std, dtype=dtype)
        if spec.sparse >= 0:
            fan_in, _ = _fans(shape)
            keep = tc.cast(tc.random_uniform(shape, dtype=dtype) < spec.sparse / max(fan_in, 1), dtype)
            w = w * keep
        return w
    if t == "xavier":
        scale = float(np.sqrt(3.0 / _norm(spec, shape)))
        return tc.random_uniform(shape, -scale, scale, dtype=dtype)
    if t == "msra":
        return tc.random_normal(shape, 0.0, float(np.sqrt(2.0 / _norm(spec, shape))), dtype=dtype)
    if t == "bilinear":
        return tc.constant(bilinear_kernel(shape).astype(tc.as_dtype(dtype).np))
    if t == "positive_unitball":
        u = tc.random_uniform(shape, dtype=dtype)
        rows = tc.reshape(u, [shape[0], -1])
        return tc.reshape(rows / tc.reduce_sum(rows, 1, keepdims=True), shape)
    raise ValueError(f"unknown filler type {t!r}; known: {', '.join(FILLER_NAMES)}")


def bilinear_kernel(shape):
    """Caffe's BilinearFiller: an upsampling kernel, identical for every (out, in) pair."""
    if len(shape) != 4 or shape[2] != shape[3]:
        raise ValueError(f"the bilinear filler needs a square 4-D filter. Received: {list(shape)}")
    k = shape[3]
    f = int(np.ceil(k / 2.0))
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    ax = 1 - np.abs(np.arange(k) / f - c)
    return np.broadcast_to(ax[:, None] * ax[None, :], shape).copy()
