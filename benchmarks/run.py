"""Engine benchmarks: tfconf against PyTorch CPU eager (when installed), in the same process run,
on the same inputs. Prints ms/step and the ratio tfconf/peer (below 1.0 means tfconf is faster).

    python -m benchmarks            # or: python benchmarks/run.py [--quick] [--markdown]
    python -m benchmarks --profile  # per-op time breakdown of the tfconf LeNet / MLP steps

The training steps are timed in interleaved rounds (a block of tfconf steps, then a block of torch
steps, repeated), each block after two untimed steps so that a thread pool still spinning from the
other library has settled; the table shows the best block mean and, in brackets, the median block
mean. On a machine shared with other work, trust the best-of numbers and re-run before believing
a difference of a few percent.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import models  # type: ignore
else:
    from . import models


def timeit(fn, warmup, reps, repeats=5):
    """Median over ``repeats`` of the mean time of ``reps`` calls, in seconds."""
    for _ in range(warmup):
        fn()
    means = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        means.append((time.perf_counter() - t) / reps)
    return statistics.median(means)


# ----------------------------------------------------------------------------- the models
def _images(shape, classes=10):
    def make(rng, batch):
        return (rng.random((batch, *shape), dtype=np.float32),
                rng.integers(0, classes, batch).astype(np.int64))
    return make


def _sequences(s):
    """Inputs [T, N, input] and one label per step and stream for a recurrent model of shape ``s``."""
    def make(rng, batch):
        return (rng.standard_normal((s["steps"], batch, s["input"])).astype(np.float32),
                rng.integers(0, s["classes"], s["steps"] * batch).astype(np.int64))
    return make


# key, title, batch, weights, inputs, tfconf model, tfconf x shape, torch model
MODELS = {
    "lenet": ("LeNet, batch 64", 64, models.lenet_weights, _images((1, 28, 28)), models.tfconf_lenet,
              (1, 28, 28), models.torch_lenet),
    "mlp": ("MLP 784-512-512-10, batch 128", 128, models.mlp_weights, _images((784,)), models.tfconf_mlp,
            (784,), models.torch_mlp),
    "cifar": ("CIFAR-10 quick, batch 100", 100, models.cifar_weights, _images((3, 32, 32)),
              models.tfconf_cifar, (3, 32, 32), models.torch_cifar),
    "lstm": ("LSTM 2x256, seq 50, batch 32", 32, models.lstm_weights, _sequences(models.LSTM_SHAPE),
             models.tfconf_lstm, (models.LSTM_SHAPE["steps"], 32, models.LSTM_SHAPE["input"]), models.torch_lstm),
    "gru": ("GRU 2x256, seq 50, batch 32", 32, models.gru_weights, _sequences(models.GRU_SHAPE),
            models.tfconf_gru, (models.GRU_SHAPE["steps"], 32, models.GRU_SHAPE["input"]), models.torch_gru),
    "resnet20": ("ResNet-20, batch 128", 128, models.resnet20_weights, _images((3, 32, 32)),
                 models.tfconf_resnet20, (3, 32, 32), models.torch_resnet20),
}
FRAMEWORKS = ("tfconf", "pytorch", "tensorflow")
# the models models.tf_train_step builds; the others get "—" in the TensorFlow columns
TF_MODELS = frozenset({"lenet", "mlp", "cifar", "lstm", "resnet20"})


def _runs(framework, key):
    """Whether ``framework`` has a version of model ``key`` (every model has tfconf's and torch's)."""
    return framework != "tensorflow" or key in TF_MODELS


def lenet_train_flops(batch=64):
    """Multiply-adds ×2 of one LeNet training step: forward, input gradients (not for conv1's
    input) and weight gradients of the conv and inner-product layers."""
    fwd = {"conv1": 20 * 24 * 24 * 25, "conv2": 50 * 8 * 8 * 500, "ip1": 800 * 500, "ip2": 500 * 10}
    return 2 * batch * (3 * sum(fwd.values()) - fwd["conv1"])


def make_step(framework, key, weights, peers):
    """(step(x, y) → loss, close()) for one framework and model."""
    _, _, _, _, tf_model, xshape, torch_model = MODELS[key]
    if framework == "tfconf":
        step, sess = models.tfconf_train_step(tf_model, weights, xshape)
        return step, sess.close
    if framework == "pytorch":
        torch = peers["pytorch"]
        fwd, params = torch_model(torch, weights)
        return models.torch_train_step(torch, fwd, params), lambda: None
    if not _runs(framework, key):
        raise ValueError(f"no {framework} version of {key!r}")
    step, sess = models.tf_train_step(peers["tensorflow"], key, weights)
    return step, sess.close


def bench_train(key, peers, reps, rounds):
    """Interleaved rounds: per framework (best block mean, median block mean) in s, and the first
    step's loss (the same model and inputs give the same loss in every framework)."""
    title, batch, wfn, inputs = MODELS[key][:4]
    weights = wfn(np.random.default_rng(0))
    xv, yv = inputs(np.random.default_rng(1), batch)
    fns, closers, first = {}, [], {}
    for fw in FRAMEWORKS:
        if (fw == "tfconf" or peers.get(fw) is not None) and _runs(fw, key):
            step, close = make_step(fw, key, weights, peers)
            first[fw] = float(step(xv, yv))
            fns[fw] = (lambda step=step: step(xv, yv))
            closers.append(close)
    means = {k: [] for k in fns}
    for fn in fns.values():
        for _ in range(4):
            fn()
    for _ in range(rounds):
        for k, fn in fns.items():
            fn()
            fn()
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            means[k].append((time.perf_counter() - t) / reps)
    for close in closers:
        close()
    return {k: (min(v), statistics.median(v)) for k, v in means.items()}, first


def peak_memory(framework, key, steps=10):
    """Peak RSS of a fresh process that imports ``framework``, builds ``key`` and runs ``steps``
    training steps, and the part of it above the RSS right after the import (MiB)."""
    code = (f"import sys; sys.argv=['x']; from benchmarks.run import _memory_child; "
            f"_memory_child({framework!r}, {key!r}, {steps})")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600)
    if out.returncode:
        return None
    base, peak = map(float, out.stdout.split()[-2:])
    return peak, peak - base


def _rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _memory_child(framework, key, steps):
    peers = {}
    if framework == "pytorch":
        import torch

        peers["pytorch"] = torch
    elif framework == "tensorflow":
        import tensorflow as tf

        peers["tensorflow"] = tf
    else:
        import tfconf  # noqa: F401
    title, batch, wfn, inputs = MODELS[key][:4]
    weights = wfn(np.random.default_rng(0))
    xv, yv = inputs(np.random.default_rng(1), batch)
    base = _rss_mib()
    step, close = make_step(framework, key, weights, peers)
    for _ in range(steps):
        step(xv, yv)
    close()
    # NOTE: VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over an exec, so a child of a
    # large benchmark process would report its parent's peak
    print(base, _status_mib("VmHWM"))


def _status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def bench_scaling(sizes=(10, 100, 1000, 10000)):
    """Graph build, gradient construction and first-run planning for a chain of ``n`` layers
    (each y = tanh(x·w + b) on a [4, 4] tensor: 3 forward ops, about 10 with its gradient)."""
    import tfconf as tc

    rows = []
    for n in sizes:
        g = tc.Graph()
        with g.as_default():
            t0 = time.perf_counter()
            x = tc.placeholder(tc.float32, [4, 4], name="x")
            h, ws = x, []
            for i in range(n):
                w = tc.Variable(np.eye(4, dtype=np.float32) * 0.5, name=f"w{i}")
                b = tc.Variable(np.zeros(4, np.float32), name=f"b{i}")
                ws.append(w)
                h = tc.tanh(tc.matmul(h, w) + b)
            loss = tc.reduce_sum(h)
            t1 = time.perf_counter()
            grads = tc.gradients(loss, ws)
            t2 = time.perf_counter()
            init = tc.global_variables_initializer()
            sess = tc.Session(graph=g)
            sess.run(init)
            feed = {x: np.ones((4, 4), np.float32)}
            t3 = time.perf_counter()
            sess.run(grads, feed)
            t4 = time.perf_counter()
            sess.run(grads, feed)
            t5 = time.perf_counter()
            ops = len(g.get_operations())
            sess.close()
        rows.append((n, ops, t1 - t0, t2 - t1, (t4 - t3) - (t5 - t4), t5 - t4))
    return rows


def profile_step(key, reps=30):
    """Per-op times of one tfconf training step: every kernel of the compiled plan is wrapped in
    a timer (which adds a few µs per op). Returns (rows, step seconds), rows = (op type, op name,
    best seconds, median seconds), slowest first."""
    title, batch, wfn, inputs, tf_model, xshape, _ = MODELS[key]
    xv, yv = inputs(np.random.default_rng(1), batch)
    step, sess = models.tfconf_train_step(tf_model, wfn(np.random.default_rng(0)), xshape)
    step(xv, yv)
    # NOTE: reaches into the session's plan cache (the train step's plan is the last one
    # compiled); a benchmark-only shortcut, not an API.
    plan = list(sess._plans.values())[-1].plan
    times = [[] for _ in plan.steps]

    def timed(i, kernel):
        def run(*args):
            t = time.perf_counter()
            r = kernel(*args)
            times[i].append(time.perf_counter() - t)
            return r
        return run

    plan.fast = tuple((timed(i, k), ins, out, frees) for i, (k, ins, out, frees) in enumerate(plan.fast))
    total = []
    for _ in range(reps):
        t = time.perf_counter()
        step(xv, yv)
        total.append(time.perf_counter() - t)
    sess.close()
    rows = [(st.op.type, st.op.name, min(ts), statistics.median(ts))
            for st, ts in zip(plan.steps, times) if ts]
    rows.sort(key=lambda r: -r[2])
    return rows, min(total)


def print_profile(title, rows, step_s, top=25):
    ops = sum(r[2] for r in rows)
    print(f"\n## {title}: step {step_s * 1e3:.2f} ms (best of runs, timers included); "
          f"sum of per-op bests {ops * 1e3:.2f} ms over {len(rows)} ops; the rest "
          f"({(step_s - ops) * 1e3:.2f} ms) is executor, feeds and fetches")
    print("\n| op type | op | best ms | median ms | share of op time |")
    print("|---|---|---:|---:|---:|")
    for typ, name, best, med in rows[:top]:
        print(f"| {typ} | {name} | {best * 1e3:.3f} | {med * 1e3:.3f} | {best / ops:.0%} |")
    if len(rows) > top:
        rest = rows[top:]
        print(f"| ({len(rest)} more) | | {sum(r[2] for r in rest) * 1e3:.3f} | | "
              f"{sum(r[2] for r in rest) / ops:.0%} |")
    by_type = {}
    for typ, _, best, _ in rows:
        by_type[typ] = by_type.get(typ, 0.0) + best
    print("\n| op type | best ms (all ops of the type) | share |")
    print("|---|---:|---:|")
    for typ, t in sorted(by_type.items(), key=lambda kv: -kv[1]):
        print(f"| {typ} | {t * 1e3:.3f} | {t / ops:.0%} |")


def bench_overhead(torch, reps):
    import tfconf as tc

    out = []
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [], name="x")
        y = x + 1
        sess = tc.Session(graph=g)
        v = np.float32(1.0)
        rows = {"tfconf": timeit(lambda: sess.run(y, {x: v}), 100, reps)}
    if torch is not None:
        tv = torch.tensor(1.0)
        rows["pytorch"] = timeit(lambda: tv + 1, 100, reps)
    out.append(("run(x + 1) with a feed [µs]", {k: v * 1e6 for k, v in rows.items()}))

    n = 1000
    g = tc.Graph()
    with g.as_default():
        a = tc.placeholder(tc.float32, [], name="a")
        c = a
        one = tc.constant(1.0)
        for _ in range(n):
            c = c + one
        sess = tc.Session(graph=g)
        rows = {"tfconf": timeit(lambda: sess.run(c, {a: v}), 3, 20) / n}
    if torch is not None:
        def chain():
            t = torch.tensor(0.0)
            for _ in range(n):
                t = t + 1.0
            return t

        rows["pytorch"] = timeit(chain, 3, 20) / n
    out.append(("1,000-op scalar chain [µs/op]", {k: v * 1e6 for k, v in rows.items()}))
    return out


def gemm_peak():
    a = np.random.rand(1024, 1024).astype(np.float32)
    t = timeit(lambda: a @ a, 3, 10)
    return 2 * 1024**3 / t / 1e9


def _peers(names):
    peers = {}
    if "pytorch" in names:
        try:
            import torch

            torch.set_num_threads(os.cpu_count() or 1)
            peers["pytorch"] = torch
        except ImportError:
            print("torch is not installed: no PyTorch column (pip install torch==2.13.0)")
    if "tensorflow" in names:
        try:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import tensorflow as tf

            peers["tensorflow"] = tf
        except ImportError:
            print("tensorflow is not installed: no TensorFlow column (pip install tensorflow-cpu)")
    return peers


def _fmt(v, digits=2):
    return "—" if v is None else f"{v:.{digits}f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    p.add_argument("--peers", default="pytorch,tensorflow", help="peers to run when installed ('' for none)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--no-scaling", action="store_true", help="skip the graph-size scaling table")
    p.add_argument("--write", metavar="FILE", help="also write the tables (markdown) to FILE")
    p.add_argument("--profile", action="store_true",
                   help="per-op time breakdown of the tfconf training steps of --models, then exit")
    args = p.parse_args(argv)
    keys = [k for k in args.models.split(",") if k]
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    if args.profile:
        out = []
        for key in keys:
            rows, step_s = profile_step(key, 10 if args.quick else 40)
            print_profile(f"{MODELS[key][0]} train step", rows, step_s)
            out.append((key, rows, step_s))
        return out
    peers = _peers([n for n in args.peers.split(",") if n])
    frameworks = ["tfconf"] + [f for f in FRAMEWORKS[1:] if f in peers]
    reps = 3 if args.quick else 8
    rounds = 4 if args.quick else 12
    lines = []

    def say(line=""):
        print(line, flush=True)
        lines.append(line)

    peak = gemm_peak()
    head = (f"{time.strftime('%Y-%m-%d')} · {platform.machine()} · {os.cpu_count()} cores · "
            f"numpy {np.__version__}"
            + (f" · torch {peers['pytorch'].__version__} ({peers['pytorch'].get_num_threads()} threads)"
               if "pytorch" in peers else "")
            + (f" · tensorflow {peers['tensorflow'].__version__}" if "tensorflow" in peers else "")
            + f" · float32 GEMM peak (numpy, 1024²) {peak:.0f} GFLOP/s")
    say(f"### Training steps ({head})")
    say()
    say("ms per step: best block mean (median block mean), interleaved rounds. Ratio = tfconf / peer "
        "(below 1.0: tfconf is faster). The first-step loss shows every framework ran the same model.")
    say()
    cols = " | ".join(f"{f} ms" for f in frameworks)
    ratios = " | ".join(f"tfconf/{f}" for f in frameworks[1:])
    say(f"| model | {cols} | {ratios} | first-step loss ({', '.join(frameworks)}) |")
    say("|---|" + "---:|" * (len(frameworks) * 2 - 1) + "---|")
    results = {}
    for key in keys:
        r, first = bench_train(key, peers, reps, rounds)
        results[key] = r
        tfc = r["tfconf"][0]
        cells = " | ".join(f"{r[f][0] * 1e3:.2f} ({r[f][1] * 1e3:.2f})" if f in r else "—" for f in frameworks)
        rat = " | ".join(f"{tfc / r[f][0]:.2f}" if f in r else "—" for f in frameworks[1:])
        losses = ", ".join(f"{first[f]:.4f}" if f in first else "—" for f in frameworks)
        say(f"| {MODELS[key][0]} | {cells} | {rat} | {losses} |")
    if "lenet" in results:
        fl = lenet_train_flops()
        say()
        say(f"LeNet: {fl / 1e9:.2f} GFLOP per step; tfconf reaches "
            f"{fl / results['lenet']['tfconf'][0] / 1e9:.0f} GFLOP/s = "
            f"{fl / results['lenet']['tfconf'][0] / 1e9 / peak:.0%} of the measured GEMM peak "
            f"(floor at peak: {fl / peak / 1e6:.1f} ms).")
    if not args.no_memory:
        say()
        say("### Peak memory (RSS, MiB) of a fresh process that builds the model and runs 10 steps; "
            "in brackets the part above the RSS right after importing the framework")
        say()
        say(f"| model | {' | '.join(frameworks)} |")
        say("|---|" + "---:|" * len(frameworks))
        for key in keys:
            cells = []
            for f in frameworks:
                m = peak_memory(f, key) if _runs(f, key) else None
                cells.append("—" if m is None else f"{m[0]:.0f} ({m[1]:.0f})")
            say(f"| {MODELS[key][0]} | {' | '.join(cells)} |")
    say()
    say("### Dispatch overhead")
    say()
    say("| benchmark | tfconf | pytorch |")
    say("|---|---:|---:|")
    for n, r in bench_overhead(peers.get("pytorch"), 2000 if args.quick else 20000):
        say(f"| {n} | {r['tfconf']:.2f} | {_fmt(r.get('pytorch'))} |")
    if not args.no_scaling:
        say()
        say("### Graph size: build, gradients and first run (planning) of a chain of n layers")
        say()
        say("| layers | ops | build s | gradients s | first-run planning s | later run s | µs per op (all three) |")
        say("|---:|---:|---:|---:|---:|---:|---:|")
        for n, ops, b, gr, plan, run in bench_scaling((10, 100, 1000) if args.quick else (10, 100, 1000, 10000)):
            say(f"| {n} | {ops} | {b:.4f} | {gr:.4f} | {plan:.4f} | {run:.4f} | {(b + gr + plan) / ops * 1e6:.1f} |")
    if args.write:
        with open(args.write, "w") as f:
            f.write("\n".join(lines) + "\n")
    return results


if __name__ == "__main__":
    main()
