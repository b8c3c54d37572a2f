"""Layers that move, combine or summarise values: Concat, Slice, Split, Eltwise, Flatten, Reshape,
Crop, Tile, Reduction, ArgMax, BatchReindex, Embed. Also the axis and reshape helpers the other families use."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from tfconf.engine import api as tc

from ..fillers import ConstantFiller, FillerSpec, XavierFiller, coerce_filler
from .base import LayerSpec, per_sample, register_layer
from .caffe_map import CaffeLayer, Dims, choice, filler, flag, integer, number, shape


# ---------------------------------------------------------------------------- helpers
def canonical_axis(axis, rank, what="axis", extra=0):
    """Caffe's CanonicalAxisIndex: a negative axis counts from the end. ``extra`` widens the valid
    range (Reshape's axis may equal the rank)."""
    n = rank + extra
    if not -n <= axis < n:
        raise ValueError(f"{what} {axis} is out of range for an input of rank {rank}")
    return axis % n if axis < 0 else axis


def dim_of(x, i):
    """Axis ``i`` of ``x``: an int when known at build time, else a scalar int32 tensor."""
    d = x.shape.as_list()[i]
    return d if d is not None else tc.shape(x)[i]


def reshape_to(x, dims, name=None):
    """Reshape ``x`` to ``dims``: ints (-1: infer) or scalar tensors for sizes known only at run
    time. Uses a static target whenever at most one size is unknown."""
    unknown = [i for i, d in enumerate(dims) if not isinstance(d, (int, np.integer))]
    if not unknown or (len(unknown) == 1 and -1 not in dims):
        return tc.reshape(x, [-1 if i in unknown else int(d) for i, d in enumerate(dims)], name=name)
    parts = [d if i in unknown else tc.constant(int(d), dtype=tc.int32) for i, d in enumerate(dims)]
    y = tc.reshape(x, tc.stack(parts), name=name)
    y.set_shape([None if i in unknown or d == -1 else int(d) for i, d in enumerate(dims)])
    return y


def prod_dims(dims):
    """Product of sizes (from :func:`dim_of`) that may include run-time scalar tensors."""
    out = int(np.prod([d for d in dims if isinstance(d, (int, np.integer))], dtype=np.int64))
    for d in dims:
        if not isinstance(d, (int, np.integer)):
            out = d if isinstance(out, int) and out == 1 else d * out
    return out


def _legacy_axis(data, legacy):
    """Caffe's legacy ``concat_dim``/``slice_dim`` becomes ``axis`` (giving both is an error)."""
    if isinstance(data, dict) and data.get(legacy) is not None:
        if data.get("axis") is not None:
            raise ValueError(f"give either axis or {legacy} (legacy), not both")
        data = dict(data)
        data["axis"] = data.pop(legacy)
    return data


def _upper_to_lower(v):
    return v.lower() if isinstance(v, str) else v


# ---------------------------------------------------------------------------- Concat / Slice / Split
@register_layer
class Concat(LayerSpec):
    """Join the bottoms along ``axis`` (default 1, the channels). ``concat_dim`` is Caffe's legacy
    name for the axis."""

    type: Literal["Concat"] = "Concat"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer({"concat_param": {"axis": integer("axis"), "concat_dim": integer("concat_dim")}})
    axis: int = 1
    concat_dim: int | None = Field(None, ge=0)
    num_bottoms: ClassVar = (1, None)

    _legacy = model_validator(mode="before")(lambda cls, v: _legacy_axis(v, "concat_dim"))

    def build(self, ctx, bottoms):
        rank = len(bottoms[0].shape.as_list())
        axis = canonical_axis(self.axis, rank)
        if len(bottoms) == 1:
            return [tc.identity(bottoms[0], name=self.name)]
        return [tc.concat(bottoms, axis, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        if len(xs) == 1:
            b.node("Identity", xs, [b.y(0)])
        else:
            b.node("Concat", xs, [b.y(0)], axis=self.axis % len(ins[0]))


@register_layer
class Slice(LayerSpec):
    """Cut the bottom along ``axis`` into one top per name in ``top``: at ``slice_point``s
    (one fewer than the tops), or into equal parts when none are given."""

    type: Literal["Slice"] = "Slice"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer({"slice_param": {"axis": integer("axis"), "slice_point": integer("slice_point", "list"),
                                        "slice_dim": integer("slice_dim")}})
    axis: int = 1
    slice_dim: int | None = Field(None, ge=0)
    slice_point: list[int] = Field(default_factory=list)
    num_tops: ClassVar = None

    @field_validator("slice_point", mode="before")
    @classmethod
    def _listify(cls, v):
        return [v] if isinstance(v, int) and not isinstance(v, bool) else v

    _legacy = model_validator(mode="before")(lambda cls, v: _legacy_axis(v, "slice_dim"))

    @model_validator(mode="after")
    def _check(self):
        pts = self.slice_point
        if any(b <= a for a, b in zip(pts, pts[1:])) or any(p <= 0 for p in pts):
            raise ValueError(f"slice_point must be positive and strictly increasing. Received: {pts}")
        if pts and self.top is not None and len(self.top) != len(pts) + 1:
            raise ValueError(f"{len(pts)} slice points make {len(pts) + 1} tops, but top names {len(self.top)}")
        return self

    def build(self, ctx, bottoms):
        (x,) = bottoms
        shp = x.shape.as_list()
        axis = canonical_axis(self.axis, len(shp))
        size = shp[axis]
        if size is None:
            raise ValueError(f"Slice needs the size of axis {axis} of {x.name} to be known")
        n = len(self.output_names())
        if self.slice_point:
            if self.slice_point[-1] >= size:
                raise ValueError(f"slice_point {self.slice_point} must lie inside axis {axis} of size {size}")
            edges = [0] + list(self.slice_point) + [size]
            sizes = [b - a for a, b in zip(edges, edges[1:])]
        else:
            if size % n:
                raise ValueError(f"axis {axis} of size {size} cannot be sliced into {n} equal tops")
            sizes = [size // n] * n
        if n == 1:
            return [tc.identity(x, name=self.name)]
        return tc.split(x, sizes, axis=axis, name=self.name)

    def to_onnx(self, b, xs, ins, outs):
        axis = self.axis % len(ins[0])
        if len(outs) == 1:
            b.node("Identity", xs, [b.y(0)])
            return
        sizes = [int(o[axis]) for o in outs]
        b.node("Split", [xs[0], b.const(sizes, "split", b.INT64)], [b.y(i) for i in range(len(outs))], axis=axis)


@register_layer
class Split(LayerSpec):
    """Copy the bottom to every top (Caffe inserts these for fan-out; here they are identities)."""

    type: Literal["Split"] = "Split"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer()
    num_tops: ClassVar = None

    def build(self, ctx, bottoms):
        (x,) = bottoms
        return [tc.identity(x, name=f"{self.name}_{i}") for i, _ in enumerate(self.output_names())]

    def to_onnx(self, b, xs, ins, outs):
        for i in range(len(outs)):
            b.node("Identity", [xs[0]], [b.y(i)])


# ---------------------------------------------------------------------------- Eltwise
@register_layer
class Eltwise(LayerSpec):
    """Elementwise ``sum`` (weighted by ``coeff``, one per bottom), ``prod`` or ``max`` of the
    bottoms. Max sends the gradient to the first bottom holding the maximum."""

    type: Literal["Eltwise"] = "Eltwise"
    caffe = CaffeLayer({"eltwise_param": {"operation": choice("operation", {"PROD": "prod", "SUM": "sum", "MAX": "max"}),
                                          "coeff": number("coeff", "list"), "stable_prod_grad": flag("stable_prod_grad")}})
    operation: Literal["sum", "prod", "max"] = "sum"
    coeff: list[float] = Field(default_factory=list)
    stable_prod_grad: bool = True  # accepted for Caffe files; autodiff is exact either way
    num_bottoms: ClassVar = (2, None)

    _lower = field_validator("operation", mode="before")(lambda cls, v: _upper_to_lower(v))

    @model_validator(mode="after")
    def _coeff(self):
        if self.coeff and self.operation != "sum":
            raise ValueError(f"coeff applies to operation sum only. Received operation: {self.operation}")
        return self

    def flops(self, bottoms, outs, weights, axis=0) -> int:
        # (bottoms - 1) operations per output element (· 2 with coefficients)
        n = max(len(bottoms) - 1, 1)
        return n * sum(per_sample(s, axis) for s in outs) * (2 if self.coeff and self.operation == "sum" else 1)

    def build(self, ctx, bottoms):
        if self.coeff and len(self.coeff) != len(bottoms):
            raise ValueError(f"coeff has {len(self.coeff)} entries for {len(bottoms)} bottoms")
        if self.operation == "sum":
            terms = [b if not self.coeff or self.coeff[i] == 1 else b * self.coeff[i]
                     for i, b in enumerate(bottoms)]
            return [tc.add_n(terms, name=self.name)]
        y = bottoms[0]
        fn = tc.multiply if self.operation == "prod" else tc.maximum
        for b in bottoms[1:]:
            y = fn(y, b)
        return [tc.identity(y, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        if self.operation == "sum":
            terms = [x if not self.coeff or self.coeff[i] == 1 else b.node("Mul", [x, b.const(self.coeff[i], "coeff")])
                     for i, x in enumerate(xs)]
            b.node("Sum", terms, [b.y(0)])
        elif self.operation == "max":
            b.node("Max", xs, [b.y(0)])
        else:
            y = xs[0]
            for i, x in enumerate(xs[1:], 1):
                y = b.node("Mul", [y, x], [b.y(0)] if i == len(xs) - 1 else None)


# ---------------------------------------------------------------------------- Flatten / Reshape
@register_layer
class Flatten(LayerSpec):
    """Collapse axes ``axis`` .. ``end_axis`` (inclusive) into one."""

    type: Literal["Flatten"] = "Flatten"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer({"flatten_param": {"axis": integer("axis"), "end_axis": integer("end_axis")}})
    axis: int = 1
    end_axis: int = -1

    def build(self, ctx, bottoms):
        (x,) = bottoms
        rank = len(x.shape.as_list())
        a = canonical_axis(self.axis, rank, "axis")
        e = canonical_axis(self.end_axis, rank, "end_axis")
        if e < a:
            raise ValueError(f"end_axis ({self.end_axis}) comes before axis ({self.axis}) for rank {rank}")
        dims = [dim_of(x, i) for i in range(rank)]
        return [reshape_to(x, dims[:a] + [prod_dims(dims[a:e + 1])] + dims[e + 1:], name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        b.reshape_to(xs[0], outs[0], copy_leading=self.axis % len(ins[0]))


@register_layer
class Reshape(LayerSpec):
    """Caffe's Reshape: ``shape`` replaces axes [axis, axis + num_axes) of the bottom's shape
    (num_axes -1: to the end); a 0 copies the bottom's size at that position, -1 is inferred.
    ``shape: [0, -1]`` and Caffe's ``shape: {dim: [0, -1]}`` are both accepted."""

    type: Literal["Reshape"] = "Reshape"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer({"reshape_param": {"shape": shape("shape"), "axis": integer("axis"),
                                          "num_axes": integer("num_axes")}})
    shape: Dims
    axis: int = 0
    num_axes: int = Field(-1, ge=-1)

    @field_validator("shape")
    @classmethod
    def _check_dims(cls, v):
        if any(d < -1 for d in v):
            raise ValueError(f"sizes must be >= -1 (0: copy, -1: infer). Received: {v}")
        if v.count(-1) > 1:
            raise ValueError(f"at most one -1 may be inferred. Received: {v}")
        return v

    def build(self, ctx, bottoms):
        (x,) = bottoms
        rank = len(x.shape.as_list())
        start = canonical_axis(self.axis, rank, "axis", extra=1)
        end = rank if self.num_axes == -1 else start + self.num_axes
        if end > rank:
            raise ValueError(f"axis {self.axis} + num_axes {self.num_axes} exceeds the rank {rank}")
        dims = [dim_of(x, i) for i in range(rank)]
        new = []
        for i, d in enumerate(self.shape):
            if d == 0:
                if start + i >= rank:
                    raise ValueError(f"shape[{i}] = 0 copies axis {start + i}, which the rank-{rank} input lacks")
                new.append(dims[start + i])
            else:
                new.append(d)
        target = dims[:start] + new + dims[end:]
        if -1 in new:
            # Infer from the replaced block, leaving out the sizes that 0s copy within it (they
            # cancel), so the result stays static even when a copied batch size is not.
            copied = {start + i for i, d in enumerate(self.shape) if d == 0}
            block = [dims[j] for j in range(start, end) if j not in copied]
            known = [d for i, d in enumerate(new) if self.shape[i] not in (0, -1)]
            if any(j >= end for j in copied):
                block, known = dims[start:end], [d for d in new if d != -1]
            if all(isinstance(d, int) for d in block + known):
                k = int(np.prod(known, dtype=np.int64))
                total = int(np.prod(block, dtype=np.int64))
                if k == 0 or total % k:
                    raise ValueError(f"cannot reshape axes {start}..{end - 1} of shape {x.shape.as_list()} "
                                     f"into {self.shape}")
                target[start + new.index(-1)] = total // k
        elif all(isinstance(d, int) for d in dims[start:end] + new):
            if int(np.prod(dims[start:end], dtype=np.int64)) != int(np.prod(new, dtype=np.int64)):
                raise ValueError(f"cannot reshape axes {start}..{end - 1} of shape {x.shape.as_list()} "
                                 f"into {self.shape}: the element counts differ")
        return [reshape_to(x, target, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        if self.axis == 0 and self.num_axes == -1:  # Caffe's 0 (copy) and -1 (infer) are ONNX's
            b.node("Reshape", [xs[0], b.const(self.shape, "shape", b.INT64)], [b.y(0)])
        else:
            b.reshape_to(xs[0], outs[0])


# ---------------------------------------------------------------------------- Crop / Tile
@register_layer
class Crop(LayerSpec):
    """Crop the first bottom to the second bottom's size on axes ``axis`` and after, starting at
    ``offset`` (none: 0; one: for every cropped axis; else one per cropped axis)."""

    type: Literal["Crop"] = "Crop"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer({"crop_param": {"axis": integer("axis"), "offset": integer("offset", "list")}})
    axis: int = 2
    offset: list[int] = Field(default_factory=list)
    num_bottoms: ClassVar = (2, 2)

    @field_validator("offset", mode="before")
    @classmethod
    def _listify(cls, v):
        return [v] if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("offset")
    @classmethod
    def _nonneg(cls, v):
        if any(o < 0 for o in v):
            raise ValueError(f"offsets must be >= 0. Received: {v}")
        return v

    def build(self, ctx, bottoms):
        x, ref = bottoms
        xs, rs = x.shape.as_list(), ref.shape.as_list()
        if len(xs) != len(rs):
            raise ValueError(f"the bottoms' ranks differ: {xs} and {rs}")
        a = canonical_axis(self.axis, len(xs))
        n = len(xs) - a
        if len(self.offset) not in (0, 1, n):
            raise ValueError(f"offset needs 0, 1 or {n} values (one per axis from {a}). Received: {self.offset}")
        key = [slice(None)] * a
        for i in range(a, len(xs)):
            off = 0 if not self.offset else self.offset[0 if len(self.offset) == 1 else i - a]
            if rs[i] is None or xs[i] is None:
                raise ValueError(f"Crop needs known sizes from axis {a}: {xs} and {rs}")
            if off + rs[i] > xs[i]:
                raise ValueError(f"axis {i}: offset {off} + size {rs[i]} exceeds {xs[i]} ({xs} cropped to {rs})")
            key.append(slice(off, off + rs[i]))
        return [tc.identity(x[tuple(key)], name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        x_shape, ref = ins
        a = self.axis % len(x_shape)
        axes = list(range(a, len(x_shape)))
        offs = [0 if not self.offset else self.offset[0 if len(self.offset) == 1 else i - a] for i in axes]
        ends = [o + int(ref[i]) for o, i in zip(offs, axes)]
        b.node("Slice", [xs[0], b.const(offs, "starts", b.INT64), b.const(ends, "ends", b.INT64),
                         b.const(axes, "axes", b.INT64)], [b.y(0)])


@register_layer
class Tile(LayerSpec):
    """Repeat the bottom ``tiles`` times along ``axis``."""

    type: Literal["Tile"] = "Tile"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer({"tile_param": {"axis": integer("axis"), "tiles": integer("tiles")}})
    axis: int = 1
    tiles: int = Field(gt=0)

    def build(self, ctx, bottoms):
        (x,) = bottoms
        rank = len(x.shape.as_list())
        a = canonical_axis(self.axis, rank)
        return [tc.tile(x, [self.tiles if i == a else 1 for i in range(rank)], name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        rank = len(ins[0])
        a = self.axis % rank
        b.node("Tile", [xs[0], b.const([self.tiles if i == a else 1 for i in range(rank)], "repeats", b.INT64)],
               [b.y(0)])


# ---------------------------------------------------------------------------- Reduction / ArgMax
@register_layer
class Reduction(LayerSpec):
    """coeff · (sum | sum of |x| | sum of x² | mean) over all axes from ``axis`` on; the output
    has the bottom's leading axes (axis 0: a scalar)."""

    type: Literal["Reduction"] = "Reduction"
    flops_per_output: ClassVar[int | None] = 1
    caffe = CaffeLayer({"reduction_param": {
        "operation": choice("operation", {"SUM": "sum", "ASUM": "asum", "SUMSQ": "sumsq", "MEAN": "mean"}),
        "axis": integer("axis"), "coeff": number("coeff")}})
    operation: Literal["sum", "asum", "sumsq", "mean"] = "sum"
    axis: int = 0
    coeff: float = 1.0

    _lower = field_validator("operation", mode="before")(lambda cls, v: _upper_to_lower(v))

    def build(self, ctx, bottoms):
        (x,) = bottoms
        rank = len(x.shape.as_list())
        a = canonical_axis(self.axis, rank)
        axes = list(range(a, rank))
        v = {"sum": x, "mean": x, "asum": tc.abs(x), "sumsq": tc.square(x)}[self.operation]
        red = tc.reduce_mean if self.operation == "mean" else tc.reduce_sum
        y = red(v, axes) if axes else v
        return [tc.identity(y if self.coeff == 1 else y * self.coeff, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        rank = len(ins[0])
        axes = list(range(self.axis % rank, rank))
        op = {"sum": "ReduceSum", "mean": "ReduceMean", "asum": "ReduceL1", "sumsq": "ReduceSumSquare"}[self.operation]
        last = [b.y(0)] if self.coeff == 1 else None
        if op == "ReduceSum":  # axes is an input from opset 13 on, an attribute for the others until 18
            y = b.node(op, [xs[0], b.const(axes, "axes", b.INT64)], last, keepdims=0)
        else:
            y = b.node(op, [xs[0]], last, axes=axes, keepdims=0)
        if self.coeff != 1:
            b.node("Mul", [y, b.const(self.coeff, "coeff")], [b.y(0)])


def _top_k_rows(x2, k):
    """Values and indices of the k largest entries of each row of a 2-D tensor, in Caffe's order
    (descending; among equal values the higher index first)."""
    d = x2.shape.as_list()[1]
    rev = x2[:, ::-1]
    vals, idxs = [], []
    for j in range(k):
        r = tc.argmax(rev, 1, output_type=tc.int32)
        vals.append(tc.reduce_max(rev, 1))
        idxs.append(tc.constant(d - 1, dtype=tc.int32) - r)
        if j + 1 < k:
            hit = tc.one_hot(r, d, on_value=True, off_value=False, dtype=tc.bool_)
            rev = tc.where(hit, tc.fill(tc.shape(rev), tc.constant(-np.inf, dtype=rev.dtype)), rev)
    return tc.stack(vals, 1), tc.stack(idxs, 1)


@register_layer
class ArgMax(LayerSpec):
    """The indices (and with ``out_max_val`` the values) of the ``top_k`` largest entries.
    Without ``axis``: over each example's flattened values, shaped [N, 1, top_k] ([N, 2, top_k]
    with out_max_val: indices then values), padded with 1s to the bottom's rank. With ``axis``: the
    bottom's shape with that axis of size top_k, holding indices, or values when out_max_val.
    Indices are returned in the net's float dtype, as in Caffe."""

    type: Literal["ArgMax"] = "ArgMax"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer({"argmax_param": {"out_max_val": flag("out_max_val"), "top_k": integer("top_k"),
                                         "axis": integer("axis")}})
    onnx_absent = "ONNX's TopK breaks ties by the lower index, Caffe's ArgMax by the higher"
    out_max_val: bool = False
    top_k: int = Field(1, gt=0)
    axis: int | None = None

    def build(self, ctx, bottoms):
        (x,) = bottoms
        x = tc.stop_gradient(x)
        shp = x.shape.as_list()
        rank = len(shp)
        if self.axis is None:
            d = int(np.prod(shp[1:], dtype=np.int64)) if None not in shp[1:] else None
            if d is None:
                raise ValueError(f"ArgMax needs the sizes after axis 0 to be known; shape {shp}")
            if self.top_k > d:
                raise ValueError(f"top_k={self.top_k} exceeds the {d} values per example")
            vals, idxs = _top_k_rows(reshape_to(x, [dim_of(x, 0), d]), self.top_k)
            idxs = tc.cast(idxs, x.dtype)
            y = tc.stack([idxs, vals], 1) if self.out_max_val else tc.expand_dims(idxs, 1)
            pad = max(rank, 3) - 3
            if pad:
                y = reshape_to(y, [dim_of(y, 0), dim_of(y, 1), self.top_k] + [1] * pad)
            return [tc.identity(y, name=self.name)]
        a = canonical_axis(self.axis, rank)
        d = shp[a]
        if d is None or self.top_k > d:
            raise ValueError(f"top_k={self.top_k} needs axis {a} of known size >= top_k; shape {shp}")
        perm = [i for i in range(rank) if i != a] + [a]
        xt = tc.transpose(x, perm) if a != rank - 1 else x
        lead = [dim_of(xt, i) for i in range(rank - 1)]
        vals, idxs = _top_k_rows(reshape_to(xt, [prod_dims(lead), d]), self.top_k)
        y = vals if self.out_max_val else tc.cast(idxs, x.dtype)
        y = reshape_to(y, lead + [self.top_k])
        if a != rank - 1:
            y = tc.transpose(y, list(np.argsort(perm)))
        return [tc.identity(y, name=self.name)]


# ---------------------------------------------------------------------------- BatchReindex
@register_layer
class BatchReindex(LayerSpec):
    """y[k] = x[permut[k]]: the examples of the first bottom picked (and repeated or dropped) by the
    second, a vector of K indices into axis 0 (floats in Caffe, truncated; integers accepted).
    The top is [K, ...]. The gradient reaches x only, summed over repeated picks, as in Caffe. An
    index outside [0, N) is a run-time error naming the layer's Gather (Caffe: a CHECK failure)."""

    type: Literal["BatchReindex"] = "BatchReindex"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer()
    num_bottoms: ClassVar = (2, 2)

    def build(self, ctx, bottoms):
        x, permut = bottoms
        if len(permut.shape.as_list()) != 1:
            raise ValueError(f"BatchReindex's second bottom holds one index per output example (a vector); "
                             f"{permut.name} has shape {permut.shape.as_list()}")
        idx = tc.cast(permut, tc.int64)  # (floats truncate, as in Caffe)
        # numpy's take counts a negative index from the end: send it past the end instead, where
        # the gather refuses it
        n = tc.cast(tc.shape(x)[0], tc.int64)
        idx = tc.where(tc.less(idx, tc.zeros_like(idx)), tc.zeros_like(idx) + n, idx)
        return [tc.gather(x, idx, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        b.node("Gather", [xs[0], b.indices(xs[1])], [b.y(0)], axis=0)


# ---------------------------------------------------------------------------- Embed
@register_layer
class Embed(LayerSpec):
    """y = W[x] (+ b): rows of a learned [input_dim, num_output] table (Caffe's layout), looked up
    by the bottom's integer-valued entries; the output has the bottom's shape plus num_output."""

    type: Literal["Embed"] = "Embed"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer({"embed_param": {"num_output": integer("num_output"), "input_dim": integer("input_dim"),
                                        "bias_term": flag("bias_term"), "weight_filler": filler("weight_filler"),
                                        "bias_filler": filler("bias_filler")}},
                       blobs=("weights", "bias"), legacy_ranks={"weights": 2})
    num_output: int = Field(gt=0)
    input_dim: int = Field(gt=0)
    bias_term: bool = True
    weight_filler: FillerSpec = Field(default_factory=XavierFiller)
    bias_filler: FillerSpec = Field(default_factory=ConstantFiller)

    _coerce = field_validator("weight_filler", "bias_filler", mode="before")(lambda cls, v: coerce_filler(v))

    def build(self, ctx, bottoms):
        (x,) = bottoms
        w = ctx.param(0, "weights", [self.input_dim, self.num_output], self.weight_filler)
        idx = x if x.dtype in (tc.int32, tc.int64) else tc.cast(x, tc.int32)
        y = tc.gather(w, idx)
        if self.bias_term:
            y = y + ctx.param(1, "bias", [self.num_output], self.bias_filler)
        return [tc.identity(y, name=self.name)]

    def to_onnx(self, b, xs, ins, outs):
        y = b.node("Gather", [b.param(0, "weights"), b.indices(xs[0])], None if self.bias_term else [b.y(0)], axis=0)
        if self.bias_term:
            b.node("Add", [y, b.param(1, "bias")], [b.y(0)])
