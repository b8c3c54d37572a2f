"""Parameter updates in one pass each, on oneDNN's binary primitive (multi-threaded, vectorised).

numpy makes a momentum update four or five passes over every parameter in one thread (``a *= m``,
``a += g``, a temporary ``lr·a``, ``w -= ...``): the MLP's [784, 512] weight took 0.63 ms that way
inside a step, more than its forward product. Each rule here is one or two passes with the rates
read at run time from one-element buffers (a learning-rate schedule changes them every step
without a new primitive):

    TF's ApplyMomentum       a = a·m + g (mul, post-op add);  w = w + a·(−lr) (mul, post-op sum)
    TF's ApplyGradientDescent                                 w = w + g·(−lr) (mul, post-op sum)
    Caffe's SGD (ApplyUpdate) h = h·m + g·lr (mul, post-op sum with scale m);  w = w − h (sub)

Each kernel updates in place only where the reference would (float32 C-contiguous arrays that
the session's store alone holds, training._sole) and the parameter is large enough to pay for a
primitive's start (MIN_ELEMENTS); anything else runs the reference kernel.
"""

from __future__ import annotations

import numpy as np

from . import lib as L
from .binary import ARG_POST_OP0_SRC_1, ARG_SRC_0, ARG_SRC_1, BINARY_MUL, BINARY_SUB, binary


def _binary(n, alg, post=None, sum_scale=1.0, scalar_src1=True):
    """Over flat [n] arrays, src1 a one-element buffer (``scalar_src1``) or [n]."""
    return binary((n,), (1,) if scalar_src1 else (n,), alg, post, sum_scale)


#: parameters smaller than this stay on the reference: a primitive's start (its thread team
#: included) costs ~25 µs, numpy's in-place passes over a 512-element bias ~5
MIN_ELEMENTS = 1 << 14


def _fits(w, grad):
    return (w.dtype == np.float32 and grad.dtype == np.float32 and w.flags.c_contiguous
            and w.shape == grad.shape and w.size >= MIN_ELEMENTS)


class _Rates:
    """One-element float32 buffers for the run-time rates."""

    def __init__(self, k):
        self.buf = np.zeros(k, np.float32)
        self.ptr = [self.buf.ctypes.data + 4 * i for i in range(k)]


class ApplyMomentum:
    """TF's ApplyMomentum (use_nesterov=False) on oneDNN; the reference kernel for the rest."""

    def __init__(self, reference, store, var, accum):
        self.reference, self.store, self.var, self.accum = reference, store, var, accum
        self.rates = _Rates(2)
        self.prims = None

    def __call__(self, lr, grad, momentum):
        from ...ops.training import _sole

        store = self.store
        a = store.get(self.accum)
        w = store.get(self.var)
        if a is None or w is None or not (_fits(a, grad) and _fits(w, grad) and _sole(a) and _sole(w)):
            del a, w
            return self.reference(lr, grad, momentum)
        if self.prims is None:
            n = w.size
            self.prims = (_binary(n, BINARY_MUL, "add"), _binary(n, BINARY_MUL, "sum"))
        g = np.ascontiguousarray(grad)
        r = self.rates
        r.buf[0] = momentum
        r.buf[1] = -lr
        scale, step = self.prims
        scale({ARG_SRC_0: a.ctypes.data, ARG_SRC_1: r.ptr[0], L.ARG_DST: a.ctypes.data,
               ARG_POST_OP0_SRC_1: g.ctypes.data})
        step({ARG_SRC_0: a.ctypes.data, ARG_SRC_1: r.ptr[1], L.ARG_DST: w.ctypes.data})
        return ()


class ApplyGradientDescent:
    """TF's ApplyGradientDescent on oneDNN: w = w + g·(−lr) in one pass."""

    def __init__(self, reference, store, var):
        self.reference, self.store, self.var = reference, store, var
        self.rates = _Rates(1)
        self.prim = None

    def __call__(self, lr, grad):
        from ...ops.training import _sole

        w = self.store.get(self.var)
        if w is None or not (_fits(w, grad) and _sole(w)):
            del w
            return self.reference(lr, grad)
        if self.prim is None:
            self.prim = _binary(w.size, BINARY_MUL, "sum")
        g = np.ascontiguousarray(grad)
        self.rates.buf[0] = -lr
        self.prim({ARG_SRC_0: g.ctypes.data, ARG_SRC_1: self.rates.ptr[0], L.ARG_DST: w.ctypes.data})
        return ()


class CaffeSGD:
    """Caffe's SGD rule (ApplyUpdate, rule "SGD"): h = m·h + lr·g; w = w − h, both in place.

    The reference rule replaces both arrays; in place is the same numbers (each element is
    computed from the old values of the same element only)."""

    def __init__(self, reference, store, var, history, momentum):
        self.reference, self.store, self.var, self.history = reference, store, var, history
        self.momentum = float(momentum)
        self.rates = _Rates(1)
        self.prims = None

    def __call__(self, lr, grad, t):
        from ...ops.training import _sole

        store = self.store
        h = store.get(self.history)
        w = store.get(self.var)
        if h is None or w is None or not (_fits(h, grad) and _fits(w, grad) and _sole(h) and _sole(w)):
            del h, w
            return self.reference(lr, grad, t)
        if self.prims is None:
            n = w.size
            self.prims = (_binary(n, BINARY_MUL, "sum", sum_scale=self.momentum),
                          _binary(n, BINARY_SUB, scalar_src1=False))
        g = np.ascontiguousarray(grad)
        self.rates.buf[0] = lr
        accumulate, subtract = self.prims
        accumulate({ARG_SRC_0: g.ctypes.data, ARG_SRC_1: self.rates.ptr[0], L.ARG_DST: h.ctypes.data})
        subtract({ARG_SRC_0: w.ctypes.data, ARG_SRC_1: h.ctypes.data, L.ARG_DST: w.ctypes.data})
        return ()
