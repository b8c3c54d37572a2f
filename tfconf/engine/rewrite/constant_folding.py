"""Constant folding: ops whose inputs are all constants are evaluated once, when the plan is
compiled, and replaced by a ``Const`` holding the result.

Folding walks the plan in topological order, so whole constant subgraphs collapse. Values that
depend only on static shapes are materialised too: ``Shape``, ``Size`` and ``Rank`` of a tensor
whose static shape is fully known (a fed value must match its placeholder's shape, so this holds
at run time), and ``ZerosLike``/``OnesLike`` of such a tensor. Never folded: stateful ops
(variables, random draws, updates), ops with control inputs, fetched outputs (a fetch must come
back as a fresh writable array), results larger than ``max_bytes``, results that are not finite
(the run-time op keeps its warnings and its check_numerics report), and anything whose kernel
raises (the error then happens at run time, naming the op as usual).
"""

from __future__ import annotations

import numpy as np

NEVER = frozenset({"Const", "Placeholder", "NoOp"})
SHAPE_OPS = frozenset({"Shape", "Size", "Rank", "ZerosLike", "OnesLike"})


class _FoldContext:
    """What a kernel may see while folding: numpy, no variables, no random state."""

    xp = np
    variables: dict = {}
    rngs: dict = {}
    graph_seed = None
    device = None

    def rng(self, op):  # pragma: no cover - random ops are stateful and never folded
        raise RuntimeError("random ops are not folded")


def _known(shape):
    return shape is not None and None not in shape


def _from_shape(op):
    """The value of a shape-only op from static shapes, or None."""
    x = op.inputs[0] if op.inputs else None
    if x is None:
        return None
    xs = x._shape
    out = op.outputs[0]
    if op.type == "Rank":
        return None if xs is None else [np.asarray(len(xs), dtype=out.dtype.np)]
    if not _known(xs):
        return None
    if op.type == "Shape":
        return [np.asarray(xs, dtype=out.dtype.np)]
    if op.type == "Size":
        return [np.asarray(int(np.prod(xs, dtype=np.int64)), dtype=out.dtype.np)]
    fill = 0 if op.type == "ZerosLike" else 1
    return [np.full(xs, fill, dtype=out.dtype.np)]


def _const(pg, t):
    if t in pg.fed or t.op.type != "Const":
        return None
    return t.op.attrs["value"]


def fold_constants(pg, max_bytes=1 << 20):
    fetched, targets = pg.protected()
    cons = pg.consumers()
    ctx = _FoldContext()
    dead = []
    folded = materialized = 0
    for op in pg.topo():
        if op.type in NEVER or op.op_def.stateful or not op.outputs or op in targets \
                or op.control_inputs or any(t in fetched for t in op.outputs):
            continue
        values = None
        if op.type in SHAPE_OPS:
            values = _from_shape(op)
        if values is None:
            args = [_const(pg, t) for t in op.inputs]
            if not args or any(a is None for a in args):
                continue
            values = _evaluate(op, ctx, args)
            if values is None:
                continue
        else:
            materialized += 1
        if not _acceptable(op, values, max_bytes):
            if op.type not in SHAPE_OPS:
                continue
            materialized -= 1
            continue
        for i, (t, v) in enumerate(zip(op.outputs, values)):
            v = np.array(v, dtype=t.dtype.np, copy=True, order="C")
            v.setflags(write=False)
            name = op.name if len(op.outputs) == 1 else f"{op.name}/output_{i}"
            c = pg.new_op("Const", [], {"value": v}, like=op, name=name, control_inputs=[],
                          outputs=[(tuple(v.shape), t.dtype)])
            pg.replace_uses(t, c.outputs[0], cons)
        dead.append(op)
        folded += 1
    pg.remove(dead)
    return {"folded": folded - materialized, "shapes_materialized": materialized}


def _evaluate(op, ctx, args):
    try:
        kernel = op.op_def.make_kernel(op, ctx)
        with np.errstate(all="ignore"):
            out = kernel(*args)
    except Exception:  # noqa: BLE001 - left to fail (or not) at run time, where it is reported
        return None
    return list(out) if len(op.outputs) != 1 else [out]


def _acceptable(op, values, max_bytes):
    if len(values) != len(op.outputs):
        return False
    for t, v in zip(op.outputs, values):
        if v is None or not isinstance(v, (np.ndarray, np.generic)) or v.dtype != t.dtype.np:
            return False
        if v.nbytes > max_bytes:
            return False
        shp = t._shape
        if shp is not None and (len(shp) != v.ndim or any(d is not None and d != a for d, a in zip(shp, v.shape))):
            return False
        if v.dtype.kind in "fc" and not np.all(np.isfinite(v)):
            return False
    return True
