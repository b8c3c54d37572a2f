"""End to end against the engine step alone: does the data path keep up?

For each config, three rates from the same Solver (same graph, same session, same kernels):

- engine step: ``Session.run`` of the train op on one fixed, already-built batch (what
  ``python -m benchmarks`` times);
- solver step: ``Solver.step()``: the data source, Caffe's transforms, the batcher with its
  prefetch thread, the learning rate, the run and the loss check;
- ``tfconf train``: the real command in a fresh process (metrics files, the progress display,
  one test phase and one snapshot at the end), run for n and for 2n iterations: the steady rate
  is the difference of the two wall times over n (startup, compiling and the final test and
  snapshot cancel out; they are printed as the fixed cost).

    python benchmarks/train_bench.py [--iters 300]

No timing is asserted anywhere; these are measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

CONFIGS = ("configs/lenet_mnist.yaml", "configs/cifar10_quick.yaml")


def _best_rate(fn, iters, rounds=3):
    fn()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        best = min(best, (time.perf_counter() - t) / iters)
    return best


def measure(path, iters):
    from tfconf.frontend.config import load
    from tfconf.train.solver import Solver

    cfg = load(os.path.join(ROOT, path))
    with tempfile.TemporaryDirectory() as run_dir:
        solver = Solver(cfg.net, run_dir, root=cfg.root)
        try:
            batch = next(solver.train_data)
            feed = {**solver.feed(batch), solver.lr: 0.001, solver.t: 1.0}
            fetch = [solver.train_op, solver.train_net.loss]
            engine = _best_rate(lambda: solver.sess.run(fetch, feed), iters)
            step = _best_rate(solver.step, iters)
        finally:
            solver.close()
    n = 3 * iters
    walls = [min(_train_wall(path, k) for _ in range(3)) for k in (n, 2 * n)]  # best of 3: a busy machine
    train = (walls[1] - walls[0]) / n
    return engine, step, train, walls[0] - n * train


def _train_wall(path, n):
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "tfconf.cli", "train", os.path.join(ROOT, path), "--out", out, "--json",
               "--set", f"solver.max_iter={n}", "--set", f"solver.test_interval={n}",
               "--set", f"solver.snapshot={n}"]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        res = json.loads(r.stdout.strip().splitlines()[-1])
        assert res["iterations"] == n, res
    return wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=100)
    a = ap.parse_args()
    print("| config | engine step ms | Solver.step ms | `tfconf train` ms/iter | train / engine | "
          "fixed cost s |")
    print("|---|---:|---:|---:|---:|---:|")
    for path in CONFIGS:
        engine, step, train, fixed = measure(path, a.iters)
        print(f"| {os.path.basename(path)} | {engine * 1e3:.2f} | {step * 1e3:.2f} | {train * 1e3:.2f} | "
              f"{train / engine:.2f} | {fixed:.1f} |")


if __name__ == "__main__":
    main()
