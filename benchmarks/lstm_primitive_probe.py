"""Probe for the LSTM target of issue 14: oneDNN's own LSTM primitive (forward training, one call
for a whole layer, the input projection inside) against tfconf's LSTM layer forward today (the
input projection on oneDNN's GEMM, then the LSTMSequence scan), on the benchmark's second layer.

    python benchmarks/lstm_primitive_probe.py

The forward, and the forward with the backward primitive (the forward's workspace, zero
gradients); the buffers are zeros and random numbers in oneDNN's preferred layouts, so only the
times compare, not the numbers.
"""

from __future__ import annotations

import ctypes
import time

import numpy as np


def best_ms(fn, reps=10, rounds=5):
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t) / reps)
    return best * 1e3


def onednn_lstm_forward(T, N, C, H, backward=False):
    """A run() of oneDNN's LSTM forward-training primitive on zero-initialised buffers."""
    from tfconf.engine.kernels.onednn import lib as L

    lib = L.library()
    vp = ctypes.c_void_p
    f = lib.dll.dnnl_lstm_forward_primitive_desc_create
    f.argtypes = [ctypes.POINTER(vp), vp, ctypes.c_int, ctypes.c_int] + [vp] * 11 + [ctypes.c_uint, vp]
    f.restype = ctypes.c_int
    src, dst = L.MemoryDesc.plain((T, N, C)), L.MemoryDesc.plain((T, N, H))
    w_layer, w_iter = L.MemoryDesc.any((1, 1, C, 4, H)), L.MemoryDesc.any((1, 1, H, 4, H))
    bias = L.MemoryDesc.plain((1, 1, 4, H))
    attr = L.Attr()
    pd = vp()
    left2right = 1  # dnnl_unidirectional_left2right
    lib.check("lstm_forward_primitive_desc_create",
              f(ctypes.byref(pd), lib.engine, L.FORWARD_TRAINING, left2right, src.handle, None, None,
                w_layer.handle, w_iter.handle, None, None, bias.handle, dst.handle, None, None, 0, attr.handle))
    args = (1, 33, 34, L.ARG_BIAS, L.ARG_DST, L.ARG_WORKSPACE)  # src layer, weights layer/iter, ...
    prim = L.Primitive(pd, args, "lstm forward")
    bufs = {a: L.empty_bytes(prim.mds[a].nbytes) for a in args}
    for b in bufs.values():
        b[:] = 0
    bufs[1].view(np.float32)[:] = np.random.default_rng(0).standard_normal(T * N * C).astype(np.float32)
    ptrs = {a: b.ctypes.data for a, b in bufs.items()}

    def run(keep=bufs):  # the buffers live as long as the closure
        prim(ptrs)

    if not backward:
        return run
    b = lib.dll.dnnl_lstm_backward_primitive_desc_create
    b.argtypes = [ctypes.POINTER(vp), vp, ctypes.c_int, ctypes.c_int] + [vp] * 22 + [ctypes.c_uint, vp, vp]
    b.restype = ctypes.c_int
    bpd = vp()
    lib.check("lstm_backward_primitive_desc_create",
              b(ctypes.byref(bpd), lib.engine, L.BACKWARD, left2right,
                src.handle, None, None, w_layer.handle, w_iter.handle, None, None, bias.handle, dst.handle, None, None,
                src.handle, None, None, w_layer.handle, w_iter.handle, None, None, bias.handle, dst.handle, None,
                None, 0, pd, attr.handle))
    bargs = (1, 33, 34, L.ARG_BIAS, L.ARG_DST, L.ARG_WORKSPACE, 129, 161, 162, L.ARG_DIFF_BIAS, 145)
    bprim = L.Primitive(bpd, bargs, "lstm backward")
    bbufs = {a: L.empty_bytes(bprim.mds[a].nbytes) for a in bargs if a not in (1, L.ARG_DST, L.ARG_WORKSPACE)}
    for x in bbufs.values():
        x[:] = 0
    bptrs = dict(ptrs)
    bptrs.update({a: x.ctypes.data for a, x in bbufs.items()})

    def run_both(keep=(bufs, bbufs)):
        prim(ptrs)
        bprim(bptrs)

    return run_both


def tfconf_forward(T, N, C, H):
    from tfconf.engine.kernels.onednn.gemm import ARRAY_MODULE, sgemm
    from tfconf.engine.ops.rnn import LSTMSequence

    rng = np.random.default_rng(0)
    x = rng.standard_normal((T * N, C)).astype(np.float32)
    w_x = rng.uniform(-1 / 16, 1 / 16, (4 * H, C)).astype(np.float32)
    w_h = rng.uniform(-1 / 16, 1 / 16, (4 * H, H)).astype(np.float32)
    b = np.zeros(4 * H, np.float32)
    mask = np.ones((T, N, 1), np.float32)

    def run():
        gx = sgemm(x, w_x, trans_b=True, bias=b).reshape(T, N, 4 * H)
        return LSTMSequence.forward(ARRAY_MODULE, gx, w_h, mask)

    return run


def main():
    from tfconf.engine.threads import onednn_owns_cores

    T, N, C, H = 50, 32, 256, 256
    with onednn_owns_cores():  # as inside a plan
        ours = best_ms(tfconf_forward(T, N, C, H), reps=5, rounds=3)
        theirs = best_ms(onednn_lstm_forward(T, N, C, H))
        both = best_ms(onednn_lstm_forward(T, N, C, H, backward=True))
    print(f"LSTM layer forward, T={T} N={N} C={C} H={H}: tfconf projection + scan {ours:.2f} ms, "
          f"oneDNN LSTM primitive {theirs:.2f} ms ({ours / theirs:.1f}x); oneDNN forward + backward "
          f"{both:.2f} ms (tfconf's, from `python -m benchmarks --profile --models lstm`: about 30)")


if __name__ == "__main__":
    main()
