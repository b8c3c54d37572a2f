"""Shape and indexing ops: reshape, transpose, expand_dims, squeeze, concat, split, slicing
(``__getitem__``), gather, pad, tile, stack/unstack, one_hot."""

from __future__ import annotations

import numpy as np

from .. import shapes as S
from ..dtypes import as_dtype, float32, int32
from ..graph import Tensor
from ..registry import OpDef, register
from .core import _shape_tensor, _target_shape, apply_op, constant, convert_to_tensor, graph_of, shape, static_value

#: the public functions (``tc.<name>``) this module declares: engine/api.py exports them
__all__ = [
    "concat", "expand_dims", "gather", "one_hot", "pad", "reshape", "split", "squeeze", "stack",
    "tile", "transpose", "unstack",
]


# ---------------------------------------------------------------------------- reshape family
def _reshape_static(xs, target):
    if target is None:
        return None
    target = list(target)
    if target.count(-1) > 1:
        raise ValueError(f"reshape: at most one -1 in the target shape, received {target}")
    n = S.num_elements(xs)
    if -1 in target:
        known = [d for d in target if d != -1]
        if n is not None and None not in known:
            k = int(np.prod(known, dtype=np.int64)) if known else 1
            if k == 0 or n % k:
                raise ValueError(f"reshape: cannot reshape a tensor of shape {S.fmt(xs)} into {target}")
            target[target.index(-1)] = n // k
        else:
            target[target.index(-1)] = None
    out = tuple(None if d is None else int(d) for d in target)
    m = S.num_elements(out)
    if n is not None and m is not None and n != m:
        raise ValueError(
            f"reshape: cannot reshape a tensor of shape {S.fmt(xs)} ({n} elements) into "
            f"{S.fmt(out)} ({m} elements)"
        )
    return out


@register
class Reshape(OpDef):
    """y = x reshaped (row-major);  dx = reshape(dy, shape(x))"""

    host_inputs = (1,)

    def infer(op):
        x, s = op.inputs
        v = static_value(s)
        if v is not None:
            return [(_reshape_static(x._shape, [int(d) for d in v]), x.dtype)]
        return [(_target_shape(op), x.dtype)]

    def forward(xp, x, shape):
        return xp.reshape(x, tuple(int(d) for d in shape))

    def grad(op, dy):
        x = op.inputs[0]
        xs = x._shape
        return [reshape(dy, xs if xs is not None and None not in xs else shape_of(x)), None]


shape_of = shape


def reshape(tensor, shape_, name=None):
    x = convert_to_tensor(tensor)
    if isinstance(shape_, Tensor):
        return apply_op("Reshape", [x, shape_], None, name)
    sh = np.asarray([-1 if d is None else int(d) for d in shape_], dtype=np.int32).reshape(-1)
    return apply_op("Reshape", [x, constant(sh, name="shape", graph=x.graph)], None, name)


@register
class Transpose(OpDef):
    """y = x with axes permuted;  dx = transpose(dy, argsort(perm))"""

    def infer(op):
        x = op.inputs[0]
        perm = op.attrs["perm"]
        xs = x._shape
        if xs is None:
            return [(None, x.dtype)]
        if sorted(perm) != list(range(len(xs))):
            raise ValueError(f"transpose: perm {list(perm)} is not a permutation of the {len(xs)} axes of {S.fmt(xs)}")
        return [(tuple(xs[p] for p in perm), x.dtype)]

    def forward(xp, x, perm):
        return xp.transpose(x, perm)

    def grad(op, dy):
        return [transpose(dy, tuple(int(i) for i in np.argsort(op.attrs["perm"])))]


def transpose(a, perm=None, name=None):
    x = convert_to_tensor(a)
    if perm is None:
        if x._shape is None:
            raise ValueError("transpose without perm needs a known rank")
        perm = tuple(reversed(range(len(x._shape))))
    return apply_op("Transpose", [x], {"perm": tuple(int(p) for p in perm)}, name)


def expand_dims(input, axis, name=None):
    """Insert a size-1 axis (a Reshape with a static target when the shape is known)."""
    x = convert_to_tensor(input)
    return apply_op("ExpandDims", [x], {"axis": int(axis)}, name)


@register
class ExpandDims(OpDef):
    """y = x with a new size-1 axis;  dx = squeeze(dy, axis)"""

    def infer(op):
        x = op.inputs[0]
        xs = x._shape
        if xs is None:
            return [(None, x.dtype)]
        a = op.attrs["axis"]
        n = len(xs) + 1
        if not -n <= a < n:
            raise ValueError(f"expand_dims: axis {a} out of range for rank {len(xs)}")
        a %= n
        return [(xs[:a] + (1,) + xs[a:], x.dtype)]

    def forward(xp, x, axis):
        return xp.expand_dims(x, axis)

    def grad(op, dy):
        a = op.attrs["axis"]
        xs = op.inputs[0]._shape
        if a < 0 and xs is not None:
            a %= len(xs) + 1
        return [squeeze(dy, [a])]


@register
class Squeeze(OpDef):
    """y = x without the given size-1 axes;  dx = reshape(dy, shape(x))"""

    def infer(op):
        x = op.inputs[0]
        xs = x._shape
        axes = op.attrs["axis"]
        if xs is None:
            return [(None, x.dtype)]
        if axes is None:
            if None in xs:
                raise ValueError(f"squeeze without axis needs a fully known shape, received {S.fmt(xs)}")
            return [(tuple(d for d in xs if d != 1), x.dtype)]
        axes = [a % len(xs) for a in axes]
        for a in axes:
            if xs[a] not in (1, None):
                raise ValueError(f"squeeze: axis {a} of shape {S.fmt(xs)} has size {xs[a]}, not 1")
        return [(tuple(d for i, d in enumerate(xs) if i not in axes), x.dtype)]

    def forward(xp, x, axis=None):
        return xp.squeeze(x, axis=None if axis is None else tuple(axis))

    def grad(op, dy):
        x = op.inputs[0]
        xs = x._shape
        return [reshape(dy, xs if xs is not None and None not in xs else shape(x))]


def squeeze(input, axis=None, name=None):
    x = convert_to_tensor(input)
    if isinstance(axis, int):
        axis = [axis]
    return apply_op("Squeeze", [x], {"axis": None if axis is None else tuple(int(a) for a in axis)}, name)


# ---------------------------------------------------------------------------- concat / split / stack
@register
class ConcatV2(OpDef):
    """y = concatenation along axis;  dx_i = the matching slice of dy"""

    def infer(op):
        ins = op.inputs
        a = op.attrs["axis"]
        shapes = [t._shape for t in ins]
        if any(s is None for s in shapes):
            return [(None, ins[0].dtype)]
        r = len(shapes[0])
        out = list(shapes[0])
        for t, s in zip(ins[1:], shapes[1:]):
            if t.dtype != ins[0].dtype:
                raise TypeError(f"concat: dtypes differ ({ins[0].dtype.name} vs {t.dtype.name})")
            if len(s) != r:
                raise ValueError(f"concat: ranks differ: {S.fmt(shapes[0])} vs {S.fmt(s)}")
            for i in range(r):
                if i == a:
                    out[i] = None if out[i] is None or s[i] is None else out[i] + s[i]
                elif out[i] is None:
                    out[i] = s[i]
                elif s[i] is not None and s[i] != out[i]:
                    raise ValueError(
                        f"concat along axis {a}: shapes {S.fmt(shapes[0])} and {S.fmt(s)} differ in axis {i}")
        return [(tuple(out), ins[0].dtype)]

    def forward(xp, *xs, axis):
        return xp.concatenate(xs, axis=axis)

    def grad(op, dy):
        a = op.attrs["axis"]
        sizes = [t._shape[a] if t._shape is not None else None for t in op.inputs]
        if None in sizes:
            return make_split_like(dy, op.inputs, a)
        return split(dy, sizes, axis=a)


def make_split_like(dy, like, axis):
    outs = []
    for i, t in enumerate(like):
        outs.append(apply_op("ConcatGradSlice", [dy] + list(like), {"axis": axis, "index": i}))
    return outs


@register
class ConcatGradSlice(OpDef):
    """The slice of ``dy`` that input ``index`` of a concat contributed (sizes read at run time)."""

    def infer(op):
        t = op.inputs[1 + op.attrs["index"]]
        return [(t._shape, op.inputs[0].dtype)]

    def forward(xp, dy, *like, axis, index):
        start = sum(int(t.shape[axis]) for t in like[:index])
        sl = [slice(None)] * dy.ndim
        sl[axis] = slice(start, start + like[index].shape[axis])
        return dy[tuple(sl)]


def concat(values, axis, name=None):
    ts = [convert_to_tensor(v) for v in values]
    if len(ts) == 1:
        return ts[0]
    r = ts[0]._shape
    ax = int(axis)
    if r is not None:
        if not -len(r) <= ax < len(r):
            raise ValueError(f"concat: axis {ax} out of range for rank {len(r)}")
        ax %= len(r)
    return apply_op("ConcatV2", ts, {"axis": ax}, name or "concat")


@register
class Split(OpDef):
    """Split x along axis into pieces of the given sizes;  dx = concat(dys)"""

    def infer(op):
        x = op.inputs[0]
        a, sizes = op.attrs["axis"], op.attrs["sizes"]
        xs = x._shape
        if xs is not None:
            if xs[a] is not None and sum(sizes) != xs[a]:
                raise ValueError(f"split: sizes {list(sizes)} do not add up to {xs[a]} (axis {a} of {S.fmt(xs)})")
            return [(xs[:a] + (n,) + xs[a + 1:], x.dtype) for n in sizes]
        return [(None, x.dtype) for _ in sizes]

    def forward(xp, x, axis, sizes):
        idx = np.cumsum(sizes)[:-1].tolist()
        parts = xp.split(x, idx, axis=axis)
        # a single-output op returns its array itself (the executor stores a 1-output op's result
        # as is), so a one-piece split must not return a 1-tuple
        return parts[0] if len(parts) == 1 else tuple(parts)

    def grad(op, *dys):
        return [concat(list(dys), op.attrs["axis"])]


def split(value, num_or_size_splits, axis=0, name=None):
    x = convert_to_tensor(value)
    xs = x._shape
    ax = int(axis) % len(xs) if xs is not None else int(axis)
    if isinstance(num_or_size_splits, (int, np.integer)):
        n = int(num_or_size_splits)
        if xs is None or xs[ax] is None:
            raise ValueError("split into a number of pieces needs a known size along the axis")
        if xs[ax] % n:
            raise ValueError(f"split: {xs[ax]} (axis {ax} of {S.fmt(xs)}) is not divisible by {n}")
        sizes = (xs[ax] // n,) * n
    else:
        sizes = tuple(int(s) for s in num_or_size_splits)
        if -1 in sizes:
            rest = xs[ax] - sum(s for s in sizes if s != -1)
            sizes = tuple(rest if s == -1 else s for s in sizes)
    op = graph_of(x).create_op("Split", [x], {"axis": ax, "sizes": sizes}, name or "split")
    return list(op.outputs)


def stack(values, axis=0, name=None):
    """Pack tensors of one shape along a new axis;  d/dx_i = unstack(dy)[i]"""
    ts = [expand_dims(convert_to_tensor(v), axis) for v in values]
    return concat(ts, axis, name=name or "stack")


def unstack(value, num=None, axis=0, name=None):
    x = convert_to_tensor(value)
    xs = x._shape
    ax = int(axis) % len(xs)
    n = num if num is not None else xs[ax]
    if n is None:
        raise ValueError(f"unstack: cannot infer the number of pieces from shape {S.fmt(xs)}")
    return [squeeze(p, [ax]) for p in split(x, n, axis=ax, name=name or "unstack")]


# ---------------------------------------------------------------------------- slicing
def _norm_index(key, rank):
    """A static numpy basic index (ints, slices, None, Ellipsis) as a hashable tuple."""
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for k in key:
        if isinstance(k, slice):
            for v in (k.start, k.stop, k.step):
                if v is not None and not isinstance(v, (int, np.integer)):
                    raise TypeError(f"slice bounds must be Python ints, received {v!r}")
            out.append(("s", k.start, k.stop, k.step))
        elif k is None:
            out.append(("n",))
        elif k is Ellipsis:
            out.append(("e",))
        elif isinstance(k, (int, np.integer)):
            out.append(("i", int(k)))
        else:
            raise TypeError(
                f"Tensor indices must be ints, slices, None or Ellipsis (tensor indices: use tc.gather); "
                f"received {type(k).__name__}"
            )
    return tuple(out)


def _to_key(spec):
    out = []
    for k in spec:
        if k[0] == "s":
            out.append(slice(k[1], k[2], k[3]))
        elif k[0] == "n":
            out.append(None)
        elif k[0] == "e":
            out.append(Ellipsis)
        else:
            out.append(k[1])
    return tuple(out)


def _getitem_shape(xs, spec):
    """Static shape of ``x[key]`` for a basic index, computed per axis (unknown sizes stay None)."""
    if xs is None:
        return None
    if sum(1 for k in spec if k[0] == "e") > 1:
        raise ValueError("an index can only have a single ellipsis ('...')")
    consumed = sum(1 for k in spec if k[0] in ("s", "i"))
    if consumed > len(xs):
        raise ValueError(f"too many indices ({consumed}) for a tensor of shape {S.fmt(xs)}")
    out, d = [], 0
    for k in spec:
        if k[0] == "e":
            fill = len(xs) - consumed
            out.extend(xs[d:d + fill])
            d += fill
        elif k[0] == "n":
            out.append(1)
        elif k[0] == "i":
            size = xs[d]
            if size is not None and not -size <= k[1] < size:
                raise ValueError(f"index {k[1]} is out of range for axis {d} of size {size} (shape {S.fmt(xs)})")
            d += 1
        else:
            if k[3] == 0:
                raise ValueError("slice step cannot be zero")
            size = xs[d]
            out.append(None if size is None else len(range(*slice(k[1], k[2], k[3]).indices(size))))
            d += 1
    out.extend(xs[d:])
    return tuple(out)


@register
class GetItem(OpDef):
    """y = x[key] for a static basic index (ints, slices, None, ...);  dx = scatter of dy into zeros"""

    def infer(op):
        x = op.inputs[0]
        return [(_getitem_shape(x._shape, op.attrs["key"]), x.dtype)]

    def make_kernel(op, ctx):
        key = _to_key(op.attrs["key"])
        return lambda x: x[key]

    def forward(xp, x, key):
        return x[_to_key(key)]

    def grad(op, dy):
        x = op.inputs[0]
        return [apply_op("GetItemGrad", [dy, shape(x)], {"key": op.attrs["key"]}, None)]


@register
class GetItemGrad(OpDef):
    """dx = zeros(shape) with dy written at x[key]; its own gradient is GetItem(ddx, key)."""

    host_inputs = (1,)

    def infer(op):
        return [(_target_shape(op), op.inputs[0].dtype)]

    def forward(xp, dy, shape, key):
        out = xp.zeros(tuple(int(d) for d in shape), dtype=dy.dtype)
        out[_to_key(key)] = dy
        return out

    def grad(op, ddx):
        return [apply_op("GetItem", [ddx], {"key": op.attrs["key"]}), None]


def getitem(x, key, name=None):
    x = convert_to_tensor(x)
    return apply_op("GetItem", [x], {"key": _norm_index(key, None)}, name or "strided_slice")


Tensor.__getitem__ = lambda self, key: getitem(self, key)


def slice_(input_, begin, size, name=None):
    """``tf.slice``: ``size[i] == -1`` means to the end."""
    x = convert_to_tensor(input_)
    key = tuple(slice(int(b), None if int(s) == -1 else int(b) + int(s)) for b, s in zip(begin, size))
    return getitem(x, key, name=name or "Slice")


# ---------------------------------------------------------------------------- gather
@register
class Gather(OpDef):
    """y = take(params, indices, axis);  dparams = GatherGrad (scatter-add: repeated indices accumulate)"""

    def infer(op):
        p, i = op.inputs
        if not i.dtype.is_integer:
            raise TypeError(f"gather: indices must be integers, received {i.dtype.name}")
        a = op.attrs["axis"]
        ps, is_ = p._shape, i._shape
        if ps is None or is_ is None:
            return [(None, p.dtype)]
        return [(ps[:a] + is_ + ps[a + 1:], p.dtype)]

    def forward(xp, params, indices, axis=0):
        return xp.take(params, indices, axis=axis)

    def grad(op, dy):
        p, i = op.inputs
        return [apply_op("GatherGrad", [dy, i, shape(p)], {"axis": op.attrs["axis"]}), None]


@register
class GatherGrad(OpDef):
    """dparams = zeros(shape); dparams[indices] += dy along axis (accumulating repeats).
    Linear in dy: its gradient is Gather(ddparams, indices)."""

    host_inputs = (2,)

    def infer(op):
        return [(_target_shape(op, 2), op.inputs[0].dtype)]

    def forward(xp, dy, indices, shape, axis=0):
        shape = tuple(int(d) for d in shape)
        out = xp.zeros(shape, dtype=dy.dtype)
        n_idx = indices.ndim
        # Move the gathered axis to the front and flatten the index dims so one scatter-add works.
        moved = xp.moveaxis(out, axis, 0)
        d = dy.reshape(dy.shape[:axis] + (-1,) + dy.shape[axis + n_idx:]) if n_idx != 1 else dy
        d = xp.moveaxis(d, axis, 0)
        flat = indices.reshape(-1)
        if hasattr(xp, "add") and hasattr(xp.add, "at"):
            xp.add.at(moved, flat, d)
        else:  # pragma: no cover - cupy
            import cupyx

            cupyx.scatter_add(moved, flat, d)
        return out

    def grad(op, ddp):
        return [apply_op("Gather", [ddp, op.inputs[1]], {"axis": op.attrs["axis"]}), None, None]


def gather(params, indices, axis=0, name=None):
    p = convert_to_tensor(params)
    i = convert_to_tensor(indices, graph=p.graph) if not isinstance(indices, Tensor) else indices
    ps = p._shape
    ax = int(axis) % len(ps) if ps is not None else int(axis)
    return apply_op("Gather", [p, i], {"axis": ax}, name)


# ---------------------------------------------------------------------------- pad / tile / one_hot
@register
class Pad(OpDef):
    """Constant padding;  dx = the unpadded slice of dy"""

    def infer(op):
        x = op.inputs[0]
        pads = op.attrs["paddings"]
        xs = x._shape
        if xs is None:
            return [(None, x.dtype)]
        if len(pads) != len(xs):
            raise ValueError(f"pad: {len(pads)} paddings for a tensor of rank {len(xs)} ({S.fmt(xs)})")
        return [(tuple(None if d is None else d + a + b for d, (a, b) in zip(xs, pads)), x.dtype)]

    def forward(xp, x, paddings, constant_values=0):
        return xp.pad(x, paddings, mode="constant", constant_values=constant_values)

    def grad(op, dy):
        key = tuple(slice(a, -b if b else None) for a, b in op.attrs["paddings"])
        return [getitem(dy, key)]


def pad(tensor, paddings, mode="CONSTANT", constant_values=0, name=None):
    if str(mode).upper() != "CONSTANT":
        raise ValueError(f"pad: only mode='CONSTANT' is supported, received {mode!r}")
    x = convert_to_tensor(tensor)
    pads = tuple((int(a), int(b)) for a, b in paddings)
    return apply_op("Pad", [x], {"paddings": pads, "constant_values": constant_values}, name)


@register
class Tile(OpDef):
    """y = x repeated ``multiples`` times per axis;  dx = sum of the tiles of dy"""

    def infer(op):
        x = op.inputs[0]
        m = op.attrs["multiples"]
        xs = x._shape
        if xs is None:
            return [(None, x.dtype)]
        if len(m) != len(xs):
            raise ValueError(f"tile: {len(m)} multiples for rank {len(xs)}")
        return [(tuple(None if d is None else d * k for d, k in zip(xs, m)), x.dtype)]

    def forward(xp, x, multiples):
        return xp.tile(x, multiples)

    def grad(op, dy):
        return [apply_op("TileGrad", [dy], {"multiples": op.attrs["multiples"]})]


@register
class TileGrad(OpDef):
    """dx[i] = Σ over tiles of dy: reshape to [m0, d0, m1, d1, ...] and sum the m axes.
    Its gradient is Tile(ddx)."""

    def infer(op):
        dy = op.inputs[0]
        m = op.attrs["multiples"]
        ds = dy._shape
        return [(None if ds is None else tuple(None if d is None else d // k for d, k in zip(ds, m)), dy.dtype)]

    def forward(xp, dy, multiples):
        split_shape = []
        for d, k in zip(dy.shape, multiples):
            split_shape += [k, d // k]
        return dy.reshape(split_shape).sum(axis=tuple(range(0, 2 * len(multiples), 2)))

    def grad(op, ddx):
        return [apply_op("Tile", [ddx], {"multiples": op.attrs["multiples"]})]


def tile(input, multiples, name=None):
    x = convert_to_tensor(input)
    return apply_op("Tile", [x], {"multiples": tuple(int(m) for m in multiples)}, name)


@register
class OneHot(OpDef):
    nondifferentiable = True

    def infer(op):
        i = op.inputs[0]
        if not i.dtype.is_integer:
            raise TypeError(f"one_hot: indices must be integers, received {i.dtype.name}")
        s = i._shape
        d = op.attrs["depth"]
        a = op.attrs["axis"]
        if s is None:
            return [(None, op.attrs["dtype"])]
        a = len(s) if a == -1 else a
        return [(s[:a] + (d,) + s[a:], op.attrs["dtype"])]

    def forward(xp, indices, depth, on_value, off_value, axis, dtype):
        eye = (xp.arange(depth) == indices[..., None])
        out = xp.where(eye, dtype.np.type(on_value), dtype.np.type(off_value))
        if axis != -1 and axis != indices.ndim:
            out = xp.moveaxis(out, -1, axis)
        return out


def one_hot(indices, depth, on_value=1.0, off_value=0.0, axis=-1, dtype=float32, name=None):
    i = convert_to_tensor(indices)
    return apply_op("OneHot", [i], {"depth": int(depth), "on_value": on_value, "off_value": off_value,
                                "axis": int(axis), "dtype": as_dtype(dtype)}, name)

