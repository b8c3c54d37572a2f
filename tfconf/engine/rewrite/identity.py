"""Identity and no-op removal.

An ``Identity`` (also ``StopGradient``, and a ``PlaceholderWithDefault`` that this plan does not
feed: both are identities in the forward pass) is bypassed: its readers read its input. Its
control inputs move to its readers, so everything that ran after them still does. It stays when
its output is fetched or fed, when it is a target, when other ops wait on it by a control edge,
or when its output's static shape says more than its input's (readers' kernels may rely on it).

A ``NoOp`` that is not a target only forwards control edges: with n control inputs and m ops
waiting on it, it is replaced by direct edges when n·m <= n + m (TensorFlow's dependency
optimizer rule: never more edges than before).
"""

from __future__ import annotations

IDENTITIES = frozenset({"Identity", "StopGradient", "PlaceholderWithDefault"})


def _as_specific(xs, ys):
    """True when static shape ``xs`` is known wherever ``ys`` is, and agrees with it."""
    if ys is None:
        return True
    if xs is None or len(xs) != len(ys):
        return False
    return all(b is None or a == b for a, b in zip(xs, ys))


def remove_identities(pg):
    fetched, targets = pg.protected()
    cons = pg.consumers()
    couts = pg.control_outputs()
    dead = []
    identities = noops = 0
    for op in list(pg.ops):
        if op in targets:
            continue
        if op.type in IDENTITIES:
            x, y = op.inputs[0], op.outputs[0]
            if y in fetched or y in pg.fed or couts.get(op) or x.dtype != y.dtype \
                    or not _as_specific(x._shape, y._shape):
                continue
            readers = list(cons.get(y, ()))
            for r in readers:
                for c in op.control_inputs:
                    if c not in r.control_inputs:
                        r.control_inputs.append(c)
                        couts[c].append(r)
            for c in op.control_inputs:
                couts[c] = [o for o in couts[c] if o is not op]
            pg.replace_uses(y, x, cons)
            cons[x].pop(op, None)
            dead.append(op)
            identities += 1
        elif op.type == "NoOp":
            ins, outs = list(op.control_inputs), couts.get(op, [])
            if not outs or len(ins) * len(outs) > len(ins) + len(outs):
                continue
            for o in outs:
                o.control_inputs = [c for c in o.control_inputs if c is not op]
                for c in ins:
                    if c not in o.control_inputs:
                        o.control_inputs.append(c)
                        couts[c].append(o)
            for c in ins:
                couts[c] = [o for o in couts[c] if o is not op]
            couts.pop(op, None)
            dead.append(op)
            noops += 1
    pg.remove(dead)
    return {"identities_removed": identities, "noops_removed": noops}
