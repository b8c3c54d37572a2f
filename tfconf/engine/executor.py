"""Execution plans and the executors that run them.

A plan is built once per (fetches, feeds, targets) signature by the compile pipeline
(``pipeline.py``): the schedule stage (``schedule.py``) orders the needed ops, the memory stage
(``memory.py``) gives every tensor a slot, frees each slot after its last reader and marks the
steps that may update a dying input in place; ``build_plan`` assembles the steps. The serial
executor replays the recorded order; the parallel one runs ready ops on a thread pool.
"""

from __future__ import annotations

import queue

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


def build_plan(fetch_tensors, target_ops, feed_tensors, make_kernel, check_unfed, place=None,
               inplace=None):
    """Compile a plan from the schedule and memory stages (schedule.py, memory.py).
    ``make_kernel(op)`` returns the op's kernel; ``check_unfed(op)`` raises for a placeholder that
    is needed but not fed; ``place(order)``, if given, is called with the ops in ready-queue order
    before any kernel is made (device placement and kernel choice); ``inplace(op, kernel, p)``, if
    given, returns a kernel that may write its result into input ``p`` (or None)."""
    from .memory import Slots, plan_inplace
    from .schedule import schedule

    order, succ = schedule(fetch_tensors, target_ops, feed_tensors, check_unfed)
    if place is not None:
        place(order)
    fed = set(feed_tensors)
    slots = Slots(order, feed_tensors, fetch_tensors)
    slot = slots.slot
    steps = []
    for i, op in enumerate(order):
        outs = slots.outs(op, fed)
        out = outs[0] if len(outs) == 1 else outs
        ins = tuple(slot[t] for t in op.inputs)
        steps.append(Step(op, make_kernel(op), ins, out, tuple(slots.frees_at.get(i, ()))))
    index = {op: i for i, op in enumerate(order)}
    succ_idx = [sorted({index[s] for s in succ[op]}) for op in order]
    npred = [0] * len(order)
    for lst in succ_idx:
        for j in lst:
            npred[j] += 1
    fetch_slots = [slot[t] for t in fetch_tensors]
    plan = Plan(order, steps, slots.nslots, slots.feed_slots, fetch_slots, succ_idx, npred, slots.uses)
    if inplace is not None:
        plan_inplace(plan, fed, inplace)
    return plan


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
