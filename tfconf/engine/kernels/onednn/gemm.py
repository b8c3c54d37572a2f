"""Matrix products on oneDNN, on the same OpenMP team as its other primitives.

A plan with oneDNN kernels runs every float32 product here, so one thread team owns the cores for
the whole run (engine/threads.py keeps numpy's BLAS at one thread meanwhile): no second pool spins
against it, and no hand-off between pools costs the wake-up of sleeping threads. Plain products
run on ``dnnl_sgemm``; a fused product (FusedMatMul) on the matmul primitive, which adds its bias
and applies its ReLU in its epilogue (one pass over the output instead of three), and so does a
product whose second operand is transposed (every input gradient ``dy @ W.T``): there
``dnnl_sgemm`` ran at 127-156 GFLOP/s against the primitive's 163-207 on this project's 2-core AMD
EPYC machine (MLP's [128, 512] x [784, 512].T 810 against 537 µs, an LSTM-sized [32, 1024] x
[256, 1024].T 405 against 124). Measured on
this project's 2-core Intel machine, against OpenBLAS's two threads: an LSTM step's [32, 256] x
[256, 1024] 70 µs against 113 (the primitive: 92), LeNet's ip1 [64, 800] x [800, 500] 200 against
247, MLP's [128, 784] x [784, 512] 398 against 466.

Operands are read as stored: any 2-D float32 array whose rows are contiguous (C order, a row
slice) or the transpose of one (a transposed product, no copy); anything else is copied first.

NOTE: a signal landing in the calling thread during a oneDNN product corrupted the heap (both
``dnnl_sgemm`` and the matmul primitive, every ISA; Ctrl-C during a step aborted `tfconf train`);
every call here and in lib.Primitive holds asynchronous signals back while it runs
(lib.call_with_signals_held), so they are delivered a product later.

``ARRAY_MODULE`` is numpy with ``matmul`` replaced, for kernels written against an array module
(the LSTM scans) so that they run their products here without a second implementation.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from .lib import call_with_signals_held, library, output_array

_sgemm = None


def _fn():
    global _sgemm
    if _sgemm is None:
        f = library().dll.dnnl_sgemm
        i64, ptr, f32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float
        f.argtypes = [ctypes.c_char, ctypes.c_char, i64, i64, i64, f32, ptr, i64, ptr, i64, f32, ptr, i64]
        f.restype = ctypes.c_int
        _sgemm = f
    return _sgemm

def _operand(x):
    """(array whose rows are contiguous, transposed?, leading dimension) for ``x`` as stored."""
    item = x.itemsize
    s0, s1 = x.strides
    if s1 == item and s0 >= x.shape[1] * item and s0 % item == 0:
        return x, False, s0 // item
    if s0 == item and s1 >= x.shape[0] * item and s1 % item == 0:  # a transposed view
        return x.T, True, s1 // item
    x = np.ascontiguousarray(x)
    return x, False, max(x.shape[1], 1)


def sgemm(a, b, trans_a=False, trans_b=False, out=None, bias=None, relu=False):
    """op(a) @ op(b) (+ bias, then ReLU when asked) for 2-D float32 arrays (op: transpose when
    asked), into ``out`` if given (a C-contiguous float32 array of the result's shape): on
    ``dnnl_sgemm``, or with an epilogue on the matmul primitive. ``bias``: a C-contiguous float32
    array of n elements ([n] or [1, n])."""
    a_rows, ta, lda = _operand(a)
    b_rows, tb, ldb = _operand(b)
    ta ^= bool(trans_a)
    tb ^= bool(trans_b)
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    k2, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if k != k2:
        raise ValueError(f"matmul: inner dimensions differ ({m}x{k} @ {k2}x{n})")
    if out is None:
        out = output_array((m, n))
    elif out.shape != (m, n) or out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable \
            or np.may_share_memory(out, a) or np.may_share_memory(out, b):
        raise ValueError(f"sgemm: out must be a writable C-contiguous float32 [{m}, {n}] array apart from the operands")
    if m == 0 or n == 0:
        return out
    if k == 0:
        out.fill(0)
        if bias is not None:
            out += bias.reshape(1, n)
            if relu:
                np.maximum(out, np.float32(0), out=out)
        return out
    if bias is None and not relu and not tb:
        status = call_with_signals_held(_fn(), b"T" if ta else b"N", b"T" if tb else b"N", m, n, k, 1.0,
                                        a_rows.ctypes.data, lda, b_rows.ctypes.data, ldb, 0.0, out.ctypes.data, n)
        library().check("dnnl_sgemm", status)
        return out
    run = _matmul_primitive(m, k, n, ta, tb, lda, ldb, bias is not None, relu)
    run(a_rows.ctypes.data, b_rows.ctypes.data, out.ctypes.data, None if bias is None else bias.ctypes.data)
    return out


_primitives = {}
_cache_lock = threading.Lock()
_MAX_PRIMITIVES = 64  # distinct product shapes kept (a plan has a few; run-time batch sizes add more)


def _matmul_primitive(m, k, n, ta, tb, lda, ldb, bias=False, relu=False):
    """A oneDNN matmul primitive for op(A)[m, k] @ op(B)[k, n] (+ bias [1, n], ReLU) into a
    C-contiguous [m, n]: A stored [m, k] (or [k, m] with ``ta``) with row stride lda, B stored
    [k, n] (or [n, k] with ``tb``) with row stride ldb."""
    key = (m, k, n, ta, tb, lda, ldb, bias, relu)
    run = _primitives.get(key)
    if run is not None:
        return run
    from . import lib as L

    lib = library()
    f = lib.dll.dnnl_matmul_primitive_desc_create
    vp = ctypes.c_void_p
    f.argtypes, f.restype = [ctypes.POINTER(vp), vp, vp, vp, vp, vp, vp], ctypes.c_int
    a = L.MemoryDesc.plain((m, k), (1, lda) if ta else (lda, 1))
    b = L.MemoryDesc.plain((k, n), (1, ldb) if tb else (ldb, 1))
    c = L.MemoryDesc.plain((m, n))
    bmd = L.MemoryDesc.plain((1, n)) if bias else None
    attr = L.Attr(relu=relu)
    pd = vp()
    lib.check("matmul_primitive_desc_create", f(ctypes.byref(pd), lib.engine, a.handle, b.handle,
                                                bmd.handle if bmd is not None else None, c.handle, attr.handle))
    args = (L.ARG_SRC, L.ARG_WEIGHTS, L.ARG_DST) + ((L.ARG_BIAS,) if bias else ())
    prim = L.Primitive(pd, args, "matmul")

    if bias:
        def run(pa, pb, pc, pbias):
            prim({L.ARG_SRC: pa, L.ARG_WEIGHTS: pb, L.ARG_DST: pc, L.ARG_BIAS: pbias})
    else:
        def run(pa, pb, pc, pbias=None):
            prim({L.ARG_SRC: pa, L.ARG_WEIGHTS: pb, L.ARG_DST: pc})

    with _cache_lock:  # runs from several threads may add and evict at once
        if len(_primitives) >= _MAX_PRIMITIVES:
            _primitives.pop(next(iter(_primitives)), None)
        _primitives[key] = run
    return run


def matmul(a, b, out=None):
    """``numpy.matmul`` with 2-D float32 products on oneDNN's GEMM."""
    if (a.ndim == 2 and b.ndim == 2 and a.dtype == np.float32 and b.dtype == np.float32
            and (out is None or (out.dtype == np.float32 and out.flags.c_contiguous))):
        return sgemm(a, b, out=out)
    return np.matmul(a, b) if out is None else np.matmul(a, b, out=out)


class _ArrayModule:
    """numpy, with matmul on oneDNN's GEMM."""

    matmul = staticmethod(matmul)

    def __getattr__(self, name):
        return getattr(np, name)


ARRAY_MODULE = _ArrayModule()
