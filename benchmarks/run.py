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


def bench_train(name, tf_model, torch_model, weights, xshape, batch, reps, torch, rounds=7):
    """Interleaved rounds; returns per framework (best block mean, median block mean) in s."""
    rng = np.random.default_rng(0)
    xv = rng.random((batch, *xshape), dtype=np.float32)
    yv = rng.integers(0, 10, batch).astype(np.int64)
    step, sess = models.tfconf_train_step(tf_model, weights, xshape)
    fns = {"tfconf": lambda: step(xv, yv)}
    if torch is not None:
        fwd, params = torch_model(torch, weights)
        tstep = models.torch_train_step(torch, fwd, params)
        fns["pytorch"] = lambda: tstep(xv, yv)
    means = {k: [] for k in fns}
    for k, fn in fns.items():
        for _ in range(5):
            fn()
    for _ in range(rounds):
        for k, fn in fns.items():
            fn()
            fn()
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            means[k].append((time.perf_counter() - t) / reps)
    sess.close()
    return name, {k: (min(v), statistics.median(v)) for k, v in means.items()}


def profile_step(tf_model, weights, xshape, batch, reps=30, top=25):
    """Per-op times of one tfconf training step: every kernel of the compiled plan is wrapped in
    a timer (which adds a few µs per op). Returns (rows, step seconds), rows = (op type, op name,
    best seconds, median seconds), slowest first."""
    rng = np.random.default_rng(0)
    xv = rng.random((batch, *xshape), dtype=np.float32)
    yv = rng.integers(0, 10, batch).astype(np.int64)
    step, sess = models.tfconf_train_step(tf_model, weights, xshape)
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("--profile", action="store_true",
                   help="per-op time breakdown of the tfconf LeNet and MLP training steps, then exit")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    if args.profile:
        reps = 10 if args.quick else 40
        out = []
        for title, model, w, xshape, batch in (
                ("LeNet train step, batch 64", models.tfconf_lenet, models.lenet_weights(rng), (1, 28, 28), 64),
                ("MLP 784-512-512-10 train step, batch 128", models.tfconf_mlp, models.mlp_weights(rng),
                 (784,), 128)):
            rows, step_s = profile_step(model, w, xshape, batch, reps)
            print_profile(title, rows, step_s)
            out.append((title, rows, step_s))
        return out
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        torch = None
        print("torch is not installed: tfconf only (pip install torch==2.13.0 for the comparison)")
    reps = 5 if args.quick else 10
    rounds = 5 if args.quick else 15
    results = []
    results.append(bench_train("LeNet train step, batch 64 [ms]", models.tfconf_lenet, models.torch_lenet,
                               models.lenet_weights(rng), (1, 28, 28), 64, reps, torch, rounds))
    results.append(bench_train("MLP 784-512-512-10 train step, batch 128 [ms]", models.tfconf_mlp,
                               models.torch_mlp, models.mlp_weights(rng), (784,), 128, reps, torch, rounds))
    results = [(n, {k: (v[0] * 1e3, v[1] * 1e3) for k, v in r.items()}) for n, r in results]
    for n, r in bench_overhead(torch, 2000 if args.quick else 20000):
        results.append((n, {k: (v, v) for k, v in r.items()}))

    print(f"# {time.strftime('%Y-%m-%d')} · {platform.processor() or platform.machine()} · "
          f"{os.cpu_count()} cores · numpy {np.__version__}"
          + (f" · torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else "")
          + f" · float32 GEMM peak {gemm_peak():.0f} GFLOP/s")
    print("| benchmark | tfconf best (median) | pytorch best (median) | ratio tfconf/pytorch (best) |")
    print("|---|---:|---:|---:|")
    for name, r in results:
        (tfc, tfm), pt = r["tfconf"], r.get("pytorch")
        ratio = f"{tfc / pt[0]:.2f}" if pt else "—"
        pts = f"{pt[0]:.2f} ({pt[1]:.2f})" if pt else "—"
        print(f"| {name} | {tfc:.2f} ({tfm:.2f}) | {pts} | {ratio} |")
    return results


if __name__ == "__main__":
    main()
