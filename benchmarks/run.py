"""Engine benchmarks: tfconf against PyTorch CPU eager (when installed), in the same process run,
on the same inputs. Prints ms/step and the ratio tfconf/peer (below 1.0 means tfconf is faster).

    python -m benchmarks            # or: python benchmarks/run.py [--quick] [--markdown]
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


def bench_train(name, tf_model, torch_model, weights, xshape, batch, reps, torch):
    rng = np.random.default_rng(0)
    xv = rng.random((batch, *xshape), dtype=np.float32)
    yv = rng.integers(0, 10, batch).astype(np.int64)
    step, sess = models.tfconf_train_step(tf_model, weights, xshape)
    rows = {"tfconf": timeit(lambda: step(xv, yv), 5, reps)}
    sess.close()
    if torch is not None:
        fwd, params = torch_model(torch, weights)
        tstep = models.torch_train_step(torch, fwd, params)
        rows["pytorch"] = timeit(lambda: tstep(xv, yv), 5, reps)
    return name, rows


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
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = p.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        torch = None
        print("torch is not installed: tfconf only (pip install torch==2.13.0 for the comparison)")
    reps = 10 if args.quick else 30
    rng = np.random.default_rng(0)
    results = []
    results.append(bench_train("LeNet train step, batch 64 [ms]", models.tfconf_lenet, models.torch_lenet,
                               models.lenet_weights(rng), (1, 28, 28), 64, reps, torch))
    results.append(bench_train("MLP 784-512-512-10 train step, batch 128 [ms]", models.tfconf_mlp,
                               models.torch_mlp, models.mlp_weights(rng), (784,), 128, reps, torch))
    results = [(n, {k: v * 1e3 for k, v in r.items()}) for n, r in results]
    results += bench_overhead(torch, 2000 if args.quick else 20000)

    print(f"# {time.strftime('%Y-%m-%d')} · {platform.processor() or platform.machine()} · "
          f"{os.cpu_count()} cores · numpy {np.__version__}"
          + (f" · torch {torch.__version__}" if torch else "")
          + f" · float32 GEMM peak {gemm_peak():.0f} GFLOP/s")
    print("| benchmark | tfconf | pytorch | ratio tfconf/pytorch |")
    print("|---|---:|---:|---:|")
    for name, r in results:
        tfc, pt = r["tfconf"], r.get("pytorch")
        ratio = f"{tfc / pt:.2f}" if pt else "—"
        pts = f"{pt:.2f}" if pt else "—"
        print(f"| {name} | {tfc:.2f} | {pts} | {ratio} |")
    return results


if __name__ == "__main__":
    main()
