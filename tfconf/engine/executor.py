"""Execution plans and the executors that run them.

A plan is built once per (fetches, feeds, targets) signature, as the seed design describes: the ops
the fetches need are found by walking back from them (stopping at fed tensors); each gets a pending
count of its unfinished predecessors; ops whose count is 0 form the ready queue; running an op
decrements its consumers' counts. The serial executor records that order once and replays it.
Every tensor has a slot in a list; a slot is cleared right after its last consumer ran, so nothing
but the fetched values (and Variables, held by the session) outlives its use.

Memory planning (serial executor): an elementwise step whose input dies at that step (its last
reader, not a feed) may write its result into that input's buffer instead of a new one. Whether
it does is decided per run: only when the array is a plain numpy array that owns its memory, is
writable, and ``sys.getrefcount`` shows that the slot holds the only reference (no variable, fetch,
view or other slot shares it), as ``ops/training.py`` does for parameter updates. The thread-pool
and multi-device executors run ops out of the serial order, so they never update in place.
"""

from __future__ import annotations

import collections
import queue
import sys

import numpy as np

from . import errors
from .shapes import fmt


class Step:
    __slots__ = ("op", "kernel", "ins", "outs", "frees")

    def __init__(self, op, kernel, ins, outs, frees):
        self.op, self.kernel, self.ins, self.outs, self.frees = op, kernel, ins, outs, frees


class Plan:
    """The compiled form of one run signature."""

    def __init__(self, ops, steps, nslots, feed_slots, fetch_slots, succ, npred, slot_uses):
        self.ops = ops                  # needed ops, in ready-queue order
        self.steps = steps              # list[Step] aligned with ops
        self.nslots = nslots
        self.feed_slots = feed_slots    # slot per fed tensor, in the feed order of the signature
        self.fetch_slots = fetch_slots  # slot per fetched tensor (None for op targets)
        self.succ = succ                # step index -> successor step indices (data + control)
        self.npred = npred              # step index -> number of predecessor steps
        self.slot_uses = slot_uses      # slot -> number of consuming steps (for parallel freeing)
        # Flat tuples for the serial hot loop.
        self.fast = tuple((s.kernel, s.ins, s.outs, s.frees) for s in steps)
        self.memory = {}                # what memory planning did (counts)


TRASH = 0  # slot that receives outputs nobody reads (e.g. an op output that was also fed)


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


def build_plan(fetch_tensors, target_ops, feed_tensors, make_kernel, check_unfed, place=None,
               inplace=None):
    """Compile a plan. ``make_kernel(op)`` returns the op's kernel; ``check_unfed(op)`` raises for a
    placeholder that is needed but not fed; ``place(order)``, if given, is called with the ops in
    ready-queue order before any kernel is made (device placement); ``inplace(op, kernel, p)``, if
    given, returns a kernel that may write its result into input ``p`` (or None)."""
    fed = {t: i for i, t in enumerate(feed_tensors)}
    # 1. Walk back from the fetches to find the needed ops.
    needed = needed_ops(fetch_tensors, target_ops, fed)
    for op in needed:
        check_unfed(op)
    # 2. Pending counts and successor lists over the needed subgraph.
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
    # 3. Ready queue (FIFO, seeded in creation order so the schedule is deterministic).
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
    if place is not None:
        place(order)
    # 4. Slots: 0 is the trash slot, then feeds, then every output of a needed op.
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
    index = {op: i for i, op in enumerate(order)}
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
    steps = []
    for i, op in enumerate(order):
        outs = tuple(slot[t] if t not in fed else TRASH for t in op.outputs)
        for t in op.outputs:  # outputs nobody reads are dropped at once
            s = slot.get(t)
            if t not in fed and s not in last_use and s not in keep:
                frees_at[i].append(s)
        out = outs[0] if len(outs) == 1 else outs
        ins = tuple(slot[t] for t in op.inputs)
        steps.append(Step(op, make_kernel(op), ins, out, tuple(frees_at.get(i, ()))))
    succ_idx = [sorted({index[s] for s in succ[op]}) for op in order]
    npred = [0] * len(order)
    for lst in succ_idx:
        for j in lst:
            npred[j] += 1
    fetch_slots = [slot[t] for t in fetch_tensors]
    plan = Plan(order, steps, nslots, feed_slots, fetch_slots, succ_idx, npred, dict(uses))
    if inplace is not None:
        _plan_inplace(plan, slot, fed, inplace)
    return plan


# ---------------------------------------------------------------------------- memory planning
NEVER_INPLACE = frozenset({"VariableV2", "ReadVariable", "Const", "Assign", "AssignAdd", "AssignSub"})
#: outputs statically known to be smaller than this many elements are computed as usual: their
#: allocation is cheap (malloc's free lists), and the wrapper would cost more than it saves
MIN_INPLACE_ELEMENTS = 1 << 12


def _numel(shape):
    n = 1
    for d in shape:
        if d is None:
            return None
        n *= d
    return n


def _plan_inplace(plan, slot, fed, inplace):
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
        size = _numel(out._shape)
        if size is not None and size < MIN_INPLACE_ELEMENTS:
            continue
        frees = set(step.frees)
        reads = collections.Counter(step.ins)
        cands = [p for p, (t, s) in enumerate(zip(op.inputs, step.ins))
                 if s in frees and s not in feed_slots and reads[s] == 1 and t.op.type not in NEVER_INPLACE
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


def inplace_kernel(op, kernel, p, ctx):
    """A kernel computing ``op`` into its dying input ``p`` when nothing else holds that array:
    for numpy ufuncs, ReLU and fused elementwise chains; None for any other op or array module."""
    if ctx.xp is not np:
        return None
    t = op.type
    if t == "FusedElementwise":
        return _inplace_donate(kernel, p)
    if t == "Relu":
        return _inplace_unary(_relu_out)
    if isinstance(kernel, np.ufunc) and kernel.nout == 1:
        if kernel.nin == 1:
            return _inplace_unary(kernel)
        if kernel.nin == 2:
            return _inplace_binary(kernel, p)
    return None


def _relu_out(x, out=None):
    return np.maximum(x, x.dtype.type(0), out=out)


def _fail(step, vals, exc):
    shapes = [getattr(vals[s], "shape", None) if vals[s] is not None else None for s in step.ins]
    return errors.op_error_from(exc, step.op, shapes)


def run_serial(plan, vals):
    """Replay the plan's ready-queue order in this thread. ``vals`` holds the fed slots."""
    get = vals.__getitem__
    i = 0
    try:
        for i, (kernel, ins, out, frees) in enumerate(plan.fast):
            if out.__class__ is int:
                vals[out] = kernel(*map(get, ins))
            else:
                for s, v in zip(out, kernel(*map(get, ins))):
                    vals[s] = v
            for s in frees:
                vals[s] = None
    except Exception as e:
        raise _fail(plan.steps[i], vals, e) from e
    return vals


class ParallelExecutor:
    """Runs independent ready ops concurrently on a thread pool (numpy releases the GIL in its
    kernels). The main thread owns all bookkeeping: pending counts, slots and freeing."""

    def __init__(self, num_threads):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=num_threads, thread_name_prefix="tfconf-op")

    def run(self, plan, vals):
        done = queue.SimpleQueue()
        pending = list(plan.npred)
        uses = dict(plan.slot_uses)
        keep = set(plan.fetch_slots)
        steps = plan.steps
        get = vals.__getitem__

        def work(i):
            step = steps[i]
            try:
                done.put((i, step.kernel(*map(get, step.ins)), None))
            except BaseException as e:  # noqa: BLE001 - reported on the main thread
                done.put((i, None, e))

        inflight = 0
        for i, n in enumerate(pending):
            if n == 0:
                self.pool.submit(work, i)
                inflight += 1
        first_error = None
        while inflight:
            i, result, exc = done.get()
            inflight -= 1
            step = steps[i]
            if exc is not None:
                if first_error is None:
                    first_error = _fail(step, vals, exc)
                    first_error.__cause__ = exc
                continue
            if first_error is not None:
                continue
            if isinstance(step.outs, tuple):
                for s, v in zip(step.outs, result):
                    vals[s] = v
            else:
                vals[step.outs] = result
            for s in step.ins:
                uses[s] -= 1
                if uses[s] == 0 and s not in keep:
                    vals[s] = None
            for s in step.frees:  # unread outputs
                if s not in uses:
                    vals[s] = None
            for j in plan.succ[i]:
                pending[j] -= 1
                if pending[j] == 0:
                    self.pool.submit(work, j)
                    inflight += 1
        if first_error is not None:
            raise first_error
        return vals

    def close(self):
        self.pool.shutdown(wait=True)


def input_shapes_text(op):
    return ", ".join(fmt(t._shape) for t in op.inputs)



class NodeStats(tuple):
    """One op's timing in a traced run: (name, type, seconds, device, start, kernel), kernel the
    provider that ran it ("onednn") or "reference"."""

    __slots__ = ()
    _fields = ("name", "type", "seconds", "device", "start", "kernel")

    def __new__(cls, name, type, seconds, device, start, kernel="reference"):  # noqa: A002 - TF's name
        return tuple.__new__(cls, (name, type, seconds, device, start, kernel))

    name = property(lambda self: self[0])
    type = property(lambda self: self[1])
    seconds = property(lambda self: self[2])
    device = property(lambda self: self[3])
    start = property(lambda self: self[4])
    kernel = property(lambda self: self[5])

    @property
    def end(self):
        return self[4] + self[2]


def run_checked(plan, vals, numerics=True, stats=None, device="", kernel_of=None):
    """Like run_serial, with per-op instrumentation: with ``numerics``, check every op's floating
    outputs for NaN/Inf and raise InvalidArgumentError naming the first op that produced one (TF's
    check_numerics); with a ``stats`` list, append a NodeStats per op."""
    import time

    import numpy as np

    clock = time.perf_counter
    origin = clock()
    for step in plan.steps:
        t0 = clock()
        try:
            out = step.kernel(*[vals[s] for s in step.ins])
        except Exception as e:
            raise _fail(step, vals, e) from e
        if stats is not None:
            stats.append(NodeStats(step.op.name, step.op.type, clock() - t0, device, t0 - origin,
                                   (kernel_of(step.op) if kernel_of is not None else None) or "reference"))
        outs = step.outs if isinstance(step.outs, tuple) else (step.outs,)
        results = out if isinstance(step.outs, tuple) else (out,)
        for t, s, v in zip(step.op.outputs, outs, results):
            vals[s] = v
            if numerics and t.dtype.is_floating and v is not None and not np.all(np.isfinite(v)):
                bad = "NaN" if np.isnan(v).any() else "Inf"
                shapes = ", ".join(fmt(getattr(vals[i], "shape", None)) for i in step.ins)
                raise errors.InvalidArgumentError(
                    f"{step.op.describe()} produced {bad} (output {t.name}, input shapes ({shapes}))",
                    step.op,
                )
        for s in step.frees:
            vals[s] = None
    return vals
