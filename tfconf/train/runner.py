"""What the CLI's train/test/time commands do, minus argument parsing: the training loop with its
snapshots, test passes and Ctrl-C, testing saved weights, timing layers. Its parts: resume.py (run
folder, what --resume continues from), metrics.py (metrics files), progress.py (the display),
errors.py (the user's errors, located at config layers)."""

from __future__ import annotations

import os
import signal
import time

from tfconf.errors import did_you_mean
from tfconf.io.atomic import atomic_write_bytes
from . import snapshot as snap
from .errors import TrainError, _op_errors_located, explain_op_message  # noqa: F401 - TrainError is public here
from .metrics import MetricsLog
from .progress import progress
from .resume import choose_run_dir, restore_newest_good, snapshot_candidates


class Callback:
    """Hooks into a training run (``train(cfg, callbacks=[...])``; e.g. TensorBoard). Override what
    you need: ``on_train_begin`` once the solver is ready (its graph built, weights loaded or
    resumed), ``on_metrics`` with every event metrics.jsonl records (phase ``train``: loss and lr
    at each ``display``; ``test``: the test metrics), ``on_train_end`` when the run stops, however.
    ``on_metrics`` may return a reason (a non-empty string) to end the run early and normally after
    the current iteration, with a snapshot (early stopping, a sweep pruning a trial); the result's
    ``stopped`` then holds the reason."""

    def on_train_begin(self, solver, run_dir):
        pass

    def on_metrics(self, iteration, phase, values):
        pass

    def on_train_end(self):
        pass


class _Interrupt:
    """First SIGINT (Ctrl-C) or SIGTERM (how cluster schedulers stop a job): finish the iteration,
    snapshot, stop; ``requested`` is the signal's name. A second one stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = None
        self._old = {}

    def __enter__(self):
        def handler(signum, frame):
            if self.requested:
                self.__exit__()
                raise KeyboardInterrupt
            self.requested = signal.Signals(signum).name

        for sig in self.SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old = {}
        return False


def _check_reinit(cfg, reinit):
    names = [layer.name for layer in cfg.net.layers]
    for r in reinit:
        if r not in names:
            hint = did_you_mean(r, names)
            raise TrainError(f"--reinit {r}: the net has no layer named {r!r}.{hint} Layers: {', '.join(names)}")


_SOLVER_SETUP_ERRORS = {  # Solver() refusals that are the config's fault → where to point
    "training needs data.train": ("data",),
    "the train net has no loss": ("layers",),
    "the net has no trainable parameters": ("layers",),
}


def _new_solver(cfg, run_dir, **kw):
    from .solver import Solver

    if getattr(cfg.net, "distributed", None) is not None or getattr(cfg.net, "cluster", None) is not None:
        from .distributed import DistributedSolver as Solver  # noqa: F811 - on a cluster
    try:
        return Solver(cfg.net, run_dir, root=cfg.root, **kw)
    except ValueError as e:
        for start, path in _SOLVER_SETUP_ERRORS.items():
            if str(e).startswith(start):
                raise cfg.loaded.error(path, str(e)) from None
        raise


def train(cfg, *, out=None, weights=None, reinit=(), resume=None, quiet=False, echo=print, stop_at=None,
          callbacks=(), force=False):
    """``stop_at``: pause at that iteration (with a snapshot and a test pass) instead of max_iter;
    the lr policy still sees max_iter (sweeps' successive halving trains in rungs this way).
    ``callbacks``: :class:`Callback` objects told of the run's start, metrics and end. ``force``:
    replace the run ``out`` already holds (:mod:`tfconf.train.runfolder`). The result's
    ``interrupted`` is true, and its ``signal`` the signal's name, when SIGINT or SIGTERM stopped the run."""
    from . import runfolder

    s = cfg.net.solver
    candidates = snapshot_candidates(resume) if resume else None  # before anything is created
    _check_reinit(cfg, reinit)
    if weights:
        _weights_path(weights)
    run_dir = choose_run_dir(cfg, out, resume)
    lock = runfolder.FolderLock(run_dir)
    _check_folder(run_dir, lock, resume, force)  # refused before the net is built
    prefix = os.path.join(run_dir, "snapshots", s.snapshot_prefix or cfg.net.name)
    say = (lambda msg: None) if quiet else echo
    with _op_errors_located(cfg):
        solver = _new_solver(cfg, run_dir)
        try:
            if weights:
                w, _ = snap.load_tensors(weights)
                try:
                    copied = solver.load_weights(w, reinit=set(reinit))
                except ValueError as e:
                    raise TrainError(f"--weights {weights}: {e}") from None
                if not copied and w and not reinit:
                    raise TrainError(f"--weights {weights}: none of its parameters ({', '.join(sorted(w)[:8])}) "
                                     "belongs to a layer of this net (parameters are matched by layer name)")
                say(f"loaded {len(copied)} parameters from {weights}")
            # the run folder is made only once the net and the weights are known good, and is
            # owned (locked) from then on
            os.makedirs(run_dir, exist_ok=True)
            try:
                lock.acquire()
            except runfolder.FolderBusy as e:
                raise TrainError(str(e)) from None
            try:
                found = None
                _check_folder(run_dir, None, resume, force)  # again, now that no one else can start
                if resume:
                    found = restore_newest_good(solver, candidates)
                    say(f"resumed from {found} at iteration {solver.iteration}")
                elif force:
                    replaced = runfolder.clear(run_dir)
                    if replaced:
                        say(f"--force: replaced the run in {run_dir} ({runfolder.describe(replaced)})")
                snap.remove_temporaries(run_dir)
                snap.remove_temporaries(os.path.join(run_dir, "snapshots"))
                os.makedirs(os.path.join(run_dir, "snapshots"), exist_ok=True)
                atomic_write_bytes(os.path.join(run_dir, "config.yaml"), cfg.loaded.dump().encode())
                _describe_text_data(solver, run_dir, say)
                metrics = MetricsLog(run_dir, append=bool(resume), upto=solver.iteration if resume else None,
                                   callbacks=callbacks)
                try:
                    for cb in callbacks:
                        cb.on_train_begin(solver, run_dir)
                    result = _loop(cfg, solver, s, metrics, prefix, say, quiet, found, stop_at)
                finally:
                    metrics.close()
                    for cb in callbacks:
                        cb.on_train_end()
            finally:
                lock.release()
        finally:
            solver.close()
    result["run_dir"] = run_dir
    return result


def _check_folder(run_dir, lock, resume, force):
    """Refuse a folder another training owns, or a run there that this one would write over."""
    from . import runfolder

    if lock is not None:
        pid = lock.holder()
        if pid:
            raise TrainError(str(runfolder.FolderBusy(run_dir, pid, "another training")))
    if not resume and not force:
        why = runfolder.refuse_message(run_dir)
        if why:
            raise TrainError(why)


def _describe_text_data(solver, run_dir, say):
    """Character data: save the vocabulary beside the run and log the unigram baseline."""
    data = solver.train_data
    if getattr(data, "vocab", None) is None:
        return
    from tfconf.data.text import write_vocab

    write_vocab(os.path.join(run_dir, "vocab.json"), data.vocab, unigram_bits=data.unigram_bits)
    val = f", {solver.test_data.num_samples:,} validation" if solver.test_data is not None else ""
    say(f"text: {data.num_samples:,} training characters{val}, vocabulary {len(data.vocab)}; "
        f"unigram baseline {data.unigram_bits:.3f} bits/char")


def _with_bits_per_char(solver, net, metrics):
    """For character data, the test loss in bits per character beside the unigram baseline."""
    base = getattr(solver.train_data, "unigram_bits", None)
    names = [n for n in net.losses if n in metrics]
    if base is None or len(names) != 1:
        return metrics
    import math

    return dict(metrics, bits_per_char=metrics[names[0]] / math.log(2.0), unigram_bits=base)


def _weights_path(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--weights {path}: no such file")
    return path


def _loop(cfg, solver, s, metrics, prefix, say, quiet, resumed_from=None, stop_at=None):
    import numpy as np

    from .solver import DivergenceError

    last = {"snapshot": resumed_from}
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            # (a loss that overflows is reported below, naming the op; numpy's warnings add nothing)
            return _loop_body(solver, s, metrics, prefix, say, quiet, last, stop_at)
    except DivergenceError as e:
        where = (f"the last good snapshot is {last['snapshot']}" if last["snapshot"]
                 else "no snapshot was saved before it")
        raise DivergenceError(f"{explain_op_message(cfg, str(e))}; {where}") from None


def _save(solver, prefix, last):
    """A snapshot of sane weights only: a parameter that overflowed or exploded is divergence too."""
    solver.check_weights()
    last["snapshot"] = solver.save(prefix)[1]
    return last["snapshot"]


def _loop_body(solver, s, metrics, prefix, say, quiet, last, stop_at=None):
    t0 = time.perf_counter()
    start_iter = solver.iteration
    test_metrics = {}
    last_snapshot = None
    loss = None
    test_at = None

    def run_test():
        # NOTE: several test nets report under phase "test" with their metrics named NAME/metric
        # (metrics.jsonl, the result, sweeps' test.NAME/metric); a single one keeps the plain names
        nonlocal test_metrics, test_at
        passes = solver.test_each()  # (each from the start of its data: every pass sees the same batches)
        if not passes:
            return
        test_at = solver.iteration
        many = len(solver.tests) > 1
        test_metrics = {}
        for test, values in passes:
            values = _with_bits_per_char(solver, test.net, values)
            if not values:
                continue
            named = {f"{test.name}/{k}": v for k, v in values.items()} if many else values
            metrics.write(solver.iteration, "test", named)
            say(f"iter {solver.iteration:6d}  {test.name if many else 'test'}  "
                + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))
            test_metrics.update(named)

    with _Interrupt() as stop, progress(s.max_iter, start_iter, quiet) as bar:
        if s.test_interval and s.test_initialization and solver.iteration == 0:
            run_test()
        end = s.max_iter if stop_at is None else min(stop_at, s.max_iter)
        while solver.iteration < end:
            loss, lr = solver.step()
            it = solver.iteration
            smooth = sum(solver.smoothed) / len(solver.smoothed)
            bar.update(it, smooth, lr, t0, start_iter)
            if s.display and it % s.display == 0:
                solver.check_weights()
                metrics.write(it, "train", {"loss": smooth, "lr": lr})
                rate = (it - start_iter) / max(time.perf_counter() - t0, 1e-9)
                bar.log(f"iter {it:6d}  loss {smooth:.4f}  lr {lr:.6g}  {rate:.1f} it/s")
            if s.test_interval and it % s.test_interval == 0:
                run_test()
            if s.snapshot and it % s.snapshot == 0:
                last_snapshot = _save(solver, prefix, last)
            if metrics.stop_reason and not stop.requested:
                if last_snapshot is None or not last_snapshot.endswith(f"_iter_{it}.solverstate.safetensors"):
                    last_snapshot = _save(solver, prefix, last)
                say(f"stopped at iteration {it} of {s.max_iter}: {metrics.stop_reason}")
                break
            if stop.requested:
                if last_snapshot is None or not last_snapshot.endswith(f"_iter_{it}.solverstate.safetensors"):
                    last_snapshot = _save(solver, prefix, last)
                run_dir = os.path.dirname(os.path.dirname(last_snapshot))
                say(f"interrupted by {stop.requested} at iteration {it} of {s.max_iter}: snapshot saved to "
                    f"{last_snapshot}; continue with --resume {run_dir}")
                break
        else:
            if (s.snapshot_after_train or end < s.max_iter) and (not s.snapshot or solver.iteration % s.snapshot):
                last_snapshot = _save(solver, prefix, last)
            if s.test_interval and solver.iteration % s.test_interval:
                run_test()
    wall = time.perf_counter() - t0
    if not stop.requested:
        say(f"done: {solver.iteration} iterations in {wall:.1f} s"
            + (f"; test " + ", ".join(f"{k} {v:.4f}" for k, v in test_metrics.items()) if test_metrics else ""))
    return {"iterations": solver.iteration, "train_loss": None if loss is None else float(loss),
            "test": test_metrics, "test_iteration": test_at, "wall_time": wall, "snapshot": last_snapshot,
            "interrupted": bool(stop.requested), "signal": stop.requested, "stopped": metrics.stop_reason}


def test(cfg, weights, iterations=None, net=None):
    """Test saved weights: every test net of the config (or only the one named ``net``), each over
    ``iterations`` batches (default its test_iter, else one pass over its data) from the start of
    its data. A config with one test net gives ``{metric: value}``, one with several
    ``{"NAME/metric": value}`` (the names training reports)."""
    import numpy as np

    from tfconf.engine import api as tc
    from tfconf.data import make_dataset

    from ..frontend.config import build_phase, data_tops
    from ..frontend.layers.base import NetState
    from ..frontend.solver_schema import test_phases

    data = cfg.net.data
    s = cfg.net.solver
    phases = test_phases(s, data)
    many = len(phases) > 1
    if net is not None:
        names = [t.name for t in phases]
        if net not in names:
            raise TrainError(f"the config has no test net named {net!r}.{did_you_mean(net, names)} Its test nets: "
                             f"{', '.join(names)}")
        phases = [t for t in phases if t.name == net]
    if data is None or any(data.source(t.data) is None for t in phases):
        raise cfg.loaded.error(("data",), "testing needs data.test")
    # the seed training used: synthetic sets are generated from it
    seed = s.random_seed if s is not None and s.random_seed is not None and s.random_seed >= 0 else 0
    w, _ = snap.load_tensors(_weights_path(weights))
    streams = []
    try:
        for t in phases:
            spec = data.source(t.data)
            if t.data == "train" and spec.split is None:  # test-on-train reads the training split
                spec = spec.model_copy(update={"split": "train"})
            streams.append(make_dataset(spec, "test", root=cfg.root, seed=seed))
        g = tc.Graph()
        params = {}
        tops = data_tops(cfg)
        with g.as_default():
            if tops is not None:
                inputs = {n: tc.placeholder(tc.as_dtype(dt), shape, name=n) for n, (shape, dt) in tops.items()}
            else:
                inputs = {"data": tc.placeholder(tc.float32, [None, *streams[0].output_shape[1:]], name="data"),
                          "label": tc.placeholder(tc.int64, [None], name="label")}
        phs = list(inputs.values())  # in the order of a batch's arrays
        nets = [build_phase(cfg, "test", g, params, {}, inputs=inputs, net=t.name,
                            state=NetState(phase="test", level=t.level, stages=list(t.stages))) for t in phases]
        missing = [k for k in params if k not in w]
        if missing:
            raise TrainError(f"--weights {weights}: lacks parameters: {', '.join(missing)}")
        with g.as_default():
            sess = tc.Session(graph=g)
        for k, v in params.items():
            if tuple(w[k].shape) != tuple(v.shape.as_list()):
                raise TrainError(f"--weights {weights}: parameter {k!r} of layer {k.split('/')[0]!r} has shape "
                                 f"{list(w[k].shape)} in the weights file but the net needs {v.shape.as_list()}")
            v.load(w[k], sess)
        with g.as_default():
            init_state = tc.variables_initializer(g.get_collection("recurrent_state"))
        sess.run(init_state)
        out = {}
        for t, built, ds in zip(phases, nets, streams):
            fetch = {n: x for n, x in built.tops.items() if x.shape.ndims == 0 and n not in ("data", "label")}
            n = iterations or t.test_iter or ds.batches_per_epoch
            sums = dict.fromkeys(fetch, 0.0)
            with _op_errors_located(cfg):
                for _ in range(n):
                    values, _ = sess.run([fetch, built.updates], dict(zip(phs, next(ds))))
                    for k, v in values.items():
                        sums[k] += float(v)
            metrics = {k: float(np.float64(v) / n) for k, v in sums.items()}
            names = [k for k in built.losses if k in metrics]
            if getattr(ds, "unigram_bits", None) is not None and len(names) == 1:  # character data
                metrics.update(bits_per_char=metrics[names[0]] / np.log(2.0), unigram_bits=ds.unigram_bits)
            out.update({f"{t.name}/{k}": v for k, v in metrics.items()} if many else metrics)
        sess.close()
        return out
    finally:
        for ds in streams:
            ds.close()


#: ops that move no data worth naming a kernel for in `tfconf time`
_BOOKKEEPING = frozenset({"Const", "VariableV2", "VarHandle", "Placeholder", "Identity", "NoOp", "Shape",
                          "Size", "Rank", "Reshape", "ExpandDims", "Squeeze"})


def time_layers(cfg, iterations):
    """Per-layer forward/backward ms of a training iteration, from a traced Session.run."""
    import collections

    from tfconf.engine import api as tc

    if cfg.net.solver is None:
        raise cfg.loaded.error(("solver",), "timing a training iteration needs a solver section")
    with _op_errors_located(cfg):
        solver = _new_solver(cfg, None, prefetch=0)
    try:
        with _op_errors_located(cfg):
            solver.step()  # warm-up: plans compiled, caches filled
        fwd = collections.defaultdict(float)
        bwd = collections.defaultdict(float)
        kernels = collections.defaultdict(set)  # layer -> the providers that ran its ops
        total = 0.0
        names = [layer.name for layer in solver.train_net.layers]
        for _ in range(iterations):
            md = tc.RunMetadata()
            feed = {**solver.feed(next(solver.train_data)),
                    solver.lr: solver.learning_rate(solver.iteration), solver.t: solver.iteration + 1}
            t = time.perf_counter()
            solver.sess.run([solver.train_op, solver.train_net.loss], feed,
                            options=tc.RunOptions(trace=True), run_metadata=md)
            total += time.perf_counter() - t
            for s in md.step_stats:
                parts = s.name.split("/")
                if parts[0] == "train" and len(parts) > 1:
                    fwd[parts[1]] += s.seconds
                    layer = parts[1]
                elif parts[0] == "gradients" and len(parts) > 2 and parts[1] == "train":
                    bwd[parts[2]] += s.seconds
                    layer = parts[2]
                else:
                    fwd["(other)"] += s.seconds
                    layer = "(other)"
                if s.type not in _BOOKKEEPING:
                    kernels[layer].add(s.kernel)
        ms = lambda d, n: d.get(n, 0.0) / iterations * 1e3  # noqa: E731
        rows = [(n, ms(fwd, n), ms(bwd, n), "+".join(sorted(kernels[n])) or "-") for n in names]
        rows.append(("(updates, other)", ms(fwd, "(other)"), 0.0, "+".join(sorted(kernels["(other)"])) or "-"))
        return rows, total / iterations * 1e3
    finally:
        solver.close()
