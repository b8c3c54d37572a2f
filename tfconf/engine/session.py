"""Session: runs parts of a graph. Single-machine mode: client, master and worker in one process.

``run(fetches, feed_dict)`` resolves the fetches (any nesting of list, tuple, namedtuple and dict),
looks up or builds the plan for the (fetches, feeds) signature, checks and converts the feeds, runs
the plan, and returns values in the fetches' structure. Variables live in the session (as in TF1:
two sessions on one graph have separate variable values).

This module owns the Session, its kernels' context and its plan cache; the options are in
:mod:`.run_config`, fetch structures and feed checks in :mod:`.fetches`, what a compile reports in
:mod:`.plan_info`, and compiling itself in :mod:`.pipeline`.
"""

from __future__ import annotations

import numpy as np

from . import errors
from .executor import ParallelExecutor, run_checked, run_serial
from .graph import Operation, Tensor, _default_session_stack, get_default_graph
from .fetches import aliases, check_unfed, convert_feed, flatten, rebuild
from .rewrite.ir import user_op
from .rewrite.pipeline import RewriteConfig
from .run_config import RunOptions, SessionConfig


class _Context:
    """What kernels may see of the session: their device's array module, the variables and the
    random state (one context per device, all sharing the session's variables and generators)."""

    __slots__ = ("xp", "variables", "rngs", "graph_seed", "device")

    def __init__(self, device, graph, variables=None, rngs=None):
        self.device = device
        self.xp = device.xp
        self.variables = {} if variables is None else variables
        self.rngs = {} if rngs is None else rngs
        self.graph_seed = graph.seed

    def rng(self, op):
        """The random generator of a stateful random op: seeded from (graph seed, op seed) when
        either is set, so a new session replays the same sequence; advanced by every run."""
        gen = self.rngs.get(op.name)
        if gen is None:
            op_seed = op.attrs.get("seed")
            graph_seed = op.graph.seed
            if graph_seed is None and op_seed is None:
                gen = self.xp.random.default_rng()
            else:
                if op_seed is None:
                    op_seed = op._id
                gen = self.xp.random.default_rng(
                    [int(graph_seed if graph_seed is not None else 87654321), int(op_seed)]
                )
            self.rngs[op.name] = gen
        return gen


class _Compiled:
    """A cached plan plus what run() needs to feed it and unpack its results."""

    __slots__ = ("plan", "feeds", "fetch_slots", "copy", "partitioned", "placement", "feed_xp", "info",
                 "kernel_plan", "cores")

    def __init__(self, plan, feeds, fetch_slots, copy):
        self.plan = plan
        self.feeds = feeds          # list of (slot, tensor, numpy dtype, static shape)
        self.fetch_slots = fetch_slots
        self.copy = copy            # per fetch: True when the value aliases a Variable's storage
        self.feed_xp = None         # the array module feeds move to (a GPU plan's), None: numpy
        self.kernel_plan = None     # the kernel-choice stage's KernelPlan
        self.cores = None           # a context manager that gives oneDNN the cores (threads.py)


def resolve_run(graph, elements, feed_keys):
    """(fed tensors, fetched tensors, target ops) of one run signature, checked against ``graph``."""
    feed_tensors = []
    for k in feed_keys:
        el = graph.as_graph_element(k)
        if isinstance(el, Operation):
            raise TypeError(f"Cannot feed an Operation ({el.name}); feed one of its output tensors.")
        feed_tensors.append(el)
    if len(set(feed_tensors)) != len(feed_tensors):
        raise ValueError("feed_dict names the same tensor twice.")
    fetch_tensors = [el for el in elements if isinstance(el, Tensor)]
    targets = [el for el in elements if not isinstance(el, Tensor)]
    for t in fetch_tensors + feed_tensors:
        if t.graph is not graph:
            raise ValueError(f"Tensor {t.name} is not an element of this session's graph.")
    return feed_tensors, fetch_tensors, targets


def rng_states(rngs):
    """{op name: state} of the numpy generators in ``rngs``. CuPy's keep their state on the GPU
    with no portable form: random ops on a GPU restart from their seeds after a resume."""
    return {name: gen.bit_generator.state for name, gen in rngs.items() if isinstance(gen, np.random.Generator)}


def set_rng_states(rngs, states):
    """Put generators with the saved ``states`` (from :func:`rng_states`) into ``rngs``."""
    for name, st in states.items():
        gen = np.random.default_rng()
        gen.bit_generator.state = st
        rngs[name] = gen


def placer(config, devices, feed_tensors, placement):
    """The ``place(order)`` callback of build_plan: places the ops on ``devices`` into the dict
    ``placement`` (logging each choice to stderr with ``config.log_device_placement``)."""
    def place(order):
        from .placement import place as place_ops

        log = None
        if config.log_device_placement:
            import sys

            log = lambda line: print(line, file=sys.stderr)  # noqa: E731
        placement.update(place_ops(order, devices, log=log, fed=feed_tensors,
                                   allow_soft_placement=config.allow_soft_placement))

    return place


class DefaultSessionMixin:
    """``with sess:`` and ``sess.as_default()`` make a session (local or a cluster's) the default
    one for ``Tensor.eval`` / ``Operation.run``; leaving ``with`` closes it."""

    def __enter__(self):
        _default_session_stack.append(self)
        return self

    def __exit__(self, *exc):
        if _default_session_stack and _default_session_stack[-1] is self:
            _default_session_stack.pop()
        self.close()

    def as_default(self):
        import contextlib

        @contextlib.contextmanager
        def scope():
            _default_session_stack.append(self)
            try:
                yield self
            finally:
                _default_session_stack.remove(self)

        return scope()


class Session(DefaultSessionMixin):
    """``Session(graph=None, config=None)``; use as a context manager or call ``close()``."""

    def __init__(self, target="", graph=None, config=None):
        from .devices import local_devices

        if target:
            raise ValueError(f"Session(target={target!r}): this Session runs in this process; for a Ray "
                             "cluster use tc.distributed.ClusterSession(tc.distributed.ClusterSpec(...)) "
                             "(see docs/distributed.md)")
        self.graph = graph if graph is not None else get_default_graph()
        self.config = config if config is not None else SessionConfig()
        self._rewrites = RewriteConfig.of(self.config.graph_rewrites, self.config.memory)
        from .kernel_choice import resolve_providers

        self._providers = resolve_providers(self.config.kernels)
        self._devices = local_devices(self.config.device_count)
        if len(self._devices) > 1:  # the cost model needs throughputs: measured once per process
            self._devices = local_devices(self.config.device_count, measure=True)
        self._ctx = _Context(self._devices[0], self.graph)  # the host device's context
        self._ctxs = {d.name: _Context(d, self.graph, self._ctx.variables, self._ctx.rngs) for d in self._devices}
        self._ctxs[self._devices[0].name] = self._ctx
        self._plans = {}
        self._fast = {}
        self._closed = False
        n = int(self.config.inter_op_threads or 1)
        self._parallel = ParallelExecutor(n) if n > 1 else None
        self._device_pool = None  # threads for partitions of multi-device plans, made on first use

    # ----------------------------------------------------------------- lifecycle
    def close(self):
        if not self._closed:
            self._closed = True
            if self._parallel is not None:
                self._parallel.close()
            if self._device_pool is not None:
                self._device_pool.shutdown(wait=True)
            self._ctx.variables.clear()
            self._plans.clear()
            self._fast.clear()

    # ----------------------------------------------------------------- run
    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        """Compute ``fetches`` (and everything they need), feeding ``feed_dict``."""
        if self._closed:
            raise RuntimeError("Attempted to use a closed Session.")
        feed_keys = tuple(feed_dict) if feed_dict else ()
        if fetches.__class__ is Tensor:  # fast path: one tensor
            comp = self._fast.get((fetches, feed_keys))
            if comp is None:
                comp = self._compile([fetches], feed_keys)
                self._fast[(fetches, feed_keys)] = comp
            if options is None:
                return self._execute(comp, feed_dict)[0]
            return self._execute(comp, feed_dict, RunOptions.of(options), run_metadata)[0]
        elements = []
        template = flatten(fetches, self.graph, elements, {})
        comp = self._plans.get((tuple(elements), feed_keys))
        if comp is None:
            comp = self._compile(elements, feed_keys)
            self._plans[(tuple(elements), feed_keys)] = comp
        opts = RunOptions.of(options) if options is not None else None
        return rebuild(template, self._execute(comp, feed_dict, opts, run_metadata))

    def _execute(self, comp, feed_dict, options=None, run_metadata=None):
        if comp.cores is not None:
            with comp.cores():
                return self._execute_plan(comp, feed_dict, options, run_metadata)
        return self._execute_plan(comp, feed_dict, options, run_metadata)

    def _execute_plan(self, comp, feed_dict, options=None, run_metadata=None):
        plan = comp.plan
        vals = [None] * plan.nslots
        if comp.feeds:
            for (slot, t, dt, shape), value in zip(comp.feeds, feed_dict.values()):
                vals[slot] = convert_feed(t, dt, shape, value)
            if comp.feed_xp is not None:
                for slot, *_ in comp.feeds:
                    vals[slot] = comp.feed_xp.asarray(vals[slot])
        try:
            if comp.partitioned is not None:
                from .partition import run_partitioned

                if self._device_pool is None:
                    from concurrent.futures import ThreadPoolExecutor

                    self._device_pool = ThreadPoolExecutor(len(self._devices), thread_name_prefix="tfconf-device")
                stats = [] if options is not None and options.trace else None
                run_partitioned(comp.partitioned, vals, self._device_pool, stats,
                                numerics=options is not None and options.check_numerics)
                if run_metadata is not None and stats is not None:
                    run_metadata.step_stats = stats
            elif options is not None and (options.check_numerics or options.trace):
                stats = [] if options.trace else None
                run_checked(plan, vals, numerics=options.check_numerics, stats=stats,
                            device=self._devices[0].name, kernel_of=comp.kernel_plan.provider_of)
                if run_metadata is not None and stats is not None:
                    run_metadata.step_stats = stats
            elif self._parallel is None:
                run_serial(plan, vals)
            else:
                self._parallel.run(plan, vals)
        except errors.OpError as e:
            e.op = user_op(e.op)  # a plan op's error names the user's op
            raise
        out = []
        variables = self._ctx.variables
        state = None
        for s, copy in zip(comp.fetch_slots, comp.copy):
            if s is None:
                out.append(None)
                continue
            v = vals[s]
            if hasattr(v, "get") and not isinstance(v, (np.ndarray, np.generic)):  # devices.on_device,
                v = v.get()  # inlined on this per-fetch path: a GPU array comes back as numpy
            if not copy and variables and not isinstance(v, np.generic):  # scalars are immutable
                # NOTE: a fetched value may be a Variable's stored array or a view of it (the
                # output of Assign/AssignAdd, Identity, Reshape...). The caller gets a copy, or
                # mutating the result in place would change the variable.
                if state is None:
                    state = {id(a) for a in variables.values()}
                copy = aliases(v, state)
            out.append(v.copy() if copy else v)
        return out

    def _compile(self, elements, feed_keys):
        import gc

        # NOTE: compiling makes many small objects (plan ops, tensors, steps) that live as long as
        # the plan; the cyclic GC would walk the whole graph several times meanwhile, for nothing.
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._compile_plan(elements, feed_keys)
        except errors.OpError as e:
            e.op = user_op(e.op)
            raise
        finally:
            if enabled:
                gc.enable()

    def _compile_plan(self, elements, feed_keys):
        from .pipeline import compile_run

        consumers = {}  # on an accelerator: who reads each plan tensor (shape constants stay numpy)

        def make_kernel(op, dev, kplan):
            op._ran = True
            ctx = self._ctxs[dev.name]
            kernel = kplan.make(op, ctx)
            if ctx.xp is np:
                return kernel
            from .devices import accelerator_kernel

            if "map" not in consumers:  # a plan graph's readers (the user graph's tensors know theirs)
                g = op.graph
                consumers["map"] = g.consumers() if g is not self.graph else None
            return accelerator_kernel(op, kernel, ctx.xp, consumers["map"])

        inplace = None
        if self.config.memory_planning and self._parallel is None:
            from .memory import inplace_kernel

            def inplace(op, kernel, p, dev, kplan):
                if kplan.provider_of(op) is not None:  # a provider's kernel allocates its own output
                    return None
                return inplace_kernel(op, kernel, p, self._ctxs[dev.name])

        def partition(plan, placement):
            if len({d.name for d in placement.values()}) <= 1:
                return None
            from .partition import PartitionedPlan

            return PartitionedPlan(plan, placement, self._devices)

        c = compile_run(self.graph, elements, feed_keys, config=self.config, devices=self._devices,
                        rewrites=self._rewrites, providers=self._providers, make_kernel=make_kernel,
                        inplace=inplace, partition=partition if len(self._devices) > 1 else None,
                        check_unfed=check_unfed)
        plan, feed_tensors = c.plan, c.feed_tensors
        fed = set(feed_tensors)
        fetch_slot = dict(zip(c.fetch_tensors, plan.fetch_slots))
        slots, copy = [], []
        for el in elements:
            if isinstance(el, Tensor):
                slots.append(fetch_slot[el])
                copy.append(el not in fed and el.op.type == "VariableV2")
            else:
                slots.append(None)
                copy.append(False)
        feeds = [(s, t, t.dtype.np, t._shape) for s, t in zip(plan.feed_slots, feed_tensors)]
        comp = _Compiled(plan, feeds, slots, copy)
        comp.partitioned = c.partitioned
        used = set(c.placement.values())
        if c.partitioned is None and len(used) == 1 and next(iter(used)).xp is not np:
            # the whole plan runs on one accelerator: feeds go straight to it (a partitioned
            # plan receives them on the host and moves them with Send/Recv)
            comp.feed_xp = next(iter(used)).xp
        comp.placement = c.where
        comp.info = c.info
        comp.kernel_plan = c.kernel_plan
        if c.kernel_plan.uses("onednn"):
            from .threads import onednn_owns_cores

            comp.cores = onednn_owns_cores
        return comp

    # ----------------------------------------------------------------- helpers
    @property
    def closed(self):
        return self._closed

    def rng_states(self):
        """The state of every random op's generator, by op name (for snapshots)."""
        return rng_states(self._ctx.rngs)

    def set_rng_states(self, states):
        """Restore random generators saved by :meth:`rng_states`."""
        set_rng_states(self._ctx.rngs, states)

    def list_devices(self):
        """The session's devices (TF's ``Session.list_devices``)."""
        from .devices import DeviceAttributes

        return [DeviceAttributes(d) for d in self._devices]

    def placement(self, fetches, feed_dict=None):
        """{op name: device name} for the plan that ``run(fetches, feed_dict)`` uses."""
        return self._compiled_for(fetches, feed_dict).placement

    def plan_info(self, fetches, feed_dict=None):
        """What compiling the plan of ``run(fetches, feed_dict)`` did: op counts before and after
        the rewrites, what each pass did and the executor's memory plan (a PlanInfo)."""
        comp = self._compiled_for(fetches, feed_dict)
        comp.info.kernels["fallbacks"] = comp.kernel_plan.fallbacks()
        return comp.info

    def partitions(self, fetches, feed_dict=None):
        """The per-device partitions of that plan ({device name: Partition}), or {} on one device."""
        comp = self._compiled_for(fetches, feed_dict)
        return dict(comp.partitioned.parts) if comp.partitioned is not None else {}

    def _compiled_for(self, fetches, feed_dict):
        feed_keys = tuple(feed_dict) if feed_dict else ()
        elements = []
        flatten(fetches, self.graph, elements, {})
        key = (tuple(elements), feed_keys)
        comp = self._plans.get(key)
        if comp is None:
            comp = self._plans[key] = self._compile(elements, feed_keys)
        return comp


class InteractiveSession(Session):
    """A Session that makes itself the default on creation (for shells and notebooks)."""

    def __init__(self, target="", graph=None, config=None):
        super().__init__(target, graph, config)
        _default_session_stack.append(self)

    def close(self):
        if self in _default_session_stack:
            _default_session_stack.remove(self)
        super().close()


