"""The client's session in distributed mode, and the master it talks to.

``ClusterSession(cluster, graph=None, config=None)`` is ``tf.Session(target=...)`` for a cluster on
Ray. It starts one actor per task (:mod:`tfconf.distributed.worker`), then each ``run`` goes through
the same steps as a one-process ``Session``, with the master's work in the middle:

1. the plan for the (fetches, feeds) signature is compiled by the engine's pipeline
   (``engine/pipeline.py``, the same stages as ``Session``: the rewrites, placement over every
   device of every task by ``placement.place`` (explicit ``/job:ps/task:0`` scopes, colocation, the
   cost model with the network's speed between tasks), schedule, memory, and one partition per
   device by ``PartitionedPlan``, whose Send/Recv pairs now also cross tasks); the kernels are
   made on the tasks;
2. each task is sent its partitions once (:mod:`tfconf.distributed.graphdef`);
3. each step sends one run request per task, carrying the feeds its Recvs wait for (or the name of
   the data source it makes them from) and the slots it must return; the client waits for all of
   them and assembles the fetches.

A task that dies or stops answering fails the step with :class:`TaskFailedError` naming it; the
others are told to abort the step, so nothing hangs. An op that fails on a task raises the usual
``tc.errors`` exception naming the client's op, and the session stays usable.
"""

from __future__ import annotations

import itertools
import threading
import uuid

import numpy as np

from tfconf.engine.graph import Tensor, get_default_graph
from tfconf.engine.fetches import check_unfed, convert_feed, flatten, rebuild
from tfconf.engine.run_config import RunOptions, SessionConfig
from tfconf.engine.session import DefaultSessionMixin, placer, resolve_run

from .cluster import ClusterError, ClusterSpec, TaskFailedError, connect, short_task_name
from .sources import SourceFeed

CLIENT = "/job:client/replica:0/task:0/device:CPU:0"
_ACTOR = None
_IDS = itertools.count(1)


def _actor_class():
    global _ACTOR
    if _ACTOR is None:
        import ray

        from .worker import Worker

        _ACTOR = ray.remote(Worker)
    return _ACTOR


class _ClusterPlan:
    """One run signature: its partitioned plan and how feeds and fetches travel."""

    def __init__(self, plan_id, plan, pplan, placement, feeds, feed_routes, fetch_routes, tasks):
        self.plan_id = plan_id
        self.plan = plan
        self.pplan = pplan
        self.placement = placement        # op name → device name
        self.feeds = feeds                # per feed: (tensor, numpy dtype, static shape)
        self.feed_routes = feed_routes    # per feed: [(task, rendezvous key)]
        self.fetch_routes = fetch_routes  # per element: None (an op), ("feed", j) or (task, slot)
        self.tasks = tasks                # tasks that have partitions
        self.info = None                  # the compile pipeline's PlanInfo


class ClusterSession(DefaultSessionMixin):
    """``ClusterSession(cluster, graph=None, config=None)``: run a graph's ops on a cluster's tasks.

    ``cluster`` is a :class:`ClusterSpec` (or ``{"ps": 1, "worker": 2}``, or a Ray address for one
    worker task). Ray is started or joined as ``cluster.address`` says (and stopped at ``close()``
    if this session started it). ``health_check_s``: while a step waits that long without news,
    every task is pinged; one that does not answer within ``health_timeout_s`` fails the step."""

    def __init__(self, target=None, graph=None, config=None, *, health_check_s=30.0, health_timeout_s=60.0):
        self.cluster = ClusterSpec.of(target if target is not None else {"worker": 1})
        self.graph = graph if graph is not None else get_default_graph()
        self.config = config if config is not None else SessionConfig()
        from tfconf.engine.rewrite.pipeline import RewriteConfig

        self._rewrites = RewriteConfig.of(self.config.graph_rewrites, self.config.memory)
        self.health_check_s = float(health_check_s)
        self.health_timeout_s = float(health_timeout_s)
        self._closed = False
        self._broken = None
        self._plans = {}
        self._step = 0
        self._lock = threading.Lock()
        self._compile_lock = threading.Lock()
        self._actors = {}
        self._owns_ray = connect(self.cluster.address)
        try:
            self._start_tasks()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ tasks
    def _start_tasks(self):
        import ray
        from ray.exceptions import GetTimeoutError

        from tfconf.engine.devices import Device

        spec = self.cluster
        total = float(ray.cluster_resources().get("CPU", 0.0))
        n = spec.num_tasks
        cpus = spec.cpus_per_task
        if cpus is None:
            cpus = 1.0 if total >= n else total / n
        elif cpus * n > total:
            raise ClusterError(f"the cluster has {total:g} CPUs; {n} tasks of {cpus:g} CPUs need {cpus * n:g}")
        gpus = float((spec.device_count or {}).get("GPU", 0))  # Ray hides GPUs from actors that ask for none
        link = spec.link_gbps / 8.0
        sid = uuid.uuid4().hex[:8]
        self.session_id = sid
        actor = _actor_class()
        for job, t in spec.tasks:
            name = short_task_name(job, t)
            self._actors[name] = actor.options(
                num_cpus=cpus, num_gpus=gpus, max_concurrency=16, max_restarts=0, name=f"tfconf-{sid}{name}",
            ).remote(job, t, spec.device_count, link)
        refs = {name: a.describe.remote() for name, a in self._actors.items()}
        try:
            described = dict(zip(refs, ray.get(list(refs.values()), timeout=120)))
        except GetTimeoutError:
            raise ClusterError(f"the cluster's {n} tasks did not all start within 120 s; does the Ray cluster "
                               f"have {cpus:g} CPU(s) free for each?") from None
        except ray.exceptions.RayError as e:
            raise ClusterError(f"a task failed to start: {' '.join(str(e).split())[:400]}") from None
        self.tasks = described
        self._devices = []
        self._task_of = {}
        for name, desc in described.items():
            for d in desc["devices"]:
                self._devices.append(Device(d["name"], d["type"], np, d["index"], d["memory"], d["gflops"],
                                            d["bandwidth_gbs"], d["launch_us"], d["link_gbs"]))
                self._task_of[d["name"]] = name
        self._client = Device(CLIENT, "CPU", np, 0)
        self._shipped = {name: set() for name in self._actors}
        routes = {dev: (task, self._actors[task]) for dev, task in self._task_of.items()}
        ray.get([a.set_routes.remote(routes) for a in self._actors.values()])

    @property
    def task_names(self):
        return list(self._actors)

    def add_source(self, task, name, kind, spec):
        """Give ``task`` (``/job:worker/task:1``) a data source ``name`` (``kind`` "shard": see
        :mod:`tfconf.distributed.sources`); feed ``SourceFeed(task, name, i, element)`` to use it."""
        if task not in self._actors:
            raise ValueError(f"no task {task!r} in this cluster ({', '.join(self._actors)})")
        with self._lock:
            self._usable()
            self._gather(-1, {task: self._actors[task].add_source.remote(name, kind, spec)})

    def list_devices(self):
        """Every device of every task (TF's ``Session.list_devices``)."""
        from tfconf.engine.devices import DeviceAttributes

        return [DeviceAttributes(d) for d in self._devices]

    # ------------------------------------------------------------------ lifecycle
    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            import ray

            for a in self._actors.values():
                try:
                    ray.kill(a, no_restart=True)
                except Exception:  # noqa: BLE001 - already dead
                    pass
            self._actors.clear()
            if self._owns_ray:
                ray.shutdown()
        except ImportError:  # pragma: no cover - connect() needed Ray
            pass
        self._plans.clear()

    @property
    def closed(self):
        return self._closed

    # ------------------------------------------------------------------ run
    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        """Compute ``fetches`` on the cluster, feeding ``feed_dict``. A feed value may be a
        :class:`SourceFeed`: the task named there makes it from one of its data sources."""
        self._usable()
        elements = []
        template = flatten(fetches, self.graph, elements, {})
        comp = self._compiled(elements, tuple(feed_dict) if feed_dict else ())
        opts = RunOptions.of(options) if options is not None else None
        return rebuild(template, self._execute(comp, feed_dict, opts, run_metadata))

    def _usable(self):
        if self._closed:
            raise RuntimeError("Attempted to use a closed Session.")
        if self._broken is not None:
            raise TaskFailedError(self._broken.task, f"{self._broken} (this session cannot run again; "
                                                     "make a new one)")

    def _compiled(self, elements, feed_keys):
        key = (tuple(elements), feed_keys)
        comp = self._plans.get(key)
        if comp is None:
            with self._compile_lock:  # one registration per plan, even with runs from several threads
                comp = self._plans.get(key)
                if comp is None:
                    comp = self._plans[key] = self._compile(elements, feed_keys)
        return comp

    def _compile(self, elements, feed_keys):
        from tfconf.engine.partition import PartitionedPlan
        from tfconf.engine.pipeline import compile_run

        def no_kernel(op, dev, kplan):  # kernels are made on the tasks
            op._ran = True

        def partition(plan, placement):
            return PartitionedPlan(plan, placement, [self._client] + self._devices)

        c = compile_run(self.graph, elements, feed_keys, config=self.config, devices=self._devices,
                        rewrites=self._rewrites, providers=(), make_kernel=no_kernel, partition=partition,
                        check_unfed=check_unfed)
        plan, pplan, feed_tensors = c.plan, c.partitioned, c.feed_tensors
        plan_id = next(_IDS)
        by_task = {}
        for dev, part in pplan.parts.items():
            if dev != CLIENT:
                by_task.setdefault(self._task_of[dev], {})[dev] = part
        self._register(plan_id, by_task, pplan.nslots, rewritten=c.plan_graph is not None)
        feed_index = {slot: j for j, slot in enumerate(plan.feed_slots)}
        feed_routes = [[] for _ in feed_tensors]
        client = pplan.parts.get(CLIENT)
        for ps in client.steps if client is not None else ():
            feed_routes[feed_index[ps.ins[0]]].append((self._task_of[ps.key[-1]], ps.key))
        fetch_slot = dict(zip(c.fetch_tensors, plan.fetch_slots))
        fetch_routes = []
        for el in elements:
            if not isinstance(el, Tensor):
                fetch_routes.append(None)
            elif el in feed_tensors:
                fetch_routes.append(("feed", feed_tensors.index(el)))
            else:
                s = fetch_slot[el]
                fetch_routes.append((self._task_of[pplan.slot_device[s]], s))
        feeds = [(t, t.dtype.np, t._shape) for t in feed_tensors]
        comp = _ClusterPlan(plan_id, plan, pplan, c.where, feeds, feed_routes, fetch_routes, set(by_task))
        comp.info = c.info
        return comp

    def _register(self, plan_id, by_task, nslots, rewritten):
        from .graphdef import task_graph

        refs = {}
        for task, parts in by_task.items():
            ops = [ps.op for part in parts.values() for ps in part.steps if ps.kind == "op"]
            # a rewritten plan's ops are shipped whole and rebuilt apart (graphdef.py)
            records = task_graph(ops, set() if rewritten else self._shipped[task])
            steps = {dev: [_step_record(ps) for ps in part.steps] for dev, part in parts.items()}
            refs[task] = self._actors[task].register.remote(plan_id, self.graph.seed, records, steps, nslots,
                                                            rewritten)
        self._gather(-1, refs)

    def _execute(self, comp, feed_dict, options=None, run_metadata=None):
        requests = {task: ({}, []) for task in comp.tasks}
        values = list(feed_dict.values()) if feed_dict else []
        fed = [None] * len(values)
        for j, ((t, dt, shape), value) in enumerate(zip(comp.feeds, values)):
            keys = comp.feed_routes[j]
            if isinstance(value, SourceFeed):
                if value.task not in self._actors:
                    raise ValueError(f"feed for {t.name}: no task {value.task!r} in this cluster "
                                     f"({', '.join(self._actors)})")
                if not keys:
                    continue
                req = requests.setdefault(value.task, ({}, []))
                req[1].append((value.source, int(value.index), int(value.element), dt, shape, t.name,
                               [k for _, k in keys]))
                continue
            arr = fed[j] = convert_feed(t, dt, shape, value)
            for task, key in keys:
                requests[task][0][key] = arr
        fetch = {task: [] for task in requests}
        for route in comp.fetch_routes:
            if route is not None and route[0] != "feed":
                fetch[route[0]].append(route[1])
        trace = options is not None and options.trace
        numerics = options is not None and options.check_numerics
        with self._lock:
            self._usable()
            self._step += 1
            step = self._step
            refs = {task: self._actors[task].run.remote(step, comp.plan_id, feeds, sources, fetch[task], trace,
                                                        numerics)
                    for task, (feeds, sources) in requests.items()}
            results = self._gather(step, refs)
        out = []
        for route in comp.fetch_routes:
            if route is None:
                out.append(None)
            elif route[0] == "feed":
                if isinstance(values[route[1]], SourceFeed):
                    raise ValueError("a tensor fed from a task's data source cannot be fetched")
                out.append(fed[route[1]])
            else:
                v = results[route[0]][0][route[1]]
                if isinstance(v, np.ndarray) and not v.flags.writeable:
                    v = v.copy()  # Ray hands out read-only views of its object store
                out.append(v)
        if trace and run_metadata is not None:
            from tfconf.engine.executor import NodeStats

            run_metadata.step_stats = [NodeStats(*s) for _, (_, stats) in sorted(results.items()) for s in stats]
        return out

    def _gather(self, step, refs):
        """Wait for every task's answer; on the first failure abort the step everywhere and raise."""
        import ray

        pending = {ref: task for task, ref in refs.items()}
        results, failure = {}, None
        while pending and failure is None:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=self.health_check_s)
            if not done:
                failure = self._health_check()
                continue
            task = pending.pop(done[0])
            try:
                results[task] = ray.get(done[0])
            except Exception as e:  # noqa: BLE001 - translated just below
                failure = self._translate(task, e)
        if failure is not None:
            for ref, task in pending.items():
                try:
                    self._actors[task].abort.remote(step, str(failure))
                except Exception:  # noqa: BLE001 - a dead task
                    pass
            if pending:  # let the others wind down before the next step can start
                ray.wait(list(pending), num_returns=len(pending), timeout=self.health_timeout_s)
            if isinstance(failure, TaskFailedError):
                self._broken = failure
            raise failure
        return results

    def _translate(self, task, e):
        from ray import exceptions as rex

        from tfconf.engine import errors

        from .worker import RemoteOpError, StepAborted

        if isinstance(e, rex.RayTaskError):
            cause = getattr(e, "cause", None)
            if isinstance(cause, RemoteOpError):
                cls = getattr(errors, cause.kind, errors.InternalError)
                op = self.graph._ops_by_name.get(cause.op_name) if cause.op_name else None
                return cls(cause.message, op)
            if isinstance(cause, StepAborted):
                return ClusterError(f"task {task} aborted the step: {cause}")
            if isinstance(cause, BaseException):
                return cause
        return (TaskFailedError.from_ray(task, e)
                or ClusterError(f"task {task}: {' '.join(str(e).split())[:400]}"))

    def _health_check(self):
        """Ping every task; a TaskFailedError for the first that is dead or does not answer."""
        import ray

        refs = {ray_ref: task for task, ray_ref in
                ((task, a.ping.remote()) for task, a in self._actors.items())}
        done, late = ray.wait(list(refs), num_returns=len(refs), timeout=self.health_timeout_s)
        for ref in done:
            try:
                ray.get(ref)
            except Exception as e:  # noqa: BLE001
                return TaskFailedError(refs[ref], f"task {refs[ref]} failed a health check ({type(e).__name__})")
        if late:
            task = refs[late[0]]
            return TaskFailedError(task, f"task {task} did not answer a health check within "
                                         f"{self.health_timeout_s:g} s")
        return None

    def check_health(self):
        """Raise :class:`TaskFailedError` if a task is dead or does not answer a ping."""
        failure = self._health_check()
        if failure is not None:
            self._broken = failure
            raise failure

    # ------------------------------------------------------------------ inspection
    def placement(self, fetches, feed_dict=None):
        """{op name: device name} for the plan that ``run(fetches, feed_dict)`` uses."""
        return dict(self._compiled_for(fetches, feed_dict).placement)

    def plan_info(self, fetches, feed_dict=None):
        """What compiling that plan did (a PlanInfo, as ``Session.plan_info``): the rewrites, the
        placement over the tasks' devices and the partitions. Kernels are made on the tasks."""
        return self._compiled_for(fetches, feed_dict).info

    def partitions(self, fetches, feed_dict=None):
        """{device name: Partition} of that plan (the client's feed Sends left out)."""
        parts = self._compiled_for(fetches, feed_dict).pplan.parts
        return {d: p for d, p in parts.items() if d != CLIENT}

    def _compiled_for(self, fetches, feed_dict):
        self._usable()
        elements = []
        flatten(fetches, self.graph, elements, {})
        return self._compiled(elements, tuple(feed_dict) if feed_dict else ())

    # ------------------------------------------------------------------ state (checkpoints)
    def _call_all(self, method, *args):
        refs = {task: getattr(a, method).remote(*args) for task, a in self._actors.items()}
        with self._lock:
            self._usable()
            return self._gather(-1, refs)

    def variable_values(self, names=None):
        """{variable name: value} read from the tasks that hold them (``names=None``: all)."""
        out = {}
        for values in self._call_all("get_variables", None if names is None else list(names)).values():
            out.update(values)
        if names is not None:
            missing = [n for n in names if n not in out]
            if missing:
                raise KeyError(f"no task holds a value for variable(s) {', '.join(missing)}; run their "
                               "initializer first")
        return {k: v.copy() if not v.flags.writeable else v for k, v in out.items()}

    def variable_tasks(self):
        """{variable name: the task holding its value} (variables whose initializer has run)."""
        return {n: task for task, names in self._call_all("variable_names").items() for n in names}

    def load_variables(self, values):
        """Replace variable values on the tasks that hold them (after their initializer ran)."""
        owner = self.variable_tasks()
        missing = [n for n in values if n not in owner]
        if missing:
            raise KeyError(f"no task holds variable(s) {', '.join(missing)}; run their initializer first")
        per_task = {}
        for name, value in values.items():
            per_task.setdefault(owner[name], {})[name] = np.asarray(value)
        refs = {task: self._actors[task].set_variables.remote(vals) for task, vals in per_task.items()}
        with self._lock:
            self._gather(-1, refs)

    def rng_states(self):
        """The state of every random op's generator, by op name (for snapshots)."""
        out = {}
        for states in self._call_all("get_rng_states").values():
            out.update(states)
        return out

    def set_rng_states(self, states):
        """Restore random generators; each task keeps those of the ops it runs."""
        self._call_all("set_rng_states", dict(states))


def _step_record(ps):
    if ps.kind == "op":
        return ("op", ps.name, tuple(ps.ins), ps.outs, tuple(ps.frees))
    if ps.kind == "send":
        return ("send", ps.name, ps.key, tuple(ps.ins), tuple(ps.frees))
    return ("recv", ps.name, ps.key, ps.outs, tuple(ps.frees))
