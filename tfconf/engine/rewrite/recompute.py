"""Recomputation (gradient checkpointing): ``SessionConfig(memory="recompute")``.

The backward pass reads forward activations, so by default every one of them lives from the
forward op that made it until its last gradient op: a deep net holds all of its activations at
once. This pass keeps every k-th of them (k = ⌈√n⌉ for n candidate activations, in forward order)
and lets the backward pass recompute the others from the nearest value that is still alive:

1. backward ops are those under autodiff's name scope (``gradients/``, ``gradients_1/``, ...;
   TensorFlow's memory optimizer uses the same rule); forward ops are the others that do not
   depend on a backward op;
2. candidates are the outputs of deterministic forward ops (never stateful or random ones) that
   a backward op reads, are not fetched and have at least ``min_elements`` elements;
3. candidates are cut into segments of k; the first of each segment is a checkpoint (kept), the
   others are dropped: their backward readers read a clone of the forward op instead, whose
   inputs are, recursively, checkpoints, values nothing drops (variables, feeds, constants,
   outputs of stateful ops, backward-read values that are not candidates) or clones;
4. each segment's clones wait (a control edge) on the op scheduled just before the segment's first
   backward reader, so they run when the backward pass reaches the segment, not during the
   forward pass. That op precedes every reader in a topological order and the clones read only
   values made before it, so the new edges cannot close a cycle.

The dropped values are then freed right after their last forward reader. Clones repeat exactly
the same kernels on the same inputs, so results do not change; the cost is about one extra
forward pass.
"""

from __future__ import annotations

import math
import re

from ..shapes import estimate_numel

BACKWARD_SCOPE = r"^gradients(_\d+)?/"


def recompute(pg, backward_scope=BACKWARD_SCOPE, min_elements=1024, segment=None):
    rx = re.compile(backward_scope)
    fetched, _ = pg.protected()
    order = pg.topo()
    pos = {op: i for i, op in enumerate(order)}
    cons = pg.consumers()
    backward = {op for op in order if rx.match(op.name)}
    counts = {"candidates": 0, "checkpoints": 0, "dropped": 0, "recomputed_ops": 0}
    if not backward:
        return counts
    # ops that depend on a backward op are not forward ops
    late = set(backward)
    for op in order:
        if op in late:
            continue
        if any(t not in pg.fed and t.op in late for t in op.inputs) or any(c in late for c in op.control_inputs):
            late.add(op)

    def recomputable(op):
        return op not in late and not op.op_def.stateful and op.type not in ("Placeholder", "Const") \
            and op.outputs

    candidates = []
    for op in order:
        if not recomputable(op):
            continue
        for t in op.outputs:
            if t in fetched or estimate_numel(t._shape) < min_elements:
                continue
            if any(c in backward for c in cons.get(t, ())):
                candidates.append(t)
    n = len(candidates)
    counts["candidates"] = n
    if n < 3:
        return counts
    k = segment or max(2, math.ceil(math.sqrt(n)))
    dropped = {}
    for i, t in enumerate(candidates):
        if i % k:
            dropped[t] = i // k
    counts["checkpoints"] = n - len(dropped)
    counts["dropped"] = len(dropped)

    def available(t):
        if t in pg.fed or t not in dropped and (not recomputable(t.op) or any(c in backward for c in cons.get(t, ()))):
            return True
        return False

    by_segment = {}
    for t, j in dropped.items():
        by_segment.setdefault(j, []).append(t)
    clones_made = 0
    for j, ts in sorted(by_segment.items()):
        memo = {}  # forward op -> its clone for this segment
        roots = []

        def value(t):
            """The tensor the backward pass of segment j reads for forward value ``t``."""
            if available(t):
                return t
            op = t.op
            stack = [op]
            while stack:  # clone ``op`` after every op it needs (iteratively: chains can be long)
                cur = stack[-1]
                if cur in memo:
                    stack.pop()
                    continue
                todo = [u.op for u in cur.inputs if not available(u) and u.op not in memo]
                if todo:
                    stack.extend(todo)
                    continue
                stack.pop()
                ins = [u if available(u) else memo[u.op].outputs[u.value_index] for u in cur.inputs]
                c = pg.clone(cur, ins, f"{cur.name}/recompute_{j}")
                c.control_inputs = list(cur.control_inputs)
                if all(available(u) for u in cur.inputs):
                    roots.append(c)
                memo[cur] = c
            return memo[op].outputs[t.value_index]

        readers = set()
        for t in ts:
            rs = [c for c in cons.get(t, ()) if c in backward]
            new = value(t)
            for r in rs:
                r.inputs = tuple(new if u is t else u for u in r.inputs)
                readers.add(r)
        first = min(pos[r] for r in readers)
        if first > 0:
            trigger = order[first - 1]
            for c in roots:
                if trigger not in c.control_inputs:
                    c.control_inputs.append(trigger)
        clones_made += len(memo)
    counts["recomputed_ops"] = clones_made
    return counts
