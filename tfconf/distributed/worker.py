"""A task of the cluster: the Ray actor that hosts a worker's devices, variables and executor.

The master registers each plan's partitions once (:meth:`Worker.register`), then sends one
:meth:`Worker.run` per step. A step runs the task's partitions with the engine's own
``run_partitioned`` (one thread per device) on a :class:`TaskRendezvous`: a Send whose Recv is on
this task leaves its value in the local rendezvous as in one process; a Send to another task
becomes a :meth:`Worker.deliver` call on that task's actor (Ray moves the array, through its object
store when it is large), which puts it in that task's rendezvous for the step. Every delivery is
checked before the step reports success, so a Send to a dead task fails the step naming it.

Variables live in :attr:`Worker.variables`, shared by every device of the task, exactly as a
``Session`` keeps them; :meth:`Worker.get_variables` and :meth:`Worker.set_variables` are how
checkpoints read and restore them.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from tfconf.engine.devices import host_value, to_host
from tfconf.engine.partition import Rendezvous
from tfconf.engine.session import rng_states, set_rng_states

from .cluster import TaskFailedError, short_task_name, task_name


class StepAborted(Exception):
    """The master aborted this step because another task failed (the master reports that failure)."""


class RemoteOpError(Exception):
    """An op failed on a task: travels back to the client as (error class, message, op name), where
    it becomes the same ``tc.errors`` class naming the client's op."""

    def __init__(self, kind, message, op_name):
        super().__init__(kind, message, op_name)
        self.kind, self.message, self.op_name = kind, message, op_name

    def __str__(self):
        return self.message


class TaskRendezvous(Rendezvous):
    """The engine's Rendezvous for one step of one task, with Sends to other tasks routed to them.

    A key's last element is the device its Recv runs on (the partitioner's ``(kind, slot or op,
    device)``), so routing is one dictionary lookup."""

    def __init__(self, worker, step_id):
        super().__init__()
        self.worker = worker
        self.step_id = step_id
        self.deliveries = []  # (task, ObjectRef) of Sends to other tasks
        self.aborted_by = None

    def send(self, key, value):
        dest = key[-1]
        if dest in self.worker.device_names:
            return super().send(key, value)
        task, actor = self.worker.routes[dest]
        value = host_value(value)  # a GPU array travels as numpy
        self.deliveries.append((task, actor.deliver.remote(self.step_id, key, value)))

    def deliver(self, key, value):
        Rendezvous.send(self, key, value)

    def abort(self, exc):
        if self.aborted_by is None:
            self.aborted_by = exc
        super().abort(exc)


class _TaskPlan:
    """What ``run_partitioned`` needs: ``parts`` (device name → Partition) and ``nslots``."""

    def __init__(self, parts, nslots):
        self.parts = parts
        self.nslots = nslots


class Worker:
    """One task: ``Worker(job, task, device_count)``. Made a Ray actor by the master."""

    def __init__(self, job, task, device_count=None, link_gbs=None):
        import tfconf.engine.api  # noqa: F401 - registers the op library
        from tfconf.engine.devices import Device, local_devices
        from tfconf.engine.graph import Graph
        from tfconf.engine.session import _Context

        self.job, self.task = job, int(task)
        self.name = short_task_name(job, self.task)
        prefix = task_name(job, self.task)
        found = local_devices(device_count, measure=len(local_devices(device_count)) > 1)
        self.devices = [Device(f"{prefix}/device:{d.device_type}:{d.index}", d.device_type, d.xp, d.index,
                               d.memory_bytes, d.gflops, d.bandwidth_gbs, d.launch_us, link_gbs)
                        for d in found]
        self.device_names = {d.name for d in self.devices}
        self.graph = Graph()
        self.variables = {}
        self.rngs = {}
        self.ctxs = {d.name: _Context(d, self.graph, self.variables, self.rngs) for d in self.devices}
        self.ops = {}       # op name → rebuilt op (every plan compiled without rewrites)
        self.plans = {}     # plan id → _TaskPlan
        self.routes = {}    # device name of another task → (task name, actor handle)
        self.sources = {}   # name → data source (see sources.py)
        self._steps = {}    # step id → TaskRendezvous
        self._last_done = -1
        self._lock = threading.Lock()
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(len(self.devices), thread_name_prefix=f"tfconf-{job}{task}")

    # ------------------------------------------------------------------ setup
    def describe(self):
        """This task's devices (for the master's placement) and where it runs."""
        import socket

        return {"task": self.name, "pid": os.getpid(), "host": socket.gethostname(),
                "devices": [{"name": d.name, "type": d.device_type, "index": d.index, "memory": d.memory_bytes,
                             "gflops": d.gflops, "bandwidth_gbs": d.bandwidth_gbs, "launch_us": d.launch_us,
                             "link_gbs": d.link_gbs} for d in self.devices]}

    def set_routes(self, routes):
        """``{device name: (task name, actor)}`` for the devices of every other task."""
        self.routes = {k: v for k, v in routes.items() if k not in self.device_names}

    def ping(self):
        return os.getpid()

    def register(self, plan_id, seed, records, parts, nslots, rewritten=False):
        """Rebuild this task's ops of a plan and make their kernels, once per plan (a rewritten
        plan's ops in a namespace of their own: graphdef.py)."""
        from tfconf.engine.executor import Step
        from tfconf.engine.partition import Partition, PStep

        from .graphdef import rebuild

        self.graph.seed = seed
        ops = {} if rewritten else self.ops
        stubs = rebuild(self.graph, ops, records)
        del stubs  # referenced by the rebuilt ops' inputs
        by_name = {d.name: d for d in self.devices}
        built = {}
        for dev_name, steps in parts.items():
            part = Partition(by_name[dev_name])
            ctx = self.ctxs[dev_name]
            for rec in steps:
                kind = rec[0]
                if kind == "op":
                    _, name, ins, outs, frees = rec
                    op = ops[name]
                    op._ran = True
                    kernel = op.op_def.make_kernel(op, ctx)
                    ps = PStep("op", name, op=op, kernel=kernel, ins=ins, outs=outs,
                               step=Step(op, kernel, ins, outs, frees))
                elif kind == "send":
                    _, name, key, ins, frees = rec
                    ps = PStep("send", name, key=key, ins=ins)
                else:
                    _, name, key, outs, frees = rec
                    ps = PStep("recv", name, key=key, outs=outs)
                ps.frees = frees
                part.steps.append(ps)
            built[dev_name] = part
        self.plans[plan_id] = _TaskPlan(built, nslots)
        return True

    def add_source(self, name, kind, spec):
        from .sources import make_source

        old = self.sources.pop(name, None)
        if old is not None:
            old.close()
        self.sources[name] = make_source(kind, spec)
        return True

    # ------------------------------------------------------------------ steps
    def _live_rendezvous(self, step_id):
        """The step's rendezvous, made if the step has not started here yet; None once it ended
        (the master runs one step at a time, so step ids only grow)."""
        with self._lock:
            if step_id <= self._last_done:
                return None
            rv = self._steps.get(step_id)
            if rv is None:
                rv = self._steps[step_id] = TaskRendezvous(self, step_id)
            return rv

    def deliver(self, step_id, key, value):
        """A Send from another task, for step ``step_id`` (which may not have started here yet)."""
        rv = self._live_rendezvous(step_id)
        if rv is None:
            return False  # a late value of a step that already ended (aborted)
        rv.deliver(key, value)
        return True

    def abort(self, step_id, reason):
        """Stop step ``step_id`` here: every Recv waiting in it returns at once."""
        rv = self._live_rendezvous(step_id)
        if rv is not None:
            rv.abort(StepAborted(reason))
        return True

    def run(self, step_id, plan_id, feeds, sources, fetch, trace=False, numerics=False):
        """One step: ``feeds`` {key: array} sent by the client; ``sources`` [(source, index,
        element, dtype, shape, name, keys)] feeds this task makes from its data sources; ``fetch``
        the slots to return. Returns ({slot: value}, stats)."""
        from tfconf.engine import errors
        from tfconf.engine.partition import run_partitioned

        rv = self._live_rendezvous(step_id)
        if rv is None:
            raise StepAborted(f"step {step_id} already ended on {self.name}")
        try:
            for key, value in feeds.items():
                rv.deliver(key, value)
            self._send_sources(rv, sources)
            plan = self.plans.get(plan_id)
            vals = []
            stats = [] if trace else None
            if plan is not None and plan.parts:
                try:
                    run_partitioned(plan, vals, self.pool, stats, numerics=numerics, rendezvous=rv)
                except errors.OpError as e:
                    name = getattr(e.op, "user_name", None) or getattr(e.op, "name", None)  # the client's op
                    raise RemoteOpError(type(e).__name__, e.message, name) from None
            if rv.aborted_by is not None:
                raise rv.aborted_by
            self._check_deliveries(rv)
            out = {}
            for s in fetch:
                v = vals[s]
                out[s] = host_value(v)
            return out, [tuple(x) for x in stats] if stats is not None else None
        finally:
            with self._lock:
                self._steps.pop(step_id, None)
                self._last_done = max(self._last_done, step_id)

    def _send_sources(self, rv, sources):
        batches = {}
        for source, index, element, dtype, shape, name, keys in sources:
            if (source, index) not in batches:
                src = self.sources.get(source)
                if src is None:
                    raise ValueError(f"task {self.name} has no data source {source!r}")
                batches[(source, index)] = src.batch(index)
            value = _check_feed(batches[(source, index)][element], dtype, shape, name)
            for key in keys:
                rv.send(key, value)

    def _check_deliveries(self, rv):
        import ray

        for task, ref in rv.deliveries:
            try:
                ray.get(ref)
            except ray.exceptions.RayError as e:
                raise (TaskFailedError.from_ray(task, e, f" before it took a Send from {self.name}")
                       or TaskFailedError(task, f"task {task} did not receive a Send from {self.name}: "
                                                f"{_one_line(e)}")) from None

    # ------------------------------------------------------------------ state
    def get_variables(self, names=None):
        """{name: array} of this task's variables (all of them, or those of ``names`` it has)."""
        store = self.variables
        keys = store.keys() if names is None else [n for n in names if n in store]
        return {k: to_host(store[k]) for k in keys}

    def variable_names(self, names=None):
        """The names of ``names`` (or of all variables) that this task holds a value for."""
        return [n for n in (self.variables if names is None else names) if n in self.variables]

    def set_variables(self, values):
        """Replace the values of these variables. The arrays are copied (Ray hands out read-only
        ones) onto the array module of the value they replace (numpy when there is none yet)."""
        for name, value in values.items():
            old = self.variables.get(name)
            xp = self._xp_of(old)
            self.variables[name] = xp.array(value, copy=True)
        return True

    def _xp_of(self, array):
        for d in self.devices:
            if d.device_type == "GPU" and array is not None and not isinstance(array, (np.ndarray, np.generic)):
                return d.xp
        return np

    def get_rng_states(self):
        return rng_states(self.rngs)

    def set_rng_states(self, states):
        set_rng_states(self.rngs, states)
        return True

    def close(self):
        for src in self.sources.values():
            src.close()
        self.pool.shutdown(wait=False)
        return True


def _check_feed(value, dtype, shape, name):
    arr = np.asarray(value)
    if arr.dtype != dtype:
        if not np.can_cast(arr.dtype, dtype, "same_kind"):
            raise TypeError(f"Cannot feed a value of dtype {arr.dtype} to tensor '{name}' of dtype {dtype}.")
        arr = arr.astype(dtype)
    if shape is not None and (len(arr.shape) != len(shape)
                              or any(d is not None and d != a for d, a in zip(shape, arr.shape))):
        raise ValueError(f"Cannot feed value of shape {list(arr.shape)} for tensor '{name}', which has shape "
                         f"{list(shape)}.")
    return arr


def _one_line(e) -> str:
    return " ".join(str(e).split())[:300]
