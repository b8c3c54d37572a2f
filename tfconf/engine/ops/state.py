"""Stateful ops: Variables and their assignments, kept in the session between runs."""

from __future__ import annotations

from .. import errors
from .. import shapes as S
from ..registry import OpDef, register


@register
class VariableV2(OpDef):
    """Reads a Variable's current value from the session. The stored array is never mutated in
    place (assignments replace it), so a value read earlier in a run stays consistent."""

    stateful = True
    keeps_output = True  # its output is the storage it holds: never overwritten in place

    def infer(op):
        return [(op.attrs["shape"], op.attrs["dtype"])]

    def make_kernel(op, ctx):
        store = ctx.variables
        name = op.name

        def read():
            try:
                return store[name]
            except KeyError:
                raise errors.FailedPreconditionError(
                    f"Attempting to use uninitialized value {name} ({op.describe()}). Run "
                    "tc.global_variables_initializer() (or the variable's initializer) first.",
                    op,
                ) from None

        return read


@register
class VarHandle(OpDef):
    """A reference to the Variable named by attr ``var`` (TF's VarHandleOp): its one output, of
    dtype ``resource``, is what the ops that update or test the variable take as their first
    input, so the variable they touch is an edge of the graph, not a name in their attrs. Attrs
    ``shape``, ``dtype`` and ``validate_shape`` are the variable's. Made once per Variable,
    colocated with it; its kernel yields the store key."""

    stateful = True
    nondifferentiable = True

    def infer(op):
        from ..dtypes import resource

        return [((), resource)]

    def make_kernel(op, ctx):
        name = op.attrs["var"]
        return lambda: name


def referenced(t):
    """The attrs (var, shape, dtype, validate_shape) of the Variable behind handle tensor ``t``."""
    if t.op.type != "VarHandle":
        raise TypeError(f"{t.name} is not a Variable's handle (a {t.op.type} output): pass "
                        "variable.handle")
    return t.op.attrs


def variables_referenced(op) -> tuple:
    """The names of the Variables whose handles ``op`` takes as inputs (empty for most ops)."""
    return tuple(t.op.attrs["var"] for t in op.inputs if t.op.type == "VarHandle")


def _assign_infer(op):
    var = referenced(op.inputs[0])
    var_shape, validate = var["shape"], var.get("validate_shape", True)
    t = op.inputs[1]
    if t.dtype != var["dtype"]:
        raise TypeError(
            f"cannot assign a {t.dtype.name} value to variable {var['var']} of dtype "
            f"{var['dtype'].name}"
        )
    if validate and not S.compatible(var_shape, t._shape):
        raise ValueError(
            f"cannot assign a value of shape {S.fmt(t._shape)} to variable {var['var']} of "
            f"shape {S.fmt(var_shape)}"
        )
    return [(var_shape if validate else t._shape, t.dtype)]


def _check_shape(op, name, value):
    var = op.inputs[0].op.attrs
    want = var["shape"]
    if var.get("validate_shape", True) and want is not None and not S.compatible(want, value.shape):
        raise errors.InvalidArgumentError(
            f"{op.describe()}: cannot assign a value of shape {list(value.shape)} to variable "
            f"{name} of shape {S.fmt(want)}",
            op,
        )


def current(op, store, name):
    """The stored value of variable ``name`` for ``op``, or the error TF gives for an
    uninitialized one."""
    try:
        return store[name]
    except KeyError:
        raise errors.FailedPreconditionError(
            f"Attempting to use uninitialized value {name} ({op.describe()}).", op
        ) from None


class _AssignOp(OpDef):
    """An update of the Variable whose handle is input 0 with input 1; outputs the new value.
    ``update(xp, current, value)`` gives it (``current`` is None for a plain assignment)."""

    stateful = True
    nondifferentiable = True
    infer = _assign_infer
    keeps_output = True  # its output is the storage it holds: never overwritten in place
    reads_current = True  # False: the update needs no current value (the variable may be uninitialized)

    def update(xp, current, value):  # pragma: no cover - every assignment overrides
        raise NotImplementedError

    def make_kernel(op, ctx):
        store, xp = ctx.variables, ctx.xp
        update, reads = op.op_def.update, op.op_def.reads_current

        def assign(ref, value):
            new = update(xp, current(op, store, ref) if reads else None, value)
            _check_shape(op, ref, new)
            store[ref] = new
            return new

        return assign


@register
class Assign(_AssignOp):
    """``var = value``; outputs the new value."""

    reads_current = False

    def update(xp, current, value):
        # Own the storage: a fed or constant array must not alias the variable.
        return xp.array(value, copy=True)


@register
class AssignAdd(_AssignOp):
    """``var = var + value``; outputs the new value."""

    def update(xp, current, value):
        return current + value


@register
class AssignSub(_AssignOp):
    """``var = var - value``; outputs the new value."""

    def update(xp, current, value):
        return current - value


@register
class IsVariableInitialized(OpDef):
    """Whether the Variable whose handle is the input holds a value."""

    stateful = True
    nondifferentiable = True

    def infer(op):
        from ..dtypes import bool_

        referenced(op.inputs[0])
        return [((), bool_)]

    def make_kernel(op, ctx):
        import numpy as np

        store = ctx.variables
        return lambda ref: np.bool_(ref in store)


@register
class ReadVariable(OpDef):
    """The variable's value at the time this op runs: unlike the VariableV2 tensor (shared by every
    reader), each ReadVariable is its own op, so it honours the control dependencies it was
    created under (``with control_dependencies([v.assign_add(1)]): v.read_value()``).
    Gradient: flows to the variable like a read of it (identity)."""

    stateful = True
    keeps_output = True  # its output is the storage it holds: never overwritten in place

    def infer(op):
        v = op.inputs[0]
        if v.op.type != "VariableV2":
            raise TypeError(f"ReadVariable reads a Variable's value tensor, not a {v.op.type} output")
        return [(v._shape, v.dtype)]

    def make_kernel(op, ctx):
        store, name = ctx.variables, op.inputs[0].op.name
        return lambda v: current(op, store, name)

    def grad(op, dy):
        return [dy]
