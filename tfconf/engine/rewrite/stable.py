"""Numerically stable rewrites, as Theano's optimizer does them.

- ``log(1 + x)`` → ``log1p(x)`` and ``log(1 - x)`` → ``log1p(-x)`` (the constant must be all ones
  and must not broadcast x to a larger shape);
- ``exp(x) - 1`` → ``expm1(x)``;
- ``log(softmax(x))`` → ``log_softmax(x)``;
- the gradient autodiff built for ``log(softmax(x))``, ``(dy/p - Σ(dy/p · p)) · p`` with
  ``p = softmax(x)``, → ``dy - p · Σ dy`` (Theano's local_logsoftmax_grad): the same value without
  dividing by a probability that may have underflowed to 0, so training through the composite
  stays finite;
- ``-Σ labels · log_softmax(x)`` over the last axis → ``SoftmaxCrossEntropyWithLogits`` (one
  stable pass), when the intermediate values have no other reader (in a training plan the
  backward pass reads log_softmax's output, and the fusion would not save anything).

Each rewrite replaces the readers of the matched value; the ops it no longer needs are pruned
afterwards (they stay when something else still reads them).
"""

from __future__ import annotations

import numpy as np


def _const(pg, t):
    if t in pg.fed or t.op.type != "Const":
        return None
    return t.op.attrs["value"]


def _op(pg, t, *types):
    """The producer of ``t`` if it is one of ``types`` (never through a fed tensor)."""
    if t in pg.fed:
        return None
    return t.op if t.op.type in types else None


def _ones_keep_shape(v, x):
    """True when constant ``v`` is all ones and ``v op x`` has exactly x's shape."""
    if v is None or not np.all(v == 1):
        return False
    if x._shape is None:
        return v.ndim == 0
    return v.ndim <= len(x._shape) and all(d == 1 for d in v.shape)


def _other(op, t):
    a, b = op.inputs
    return b if a is t else a


def stable_rewrites(pg):
    fetched, _ = pg.protected()
    cons = pg.consumers()
    counts = {"log1p": 0, "expm1": 0, "log_softmax": 0, "log_softmax_grad": 0, "softmax_cross_entropy": 0}
    replaced = []

    def swap(old_op, new_t, kind):
        pg.replace_uses(old_op.outputs[0], new_t, cons)
        counts[kind] += 1
        replaced.append(old_op)

    for op in list(pg.ops):
        if op in replaced:
            continue
        t = op.type
        if t == "Log":
            a = op.inputs[0]
            p = _op(pg, a, "Add", "Sub", "Softmax")
            if p is None:
                continue
            if p.type == "Softmax":
                new = pg.new_op("LogSoftmax", [p.inputs[0]], {"axis": p.attrs["axis"]}, like=op)
                swap(op, new.outputs[0], "log_softmax")
            elif p.type == "Add":
                for c, x in ((p.inputs[0], p.inputs[1]), (p.inputs[1], p.inputs[0])):
                    if x.dtype == a.dtype and _ones_keep_shape(_const(pg, c), x):
                        new = pg.new_op("Log1p", [x], like=op)
                        swap(op, new.outputs[0], "log1p")
                        break
            elif p.type == "Sub":
                c, x = p.inputs
                if x.dtype == a.dtype and _ones_keep_shape(_const(pg, c), x):
                    neg = pg.new_op("Neg", [x], like=op, name=op.name + "/neg")
                    new = pg.new_op("Log1p", [neg.outputs[0]], like=op)
                    swap(op, new.outputs[0], "log1p")
        elif t == "Sub":
            e, c = op.inputs
            p = _op(pg, e, "Exp")
            if p is not None and _ones_keep_shape(_const(pg, c), p.inputs[0]):
                new = pg.new_op("Expm1", [p.inputs[0]], like=op)
                swap(op, new.outputs[0], "expm1")
        elif t == "Mul":
            m = _match_log_softmax_grad(pg, op)
            if m is not None:
                g, y, axis = m
                s = pg.new_op("Sum", [g], {"axis": (axis,), "keepdims": True}, like=op, name=op.name + "/sum")
                py = pg.new_op("Mul", [y, s.outputs[0]], like=op, name=op.name + "/mul")
                new = pg.new_op("Sub", [g, py.outputs[0]], like=op)
                swap(op, new.outputs[0], "log_softmax_grad")
        elif t == "Neg":
            m = _match_softmax_cross_entropy(pg, op, cons, fetched)
            if m is not None:
                x, z = m
                new = pg.new_op("SoftmaxCrossEntropyWithLogits", [x, z], {"need_backprop": False}, like=op)
                swap(op, new.outputs[0], "softmax_cross_entropy")
    pg.remove(replaced)
    return counts


def _match_log_softmax_grad(pg, r):
    """r = Mul(B, Y), B = Sub(D, S), S = Sum(Mul(D, Y), axis, keepdims), D = RealDiv(G, Y),
    Y = Softmax(x, axis) → (G, Y, axis)."""
    for b, y in ((r.inputs[0], r.inputs[1]), (r.inputs[1], r.inputs[0])):
        sm = _op(pg, y, "Softmax")
        sub = _op(pg, b, "Sub")
        if sm is None or sub is None:
            continue
        d, s = sub.inputs
        div = _op(pg, d, "RealDiv")
        red = _op(pg, s, "Sum")
        if div is None or red is None or div.inputs[1] is not y:
            continue
        m1 = _op(pg, red.inputs[0], "Mul")
        if m1 is None or set(map(id, m1.inputs)) != {id(d), id(y)}:
            continue
        axis = sm.attrs["axis"]
        if red.attrs.get("axis") != (axis,) or not red.attrs.get("keepdims"):
            continue
        g = div.inputs[0]
        if g._shape is None or g._shape != y._shape or g.dtype != y.dtype:
            continue
        return g, y, axis
    return None


def _sole_reader(t, op, cons, fetched):
    return t not in fetched and list(cons.get(t, ())) == [op]


def _match_softmax_cross_entropy(pg, neg, cons, fetched):
    """neg = Neg(Sum(Mul(z, L), axis=last)), L = LogSoftmax(x, axis=last) → (x, z)."""
    red = _op(pg, neg.inputs[0], "Sum")
    if red is None or not _sole_reader(red.outputs[0], neg, cons, fetched) or red.attrs.get("keepdims"):
        return None
    mul = _op(pg, red.inputs[0], "Mul")
    if mul is None or not _sole_reader(mul.outputs[0], red, cons, fetched):
        return None
    for z, ls in ((mul.inputs[0], mul.inputs[1]), (mul.inputs[1], mul.inputs[0])):
        lso = _op(pg, ls, "LogSoftmax")
        if lso is None or z is ls or not _sole_reader(ls, mul, cons, fetched):
            continue
        x = lso.inputs[0]
        xs = x._shape
        if xs is None or not xs or z._shape != xs or z.dtype != x.dtype:
            continue
        last = len(xs) - 1
        if lso.attrs["axis"] != last or red.attrs.get("axis") != (last,):
            continue
        return x, z
    return None
