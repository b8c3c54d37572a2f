"""Fused parameter-update ops (TensorFlow's training ops). Each reads its variables from the
session, computes the new values and replaces them. They output nothing; run them as targets.

An array another holder may still see (an earlier read in the same run, a fetch, a view) is never
mutated: the update then writes a new array. Only when the session's store holds the sole
reference (checked with ``sys.getrefcount``, as numpy's own temporary elision does) is it updated
in place, which saves two allocations and a pass over every parameter per step."""

from __future__ import annotations

import sys

from .. import errors
from ..kernels.providers import onednn
from ..registry import OpDef, register

# references to an array held only by the store, seen from inside _sole: the dict entry, the
# caller's local name, _sole's parameter and getrefcount's own argument
_SOLE_REFS = 4


def _sole(a):
    """True when ``a`` (held by the store and one local name) is referenced nowhere else."""
    # NOTE: cupy arrays have flags but no ``writeable`` (they always are)
    return sys.getrefcount(a) <= _SOLE_REFS and getattr(a, "flags", None) is not None \
        and getattr(a.flags, "writeable", True) and a.flags.owndata


def _read(store, op, name):
    try:
        return store[name]
    except KeyError:
        raise errors.FailedPreconditionError(
            f"Attempting to use uninitialized value {name} ({op.describe()}).", op) from None


@register
class ApplyGradientDescent(OpDef):
    """var ← var - lr·grad"""

    stateful = True
    nondifferentiable = True
    kernels = {"onednn": onednn("apply_gradient_descent")}

    def variables(op):
        return (op.attrs["var"],)

    def infer(op):
        return []

    def make_kernel(op, ctx):
        store, var = ctx.variables, op.attrs["var"]

        def apply(lr, grad):
            w = _read(store, op, var)
            if _sole(w) and w.dtype == grad.dtype:
                w -= lr * grad
            else:
                store[var] = w - lr * grad
            return ()

        return apply


@register
class ApplyMomentum(OpDef):
    """accum ← momentum·accum + grad;  var ← var - lr·accum
    (Nesterov: var ← var - lr·(grad + momentum·accum))"""

    stateful = True
    nondifferentiable = True
    kernels = {"onednn": onednn("apply_momentum")}

    def variables(op):
        return (op.attrs["var"], op.attrs["accum"])

    def infer(op):
        return []

    def make_kernel(op, ctx):
        store, var, acc = ctx.variables, op.attrs["var"], op.attrs["accum"]
        nesterov = op.attrs.get("use_nesterov", False)
        xp = ctx.xp

        def apply(lr, grad, momentum):
            a = _read(store, op, acc)
            if _sole(a) and a.dtype == grad.dtype:
                a *= momentum
                a += grad
            else:
                a = a * momentum
                a += grad
                store[acc] = a
            step = grad + momentum * a if nesterov else a
            w = _read(store, op, var)
            if _sole(w) and w.dtype == grad.dtype:
                w -= xp.multiply(step, lr)
            else:
                u = xp.multiply(step, -lr)
                u += w
                store[var] = u
            return ()

        return apply


@register
class ApplyAdam(OpDef):
    """m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²;  var ← var - lr_t·m / (√v + ε),
    lr_t = lr·√(1-β2ᵗ)/(1-β1ᵗ) with t counted in the op's own step variable."""

    stateful = True
    nondifferentiable = True

    def variables(op):
        return tuple(op.attrs[k] for k in ("var", "m", "v", "t"))

    def infer(op):
        return []

    def make_kernel(op, ctx):
        store = ctx.variables
        var, m_, v_, t_ = (op.attrs[k] for k in ("var", "m", "v", "t"))
        b1, b2, eps = op.attrs["beta1"], op.attrs["beta2"], op.attrs["epsilon"]
        xp = ctx.xp

        def apply(lr, grad):
            t = _read(store, op, t_) + 1
            store[t_] = t
            m = _read(store, op, m_) * b1 + (1 - b1) * grad
            v = _read(store, op, v_) * b2 + (1 - b2) * xp.square(grad)
            store[m_], store[v_] = m, v
            lr_t = lr * xp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            store[var] = _read(store, op, var) - (lr_t * m / (xp.sqrt(v) + eps)).astype(grad.dtype, copy=False)
            return ()

        return apply
