"""Compile stage "schedule": which ops a run signature needs and the order they run in.

The ops the fetches need are found by walking back from them (stopping at fed tensors) and from
the target ops; each gets a pending count of its unfinished predecessors (data and control
edges); ops whose count is 0 form a FIFO ready queue, seeded in creation order so the schedule is
deterministic; running an op decrements its successors' counts. The serial executor replays this
order; the parallel ones use the successor lists it returns.
"""

from __future__ import annotations

import collections

from . import errors


def needed_ops(fetch_tensors, target_ops, fed) -> dict:
    """The ops that computing ``fetch_tensors`` and running ``target_ops`` needs, given the ``fed``
    tensors (a container), as an insertion-ordered dict (iteratively: graphs can be deep)."""
    needed = {}
    stack = [t.op for t in fetch_tensors if t not in fed] + list(target_ops)
    while stack:
        op = stack.pop()
        if op in needed:
            continue
        needed[op] = None
        for t in op.inputs:
            if t not in fed and t.op not in needed:
                stack.append(t.op)
        for c in op.control_inputs:
            if c not in needed:
                stack.append(c)
    return needed


def schedule(fetch_tensors, target_ops, feed_tensors, check_unfed=None):
    """(order, succ): the needed ops in ready-queue order and op -> successor ops (data and
    control). ``check_unfed(op)``, if given, may raise for a needed placeholder that is not fed."""
    fed = set(feed_tensors)
    needed = needed_ops(fetch_tensors, target_ops, fed)
    if check_unfed is not None:
        for op in needed:
            check_unfed(op)
    pending = {}
    succ = {op: [] for op in needed}
    for op in needed:
        preds = set()
        for t in op.inputs:
            if t not in fed:
                preds.add(t.op)
        preds.update(op.control_inputs)
        pending[op] = len(preds)
        for p in preds:
            succ[p].append(op)
    ready = collections.deque(sorted((op for op, n in pending.items() if n == 0), key=lambda o: o._id))
    order = []
    while ready:
        op = ready.popleft()
        order.append(op)
        for s in sorted(succ[op], key=lambda o: o._id):
            pending[s] -= 1
            if pending[s] == 0:
                ready.append(s)
    if len(order) != len(needed):  # pragma: no cover - creation order makes cycles impossible
        raise errors.InternalError("The graph has a cycle among: "
                                   + ", ".join(o.name for o in needed if o not in order))
    return order, succ
