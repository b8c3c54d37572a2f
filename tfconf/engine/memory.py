"""Compile stage "memory": a slot per tensor, when each slot dies, and which steps may write
their result into a dying input.

Every tensor of a plan has a slot in a list (0 is the trash slot, for outputs that were also fed;
then the feeds, then every output of a needed op). A slot is cleared right after its last reader
ran, so nothing but the fetched values (and Variables, held by the session) outlives its use; an
output nobody reads is dropped at once.

In-place steps (serial executor): an elementwise step whose input dies at that step (its last
reader, not a feed) may write its result into that input's buffer instead of a new one. Whether
it does is decided per run: only when the array is a plain numpy array that owns its memory, is
writable, and ``sys.getrefcount`` shows that the slot holds the only reference (no variable, fetch,
view or other slot shares it), as ``ops/training.py`` does for parameter updates. The thread-pool
and multi-device executors run ops out of the serial order, so they never update in place.
"""

from __future__ import annotations

import collections
import sys

import numpy as np

from .shapes import static_numel

TRASH = 0  # slot that receives outputs nobody reads (e.g. an op output that was also fed)


class Slots:
    """The slot layout of one schedule: ``slot`` (tensor -> slot), ``nslots``, ``feed_slots``
    (in feed order), ``frees_at`` (step index -> slots that die after it), ``uses`` (slot ->
    number of reading steps)."""

    __slots__ = ("slot", "nslots", "feed_slots", "frees_at", "uses")

    def __init__(self, order, feed_tensors, fetch_tensors):
        fed = set(feed_tensors)
        slot = {}
        nslots = 1
        feed_slots = []
        for t in feed_tensors:
            slot[t] = nslots
            feed_slots.append(nslots)
            nslots += 1
        for op in order:
            for t in op.outputs:
                if t not in fed:
                    slot[t] = nslots
                    nslots += 1
        last_use = {}
        uses = collections.Counter()
        for i, op in enumerate(order):
            for t in op.inputs:
                last_use[slot[t]] = i
                uses[slot[t]] += 1
        keep = {slot[t] for t in fetch_tensors}
        frees_at = collections.defaultdict(list)
        for s, i in last_use.items():
            if s not in keep:
                frees_at[i].append(s)
        for i, op in enumerate(order):
            for t in op.outputs:  # outputs nobody reads are dropped at once
                s = slot.get(t)
                if t not in fed and s not in last_use and s not in keep:
                    frees_at[i].append(s)
        self.slot, self.nslots, self.feed_slots = slot, nslots, feed_slots
        self.frees_at, self.uses = frees_at, dict(uses)

    def outs(self, op, fed):
        return tuple(self.slot[t] if t not in fed else TRASH for t in op.outputs)


#: outputs statically known to be smaller than this many elements are computed as usual: their
#: allocation is cheap (malloc's free lists), and the wrapper would cost more than it saves
MIN_INPLACE_ELEMENTS = 1 << 12


def plan_inplace(plan, fed, inplace):
    """Give each step that may update a dying input in place a wrapped kernel (in plan.fast)."""
    feed_slots = set(plan.feed_slots)
    fast = list(plan.fast)
    n = 0
    for i, step in enumerate(plan.steps):
        op = step.op
        if len(op.outputs) != 1 or op.outputs[0] in fed:
            continue
        out = op.outputs[0]
        if out._shape is None or not out._shape:
            continue
        size = static_numel(out._shape)
        if size is not None and size < MIN_INPLACE_ELEMENTS:
            continue
        frees = set(step.frees)
        reads = collections.Counter(step.ins)
        cands = [p for p, (t, s) in enumerate(zip(op.inputs, step.ins))
                 if s in frees and s not in feed_slots and reads[s] == 1 and not t.op.op_def.keeps_output
                 and t.dtype == out.dtype and t._shape == out._shape]
        if not cands:
            continue
        k = inplace(op, step.kernel, cands[0])
        if k is None:
            continue
        fast[i] = (k, step.ins, step.outs, step.frees)
        n += 1
    plan.fast = tuple(fast)
    plan.memory["inplace_steps"] = n


def _inplace_unary(uf, probe=None):
    getrefcount, ndarray, sole = sys.getrefcount, np.ndarray, _SOLE.get(1, 0)

    def run(a):
        if probe is not None:
            return probe.append(getrefcount(a))
        if getrefcount(a) <= sole and a.__class__ is ndarray and a.base is None and a.flags.writeable:
            try:
                return uf(a, out=a)
            except (ValueError, TypeError):
                pass
        return uf(a)

    return run


def _inplace_binary(uf, p, probe=None):
    getrefcount, ndarray, sole = sys.getrefcount, np.ndarray, _SOLE.get(2, 0)
    if p == 0:
        def run(a, b):
            if probe is not None:
                return probe.append(getrefcount(a))
            if getrefcount(a) <= sole and a.__class__ is ndarray and a.base is None and a.flags.writeable:
                try:
                    return uf(a, b, out=a)
                except (ValueError, TypeError):  # broadcasting would enlarge a
                    pass
            return uf(a, b)
    else:
        def run(a, b):
            if probe is not None:
                return probe.append(getrefcount(b))
            if getrefcount(b) <= sole and b.__class__ is ndarray and b.base is None and b.flags.writeable:
                try:
                    return uf(a, b, out=b)
                except (ValueError, TypeError):
                    pass
            return uf(a, b)
    return run


def _inplace_donate(kernel, p, probe=None):
    """For kernels taking ``donate=p`` (FusedElementwise): they decide where to write."""
    getrefcount, ndarray, sole = sys.getrefcount, np.ndarray, _SOLE.get("n", 0)

    def run(*args):
        a = args[p]
        if probe is not None:
            return probe.append(getrefcount(a))
        if getrefcount(a) <= sole and a.__class__ is ndarray and a.base is None and a.flags.writeable:
            return kernel(*args, donate=p)
        return kernel(*args)

    return run


def _calibrate():
    """References to an array held by one slot of ``vals``, as seen inside each kind of in-place
    step when called the way run_serial calls kernels (``kernel(*map(get, ins))``)."""
    sole = {}
    for key, make, ins in ((1, lambda pr: _inplace_unary(None, pr), (0,)),
                           (2, lambda pr: _inplace_binary(None, 0, pr), (0, 1)),
                           ("n", lambda pr: _inplace_donate(None, 0, pr), (0, 1))):
        seen = []
        vals = [np.empty(2), np.empty(2)]
        get = vals.__getitem__
        for kernel, i in ((make(seen), ins),):
            kernel(*map(get, i))
        sole[key] = seen[0]
    return sole


_SOLE = {}
_SOLE.update(_calibrate())


def out_kernel(op_def, kernel):
    """A numpy function computing the op into ``out=`` (its ufunc kernel, or the declaration's
    ``forward_into``), or None."""
    if isinstance(kernel, np.ufunc) and kernel.nout == 1:
        return kernel
    return op_def.forward_into


def inplace_kernel(op, kernel, p, ctx):
    """A kernel computing ``op`` into its dying input ``p`` when nothing else holds that array:
    what the op declares (OpDef.forward_into, kernel_takes_donate) or a numpy ufunc kernel; None
    for any other op or array module."""
    if ctx.xp is not np:
        return None
    if op.op_def.kernel_takes_donate:
        return _inplace_donate(kernel, p)
    into = out_kernel(op.op_def, kernel)
    if into is None:
        return None
    nin = into.nin if isinstance(into, np.ufunc) else len(op.inputs)
    if nin == 1:
        return _inplace_unary(into)
    if nin == 2:
        return _inplace_binary(into, p)
    return None
