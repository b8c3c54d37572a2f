"""Compile stage "plan layouts": which tensors may stay in a provider's own memory layout.

oneDNN's primitives are fastest on blocked layouts (channels in blocks of 8 or 16 innermost);
converting every tensor back to plain NCHW between two oneDNN ops would cost two reorders per
edge. A tensor stays in the provider's layout when its producer can leave it there and every op
that reads it is a kernel of the same provider that takes that layout at that input (or reads
only its shape: Shape, Size, Rank); a fetched tensor, one read by a reference (numpy) kernel, or
one crossing a device boundary is produced plain. So the only reorders left are at the edges of
oneDNN regions, done by the producing kernel (to plain) or the consuming one (into the layout its
primitive wants), and everything a user sees — fetches, Variables, snapshots, exports — is a
plain numpy array.
"""

from __future__ import annotations


def plan_layouts(order, hooks, consumers, fetches):
    """The set of tensors of ``order`` (ops in plan order) allowed to stay in a provider layout.

    ``hooks``: op -> chosen KernelHook; ``consumers``: tensor -> ops reading it (in the plan);
    ``fetches``: tensors the run returns."""
    fetched = set(fetches)
    blocked = set()
    for op, hook in hooks.items():
        if not hook.blocked_output:
            continue
        for t in op.outputs:
            readers = consumers.get(t, ())
            if t in fetched or not readers:
                continue
            if all(_takes(hooks.get(c), hook.provider, c, t) for c in readers):
                blocked.add(t)
    return blocked


def _takes(hook, provider, op, t):
    if op.op_def.reads_only_shape:  # Shape, Size, Rank of a value never read its data
        return True
    if hook is None or hook.provider != provider:
        return False
    return all(hook.takes_blocked(i) for i, x in enumerate(op.inputs) if x is t)
