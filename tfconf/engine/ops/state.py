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


def _assign_infer(op):
    var_shape = op.attrs["var_shape"]
    t = op.inputs[0]
    if t.dtype != op.attrs["var_dtype"]:
        raise TypeError(
            f"cannot assign a {t.dtype.name} value to variable {op.attrs['var']} of dtype "
            f"{op.attrs['var_dtype'].name}"
        )
    if op.attrs.get("validate_shape", True) and not S.compatible(var_shape, t._shape):
        raise ValueError(
            f"cannot assign a value of shape {S.fmt(t._shape)} to variable {op.attrs['var']} of "
            f"shape {S.fmt(var_shape)}"
        )
    return [(var_shape if op.attrs.get("validate_shape", True) else t._shape, t.dtype)]


def _check_shape(op, value):
    want = op.attrs["var_shape"]
    if op.attrs.get("validate_shape", True) and want is not None and not S.compatible(want, value.shape):
        raise errors.InvalidArgumentError(
            f"{op.describe()}: cannot assign a value of shape {list(value.shape)} to variable "
            f"{op.attrs['var']} of shape {S.fmt(want)}",
            op,
        )


def _current(op, store):
    try:
        return store[op.attrs["var"]]
    except KeyError:
        raise errors.FailedPreconditionError(
            f"Attempting to use uninitialized value {op.attrs['var']} ({op.describe()}).", op
        ) from None


class _AssignOp(OpDef):
    """An update of the Variable named by attr ``var`` with the op's input; outputs the new value.
    ``update(xp, current, value)`` gives it (``current`` is None for a plain assignment)."""

    stateful = True
    nondifferentiable = True
    infer = _assign_infer
    keeps_output = True  # its output is the storage it holds: never overwritten in place
    reads_current = True  # False: the update needs no current value (the variable may be uninitialized)

    def variables(op):
        return (op.attrs["var"],)

    def update(xp, current, value):  # pragma: no cover - every assignment overrides
        raise NotImplementedError

    def make_kernel(op, ctx):
        store, name, xp = ctx.variables, op.attrs["var"], ctx.xp
        update, reads = op.op_def.update, op.op_def.reads_current

        def assign(value):
            new = update(xp, _current(op, store) if reads else None, value)
            _check_shape(op, new)
            store[name] = new
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
    stateful = True
    nondifferentiable = True

    def variables(op):
        return (op.attrs["var"],)

    def infer(op):
        from ..dtypes import bool_

        return [((), bool_)]

    def make_kernel(op, ctx):
        import numpy as np

        store, name = ctx.variables, op.attrs["var"]
        return lambda: np.bool_(name in store)


@register
class ReadVariable(OpDef):
    """The variable's value at the time this op runs: unlike the VariableV2 tensor (shared by every
    reader), each ReadVariable is its own op, so it honours the control dependencies it was
    created under (``with control_dependencies([v.assign_add(1)]): v.read_value()``).
    Gradient: flows to the variable like a read of it (identity)."""

    stateful = True
    keeps_output = True  # its output is the storage it holds: never overwritten in place

    def variables(op):
        return (op.attrs["var"],)

    def infer(op):
        return [(op.attrs["var_shape"], op.attrs["var_dtype"])]

    def make_kernel(op, ctx):
        store = ctx.variables
        return lambda v: _current(op, store)

    def grad(op, dy):
        return [dy]
