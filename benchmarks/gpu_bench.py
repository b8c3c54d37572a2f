"""GPU training steps: tfconf (CuPy) against PyTorch on the same CUDA device, same weights and
inputs, in the same process run. Needs CuPy and a CUDA device (and torch with CUDA for the peer).

    python -m benchmarks.gpu_bench [--models lenet,cifar] [--steps 50]

Each step's time includes the host→device copy of the batch and one scalar fetch (the loss), as
a training loop pays them; both libraries are synchronised before the clock stops.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from .run import MODELS


def tfconf_step(key, weights):
    import tfconf as tc

    title, batch, wfn, inputs, tf_model, xshape, _ = MODELS[key]
    g = tc.Graph()
    with g.as_default(), tc.device("/gpu:0"):
        x = tc.placeholder(tc.float32, [None, *xshape], name="x")
        y = tc.placeholder(tc.int64, [None], name="y")
        logits = tf_model(tc, weights, x)
        loss = tc.reduce_mean(tc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train = tc.train.MomentumOptimizer(0.01, 0.9).minimize(loss)
        init = tc.global_variables_initializer()
    sess = tc.Session(graph=g)
    sess.run(init)
    placed = sess.placement([train, loss], {x: np.zeros((1, *xshape), np.float32), y: np.zeros(1, np.int64)})
    on_gpu = sum("GPU" in d for d in placed.values())

    def step(xv, yv):
        return float(sess.run([train, loss], {x: xv, y: yv})[1])

    step.session = sess
    return step, f"{on_gpu}/{len(placed)} ops on the GPU"


def profile(key, steps=20, top=20):
    """Per-op times of the tfconf GPU step, each op synchronised (launch + run), slowest first."""
    import cupy

    title, batch, wfn, inputs = MODELS[key][:4]
    step, _ = tfconf_step(key, wfn(np.random.default_rng(0)))
    xv, yv = inputs(np.random.default_rng(1), batch)
    step(xv, yv)
    sess = step.session
    plan = list(sess._plans.values())[-1].plan  # NOTE: benchmark-only look into the plan cache
    times = [[] for _ in plan.steps]
    sync = cupy.cuda.Stream.null.synchronize

    def timed(i, kernel):
        def run(*args):
            t = time.perf_counter()
            r = kernel(*args)
            sync()
            times[i].append(time.perf_counter() - t)
            return r
        return run

    plan.fast = tuple((timed(i, k), *rest) for i, (k, *rest) in enumerate(plan.fast))
    for _ in range(steps):
        step(xv, yv)
    rows = sorted(((min(ts), st.op.type, st.op.name) for st, ts in zip(plan.steps, times) if ts), reverse=True)
    total = sum(r[0] for r in rows)
    print(f"## {title}: {len(rows)} ops, sum of per-op bests {total * 1e3:.2f} ms")
    by_type = {}
    for t, typ, _ in rows:
        by_type[typ] = by_type.get(typ, 0) + t
    for typ, t in sorted(by_type.items(), key=lambda kv: -kv[1])[:top]:
        print(f"| {typ} | {t * 1e3:.3f} ms |")


def torch_step(torch, key, weights):
    """The CPU benchmark's PyTorch model and step, with parameters and batches on the GPU."""
    from . import models

    fwd, params = MODELS[key][6](torch, weights, device="cuda")
    return models.torch_train_step(torch, fwd, params, device="cuda")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="lenet,mlp,cifar")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--profile", action="store_true", help="per-op-type GPU times of the tfconf steps")
    args = p.parse_args(argv)
    if args.profile:
        for key in args.models.split(","):
            profile(key)
        return
    try:
        import torch

        torch = torch if torch.cuda.is_available() else None
    except ImportError:
        torch = None
    import cupy

    print(f"# GPU: {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()} · cupy {cupy.__version__}"
          + (f" · torch {torch.__version__}" if torch else " · no torch with CUDA"))
    print("| model | tfconf ms | pytorch ms | ratio | first loss tfconf / torch | placement |")
    print("|---|---:|---:|---:|---|---|")
    for key in args.models.split(","):
        title, batch, wfn, inputs = MODELS[key][:4]
        weights = wfn(np.random.default_rng(0))
        xv, yv = inputs(np.random.default_rng(1), batch)
        fns = {}
        step, placed = tfconf_step(key, weights)
        fns["tfconf"] = step
        if torch is not None:
            fns["torch"] = torch_step(torch, key, weights)
        first = {k: fn(xv, yv) for k, fn in fns.items()}
        times = {k: [] for k in fns}
        for _ in range(5):
            for k, fn in fns.items():
                for _ in range(3):
                    fn(xv, yv)
                t = time.perf_counter()
                for _ in range(args.steps // 5):
                    fn(xv, yv)
                times[k].append((time.perf_counter() - t) / (args.steps // 5) * 1e3)
        tf_ms = min(times["tfconf"])
        pt_ms = min(times["torch"]) if "torch" in times else None
        ratio = f"{tf_ms / pt_ms:.2f}" if pt_ms else "—"
        print(f"| {title} | {tf_ms:.2f} ({statistics.median(times['tfconf']):.2f}) | "
              f"{'—' if pt_ms is None else f'{pt_ms:.2f}'} | {ratio} | "
              f"{first['tfconf']:.4f} / {first.get('torch', float('nan')):.4f} | {placed} |", flush=True)


if __name__ == "__main__":
    main()
