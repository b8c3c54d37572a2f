"""Partitioning a placed plan into one subgraph per device, joined by Send/Recv pairs.

Every cross-device data edge becomes a Send on the producer's device and a Recv on the consumer's,
with exactly one Recv per (tensor, destination device) however many consumers it feeds there; a
cross-device control edge becomes a Send/Recv of a token. Fed values live on the host (the first
device) and reach other devices the same way. Transfers meet in a per-run ``Rendezvous`` keyed by
edge. Each device's steps are the restriction of one global topological order, with each Recv just
before its first consumer and each Send right after its producer, so the partitions, run
concurrently (one thread per device), cannot deadlock.
"""

from __future__ import annotations

import threading
import time

from . import errors
from .executor import NodeStats, _fail
from .memory import TRASH


_SUBMIT_LOCK = threading.Lock()


class Rendezvous:
    """Where Sends leave values and Recvs wait for them, for one run."""

    def __init__(self):
        self._values = {}
        self._cond = threading.Condition()
        self._error = None

    def send(self, key, value):
        with self._cond:
            self._values[key] = value
            self._cond.notify_all()

    def recv(self, key):
        with self._cond:
            while key not in self._values:
                if self._error is not None:
                    raise _Aborted()
                self._cond.wait()
            return self._values[key]

    def abort(self, exc):
        with self._cond:
            if self._error is None:
                self._error = exc
            self._cond.notify_all()


class _Aborted(Exception):
    """Another partition failed; this one stops quietly."""


class PStep:
    """One step of a device's partition: an op, a Send or a Recv."""

    __slots__ = ("kind", "op", "kernel", "ins", "outs", "frees", "key", "name", "src", "step")

    def __init__(self, kind, name, op=None, kernel=None, ins=(), outs=None, key=None, src=None, step=None):
        self.kind, self.name, self.op, self.kernel = kind, name, op, kernel
        self.ins, self.outs, self.key, self.src, self.step = ins, outs, key, src, step
        self.frees = ()


class Partition:
    def __init__(self, device):
        self.device = device
        self.steps = []

    @property
    def sends(self):
        return [s for s in self.steps if s.kind == "send"]

    @property
    def recvs(self):
        return [s for s in self.steps if s.kind == "recv"]

    def describe(self):
        return [f"{s.kind.upper() if s.kind != 'op' else s.op.type} {s.name}" for s in self.steps]

    def __repr__(self):
        return (f"<Partition {self.device.name}: {len(self.steps)} steps, {len(self.sends)} sends, "
                f"{len(self.recvs)} recvs>")


class PartitionedPlan:
    """A plan split by device. ``placement`` maps op names to device names."""

    def __init__(self, plan, placement, devices):
        self.plan = plan
        self.placement = {op.name: dev.name for op, dev in placement.items()}
        host = devices[0]
        self.parts = {}
        nslots = plan.nslots
        step_of = {s.op: s for s in plan.steps}
        slot_device = {}  # slot -> device name where that value lives
        producer_step = {}
        for s in plan.steps:
            outs = s.outs if isinstance(s.outs, tuple) else (s.outs,)
            for o in outs:
                if o != TRASH:
                    slot_device[o] = placement[s.op].name
                    producer_step[o] = s
        for fs in plan.feed_slots:
            slot_device[fs] = host.name
        recv_slot = {}  # (slot, device name) -> local slot on that device
        sends_done = set()
        ctl_sent = set()
        by_name = {d.name: d for d in devices}
        parts = {d.name: Partition(d) for d in devices}
        pending_sends = {}  # producer step -> list of send PSteps to append after it
        feed_sends = []
        order = []  # (device name, PStep) in global order, before sends are attached
        for s in plan.steps:
            dev = placement[s.op].name
            ins = []
            for slot in s.ins:
                src = slot_device.get(slot, dev)
                if src == dev:
                    ins.append(slot)
                    continue
                key = (slot, dev)
                if key not in recv_slot:
                    recv_slot[key] = nslots
                    nslots += 1
                    rv = PStep("recv", f"recv {self._tensor_name(plan, slot)} from {src}", key=("t", slot, dev),
                               outs=recv_slot[key], src=by_name[src])
                    order.append((dev, rv))
                    sk = ("t", slot, dev)
                    if sk not in sends_done:
                        sends_done.add(sk)
                        snd = PStep("send", f"send {self._tensor_name(plan, slot)} to {dev}", key=sk, ins=(slot,))
                        if slot in producer_step:
                            pending_sends.setdefault(producer_step[slot], []).append((src, snd))
                        else:
                            feed_sends.append((src, snd))
                ins.append(recv_slot[key])
            for c in s.op.control_inputs:
                cs = step_of.get(c)
                if cs is None:
                    continue
                cdev = placement[c].name
                if cdev != dev:
                    ck = ("c", c.name, dev)
                    if ck not in ctl_sent:
                        ctl_sent.add(ck)
                        order.append((dev, PStep("recv", f"recv ^{c.name} from {cdev}", key=ck, outs=None,
                                                 src=by_name[cdev])))
                        pending_sends.setdefault(cs, []).append(
                            (cdev, PStep("send", f"send ^{c.name} to {dev}", key=ck, ins=())))
            order.append((dev, PStep("op", s.op.name, op=s.op, kernel=s.kernel, ins=tuple(ins), outs=s.outs,
                                     step=s)))
        for dev_name, snd in feed_sends:
            parts[dev_name].steps.append(snd)
        for dev_name, ps in order:
            parts[dev_name].steps.append(ps)
            if ps.kind == "op":
                for src_dev, snd in pending_sends.get(ps.step, ()):
                    parts[src_dev].steps.append(snd)
        self.nslots = nslots
        keep = set(plan.fetch_slots)
        for part in parts.values():
            last = {}
            for i, ps in enumerate(part.steps):
                for slot in ps.ins:
                    last[slot] = i
            frees = {}
            for slot, i in last.items():
                if slot not in keep and slot not in plan.feed_slots:
                    frees.setdefault(i, []).append(slot)
            for i, ps in enumerate(part.steps):
                ps.frees = tuple(frees.get(i, ()))
        self.parts = {k: v for k, v in parts.items() if v.steps}
        self.slot_device = slot_device
        self.devices = by_name

    @staticmethod
    def _tensor_name(plan, slot):
        for s in plan.steps:
            outs = s.outs if isinstance(s.outs, tuple) else (s.outs,)
            if slot in outs:
                return s.op.outputs[outs.index(slot)].name
        return f"feed:{plan.feed_slots.index(slot)}" if slot in plan.feed_slots else f"slot{slot}"


def run_partitioned(pplan, vals, pool, stats=None, numerics=False, rendezvous=None):
    """Run every partition in its own thread; the first error is re-raised (others stop).
    ``rendezvous``: where Sends and Recvs meet (default: a fresh local one; distributed mode passes
    one that routes Sends to other tasks)."""
    vals.extend([None] * (pplan.nslots - len(vals)))
    rv = rendezvous if rendezvous is not None else Rendezvous()
    failures = []
    t_origin = time.perf_counter()

    def run_part(part):
        dev = part.device
        if dev.device_type == "GPU":  # kernels and copies of this thread go to this GPU
            with dev.xp.cuda.Device(dev.index):
                return _run_part(part)
        return _run_part(part)

    def _run_part(part):
        dev = part.device
        clock = time.perf_counter
        try:
            for ps in part.steps:
                t0 = clock()
                if ps.kind == "op":
                    try:
                        out = ps.kernel(*[vals[i] for i in ps.ins])
                    except Exception as e:
                        raise _fail(ps.step, vals, e) from e
                    if isinstance(ps.outs, tuple):
                        for s, v in zip(ps.outs, out):
                            vals[s] = v
                    else:
                        vals[ps.outs] = out
                    if numerics:
                        _check(ps, out)
                elif ps.kind == "send":
                    rv.send(ps.key, vals[ps.ins[0]] if ps.ins else None)
                else:
                    value = rv.recv(ps.key)
                    if ps.outs is not None:
                        vals[ps.outs] = dev.from_other(value)
                if stats is not None:
                    stats.append(NodeStats(ps.name if ps.kind != "op" else ps.op.name,
                                           ps.op.type if ps.kind == "op" else ps.kind.capitalize(),
                                           clock() - t0, dev.name, t0 - t_origin))
                for s in ps.frees:
                    vals[s] = None
        except _Aborted:
            return
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            failures.append(e)
            rv.abort(e)

    parts = list(pplan.parts.values())
    # One run's partitions enter the pool's FIFO queue together: with runs from several threads
    # interleaved, the pool could fill with partitions waiting on queued partitions of their own run.
    with _SUBMIT_LOCK:
        futures = [pool.submit(run_part, p) for p in parts[1:]]
    run_part(parts[0])
    for f in futures:
        f.result()
    if failures:
        raise failures[0]
    return vals


def _check(ps, out):
    import numpy as np

    outs = out if isinstance(ps.outs, tuple) else (out,)
    for t, v in zip(ps.op.outputs, outs):
        if t.dtype.is_floating and v is not None and not bool((np.isfinite(v)).all()):
            raise errors.InvalidArgumentError(f"{ps.op.describe()} produced a non-finite value (output {t.name})",
                                              ps.op)
