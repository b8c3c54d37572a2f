"""Micro-benchmark: tfconf conv / pool kernels (oneDNN provider and numpy reference) vs PyTorch
CPU eager.

Times every conv / pool shape of Caffe's MNIST LeNet (batch 64) and
CIFAR-10 quick (batch 100), float32, forward and each backward kernel, for
tfconf's oneDNN kernels (plain NCHW arrays in and out, so each time includes
the reorders an isolated op needs; inside a plan, tensors between oneDNN ops
skip them), tfconf's numpy reference kernels, and torch (the matching aten
ops, plus forward + autograd backward per layer).  The two libraries are timed in separate phases: an
OpenMP / OpenBLAS thread pool that is still spinning from the other library
would otherwise steal a core.

    python benchmarks/kernels_bench.py [--repeat 20] [--no-torch]

Timings are the minimum over ``--repeat`` runs (the median is printed too).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tfconf.engine.kernels import conv as K  # noqa: E402
from tfconf.engine.kernels import pool as P  # noqa: E402

# name, x shape, filter shape, pad
CONVS = [
    ("lenet.conv1", (64, 1, 28, 28), (20, 1, 5, 5), 0),
    ("lenet.conv2", (64, 20, 12, 12), (50, 20, 5, 5), 0),
    ("cifar.conv1", (100, 3, 32, 32), (32, 3, 5, 5), 2),
    ("cifar.conv2", (100, 32, 16, 16), (32, 32, 5, 5), 2),
    ("cifar.conv3", (100, 32, 8, 8), (64, 32, 5, 5), 2),
]
# name, kind, x shape, k, s, ceil_mode
POOLS = [
    ("lenet.pool1", "max", (64, 20, 24, 24), 2, 2, False),
    ("lenet.pool2", "max", (64, 50, 8, 8), 2, 2, False),
    ("cifar.pool1", "max", (100, 32, 32, 32), 3, 2, True),
    ("cifar.pool2", "avg", (100, 32, 16, 16), 3, 2, True),
    ("cifar.pool3", "avg", (100, 64, 8, 8), 3, 2, True),
]
# kernels of a training step (conv1 needs no input gradient)
STEP = {
    "lenet": ["lenet.conv1 fwd", "lenet.conv1 bwd_filter", "lenet.pool1 fwd", "lenet.pool1 bwd",
              "lenet.conv2 fwd", "lenet.conv2 bwd_input", "lenet.conv2 bwd_filter",
              "lenet.pool2 fwd", "lenet.pool2 bwd"],
    "cifar": ["cifar.conv1 fwd", "cifar.conv1 bwd_filter", "cifar.pool1 fwd", "cifar.pool1 bwd",
              "cifar.conv2 fwd", "cifar.conv2 bwd_input", "cifar.conv2 bwd_filter",
              "cifar.pool2 fwd", "cifar.pool2 bwd", "cifar.conv3 fwd", "cifar.conv3 bwd_input",
              "cifar.conv3 bwd_filter", "cifar.pool3 fwd", "cifar.pool3 bwd"],
}


def timeit(fn, repeat):
    fn()
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[0] * 1e3, ts[len(ts) // 2] * 1e3


def bench_tfconf(repeat):
    rng = np.random.default_rng(0)
    res = {}
    for name, xs, ws, p in CONVS:
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal(ws, dtype=np.float32)
        args = ((1, 1), (p, p, p, p), (1, 1), 1)
        y = K.conv2d(np, x, w, *args)
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        res[name + " fwd"] = timeit(lambda: K.conv2d(np, x, w, *args), repeat)
        res[name + " bwd_input"] = timeit(
            lambda: K.conv2d_backprop_input(np, dy, w, xs[2:], *args), repeat)
        res[name + " bwd_filter"] = timeit(
            lambda: K.conv2d_backprop_filter(np, x, dy, ws[2:], *args), repeat)

        def layer():
            K.conv2d(np, x, w, *args)
            K.conv2d_backprop_input(np, dy, w, xs[2:], *args)
            K.conv2d_backprop_filter(np, x, dy, ws[2:], *args)
        res[name + " fwd+bwd"] = timeit(layer, repeat)
    for name, kind, xs, k, s, ceil in POOLS:
        x = rng.standard_normal(xs, dtype=np.float32)
        args = ((k, k), (s, s), (0, 0, 0, 0), ceil)
        if kind == "max":
            y = P.max_pool(np, x, *args)
            dy = rng.standard_normal(y.shape, dtype=np.float32)
            res[name + " fwd"] = timeit(lambda: P.max_pool(np, x, *args), repeat)
            res[name + " bwd"] = timeit(lambda: P.max_pool_grad(np, x, y, dy, *args), repeat)
        else:
            y = P.avg_pool(np, x, *args)
            dy = rng.standard_normal(y.shape, dtype=np.float32)
            res[name + " fwd"] = timeit(lambda: P.avg_pool(np, x, *args), repeat)
            res[name + " bwd"] = timeit(lambda: P.avg_pool_grad(np, dy, xs, *args), repeat)
    return res


def bench_onednn(repeat):
    """The oneDNN provider's kernels on plain arrays (BLAS at one thread, as in a plan)."""
    from tfconf.engine.kernels.onednn import kernels as D
    from tfconf.engine.threads import onednn_owns_cores

    rng = np.random.default_rng(0)
    res = {}
    with onednn_owns_cores():
        for name, xs, ws, p in CONVS:
            x = rng.standard_normal(xs, dtype=np.float32)
            w = rng.standard_normal(ws, dtype=np.float32)
            pads = lambda hw, khw, p=p: (p, p, p, p)  # noqa: E731
            fwd = D.ConvForward(None, (1, 1), pads, (1, 1), 1, bias=False, relu=False)
            bwd_in = D.ConvBackwardData(None, (1, 1), pads, (1, 1), 1)
            bwd_w = D.ConvBackwardWeights(None, ws, (1, 1), pads, (1, 1), 1)
            y = fwd(x, w)
            dy = rng.standard_normal(y.shape, dtype=np.float32)
            sizes = np.array(xs)
            res[name + " fwd"] = timeit(lambda: fwd(x, w), repeat)
            res[name + " bwd_input"] = timeit(lambda: bwd_in(sizes, w, dy), repeat)
            res[name + " bwd_filter"] = timeit(lambda: bwd_w(x, dy), repeat)

            def layer():
                fwd(x, w)
                bwd_in(sizes, w, dy)
                bwd_w(x, dy)
            res[name + " fwd+bwd"] = timeit(layer, repeat)
        for name, kind, xs, k, s, ceil in POOLS:
            x = rng.standard_normal(xs, dtype=np.float32)
            geo = ((k, k), (s, s), lambda hw: (0, 0, 0, 0), ceil)
            fwd = D.PoolForward(None, kind, *geo, training=kind == "max")
            y = fwd(x)
            dy = rng.standard_normal(y.shape, dtype=np.float32)
            bwd = D.PoolBackward(None, kind, *geo, forward=fwd)
            res[name + " fwd"] = timeit(lambda: fwd(x), repeat)
            if kind == "max":  # as in a plan: the gradient reuses the forward's workspace
                res[name + " bwd"] = timeit(lambda: bwd(x, fwd.last[0], dy), repeat)
            else:
                sizes = np.array(xs)
                res[name + " bwd"] = timeit(lambda: bwd(sizes, dy), repeat)
    return res


def bench_torch(repeat):
    import torch
    F = torch.nn.functional
    aten = torch.ops.aten
    torch.manual_seed(0)
    res = {}
    with torch.no_grad():
        for name, xs, ws, p in CONVS:
            x = torch.randn(xs)
            w = torch.randn(ws)
            y = F.conv2d(x, w, padding=p)
            dy = torch.randn(y.shape)
            cargs = ([1, 1], [p, p], [1, 1], False, [0, 0], 1)
            res[name + " fwd"] = timeit(lambda: F.conv2d(x, w, padding=p), repeat)
            res[name + " bwd_input"] = timeit(lambda: aten.convolution_backward(
                dy, x, w, None, *cargs, [True, False, False]), repeat)
            res[name + " bwd_filter"] = timeit(lambda: aten.convolution_backward(
                dy, x, w, None, *cargs, [False, True, False]), repeat)
    for name, xs, ws, p in CONVS:
        x = torch.randn(xs, requires_grad=True)
        w = torch.randn(ws, requires_grad=True)
        dy = torch.randn(F.conv2d(x, w, padding=p).shape)

        def layer():
            torch.autograd.grad(F.conv2d(x, w, padding=p), (x, w), dy)
        res[name + " fwd+bwd"] = timeit(layer, repeat)
    for name, kind, xs, k, s, ceil in POOLS:
        x = torch.randn(xs)
        with torch.no_grad():
            if kind == "max":
                y, idx = F.max_pool2d(x, k, s, 0, ceil_mode=ceil, return_indices=True)
                dy = torch.randn(y.shape)
                res[name + " fwd"] = timeit(lambda: F.max_pool2d(x, k, s, 0, ceil_mode=ceil),
                                            repeat)
                res[name + " bwd"] = timeit(lambda: aten.max_pool2d_with_indices_backward(
                    dy, x, [k, k], [s, s], [0, 0], [1, 1], ceil, idx), repeat)
            else:
                y = F.avg_pool2d(x, k, s, 0, ceil_mode=ceil)
                dy = torch.randn(y.shape)
                res[name + " fwd"] = timeit(lambda: F.avg_pool2d(x, k, s, 0, ceil_mode=ceil),
                                            repeat)
                res[name + " bwd"] = timeit(lambda: aten.avg_pool2d_backward(
                    dy, x, [k, k], [s, s], [0, 0], ceil, True, None), repeat)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    ours = bench_tfconf(a.repeat)
    try:
        dnnl = bench_onednn(a.repeat)
    except Exception as e:  # noqa: BLE001 - a machine without the library still gets the rest
        print(f"oneDNN provider unavailable: {e}")
        dnnl = {}
    theirs = {}
    if not a.no_torch:
        try:
            import torch
            theirs = bench_torch(a.repeat)
            tinfo = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        except ImportError:
            tinfo = "torch not installed"
    else:
        tinfo = "torch skipped"
    print(f"numpy {np.__version__}; {tinfo}; float32; min (median) ms over {a.repeat} runs")
    print()
    print("| kernel | tfconf oneDNN ms | tfconf numpy ms | torch ms | oneDNN/torch | numpy/torch |")
    print("|---|---:|---:|---:|---:|---:|")

    def cell(r, key):
        return f"{r[key][0]:.2f} ({r[key][1]:.2f})" if key in r else "—"

    def ratio(r, key):
        return f"{r[key][0] / theirs[key][0]:.2f}" if key in r and key in theirs else "—"

    for key in ours:
        print(f"| {key} | {cell(dnnl, key)} | {cell(ours, key)} | {cell(theirs, key)} | {ratio(dnnl, key)} | "
              f"{ratio(ours, key)} |")
    for net, keys in STEP.items():
        sums = [sum(r[k][0] for k in keys) if all(k in r for k in keys) else None for r in (dnnl, ours, theirs)]
        cells = " | ".join("—" if v is None else f"{v:.2f}" for v in sums)
        rats = " | ".join("—" if v is None or sums[2] is None else f"{v / sums[2]:.2f}" for v in sums[:2])
        print(f"| **{net} step (conv+pool kernels)** | {cells} | {rats} |")


if __name__ == "__main__":
    main()
