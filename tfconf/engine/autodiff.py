"""Symbolic differentiation: ``gradients`` adds gradient ops to the graph.

As the seed design describes: find the ops on a forward path from the xs to the ys, walk back from
the ys adding, for each op on the way, the ops its gradient rule builds, and combine by the chain
rule (contributions of several paths are summed with AddN). Because an op's inputs always exist
before it, creation order is topological, so the walk is a reverse loop over op ids: no recursion,
linear in the graph's size. The results are ordinary tensors, so gradients of gradients work.
"""

from __future__ import annotations

import contextlib

from . import shapes as _shapes
from .graph import Tensor, get_default_graph
from .ops.core import add_n, convert_to_tensor, ones_like, zeros_like


class GradientError(LookupError):
    """An op on the path has no gradient rule, or a rule returned the wrong number of gradients."""


def _differentiable(t: Tensor) -> bool:
    return t.dtype.is_floating


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def ops_between(xs, ys, stops=frozenset()) -> set:
    """The ops a gradient of ``ys`` with respect to ``xs`` walks: reachable forward from the xs
    through float tensors (not across ``stops``) and reaching the ys back through data inputs."""
    # 1. Ops reachable forward from the xs (through float tensors, not across stopped tensors).
    reach = set()
    todo = [c for x in xs if _differentiable(x) for c in x._consumers]
    while todo:
        op = todo.pop()
        if op in reach:
            continue
        reach.add(op)
        for t in op.outputs:
            if _differentiable(t) and t not in stops:
                todo.extend(c for c in t._consumers if c not in reach)
    # 2. Of those, the ops that reach the ys (walk back from ys through data inputs).
    between = set()
    # A y in stop_gradients is held constant too (TF stops at the op of each stopped tensor).
    todo = [y.op for y in ys if y.op in reach and y not in stops]
    while todo:
        op = todo.pop()
        if op in between:
            continue
        between.add(op)
        for t in op.inputs:
            if t.op in reach and t.op not in between and _differentiable(t) and t not in stops:
                todo.append(t.op)
    return between


def gradients(ys, xs, grad_ys=None, name="gradients", stop_gradients=None,
              unconnected_gradients="none", colocate_gradients_with_ops=False):
    """Symbolic partial derivatives of ``sum(ys)`` with respect to each of ``xs``.

    Returns one Tensor per x, or None where x does not affect ys (``unconnected_gradients="zero"``
    gives zeros instead). Integer tensors are constants. ``stop_gradients`` tensors are held
    constant, so ``gradients(a + b, [a, b], stop_gradients=[a, b])`` gives ``[1, 1]``."""
    if unconnected_gradients not in ("none", "zero"):
        raise ValueError(f"unconnected_gradients must be 'none' or 'zero', received {unconnected_gradients!r}")
    ys = [convert_to_tensor(y) for y in _as_list(ys)]
    xs = [convert_to_tensor(x) for x in _as_list(xs)]
    stops = {convert_to_tensor(s) for s in _as_list(stop_gradients)} if stop_gradients is not None else set()
    if grad_ys is None:
        grad_ys = [None] * len(ys)
    else:
        grad_ys = _as_list(grad_ys)
        if len(grad_ys) != len(ys):
            raise ValueError(f"grad_ys has {len(grad_ys)} entries for {len(ys)} ys.")
    g = ys[0].graph if ys else get_default_graph()

    between = ops_between(xs, ys, stops)

    grads: dict[Tensor, list] = {}
    with g.as_default(), g.name_scope(name):
        for y, gy in zip(ys, grad_ys):
            if gy is None:
                gy = ones_like(y) if _differentiable(y) else None
            else:
                gy = convert_to_tensor(gy, dtype=y.dtype)
                if not _shapes.compatible(gy._shape, y._shape):
                    raise ValueError(
                        f"grad_ys entry of shape {_shapes.fmt(gy._shape)} does not match y "
                        f"{y.name} of shape {_shapes.fmt(y._shape)}."
                    )
            if gy is not None:
                grads.setdefault(y, []).append(gy)
        x_set = set(xs)
        for op in sorted(between, key=lambda o: o._id, reverse=True):
            out_grads = [_sum(grads.get(t)) for t in op.outputs]
            for t, gt in zip(op.outputs, out_grads):
                if gt is not None:
                    grads[t] = [gt]  # collapsed: an x that is also an output reads the sum
            if all(gt is None for gt in out_grads) or op.type == "StopGradient":
                continue
            if op.op_def.nondifferentiable:
                continue
            rule = op.op_def.grad
            if rule is None:
                raise GradientError(
                    f"No gradient defined for {op.describe()}. Wrap the path in tc.stop_gradient "
                    "if it should be treated as a constant."
                )
            if len(out_grads) > 1 and any(gt is None for gt in out_grads) \
                    and not op.op_def.grad_accepts_none:
                out_grads = [gt if gt is not None else zeros_like(t) for t, gt in zip(op.outputs, out_grads)]
            with g.name_scope(op.name + "_grad"), g.colocate_with(op) if colocate_gradients_with_ops else contextlib.nullcontext():
                in_grads = rule(op, *out_grads)
            in_grads = list(in_grads) if isinstance(in_grads, (list, tuple)) else [in_grads]
            if len(in_grads) != len(op.inputs):
                raise GradientError(
                    f"Gradient rule of {op.type} returned {len(in_grads)} gradients for "
                    f"{len(op.inputs)} inputs ({op.describe()})."
                )
            for t, gi in zip(op.inputs, in_grads):
                if gi is None or not _differentiable(t):
                    continue
                if t in x_set or (t.op in between and t not in stops):
                    grads.setdefault(t, []).append(gi)
        result = []
        for x in xs:
            gx = _sum(grads.get(x)) if _differentiable(x) else None
            if gx is not None:
                grads[x] = [gx]
            elif unconnected_gradients == "zero":
                gx = zeros_like(x)
            result.append(gx)
    return result


def _sum(contribs):
    if not contribs:
        return None
    if len(contribs) == 1:
        return contribs[0]
    return add_n(contribs)

