"""Recomputation (``SessionConfig(memory="recompute")``, config key ``memory: recompute``) on deep
nets: the peak of the arrays one training step allocates, and the step time, with and without.

    python -m benchmarks.memory_bench            # or: python benchmarks/memory_bench.py [--quick]

Peak memory is measured with tracemalloc (numpy reports its array allocations to it): the largest
amount of memory allocated during one step above what was allocated before it (weights and
optimizer state exist before the step and are updated in place, so they are not counted). Times
are the best mean of interleaved blocks of steps (a block with recompute, a block without,
repeated), measured with tracemalloc off.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mlp(tc, rng, depth, width, batch):
    x = tc.placeholder(tc.float32, [None, width], name="x")
    h = x
    for i in range(depth):
        w = tc.Variable((rng.standard_normal((width, width)) * np.sqrt(2.0 / width)).astype(np.float32), name=f"w{i}")
        b = tc.Variable(np.zeros(width, np.float32), name=f"b{i}")
        h = tc.nn.relu(tc.matmul(h, w) + b)
    wo = tc.Variable((rng.standard_normal((width, 10)) * 0.05).astype(np.float32), name="wo")
    return x, tc.matmul(h, wo), rng.standard_normal((batch, width)).astype(np.float32)


def conv_stack(tc, rng, depth, channels, batch, size=32):
    x = tc.placeholder(tc.float32, [None, channels, size, size], name="x")
    h = x
    for i in range(depth):
        w = tc.Variable((rng.standard_normal((channels, channels, 3, 3)) * np.sqrt(2.0 / (9 * channels)))
                        .astype(np.float32), name=f"w{i}")
        b = tc.Variable(np.zeros(channels, np.float32), name=f"b{i}")
        h = tc.nn.relu(tc.nn.bias_add(tc.nn.conv2d(h, w, padding="SAME"), b))
    h = tc.reduce_mean(h, [2, 3])
    wo = tc.Variable((rng.standard_normal((channels, 10)) * 0.05).astype(np.float32), name="wo")
    return x, tc.matmul(h, wo), rng.standard_normal((batch, channels, size, size)).astype(np.float32)


def build(model, memory, **kw):
    """(step function, session, plan info) of one SGD training step of ``model``."""
    import tfconf as tc

    rng = np.random.default_rng(0)
    g = tc.Graph()
    with g.as_default():
        x, logits, xv = model(tc, rng, **kw)
        y = tc.placeholder(tc.int64, [None], name="y")
        loss = tc.reduce_mean(tc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train = tc.train.GradientDescentOptimizer(0.01).minimize(loss)
        sess = tc.Session(graph=g, config=tc.SessionConfig(memory=memory))
        sess.run(tc.global_variables_initializer())
    feed = {x: xv, y: rng.integers(0, 10, xv.shape[0])}

    def step():
        return sess.run([train, loss], feed)[1]

    step()
    return step, sess, sess.plan_info([train, loss], feed)


def peak_bytes(step):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        loss = step()
        return tracemalloc.get_traced_memory()[1] - base, loss
    finally:
        tracemalloc.stop()


def compare(name, model, rounds, reps, **kw):
    steps, out = {}, {}
    for memory in ("default", "recompute"):
        step, sess, info = build(model, memory, **kw)
        peak, loss = peak_bytes(step)
        steps[memory] = step
        out[memory] = {"peak": peak, "loss": float(loss), "info": info, "times": []}
    for _ in range(rounds):
        for memory, step in steps.items():
            step()
            t = time.perf_counter()
            for _ in range(reps):
                step()
            out[memory]["times"].append((time.perf_counter() - t) / reps)
    return name, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller nets, fewer repetitions")
    args = p.parse_args(argv)
    if args.quick:
        cases = [("MLP 20 x 256, batch 128", mlp, dict(depth=20, width=256, batch=128)),
                 ("conv stack 8 x 8ch 32x32, batch 16", conv_stack, dict(depth=8, channels=8, batch=16))]
        rounds, reps = 3, 2
    else:
        cases = [("MLP 50 x 512, batch 256", mlp, dict(depth=50, width=512, batch=256)),
                 ("conv stack 20 x 16ch 32x32, batch 32", conv_stack, dict(depth=20, channels=16, batch=32))]
        rounds, reps = 5, 3
    print(f"# memory: recompute · {time.strftime('%Y-%m-%d')} · {os.cpu_count()} cores · numpy {np.__version__}")
    print("| net | peak default [MiB] | peak recompute [MiB] | peak ratio | step default [ms] | "
          "step recompute [ms] | time ratio | checkpoints / dropped / recomputed ops |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    results = []
    for name, model, kw in cases:
        name, out = compare(name, model, rounds, reps, **kw)
        d, r = out["default"], out["recompute"]
        if d["loss"] != r["loss"]:
            raise AssertionError(f"{name}: recompute changed the loss ({d['loss']} vs {r['loss']})")
        td, tr = min(d["times"]), min(r["times"])
        rc = r["info"].passes["recompute"]
        print(f"| {name} | {d['peak'] / 2**20:.1f} | {r['peak'] / 2**20:.1f} | {r['peak'] / d['peak']:.2f} | "
              f"{td * 1e3:.1f} | {tr * 1e3:.1f} | {tr / td:.2f} | "
              f"{rc['checkpoints']} / {rc['dropped']} / {rc['recomputed_ops']} |")
        results.append((name, d["peak"], r["peak"], td, tr))
    return results


if __name__ == "__main__":
    main()
