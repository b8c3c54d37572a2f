"""The training loop: a compiled net, its solver and its data, one ``Session.run`` per iteration.

The train net and the test nets (one by default; several with ``solver.test_nets``, each with its
stages and its own data stream) are built into one graph sharing their parameters. Each iteration
feeds a batch and the learning rate (computed from the lr policy in Python, exactly Caffe's
formulas) and runs one op that does forward, backward, weight decay, clipping and the fused updates."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from tfconf.errors import UserError
from tfconf.io.jsonable import jsonable
from tfconf.engine import api as tc
from tfconf.engine.devices import like, to_host
from tfconf.data.batcher import NoFeed
from tfconf.engine.ops.updates import RULES

from ..frontend.compiler import build_net
from ..frontend.layers.base import NetState
from ..frontend.solver_schema import TestPhase, test_phases
from . import snapshot as snap


class DivergenceError(UserError, RuntimeError):
    """The loss became NaN or Inf; the message names the first op that produced a non-finite value."""

    def user_message(self) -> str:
        return f"error: training diverged: {self}"


@dataclasses.dataclass
class TrainResult:
    run_dir: str
    iterations: int
    train_loss: float | None
    test_metrics: dict
    wall_time: float
    snapshot: str | None


@dataclasses.dataclass
class TestNet:
    """One test net of a Solver: what the config says of it, the built net, and its data stream
    (None where the config has no data for it: the default test net without data.test)."""

    __test__ = False  # (not a pytest test class)

    phase: TestPhase
    net: object
    data: object | None

    @property
    def name(self) -> str:
        return self.phase.name


def _slot_names(rule):
    return [f"slot{i}" for i in range(RULES[rule][1])]


class Solver:
    """``Solver(config, run_dir)``: ``config`` has ``layers``, ``solver`` and ``data`` (validated)."""

    def __init__(self, config, run_dir, *, root=None, log=None, prefetch=2, dtype=tc.float32):
        from tfconf.data import make_dataset

        self.cfg = config
        self.s = config.solver
        self.run_dir = run_dir
        self.log = log or (lambda msg: None)
        seed = self.s.random_seed if self.s.random_seed is not None and self.s.random_seed >= 0 else 0
        data = config.data
        # NOTE: a prefetch thread overlaps making batches with the step, but where the step's
        # kernels already use every core it only contends with them (LeNet on 2 cores: 8.8 ms per
        # iteration with the thread, 7.1 without). So batches start synchronous and timed, and the
        # thread starts once making a batch is seen to cost more than PREFETCH_SHARE of a step.
        self._prefetch = int(prefetch or 0)
        self._probe = [0.0, 0.0, 0] if self._prefetch > 0 else None  # batch s, step s, steps
        self.train_data = make_dataset(data.train, "train", root=root, seed=seed, prefetch=0) \
            if data is not None and data.train is not None else None
        makes_inputs = any(layer.makes_inputs for layer in config.layers)
        if self.train_data is None and makes_inputs:
            self.train_data = NoFeed()  # its layers make the inputs (DummyData)
        if self.train_data is None:
            raise ValueError("training needs data.train")
        phases = test_phases(self.s, data)
        streams = []  # each test net's own stream (a test pass reads it from its start)
        try:
            for t in phases:
                streams.append(_test_stream(t, data, root, seed, make_dataset, makes_inputs))
        except BaseException:
            for ds in [self.train_data, *streams]:
                if ds is not None:
                    ds.close()
            raise
        self.graph = g = tc.Graph()
        g.seed = seed
        with g.as_default():
            tops = _declared_tops(self.train_data, [ds for ds in streams if ds is not None])
            if tops is None:  # image-style data: data float [B, ...], label int64 [B]
                sample = self.train_data.output_shape[1:]
                self.inputs = {
                    "data": tc.placeholder(dtype, [None, *sample], name="data"),
                    "label": tc.placeholder(tc.int64, [None], name="label"),
                }
            else:  # the data declares its tops (text: data, label, cont [T, N]); batches come in that order
                self.inputs = {n: tc.placeholder(tc.as_dtype(dt), shape, name=n) for n, (shape, dt) in tops.items()}
            self.params, self.param_meta = {}, {}
            device = getattr(config, "device", None)
            self.train_net = build_net(config.layers, NetState(phase="train"), g, self.params,
                                       self.param_meta, self.inputs, dtype, device=device)
            if self.train_net.loss is None:
                raise ValueError("the train net has no loss: add a loss layer (e.g. SoftmaxWithLoss)")
            self.tests = []
            for t, ds in zip(phases, streams):
                state = NetState(phase="test", level=t.level, stages=list(t.stages))
                # (several test nets: each named by its own name, so an op's name says its net)
                net = build_net(config.layers, state, g, self.params, self.param_meta, self.inputs, dtype,
                                device=device, scope=t.name if len(phases) > 1 else None)
                self.tests.append(TestNet(t, net, ds))
            # the only (or first) test net, by the names a single test net always had
            self.test_net, self.test_data = self.tests[0].net, self.tests[0].data
            self.lr = tc.placeholder(dtype, [], name="learning_rate")
            self.t = tc.placeholder(dtype, [], name="t")
            self.train_op, self.slots = self._build_updates(dtype)
            for v in g.get_collection("recurrent_state"):  # carried RNN state resumes with a snapshot
                self.slots[f"state:{v.op.name}"] = v
            self.init_op = tc.global_variables_initializer()
        self.sess = self._make_session(g)
        self.sess.run(self.init_op)
        self.iteration = 0
        self.smoothed = []

    # ------------------------------------------------------------------ graph
    def _build_updates(self, dtype):
        s = self.s
        rule = s.type
        trainable = [(k, v) for k, v in self.params.items()
                     if self.param_meta[k]["trainable"] and self.param_meta[k]["lr_mult"] != 0]
        if not trainable:
            raise ValueError("the net has no trainable parameters with lr_mult != 0")
        grads = self._gradients(self.train_net.loss, [v for _, v in trainable])
        pairs = [(k, v, gr) for (k, v), gr in zip(trainable, grads) if gr is not None]
        # (a parameter the loss does not depend on gets no update, as in Caffe)
        n = int(getattr(s, "iter_size", 1) or 1)
        self.accumulate_op = None
        with tc.name_scope("solver"):
            # Caffe's order: accumulate over iter_size batches, clip the summed gradients,
            # normalize by iter_size, then add weight decay.
            if n > 1:
                accs, adds = [], []
                for k, v, gr in pairs:
                    with tc.name_scope(None), self.graph.colocate_with(v.op):
                        acc = tc.Variable(np.zeros(v.shape.as_list(), dtype=v.dtype.np), trainable=False,
                                          name=f"{k}/grad_accum")
                    accs.append(acc)
                    adds.append(acc.assign_add(gr))
                self.accumulate_op = tc.group(*adds, name="accumulate")
                pairs = [(k, v, acc.value() + gr) for (k, v, gr), acc in zip(pairs, accs)]
                self._accumulators = accs
            if s.clip_gradients is not None and s.clip_gradients > 0:
                norm = tc.sqrt(tc.add_n([tc.reduce_sum(tc.square(gr)) for _, _, gr in pairs]))
                factor = tc.minimum(tc.constant(1.0, dtype=dtype), s.clip_gradients / tc.maximum(norm, 1e-30))
                pairs = [(k, v, gr * factor) for k, v, gr in pairs]
            if n > 1:
                pairs = [(k, v, gr * (1.0 / n)) for k, v, gr in pairs]
            decayed = []
            for k, v, gr in pairs:
                decay = (s.weight_decay or 0.0) * self.param_meta[k]["decay_mult"]
                if decay and rule != "AdamW":
                    gr = gr + (v if s.regularization_type == "L2" else tc.sign(v)) * decay
                decayed.append((k, v, gr))
            pairs = decayed
            hyper = {"momentum": float(s.momentum or 0.0), "momentum2": float(getattr(s, "momentum2", 0.999)),
                     "delta": float(getattr(s, "delta", 1e-8)), "rms_decay": float(getattr(s, "rms_decay", 0.99))}
            updates, slots = [], {}
            for k, v, gr in pairs:
                handles = []
                for sn in _slot_names(rule):
                    # a slot lives where its parameter lives (TF's slot_creator does the same)
                    with tc.name_scope(None), self.graph.colocate_with(v.op):
                        sv = tc.Variable(np.zeros(v.shape.as_list(), dtype=v.dtype.np), trainable=False,
                                         name=f"{k}/{rule}_{sn}")
                    handles.append(sv.handle)
                    slots[f"{k}/{sn}"] = sv
                mult = self.param_meta[k]["lr_mult"]
                lr = self.lr if mult == 1 else self.lr * mult
                hp = dict(hyper)
                if rule == "AdamW":
                    hp["decoupled_decay"] = (s.weight_decay or 0.0) * self.param_meta[k]["decay_mult"]
                with self.graph.colocate_with(v.op):  # the update reads and writes v's storage
                    op = self.graph.create_op("ApplyUpdate", [v.handle, *handles, lr, gr, self.t],
                                              {"rule": rule, "hyper": hp}, "update")
                updates.append(op)
            if n > 1:
                with tc.control_dependencies(updates):
                    resets = [a.assign(np.zeros(a.shape.as_list(), dtype=a.dtype.np)) for a in self._accumulators]
                updates = updates + resets
            train_op = tc.group(*updates, *self.train_net.updates, name="train_step")
        return train_op, slots

    # Hooks that data-parallel training (tfconf.train.distributed) overrides.
    def _make_session(self, graph):
        return tc.Session(graph=graph, config=tc.SessionConfig(
            device_count=dict(getattr(self.cfg, "device_count", None) or {}),
            memory=getattr(self.cfg, "memory", None) or "default"))

    def _gradients(self, loss, variables):
        return tc.gradients(loss, variables)

    # ------------------------------------------------------------------ running
    def learning_rate(self, iteration):
        from ..frontend.solver_schema import learning_rate

        return learning_rate(self.s, iteration)

    PREFETCH_SHARE = 0.05
    PROBE_STEPS = 10

    def _next_batch(self):
        if self._probe is None:
            return next(self.train_data)
        t = time.perf_counter()
        batch = next(self.train_data)
        self._probe[0] += time.perf_counter() - t
        return batch

    def _probed(self, seconds):
        """After PROBE_STEPS timed steps, start the prefetch thread if batches are worth it."""
        p = self._probe
        p[1] += seconds
        p[2] += 1
        if p[2] >= self.PROBE_STEPS:
            self._probe = None
            if p[0] > self.PREFETCH_SHARE * p[1] and hasattr(self.train_data, "prefetch"):
                self.train_data.prefetch = self._prefetch

    def step(self):
        """One iteration: ``iter_size`` batches (gradients accumulated), then one update."""
        if self._probe is not None:
            t = time.perf_counter()
            try:
                return self._step()
            finally:
                self._probed(time.perf_counter() - t)
        return self._step()

    def _step(self):
        lr = self.learning_rate(self.iteration)
        store = self.sess._ctx.variables
        before = dict(store)  # assignments replace arrays, so this keeps the pre-step values
        losses = []
        for _ in range(int(getattr(self.s, "iter_size", 1) or 1) - 1):
            _, part = self.sess.run([self.accumulate_op, self.train_net.loss], self.feed(self._next_batch()))
            losses.append(float(part))
        feed = {**self.feed(self._next_batch()), self.lr: lr, self.t: self.iteration + 1}
        _, loss = self.sess.run([self.train_op, self.train_net.loss], feed)
        losses.append(float(loss))
        loss = sum(losses) / len(losses)
        loss = float(loss)
        if not math.isfinite(loss):
            store.clear()
            store.update(before)
            message = self._diagnose(feed, loss)
            store.clear()
            store.update(before)  # the weights stay those of the last finite iteration
            raise DivergenceError(message)
        self._check_loss_growth(loss, lr)
        self.iteration += 1
        self.smoothed.append(loss)
        n = max(int(getattr(self.s, "average_loss", 1) or 1), 1)
        if len(self.smoothed) > n:
            self.smoothed.pop(0)
        return loss, lr

    #: a loss this many times its first value is divergence, NaN or not (a net that learns does not
    #: get 10,000 times worse; the floor keeps a fine-tune's tiny first loss from counting)
    LOSS_GROWTH, LOSS_FLOOR = 1e4, 1e-3
    #: a parameter this large is divergence: float32 products of such weights overflow within a few layers
    WEIGHT_LIMIT = 1e10

    def _check_loss_growth(self, loss, lr):
        first = getattr(self, "_first_loss", None)
        if first is None:
            self._first_loss = (self.iteration, abs(loss))
            return
        if abs(loss) > self.LOSS_GROWTH * max(first[1], self.LOSS_FLOOR):
            raise DivergenceError(
                f"the loss grew from {first[1]:.4g} (iteration {first[0]}) to {loss:.4g} at iteration "
                f"{self.iteration} without becoming NaN: the weights are exploding (lr {lr:.4g}); lower "
                "solver.base_lr or add gradient clipping (solver.clip_gradients)")

    def check_weights(self):
        """Divergence that has not reached the loss yet: a non-finite or exploding parameter."""
        import numpy as np

        for k, v in self.weights().items():
            if v.size == 0:
                continue
            big = max(float(v.max()), -float(v.min()))  # (NaN propagates; no |v| copy)
            if not np.isfinite(big):
                raise DivergenceError(f"parameter {k} became non-finite at iteration {self.iteration}")
            if big > self.WEIGHT_LIMIT:
                raise DivergenceError(f"parameter {k} reached {big:.3g} at iteration {self.iteration}: the weights "
                                      "are exploding; lower solver.base_lr or add gradient clipping "
                                      "(solver.clip_gradients)")

    def feed(self, batch):
        """A batch (a tuple in the order of ``self.inputs``: data, label, ...) as a feed dict."""
        return dict(zip(self.inputs.values(), batch))

    def _diagnose(self, feed, loss):
        """Re-run the failed iteration checking every op's outputs; name the first non-finite one."""
        try:
            self.sess.run([self.train_op, self.train_net.loss], feed, options={"check_numerics": True})
        except tc.errors.InvalidArgumentError as e:
            return f"loss became {loss} at iteration {self.iteration}: {e}"
        return f"loss became {loss} at iteration {self.iteration}"

    def test(self):
        """One test pass of every test net: ``{metric: value}`` for a single test net, and
        ``{"NAME/metric": value}`` for several (:meth:`test_each` keeps them apart)."""
        out = {}
        for test, metrics in self.test_each():
            out.update(metrics if len(self.tests) == 1 else {f"{test.name}/{k}": v for k, v in metrics.items()})
        return out

    def test_each(self):
        """(:class:`TestNet`, metrics) of each test net that has data, in order; each averages every
        scalar output of its net over its ``test_iter`` batches, read from the start of its stream
        (so every pass sees the same batches, and a resumed run's passes are an uninterrupted one's)."""
        return [(t, self.test_one(t)) for t in self.tests if t.data is not None]

    def test_one(self, test):
        """A test pass of one :class:`TestNet` (its metrics, {} when it has none)."""
        net, data = test.net, test.data
        fetch = {n: t for n, t in net.tops.items()
                 if n not in self.inputs and t.shape.ndims == 0 and n in _test_metric_names(net)}
        if not fetch:
            return {}
        data.seek(0)
        sums = dict.fromkeys(fetch, 0.0)
        iters = int(test.phase.test_iter or 1)
        for _ in range(iters):
            feed = self.feed(next(data))
            if net.updates:  # e.g. recurrent layers carry their state to the next batch
                out, _ = self.sess.run([fetch, net.updates], feed)
            else:
                out = self.sess.run(fetch, feed)
            for k, v in out.items():
                sums[k] += float(v)
        return {k: v / iters for k, v in sums.items()}

    # ------------------------------------------------------------------ snapshots
    def weights(self):
        store = self.sess._ctx.variables
        return {k: to_host(store[v.op.name]) for k, v in self.params.items()}

    def save(self, prefix):
        store = self.sess._ctx.variables
        slots = {k: to_host(store[v.op.name]) for k, v in self.slots.items()}
        state = {
            "iteration": self.iteration,
            "data": self.train_data.state(),
            "rng": self.sess.rng_states(),
            "smoothed": self.smoothed,
        }
        return snap.write_snapshot(prefix, self.iteration, self.weights(), slots, jsonable(state))

    def restore(self, spath):
        weights, slots, state = snap.read_snapshot(spath)
        self.load_weights(weights, strict=True)
        store = self.sess._ctx.variables
        for k, v in self.slots.items():
            if k in slots:
                store[v.op.name] = like(store.get(v.op.name), slots[k].astype(v.dtype.np, copy=False))
        self.iteration = int(state["iteration"])
        self.train_data.restore(state["data"])
        self.smoothed = list(state.get("smoothed", []))
        self.sess.set_rng_states(state.get("rng", {}))

    def load_weights(self, weights, strict=False, reinit=()):
        """Copy weights by parameter name (``layer/weights``). A shape mismatch is an error naming
        the layer and both shapes unless the layer is listed in ``reinit``."""
        store = self.sess._ctx.variables
        loaded = []
        for k, v, a in self._weights_to_load(weights, strict, reinit):
            store[v.op.name] = like(store.get(v.op.name), a)
            loaded.append(k)
        return loaded

    def _weights_to_load(self, weights, strict, reinit):
        """(parameter key, variable, array in its dtype) for each parameter ``weights`` sets."""
        for k, v in self.params.items():
            layer = self.param_meta[k]["layer"]
            if layer in reinit or k not in weights:
                if strict and k not in weights:
                    raise ValueError(f"the snapshot has no parameter {k!r}")
                continue
            a = weights[k]
            want = tuple(v.shape.as_list())
            if tuple(a.shape) != want:
                raise ValueError(f"layer {layer!r}: parameter {k!r} has shape {list(a.shape)} in the weights "
                                 f"file but the net needs {list(want)}; list the layer in --reinit to "
                                 "initialize it afresh instead")
            yield k, v, np.array(a, dtype=v.dtype.np)

    def close(self):
        self.sess.close()
        self.train_data.close()
        for t in self.tests:
            if t.data is not None:
                t.data.close()


def _test_metric_names(net):
    names = set(net.outputs) | set(net.losses)
    for spec in net.layers:
        if spec.type == "Accuracy":
            names.update(spec.output_names())
    return names


def _test_stream(phase, data, root, seed, make_dataset, makes_inputs=False):
    """The data stream of one test net (None for the default test net without data.test). A test
    net reading ``data: train`` reads the training split in the test phase (Caffe's test-on-train)."""
    spec = data.source(phase.data) if data is not None else None
    if spec is None:
        if phase.index is None:
            return NoFeed() if makes_inputs else None
        raise ValueError(f"test net {phase.name!r} reads data.{phase.data}, which the data section lacks")
    if phase.data == "train" and spec.split is None:
        spec = spec.model_copy(update={"split": "train"})
    return make_dataset(spec, "test", root=root, seed=seed, prefetch=0)


def _declared_tops(train, tests):
    """name → (shape, dtype) when the data declares its tops (dims that the train and the test
    streams disagree on become None), else None."""
    tops = getattr(train, "tops", None)
    if tops is None:
        return None
    out = {}
    for name, (shape, dt) in tops.items():
        for test in tests:
            other = getattr(test, "tops", None) or {}
            if name in other and len(other[name][0]) == len(shape):
                shape = [a if a == b else None for a, b in zip(shape, other[name][0])]
        out[name] = (list(shape), dt)
    return out
