"""Fusion: conv + bias + relu into ``FusedConv2D``, a 2-D matmul + bias + relu into
``FusedMatMul``, and chains of elementwise ops into ``FusedElementwise``.

A value may disappear into a fused op only when nothing else in the pruned plan reads it: it is
not fetched and all its readers are in the group. Autodiff ran on the user's graph
before the plan was compiled, so a forward value the backward pass needs (a ReLU's output for
ReluGrad, a pooling input for MaxPoolGrad) has more readers and stays an output: only the last
op of a group (its root) is visible outside, and the group's ops must share a device request and
colocation. A member other than the root may not be waited on by a control edge (the fused op
runs later than it would have, and a waiter that feeds the group would close a cycle); control
inputs of members move to the fused op.
"""

from __future__ import annotations

from ..ops.fused import Instr, fusable as fusable_type
from ..shapes import static_numel


def _same_place(a, b):
    return a.device == b.device and a.colocated_with is b.colocated_with


def _union_control(members):
    out = []
    for m in members:
        for c in m.control_inputs:
            if c not in out and c not in members:
                out.append(c)
    return out


def _retarget_control(pg, couts, old, new):
    for o in couts.pop(old, []):
        o.control_inputs = [new if c is old else c for c in o.control_inputs]
        couts[new].append(o)


# ---------------------------------------------------------------------------- conv or matmul + bias + relu
def fuse_conv_bias_relu(pg):
    fetched, targets = pg.protected()
    cons = pg.consumers()
    couts = pg.control_outputs()
    dead = []
    counts = {"conv_bias": 0, "conv_bias_relu": 0, "matmul_bias": 0, "matmul_bias_relu": 0}
    for conv in list(pg.ops):
        if conv in targets or conv in dead or couts.get(conv) or not _fusable_product(conv):
            continue
        kind = "conv" if conv.type == "Conv2D" else "matmul"
        y = conv.outputs[0]
        readers = list(cons.get(y, ()))
        if y in fetched or len(readers) != 1:
            continue
        add = readers[0]
        if add.type != "Add" or add in targets or add.inputs[0] is add.inputs[1] or not _same_place(conv, add):
            continue
        b = add.inputs[1] if add.inputs[0] is y else add.inputs[0]
        z = add.outputs[0]
        ys, bs = y._shape, b._shape
        if b.dtype != y.dtype or bs is None or None in bs or ys is None or z._shape != ys or len(bs) > len(ys):
            continue
        if not all(d == 1 or d == o for d, o in zip(reversed(bs), reversed(ys))):
            continue
        if kind == "matmul" and tuple(bs) not in ((ys[1],), (1, ys[1])):
            continue  # a per-column bias only (what the product's epilogue adds)
        members, root, act = [conv, add], add, None
        zr = list(cons.get(z, ()))
        if z not in fetched and len(zr) == 1 and zr[0].type == "Relu" and zr[0] not in targets \
                and not couts.get(add) and _same_place(add, zr[0]):
            root, act = zr[0], "Relu"
            members.append(root)
        if kind == "conv":
            attrs = {k: conv.attrs[k] for k in ("strides", "padding", "dilations", "groups")}
        else:
            attrs = {"transpose_b": conv.attrs["transpose_b"]}
        attrs["activation"] = act
        # NOTE: named after the product, whose work it is (traces and `tfconf time` attribute its
        # time by name: after the ReLU it would have charged a convolution to the ReLU's layer)
        fused = pg.new_op("FusedConv2D" if kind == "conv" else "FusedMatMul", [conv.inputs[0], conv.inputs[1], b],
                          attrs, like=root, name=conv.name,
                          outputs=[(root.outputs[0]._shape, root.outputs[0].dtype)],
                          absorbed=[m.orig for m in members], orig=conv.orig,
                          control_inputs=_union_control(members))
        pg.replace_uses(root.outputs[0], fused.outputs[0], cons)
        _retarget_control(pg, couts, root, fused)
        for t in conv.inputs + (b,):
            readers = cons.get(t)
            if readers is not None:
                for m in members:
                    readers.pop(m, None)
                readers[fused] = None
        dead.extend(members)
        counts[f"{kind}_bias_relu" if act else f"{kind}_bias"] += 1
    pg.remove(dead)
    counts["filter_bias_grad"] = fuse_filter_bias_gradients(pg)
    return counts


def _fusable_product(op):
    """A Conv2D, or a 2-D MatMul with ``a`` as stored (operands of known rank 2)."""
    if op.type == "Conv2D":
        return True
    if op.type != "MatMul" or op.attrs["transpose_a"]:
        return False
    a, b = op.inputs
    return a._shape is not None and b._shape is not None and len(a._shape) == len(b._shape) == 2


def bias_gradient_axes(g_shape, b_shape):
    """True when summing ``g_shape`` (NCHW) to ``b_shape`` is a per-channel bias gradient:
    [C, 1, 1] or [1, C, 1, 1] for C = g_shape[1] (a [C] bias broadcasts along W, not C)."""
    if g_shape is None or len(g_shape) != 4 or g_shape[1] is None or b_shape is None or None in b_shape:
        return False
    c = g_shape[1]
    return tuple(b_shape) in ((c, 1, 1), (1, c, 1, 1))


def fuse_filter_bias_gradients(pg):
    """Conv2DBackpropFilter(x, dy) and the bias gradient SumToShape(dy, [C, 1, 1]) of the same dy
    → one Conv2DBackpropFilterBias (oneDNN computes both in one pass over dy)."""
    fetched, targets = pg.protected()
    cons = pg.consumers()
    couts = pg.control_outputs()
    dead, n = [], 0
    for f in list(pg.ops):
        if f.type != "Conv2DBackpropFilter" or f in targets or f in dead or couts.get(f):
            continue
        dy = f.inputs[1]
        sums = [s for s in cons.get(dy, ()) if s.type == "SumToShape" and s.inputs[0] is dy and s not in dead
                and s not in targets and not couts.get(s) and _same_place(s, f)
                and bias_gradient_axes(dy._shape, s.outputs[0]._shape)]
        if not sums:
            continue
        s = sums[0]
        attrs = dict(f.attrs, bias_shape=tuple(s.outputs[0]._shape))
        fused = pg.new_op("Conv2DBackpropFilterBias", [f.inputs[0], dy], attrs, like=f,
                          absorbed=[f.orig, s.orig], orig=f.orig, control_inputs=_union_control([f, s]))
        pg.replace_uses(f.outputs[0], fused.outputs[0], cons)
        pg.replace_uses(s.outputs[0], fused.outputs[1], cons)
        for t in (f.inputs[0], dy, s.inputs[1]):
            readers = cons.get(t)
            if readers is not None:
                readers.pop(f, None)
                readers.pop(s, None)
                if t is not s.inputs[1]:
                    readers[fused] = None
        dead.extend([f, s])
        n += 1
    pg.remove(dead)
    return n


# ---------------------------------------------------------------------------- elementwise chains
def fuse_elementwise(pg, min_elements=0, max_ops=32):
    """Group elementwise ops into FusedElementwise ops of at most ``max_ops`` ops (a long chain
    becomes several; chains of the same structure then share one compiled kernel).
    ``min_elements``: leave groups whose output is statically known to be smaller."""
    fetched, targets = pg.protected()
    cons = pg.consumers()
    couts = pg.control_outputs()
    order = pg.topo()
    pos = {op: i for i, op in enumerate(order)}
    taken = set()
    groups = []

    def fusable(op):
        return fusable_type(op.type) and len(op.outputs) == 1 and op not in targets and op not in taken

    for root in reversed(order):
        if not fusable(root):
            continue
        # Grow the group backwards from its root: a producer joins once every reader of its
        # output is in the group (a value read twice inside the group is fine: a DAG). Each
        # member is examined once; a producer whose last reader joins later is examined again
        # then, as an input of that reader.
        members = {root}
        stack = [root]
        while stack and len(members) < max_ops:
            m = stack.pop()
            for t in m.inputs:
                if len(members) >= max_ops:
                    break
                p = pg.producer(t)
                if p is None or p in members or not fusable(p) or t in fetched or couts.get(p) \
                        or not _same_place(p, root):
                    continue
                if all(r in members for r in cons.get(t, ())):
                    members.add(p)
                    stack.append(p)
        if len(members) < 2:
            continue
        n = static_numel(root.outputs[0]._shape)
        if n is not None and n < min_elements:
            continue
        taken.update(members)
        groups.append(sorted(members, key=pos.__getitem__))
    ops_fused = 0
    dead = []
    for members in reversed(groups):  # in topological order: a group reads earlier fused ops
        index = {m: j for j, m in enumerate(members)}
        ext, ext_index, program = [], {}, []
        for m in members:
            args = []
            for t in m.inputs:
                p = None if t in pg.fed else t.op
                if p in index:
                    args.append(("t", index[p]))
                else:
                    k = ext_index.get(t)
                    if k is None:
                        k = ext_index[t] = len(ext)
                        ext.append(t)
                    args.append(("x", k))
            out = m.outputs[0]
            program.append(Instr(m.type, m.attrs, args, out.dtype, out._shape))
        root = members[-1]
        fused = pg.new_op("FusedElementwise", ext, {"program": tuple(program)}, like=root,
                          outputs=[(root.outputs[0]._shape, root.outputs[0].dtype)],
                          absorbed=[m.orig for m in members], orig=root.orig,
                          control_inputs=_union_control(members))
        pg.replace_uses(root.outputs[0], fused.outputs[0], cons)
        _retarget_control(pg, couts, root, fused)
        for m in members:
            for t in m.inputs:
                readers = cons.get(t)
                if readers is not None:
                    readers.pop(m, None)
        for t in ext:
            cons[t][fused] = None
        dead.extend(members)
        ops_fused += len(members)
    pg.remove(dead)
    return {"groups": len(groups), "ops_fused": ops_fused}
