"""Reductions over static axes: sum, mean, max, min, prod, argmax, argmin."""

from __future__ import annotations

import numpy as np

from ..dtypes import as_dtype, int64
from ..registry import OpDef, register
from .core import apply_op, broadcast_to, constant, convert_to_tensor, shape, size

#: the public functions (``tc.<name>``) this module declares: engine/api.py exports them
__all__ = [
    "argmax", "argmin", "reduce_max", "reduce_mean", "reduce_min", "reduce_prod", "reduce_sum",
]


def normalize_axes(axis, rank, what="reduction"):
    """Axes as a sorted tuple of non-negative ints, or None for all axes."""
    if axis is None:
        return None
    if isinstance(axis, (int, np.integer)):
        axis = (int(axis),)
    out = []
    for a in axis:
        a = int(a)
        if rank is not None:
            if not -rank <= a < rank:
                raise ValueError(f"{what}: axis {a} is out of range for a tensor of rank {rank}")
            a %= rank
        out.append(a)
    if rank is None and any(a < 0 for a in out):
        return tuple(out)
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: repeated axis in {tuple(axis)}")
    return tuple(sorted(out))


def _reduced_shape(xs, axes, keepdims):
    if xs is None:
        return None
    if axes is None:
        return (1,) * len(xs) if keepdims else ()
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(xs))
    return tuple(d for i, d in enumerate(xs) if i not in axes)


def _infer_reduce(op):
    x = op.inputs[0]
    if x.dtype.is_bool and op.type in ("Sum", "Mean", "Prod"):
        raise TypeError(f"{op.type} does not accept bool tensors; cast to an integer or float type first")
    return [(_reduced_shape(x._shape, op.attrs["axis"], op.attrs["keepdims"]), x.dtype)]


def _expand_back(op, dy):
    """dy reshaped so it broadcasts against the reduction's input (keepdims form)."""
    from .array import expand_dims

    x = op.inputs[0]
    axes, keep = op.attrs["axis"], op.attrs["keepdims"]
    if keep or axes is None:
        return dy
    for a in axes:
        dy = expand_dims(dy, a)
    return dy


def _broadcast_back(op, t):
    x = op.inputs[0]
    xs = x._shape
    target = xs if xs is not None and None not in xs else shape(x)
    return broadcast_to(_expand_back(op, t), target)


def _count(op):
    """Number of elements reduced into each output element (static when known)."""
    x, y = op.inputs[0], op.outputs[0]
    xs, ys = x._shape, y._shape
    dt = x.dtype
    if xs is not None and None not in xs and ys is not None and None not in ys:
        n = int(np.prod(xs, dtype=np.int64)) // max(int(np.prod(ys, dtype=np.int64)), 1)
        return constant(n, dtype=dt)
    from .math import cast

    return cast(size(x), dt) / cast(size(y), dt)


@register
class Sum(OpDef):
    """y = Σ x over axes (in x's dtype: numpy would widen int32 to int64);  dx = broadcast(dy)"""

    infer = _infer_reduce

    def forward(xp, x, axis=None, keepdims=False):
        return xp.sum(x, axis=axis, keepdims=keepdims, dtype=x.dtype)

    def grad(op, dy):
        return [_broadcast_back(op, dy)]


@register
class Mean(OpDef):
    """y = mean of x over axes (integers: the sum divided by n, truncated toward zero as in TF,
    keeping the input dtype);  dx = broadcast(dy) / n"""

    infer = _infer_reduce

    def forward(xp, x, axis=None, keepdims=False):
        if x.dtype.kind == "f":
            return xp.mean(x, axis=axis, keepdims=keepdims, dtype=x.dtype)
        s = xp.sum(x, axis=axis, keepdims=keepdims, dtype=x.dtype)
        n = max(x.size // max(s.size, 1), 1)
        return xp.where(s < 0, -((-s) // n), s // n).astype(x.dtype, copy=False)

    def grad(op, dy):
        return [_broadcast_back(op, dy / _count(op))]


def _extremum_grad(op, dy):
    """The gradient is split equally among the elements equal to the extremum (as TF does)."""
    from .math import cast, equal

    x = op.inputs[0]
    y = _broadcast_back(op, op.outputs[0])
    mask = cast(equal(x, y), x.dtype)
    n = _broadcast_back(op, reduce_sum(mask, op.attrs["axis"], keepdims=op.attrs["keepdims"]))
    return [mask * _broadcast_back(op, dy) / n]


@register
class Max(OpDef):
    """y = max of x over axes; the gradient is shared equally by tied maxima"""

    infer = _infer_reduce

    def forward(xp, x, axis=None, keepdims=False):
        return xp.max(x, axis=axis, keepdims=keepdims)

    grad = _extremum_grad


@register
class Min(OpDef):
    """y = min of x over axes; the gradient is shared equally by tied minima"""

    infer = _infer_reduce

    def forward(xp, x, axis=None, keepdims=False):
        return xp.min(x, axis=axis, keepdims=keepdims)

    grad = _extremum_grad


@register
class Prod(OpDef):
    """y = Π x over axes (in x's dtype);  dx_i = dy · Π_{j≠i} x_j (exact with zeros: ProdGrad)"""

    infer = _infer_reduce

    def forward(xp, x, axis=None, keepdims=False):
        return xp.prod(x, axis=axis, keepdims=keepdims, dtype=x.dtype)

    def grad(op, dy):
        others = apply_op("ProdGrad", [op.inputs[0]], {"axis": op.attrs["axis"]})
        return [others * _broadcast_back(op, dy)]


@register
class ProdGrad(OpDef):
    """For each element, the product of the *other* elements of its reduction group, computed
    with exclusive cumulative products (no division, so zeros are handled exactly)."""

    nondifferentiable = False

    def infer(op):
        x = op.inputs[0]
        return [(x._shape, x.dtype)]

    def forward(xp, x, axis=None):
        axes = tuple(range(x.ndim)) if axis is None else axis
        rest = tuple(i for i in range(x.ndim) if i not in axes)
        perm = rest + tuple(axes)
        xt = xp.transpose(x, perm)
        lead = xt.shape[: len(rest)]
        flat = xt.reshape(lead + (-1,))
        one = xp.ones(lead + (1,), dtype=x.dtype)
        left = xp.cumprod(xp.concatenate([one, flat[..., :-1]], axis=-1), axis=-1)
        right = xp.flip(xp.cumprod(xp.concatenate([one, xp.flip(flat, -1)[..., :-1]], axis=-1), axis=-1), -1)
        out = (left * right).reshape(xt.shape)
        return xp.transpose(out, np.argsort(perm))


def _arg_infer(op):
    x = op.inputs[0]
    xs = x._shape
    ax = op.attrs["axis"]
    shp = None if xs is None else tuple(d for i, d in enumerate(xs) if i != ax)
    return [(shp, op.attrs["output_type"])]


@register
class ArgMax(OpDef):
    nondifferentiable = True
    infer = _arg_infer

    def forward(xp, x, axis, output_type):
        return xp.argmax(x, axis=axis).astype(output_type.np, copy=False)


@register
class ArgMin(OpDef):
    nondifferentiable = True
    infer = _arg_infer

    def forward(xp, x, axis, output_type):
        return xp.argmin(x, axis=axis).astype(output_type.np, copy=False)


def _reduce(type_name, x, axis, keepdims, name):
    x = convert_to_tensor(x)
    rank = None if x._shape is None else len(x._shape)
    axes = normalize_axes(axis, rank, type_name)
    return apply_op(type_name, [x], {"axis": axes, "keepdims": bool(keepdims)}, name)


def reduce_sum(input_tensor, axis=None, keepdims=False, name=None):
    return _reduce("Sum", input_tensor, axis, keepdims, name)


def reduce_mean(input_tensor, axis=None, keepdims=False, name=None):
    return _reduce("Mean", input_tensor, axis, keepdims, name)


def reduce_max(input_tensor, axis=None, keepdims=False, name=None):
    return _reduce("Max", input_tensor, axis, keepdims, name)


def reduce_min(input_tensor, axis=None, keepdims=False, name=None):
    return _reduce("Min", input_tensor, axis, keepdims, name)


def reduce_prod(input_tensor, axis=None, keepdims=False, name=None):
    return _reduce("Prod", input_tensor, axis, keepdims, name)


def _arg(type_name, x, axis, output_type, name):
    x = convert_to_tensor(x)
    rank = None if x._shape is None else len(x._shape)
    if axis is None:
        axis = 0
    (ax,) = normalize_axes(int(axis), rank, type_name)
    return apply_op(type_name, [x], {"axis": ax, "output_type": as_dtype(output_type)}, name)


def argmax(input, axis=None, output_type=int64, name=None):
    return _arg("ArgMax", input, axis, output_type, name)


def argmin(input, axis=None, output_type=int64, name=None):
    return _arg("ArgMin", input, axis, output_type, name)
