"""Common subexpression elimination.

Two ops of the same type reading the same tensors with equal attributes (and the same control
inputs, device request and colocation) compute the same value, so the later one is dropped and
its readers read the earlier one's outputs. Stateful ops (variables, assignments, updates,
random draws) and placeholders are never merged; ``Const``s are merged when their values are
equal (small ones: compared by bytes). ``Add`` and ``Mul`` are commutative (bit-for-bit in IEEE
arithmetic), so ``a + b`` and ``b + a`` merge. An op whose output is fetched, or a target, is
kept (a fetch must not come back as the same array as another fetch).
"""

from __future__ import annotations

import numpy as np

COMMUTATIVE = frozenset({"Add", "Mul"})
MAX_CONST_BYTES = 1 << 16  # larger constants are compared by identity only


class _Unhashable(Exception):
    pass


def freeze(v):
    """A hashable, equality-preserving stand-in for an attribute value."""
    if isinstance(v, np.ndarray):
        if v.nbytes > MAX_CONST_BYTES:
            return ("ndarray-id", id(v))
        return ("ndarray", v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, np.generic):
        return ("scalar", v.dtype.str, v.tobytes())
    if isinstance(v, (list, tuple)):
        return (type(v).__name__,) + tuple(freeze(a) for a in v)
    if isinstance(v, dict):
        return ("dict",) + tuple(sorted((k, freeze(a)) for k, a in v.items()))
    if isinstance(v, float) and v != v:
        return ("nan",)
    try:
        hash(v)
    except TypeError:
        raise _Unhashable from None
    return (type(v).__name__, v)


def _key(op):
    ins = op.inputs
    if op.type in COMMUTATIVE and len(ins) == 2 and id(ins[1]) < id(ins[0]):
        ins = (ins[1], ins[0])
    try:
        attrs = tuple(sorted((k, freeze(v)) for k, v in op.attrs.items()))
    except _Unhashable:
        return None
    ctrl = tuple(sorted(op.control_inputs, key=id))
    return (op.type, ins, ctrl, op.device, op.colocated_with, attrs)


def eliminate_common_subexpressions(pg):
    fetched, targets = pg.protected()
    cons = pg.consumers()
    couts = pg.control_outputs()
    seen = {}
    dead = []
    for op in pg.topo():
        if op.op_def.stateful or op.type == "Placeholder" or not op.outputs:
            continue
        key = _key(op)
        if key is None:
            continue
        first = seen.get(key)
        if first is None:
            seen[key] = op
            continue
        if op in targets or any(t in fetched for t in op.outputs):
            continue
        for t, u in zip(op.outputs, first.outputs):
            pg.replace_uses(t, u, cons)
        for o in couts.pop(op, []):
            o.control_inputs = [c for c in o.control_inputs if c is not op]
            if first not in o.control_inputs:
                o.control_inputs.append(first)
                couts[first].append(o)
        pg.aliases[op.name] = first
        dead.append(op)
    pg.remove(dead)
    return {"merged": len(dead)}
