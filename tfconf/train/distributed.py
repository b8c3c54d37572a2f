"""Synchronous data-parallel training from a config (``distributed:``), on a :class:`ClusterSession`.

The graph is the one-process Solver's graph, replicated in-graph (TensorFlow 1's "in-graph
replication"): tower ``k`` is the train net placed on ``/job:worker/task:k`` and reading the
placeholders that task ``k`` fills from its own shard of every batch (:mod:`tfconf.distributed.sources`).

Why N workers give the weights one process gives with N times the batch: every loss layer averages
over its batch, so the one-process loss over N·B samples is ``(1/N)·Σ_k loss_k`` and its gradient is
``(1/N)·Σ_k grad_k``, the mean of the towers' gradients. Shard ``k`` of batch ``i`` is rows
``k·B..k·B+B-1`` of batch ``i`` of the N·B stream, so the towers see exactly its samples. The
update after averaging (clipping, weight decay, momentum...) is the Solver's own, unchanged. Only
the summation order differs (the towers' partial sums are added last), i.e. float rounding; layers
whose output depends on the whole batch (BatchNorm's batch statistics) or on random draws (Dropout
masks) differ by design.

Strategies:

* ``parameter_server``: the parameters and their optimizer slots live on the ``ps`` tasks (spread by
  size, greedily, like ``tf.train.replica_device_setter``'s load balancing); every worker receives
  each parameter, sends back its gradient; the ps adds them, scales by 1/N and applies the update.
* ``allreduce``: every worker holds a replica of the parameters (initialized by copying worker 0's),
  the gradients are flattened into one vector, summed by a ring all-reduce (reduce-scatter, then
  all-gather: each worker sends and receives 2·(N-1)/N of the vector), scaled by 1/N on the chunk's
  owner, and every replica applies the same update, so the replicas stay identical bit for bit.

The snapshot format is the one-process Solver's (the data position is that of the N·B stream), so a
run can resume in one process with N times the batch, and vice versa.
"""

from __future__ import annotations

import math

import numpy as np

from tfconf.distributed.cluster import ClusterSpec
from tfconf.distributed.sources import SourceFeed
from tfconf.engine import api as tc
from tfconf.engine.devices import DeviceSpec, merge_device
from tfconf.engine.ops.state import variables_referenced
from tfconf.frontend.compiler import build_net, device_name
from tfconf.frontend.layers.base import NetState
from tfconf.io.jsonable import jsonable

from . import snapshot as snap
from .solver import DivergenceError, Solver


class DistributedSolver(Solver):
    """``DistributedSolver(config, run_dir)``: the Solver of a config with ``distributed:`` and/or
    ``cluster:`` sections, training on the cluster they describe."""

    def __init__(self, config, run_dir, *, root=None, log=None, prefetch=2, dtype=tc.float32):
        from .errors import TrainError

        dist, cl = config.distributed, config.cluster
        jobs = dict(cl.jobs) if cl is not None and cl.jobs else None
        n = dist.workers if dist is not None else int((jobs or {}).get("worker", 1))
        strategy = dist.strategy if dist is not None else "parameter_server"
        if jobs is None:
            jobs = {"worker": n, **({"ps": 1} if strategy == "parameter_server" else {})}
        elif jobs.get("worker", 0) != n:
            raise TrainError(f"distributed.workers is {n} but cluster.jobs has {jobs.get('worker', 0)} worker tasks")
        elif strategy == "parameter_server" and not jobs.get("ps"):
            raise TrainError("the parameter_server strategy needs a ps job: cluster.jobs: {ps: 1, worker: ...}")
        elif strategy == "allreduce" and jobs.get("ps"):
            raise TrainError("the allreduce strategy uses no ps tasks: remove ps from cluster.jobs")
        train = config.data.train if config.data is not None else None
        if train is not None and train.is_text:
            raise TrainError("distributed training reads image-style data (data, label batches); "
                             "character data is not supported yet")
        self.cluster = ClusterSpec(jobs=jobs, address=cl.address if cl is not None else "local",
                                   cpus_per_task=cl.cpus_per_task if cl is not None else None,
                                   device_count=dict(cl.device_count) if cl is not None and cl.device_count else None,
                                   link_gbps=cl.link_gbps if cl is not None else 10.0)
        self.num_workers = n
        self.strategy = strategy
        self._config = config
        self._root = root
        try:
            super().__init__(self._on_worker(config, 0), run_dir, root=root, log=log, prefetch=0, dtype=dtype)
            # The data position is that of the one-process stream with N times the batch (snapshots say so).
            one = self.train_data
            self.train_data = type(one)(one.x, one.y, one.batch_size * n, shuffle=one.shuffle, seed=one.seed,
                                        transform=one.transform)
            one.close()
            if self._broadcast is not None:
                self.sess.run(self._broadcast)
        except BaseException:
            if getattr(self, "sess", None) is not None:
                self.sess.close()  # the tasks, which would otherwise live as long as Ray
            raise

    # ------------------------------------------------------------------ graph
    def _tower_device(self, k, device):
        return merge_device(f"/job:worker/task:{k}", device_name(device) or "")

    def _on_worker(self, config, k):
        """The config with its net (and each layer that names a device) on worker ``k``."""
        layers = [spec.model_copy(update={"device": self._tower_device(k, spec.device)})
                  if getattr(spec, "device", None) is not None else spec for spec in config.layers]
        return config.model_copy(update={"device": self._tower_device(k, config.device), "layers": layers})

    def _build_updates(self, dtype):
        g, n, ps = self.graph, self.num_workers, self.strategy == "parameter_server"
        self._tower_inputs, self._nets, self._replicas = [self.inputs], [self.train_net], [self.params]
        for k in range(1, n):
            inputs = {name: tc.placeholder(ph.dtype, ph.shape.as_list() if ph.shape.ndims is not None else None,
                                           name=f"worker{k}/{name}") for name, ph in self.inputs.items()}
            params, meta = (self.params, self.param_meta) if ps else ({}, {})
            net = build_net(self._on_worker(self._config, k).layers, NetState(phase="train"), g, params, meta,
                            inputs, dtype, device=self._tower_device(k, self._config.device))
            self._tower_inputs.append(inputs)
            self._nets.append(net)
            self._replicas.append(params)
        self._losses = [net.loss for net in self._nets]
        keys = [k for k, v in self.params.items()
                if self.param_meta[k]["trainable"] and self.param_meta[k]["lr_mult"] != 0]
        tower_grads = []
        for k, (net, params) in enumerate(zip(self._nets, self._replicas)):
            with g.device(self._tower_device(k, self._config.device)):
                tower_grads.append(tc.gradients(net.loss, [params[key] for key in keys]))
        self._broadcast = None
        if ps:
            self._place_parameters()
            self._dp_grads = {}
            for i, key in enumerate(keys):
                v = self.params[key]
                gs = [grads[i] for grads in tower_grads if grads[i] is not None]
                if gs:
                    with g.device(v.op.device), g.name_scope("average"):
                        self._dp_grads[v] = gs[0] if n == 1 else tc.add_n(gs) * (1.0 / n)
            with g.device(_follow_ps):
                return super()._build_updates(dtype)
        devices = [self._tower_device(k, self._config.device) for k in range(n)]
        reduced = ring_allreduce(tower_grads, devices, scale=1.0 / n)
        self._dp_grads = {params[key]: gr for params, grads in zip(self._replicas, reduced)
                          for key, gr in zip(keys, grads)}
        if n > 1:  # every replica starts from worker 0's values
            copies = []
            for k in range(1, n):
                with g.device(devices[k]):
                    copies += [self._replicas[k][key].assign(v) for key, v in self.params.items()]
            self._broadcast = tc.group(*copies, name="broadcast_replica0")
        train_ops, self._replica_slots, accumulate = [], [], []
        canonical = self.params
        try:
            for k in range(n):
                self.params = self._replicas[k]
                with g.device(devices[k]):
                    op, slots = super()._build_updates(dtype)
                train_ops.append(op)
                self._replica_slots.append(slots)
                accumulate.append(self.accumulate_op)
        finally:
            self.params = canonical
        if accumulate[0] is not None:
            self.accumulate_op = tc.group(*accumulate, name="accumulate_all")
        return tc.group(*train_ops, name="train_all"), self._replica_slots[0]

    def _gradients(self, loss, variables):
        return [self._dp_grads.get(v) for v in variables]

    def _place_parameters(self):
        """Each parameter, with the ops that read or write its storage, on a ps task: the largest
        first, each on the task holding the fewest bytes so far."""
        tasks = self.cluster.jobs["ps"]
        load = [0] * tasks
        variables = sorted(self.params.values(), key=lambda v: -int(np.prod(v.shape.as_list())))
        home = {}
        for v in variables:
            j = load.index(min(load))
            load[j] += int(np.prod(v.shape.as_list())) * v.dtype.np.itemsize
            home[v.op] = merge_device(f"/job:ps/task:{j}", device_name(self._config.device) or "")
        names = {op.name: dev for op, dev in home.items()}
        for op in self.graph.get_operations():
            dev = home.get(op) or home.get(op.colocated_with) or next(
                (names[v] for v in variables_referenced(op) if v in names), None)
            if dev is not None:
                op.device = dev

    def _make_session(self, graph):
        from tfconf.distributed.session import ClusterSession

        sess = ClusterSession(self.cluster, graph=graph)
        try:
            spec = self._config.data.train
            for k in range(self.num_workers):
                sess.add_source(f"/job:worker/task:{k}", "train", "shard",
                                {"data": spec, "phase": "train", "root": self._root, "seed": graph.seed,
                                 "shard": k, "num_shards": self.num_workers})
        except BaseException:
            sess.close()
            raise
        return sess

    # ------------------------------------------------------------------ running
    def _batch_feed(self):
        """Batch ``i`` of the N·B stream: each worker makes its shard of it."""
        i = self.train_data.iteration
        self.train_data.seek(i + 1)
        return {ph: SourceFeed(f"/job:worker/task:{k}", "train", i, e)
                for k, inputs in enumerate(self._tower_inputs) for e, ph in enumerate(inputs.values())}

    def step(self):
        lr = self.learning_rate(self.iteration)
        losses = []
        for _ in range(int(getattr(self.s, "iter_size", 1) or 1) - 1):
            _, parts = self.sess.run([self.accumulate_op, self._losses], self._batch_feed())
            losses.append(math.fsum(float(x) for x in parts) / self.num_workers)
        feed = {**self._batch_feed(), self.lr: lr, self.t: self.iteration + 1}
        _, parts = self.sess.run([self.train_op, self._losses], feed)
        losses.append(math.fsum(float(x) for x in parts) / self.num_workers)
        loss = sum(losses) / len(losses)
        if not math.isfinite(loss):
            raise DivergenceError(f"loss became {loss} at iteration {self.iteration} (the op that produced it is "
                                  "named when the same config diverges in one process)")
        self.iteration += 1
        self.smoothed.append(loss)
        if len(self.smoothed) > max(int(getattr(self.s, "average_loss", 1) or 1), 1):
            self.smoothed.pop(0)
        return loss, lr

    # ------------------------------------------------------------------ snapshots (read from the tasks)
    def weights(self):
        values = self.sess.variable_values([v.op.name for v in self.params.values()])
        return {k: values[v.op.name] for k, v in self.params.items()}

    def save(self, prefix):
        values = self.sess.variable_values([v.op.name for v in [*self.params.values(), *self.slots.values()]])
        weights = {k: values[v.op.name] for k, v in self.params.items()}
        slots = {k: values[v.op.name] for k, v in self.slots.items()}
        state = {"iteration": self.iteration, "data": self.train_data.state(), "rng": self.sess.rng_states(),
                 "smoothed": self.smoothed}
        return snap.write_snapshot(prefix, self.iteration, weights, slots, jsonable(state))

    def restore(self, spath):
        weights, slots, state = snap.read_snapshot(spath)
        self.load_weights(weights, strict=True)
        values = {}
        for replica in getattr(self, "_replica_slots", None) or [self.slots]:
            for k, v in replica.items():
                if k in slots:
                    values[v.op.name] = slots[k].astype(v.dtype.np, copy=False)
        self.sess.load_variables(values)
        self.iteration = int(state["iteration"])
        self.train_data.restore(state["data"])
        self.smoothed = list(state.get("smoothed", []))
        self.sess.set_rng_states(state.get("rng", {}))

    def load_weights(self, weights, strict=False, reinit=()):
        loaded, values = [], {}
        for k, v, a in self._weights_to_load(weights, strict, reinit):
            for replica in self._replicas:
                values[replica[k].op.name] = a
            loaded.append(k)
        if values:
            self.sess.load_variables(values)
        return loaded


def _follow_ps(op):
    """Device function for the update section: an op goes to the ps task of its first input that
    lives on one (a gradient's average, its weight decay, the fused update), else anywhere."""
    for t in op.inputs:
        d = t.op.device
        if d and DeviceSpec.from_string(d).job == "ps":
            return d
    return None


def ring_allreduce(grads, devices, scale=1.0):
    """``grads[k]``: worker ``k``'s gradients (same shapes on every worker, None where a parameter
    gets none); ``devices[k]``: its device scope. Returns, per worker, ``scale · Σ_k grads[k]``.

    The gradients are flattened into one vector of P values split into N chunks. Reduce-scatter:
    in step s = 0..N-2, worker r adds the chunk (r-s) mod N it holds to worker r+1's, so after
    N-1 steps worker r holds the complete sum of chunk (r+1) mod N (and scales it). All-gather: in
    N-1 more steps each complete chunk travels once around the ring. Every edge is an ordinary
    cross-device tensor, so the partitioner turns it into a Send/Recv between the two tasks. Each
    worker sends and receives 2·(N-1) chunks of P/N values; every worker ends with the same bits."""
    n = len(grads)
    present = [i for i, gr in enumerate(grads[0]) if gr is not None]
    out = [[None] * len(grads[0]) for _ in range(n)]
    if not present:
        return out
    shapes = [grads[0][i].shape.as_list() for i in present]
    sizes = [int(np.prod(s)) for s in shapes]
    if n == 1:
        for i in present:
            out[0][i] = grads[0][i] if scale == 1.0 else grads[0][i] * scale
        return out
    total = sum(sizes)
    bounds = [total * c // n for c in range(n + 1)]
    chunk_sizes = [bounds[c + 1] - bounds[c] for c in range(n)]
    with tc.name_scope("allreduce"):
        have = []
        for k in range(n):
            with tc.device(devices[k]):
                flat = tc.concat([tc.reshape(grads[k][i], [-1]) for i in present], 0)
                have.append(list(tc.split(flat, chunk_sizes, 0)))
        for s in range(n - 1):  # reduce-scatter
            sent = [(r, (r - s) % n, have[r][(r - s) % n]) for r in range(n)]
            for r, c, value in sent:
                d = (r + 1) % n
                with tc.device(devices[d]):
                    have[d][c] = value + have[d][c]
        for r in range(n):  # worker r owns the sum of chunk r+1
            c = (r + 1) % n
            with tc.device(devices[r]):
                have[r][c] = have[r][c] * scale if scale != 1.0 else have[r][c]
        for s in range(n - 1):  # all-gather
            sent = [(r, (r + 1 - s) % n, have[r][(r + 1 - s) % n]) for r in range(n)]
            for r, c, value in sent:
                d = (r + 1) % n
                with tc.device(devices[d]):
                    have[d][c] = tc.identity(value)
        for k in range(n):
            with tc.device(devices[k]):
                flat = tc.concat(have[k], 0)
                pieces = tc.split(flat, sizes, 0) if len(sizes) > 1 else [flat]
                for i, piece, shape in zip(present, pieces, shapes):
                    out[k][i] = tc.reshape(piece, shape)
    return out
