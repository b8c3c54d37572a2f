"""Core ops: placeholders, constants, identity, control, shapes and the broadcasting pair
(SumToShape / BroadcastTo) that every broadcasting gradient uses. Also ``convert_to_tensor`` and
the small helpers op modules share."""

from __future__ import annotations

import numpy as np

from .. import shapes as S
from ..dtypes import as_dtype, dtype_of_value, float32, int32
from ..graph import Operation, Tensor, get_default_graph
from ..kernels.providers import ALL, onednn
from ..registry import OpDef, register

#: the public functions (``tc.<name>``) this module declares: engine/api.py exports them
__all__ = [
    "add_n", "broadcast_to", "constant", "convert_to_tensor", "fill", "group", "identity", "no_op",
    "ones", "ones_like", "placeholder", "placeholder_with_default", "rank", "shape", "size",
    "stop_gradient", "zeros", "zeros_like",
]


# ---------------------------------------------------------------------------- helpers
def graph_of(*values):
    """The graph of the first Tensor/Variable among ``values`` (default graph otherwise)."""
    for v in values:
        if isinstance(v, Tensor):
            return v.graph
        if isinstance(v, (list, tuple)):
            for u in v:
                if isinstance(u, Tensor):
                    return u.graph
        t = getattr(v, "_as_graph_element", None)
        if t is not None:
            return t().graph
    return get_default_graph()


def convert_to_tensor(value, dtype=None, name=None, graph=None):
    """A Tensor for ``value``: Tensors pass through (dtype checked), Variables give their value,
    anything array-like becomes a Const (float → float32, int → int32 unless ``dtype`` says)."""
    if isinstance(value, Tensor):
        if dtype is not None and as_dtype(dtype) != value.dtype:
            raise TypeError(
                f"Expected {as_dtype(dtype).name} tensor, received {value.name} of dtype "
                f"{value.dtype.name}."
            )
        return value
    conv = getattr(value, "_as_graph_element", None)
    if conv is not None:
        return convert_to_tensor(conv(), dtype, name)
    if isinstance(value, Operation):
        raise TypeError(f"Cannot use Operation {value.name} as a tensor value; use op.outputs[0].")
    return constant(value, dtype=dtype, name=name or "Const", graph=graph)


def apply_op(op_type, inputs, attrs=None, name=None):
    """Apply the op type ``op_type`` to ``inputs``: create the op on their graph and return its
    only (or first) output."""
    return graph_of(*inputs).create_op(op_type, inputs, attrs, name).outputs[0]


def binary_inputs(x, y):
    """Convert a binary op's operands; a Python/numpy operand takes the other's dtype."""
    if isinstance(x, Tensor) or hasattr(x, "_as_graph_element"):
        x = convert_to_tensor(x)
        y = convert_to_tensor(y, dtype=None if isinstance(y, Tensor) else x.dtype, graph=x.graph)
    elif isinstance(y, Tensor) or hasattr(y, "_as_graph_element"):
        y = convert_to_tensor(y)
        x = convert_to_tensor(x, dtype=y.dtype, graph=y.graph)
    else:
        x = convert_to_tensor(x)
        y = convert_to_tensor(y, dtype=x.dtype)
    if x.dtype != y.dtype:
        raise TypeError(
            f"Operands must have the same dtype; received {x.name} ({x.dtype.name}) and "
            f"{y.name} ({y.dtype.name}). Use tc.cast to convert one of them."
        )
    return x, y


def same_as_input(op, i=0):
    t = op.inputs[i]
    return [(t._shape, t.dtype)]


def static_value(t):
    """The numpy value of a tensor when it is known at graph-build time (a Const), else None."""
    if t.op.type == "Const":
        return t.op.attrs["value"]
    return None


# ---------------------------------------------------------------------------- placeholders/constants
@register
class Placeholder(OpDef):
    """An external input, fed per run. Running it unfed is an error naming it."""

    nondifferentiable = False

    def infer(op):
        return [(op.attrs["shape"], op.attrs["dtype"])]

    def make_kernel(op, ctx):  # only reached if the session's unfed check was bypassed
        def unfed():
            raise ValueError(f"placeholder {op.name} was not fed")

        return unfed


def placeholder(dtype, shape=None, name=None):
    """``tc.placeholder(tc.float32, shape=[None, 784], name="x")``."""
    g = get_default_graph()
    op = g.create_op(
        "Placeholder", (), {"dtype": as_dtype(dtype), "shape": S.as_shape(shape)}, name or "Placeholder"
    )
    return op.outputs[0]


@register
class PlaceholderWithDefault(OpDef):
    """Returns its input unless fed."""

    def infer(op):
        return [(op.attrs["shape"], op.inputs[0].dtype)]

    def forward(xp, x, shape):
        return x

    def grad(op, dy):
        return [dy]


def placeholder_with_default(input, shape, name=None):
    x = convert_to_tensor(input)
    sh = S.as_shape(shape)
    if not S.compatible(sh, x._shape):
        raise ValueError(f"default value of shape {S.fmt(x._shape)} does not fit shape {S.fmt(sh)}")
    return apply_op("PlaceholderWithDefault", [x], {"shape": sh}, name)


@register
class Const(OpDef):
    nondifferentiable = True
    keeps_output = True  # its output is the storage it holds: never overwritten in place

    def infer(op):
        v = op.attrs["value"]
        return [(tuple(v.shape), as_dtype(v.dtype))]

    def make_kernel(op, ctx):
        v = ctx.xp.asarray(op.attrs["value"])
        return lambda: v


def constant(value, dtype=None, shape=None, name="Const", graph=None):
    """``tc.constant([[1., 2.]])``: float → float32 and int → int32 unless ``dtype`` is given."""
    dt = as_dtype(dtype) if dtype is not None else dtype_of_value(value)
    arr = np.asarray(value)
    if arr.dtype != dt.np:
        if arr.dtype.kind == "f" and dt.is_integer and arr.size and not np.all(arr == np.round(arr)):
            raise TypeError(f"Cannot convert {value!r} to an integer tensor of dtype {dt.name}.")
        arr = arr.astype(dt.np)
    if shape is not None:
        shape = tuple(S.as_shape(shape))
        if arr.size == 1:
            arr = np.full(shape, arr.reshape(()), dtype=dt.np)
        else:
            arr = arr.reshape(shape)
    if not arr.flags.c_contiguous:
        arr = arr.copy()
    elif arr is value or arr.base is not None:
        arr = arr.copy()  # never alias (or freeze) the caller's array
    arr.setflags(write=False)
    g = graph if graph is not None else get_default_graph()
    return g.create_op("Const", (), {"value": arr}, name).outputs[0]


# ---------------------------------------------------------------------------- identity / control
@register
class Identity(OpDef):
    def infer(op):
        return same_as_input(op)

    def forward(xp, x):
        return x

    def grad(op, dy):
        return [dy]


def identity(x, name=None):
    return apply_op("Identity", [convert_to_tensor(x)], None, name)


@register
class StopGradient(OpDef):
    """Identity in the forward pass; blocks gradients (autodiff never calls a rule for it)."""

    def infer(op):
        return same_as_input(op)

    def forward(xp, x):
        return x


def stop_gradient(x, name=None):
    return apply_op("StopGradient", [convert_to_tensor(x)], None, name)


@register
class NoOp(OpDef):
    stateful = True  # never removed by graph rewrites: it exists for its control inputs

    def infer(op):
        return []

    def make_kernel(op, ctx):
        return lambda *a: ()


def no_op(name=None):
    return get_default_graph().create_op("NoOp", (), None, name or "NoOp")


def group(*inputs, name=None):
    """An op that runs after all ``inputs`` (ops or tensors) and outputs nothing."""
    g = get_default_graph()
    flat = []
    for i in inputs:
        flat.extend(i if isinstance(i, (list, tuple)) else [i])
    for i in flat:
        if isinstance(i, (Tensor, Operation)):
            g = i.graph
            break
    with g.control_dependencies(flat):
        return g.create_op("NoOp", (), None, name or "group_deps")


def tuple_(tensors, control_inputs=None, name=None):
    """Tensors equal to ``tensors`` that are only available once all of them (and
    ``control_inputs``) have been computed (``tf.tuple``)."""
    ts = [convert_to_tensor(t) for t in tensors]
    gate = group(*ts, *(control_inputs or []), name=name or "tuple")
    with ts[0].graph.control_dependencies([gate]):
        return [identity(t) for t in ts]


# ---------------------------------------------------------------------------- shapes
@register
class Shape(OpDef):
    """The runtime shape of a tensor as a 1-D int32 array."""

    nondifferentiable = True
    host_outputs = True
    reads_only_shape = True

    def infer(op):
        s = op.inputs[0]._shape
        return [((None,) if s is None else (len(s),), op.attrs.get("out_type", int32))]

    def forward(xp, x, out_type=int32):
        return np.asarray(x.shape, dtype=out_type.np)


def shape(x, out_type=int32, name=None):
    return apply_op("Shape", [convert_to_tensor(x)], {"out_type": as_dtype(out_type)}, name)


class _ShapeFact(OpDef):
    """An int32 scalar fact of the input's shape (``fact``: the array attribute), on the host."""

    nondifferentiable = True
    host_outputs = True
    reads_only_shape = True
    fact = None

    def infer(op):
        return [((), int32)]

    def make_kernel(op, ctx):
        fact = op.op_def.fact
        return lambda x: np.asarray(getattr(x, fact), dtype=np.int32)


@register
class Size(_ShapeFact):
    """The number of elements of the input."""

    fact = "size"


@register
class Rank(_ShapeFact):
    """The number of dimensions of the input."""

    fact = "ndim"


def size(x, name=None):
    return apply_op("Size", [convert_to_tensor(x)], None, name)


def rank(x, name=None):
    return apply_op("Rank", [convert_to_tensor(x)], None, name)


def _target_shape(op, i=1):
    """Static shape given by a shape-tensor input (a Const or a Shape op), else unknown."""
    t = op.inputs[i]
    v = static_value(t)
    if v is not None:
        return tuple(int(d) for d in v)
    if t.op.type == "Shape":
        return t.op.inputs[0]._shape
    n = t._shape[0] if t._shape else None
    return None if n is None else (None,) * n


def _sum_to(xp, g, shape):
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, d in enumerate(shape) if d == 1 and g.shape[i + lead] != 1
    )
    r = g.sum(axis=axes, keepdims=True) if axes else g
    return r.reshape(shape) if lead or r.shape != shape else r


@register
class SumToShape(OpDef):
    """Sum ``g`` over the axes along which a tensor of ``shape`` was broadcast to ``g.shape``:
    the adjoint of BroadcastTo. Gradient: ``BroadcastTo(dy, shape(g))``."""

    host_inputs = (1,)
    kernels = {"onednn": onednn("sum_to_shape", blocked_inputs=(0,))}

    def infer(op):
        return [(_target_shape(op), op.inputs[0].dtype)]

    def forward(xp, g, shape):
        return _sum_to(xp, g, shape.tolist() if hasattr(shape, "tolist") else shape)

    def grad(op, dy):
        return [broadcast_to(dy, shape(op.inputs[0])), None]


@register
class BroadcastTo(OpDef):
    """numpy broadcasting of ``x`` to ``shape``. Gradient: ``SumToShape(dy, shape(x))``."""

    host_inputs = (1,)

    def infer(op):
        target = _target_shape(op)
        S.broadcast(op.inputs[0]._shape, target, "BroadcastTo: ")
        return [(target, op.inputs[0].dtype)]

    def forward(xp, x, shape):
        return xp.broadcast_to(x, tuple(int(d) for d in shape))

    def grad(op, dy):
        return [sum_to_shape(dy, shape(op.inputs[0])), None]


def _shape_tensor(shape_like, graph):
    if isinstance(shape_like, Tensor):
        return shape_like
    return constant(np.asarray(S.as_shape(shape_like), dtype=np.int32), name="shape", graph=graph)


def broadcast_to(x, shape_, name=None):
    x = convert_to_tensor(x)
    return apply_op("BroadcastTo", [x, _shape_tensor(shape_, x.graph)], None, name)


def sum_to_shape(g, shape_, name=None):
    g = convert_to_tensor(g)
    return apply_op("SumToShape", [g, _shape_tensor(shape_, g.graph)], None, name)


def reduce_to_like(g, x, other=None):
    """Reduce the gradient ``g`` of a broadcasting op back to the shape of its operand ``x``
    (``other`` is the op's other operand, if any). No op at all when the static shapes prove no
    broadcasting happened; a static SumToShape when ``x``'s shape is fully known; otherwise a
    dynamic one reading ``shape(x)`` at run time."""
    gs, xs = g._shape, x._shape
    if gs is not None and xs is not None and len(gs) == len(xs):
        os_ = other._shape if other is not None else None
        if all(a is not None and a == b for a, b in zip(gs, xs)):
            return g
        if os_ is not None and _only_x_sets_unknown_dims(gs, xs, os_):
            return g
    if xs is not None and None not in xs:
        return sum_to_shape(g, xs)
    return sum_to_shape(g, shape(x))


def _only_x_sets_unknown_dims(gs, xs, os_):
    """True when every axis of the output equals x's: known and equal, or unknown in x while the
    other operand cannot broadcast x along it (the axis is absent there or has size 1)."""
    lead = len(gs) - len(os_)
    if lead < 0:
        return False
    for i, (a, b) in enumerate(zip(gs, xs)):
        if a is not None and a == b:
            continue
        o = os_[i - lead] if i >= lead else 1
        if b is None and o == 1:
            continue
        return False
    return True


@register
class AddN(OpDef):
    """Sum of any number of same-shaped tensors (gradient accumulation). d/dx_i = dy."""

    kernels = {"onednn": onednn("elementwise", blocked_inputs=ALL, blocked_output=True)}

    def infer(op):
        ins = op.inputs
        shape = ins[0]._shape
        for t in ins[1:]:
            if t.dtype != ins[0].dtype:
                raise TypeError(f"AddN inputs must share a dtype: {ins[0].dtype.name} vs {t.dtype.name}")
            shape = S.broadcast(shape, t._shape, "AddN: ")
        return [(shape, ins[0].dtype)]

    def forward(xp, *xs):
        if len(xs) == 1:
            return xs[0]
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out += x
        return out

    def grad(op, dy):
        return [reduce_to_like(dy, x) for x in op.inputs]


def add_n(inputs, name=None):
    ts = [convert_to_tensor(t) for t in inputs]
    if len(ts) == 1:
        return ts[0]
    return apply_op("AddN", ts, None, name)


@register
class ZerosLike(OpDef):
    nondifferentiable = True

    def infer(op):
        return same_as_input(op)

    def forward(xp, x):
        return xp.zeros_like(x)


@register
class OnesLike(OpDef):
    nondifferentiable = True

    def infer(op):
        return same_as_input(op)

    def forward(xp, x):
        return xp.ones_like(x)


def zeros_like(x, dtype=None, name=None):
    x = convert_to_tensor(x)
    z = apply_op("ZerosLike", [x], None, name)
    return z if dtype is None or as_dtype(dtype) == x.dtype else _cast(z, dtype)


def ones_like(x, dtype=None, name=None):
    x = convert_to_tensor(x)
    o = apply_op("OnesLike", [x], None, name)
    return o if dtype is None or as_dtype(dtype) == x.dtype else _cast(o, dtype)


def _cast(x, dtype):
    """Cast (declared in ops/math.py, which builds on this module): made by type name."""
    return apply_op("Cast", [x], {"dtype": as_dtype(dtype)})


@register
class Fill(OpDef):
    """A tensor of ``dims`` filled with the scalar ``value``. Gradient w.r.t. value: sum(dy)."""

    host_inputs = (0,)

    def infer(op):
        return [(_target_shape(op, 0), op.inputs[1].dtype)]

    def forward(xp, dims, value):
        return xp.full(tuple(int(d) for d in dims), value, dtype=value.dtype)

    def grad(op, dy):
        # the sum over every axis (Sum is declared in ops/reduce.py, which builds on this module)
        return [None, apply_op("Sum", [dy], {"axis": None, "keepdims": False})]


def fill(dims, value, name=None):
    v = convert_to_tensor(value)
    return apply_op("Fill", [_shape_tensor(dims, v.graph), v], None, name)


def zeros(shape_, dtype=float32, name=None):
    dt = as_dtype(dtype)
    if isinstance(shape_, Tensor):
        return fill(shape_, constant(0, dtype=dt), name=name or "zeros")
    return constant(np.zeros(S.as_shape(shape_), dt.np), name=name or "zeros")


def ones(shape_, dtype=float32, name=None):
    dt = as_dtype(dtype)
    if isinstance(shape_, Tensor):
        return fill(shape_, constant(1, dtype=dt), name=name or "ones")
    return constant(np.ones(S.as_shape(shape_), dt.np), name=name or "ones")

