"""Parameter updates in one pass each, on oneDNN's binary primitive (multi-threaded, vectorised).

numpy makes a momentum update four or five passes over every parameter in one thread (``a *= m``,
``a += g``, a temporary ``lr·a``, ``w -= ...``): the MLP's [784, 512] weight took 0.63 ms that way
inside a step, more than its forward product. Each rule here is one or two passes with the rates
read at run time from one-element buffers (a learning-rate schedule changes them every step
without a new primitive):

    TF's Momentum       a = a·m + g (mul, post-op add);  w = w + a·(−lr) (mul, post-op sum)
    TF's GradientDescent                                 w = w + g·(−lr) (mul, post-op sum)
    Caffe's SGD          h = h·m + g·lr (mul, post-op sum with scale m);  w = w − h (sub)

(the rules of ApplyUpdate, engine/ops/updates.py)

Each kernel updates in place only where the reference would (float32 C-contiguous arrays that
the session's store alone holds, ops/updates.sole) and the parameter is large enough to pay for a
primitive's start (MIN_ELEMENTS); anything else runs the reference kernel.
"""

from __future__ import annotations

import threading

import numpy as np

from ...ops.updates import sole
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


class _Update:
    """The frame of every rule: the arrays it updates in place read from the store (the reference
    kernel runs whenever one may not be updated in place), primitives made per parameter size,
    run-time rates in one-element buffers, one run at a time."""

    refs = 1       # leading inputs that are handles (store keys): the variable, then its slots
    n_rates = 1

    def __init__(self, reference, store):
        self.reference, self.store = reference, store
        self.rates = np.zeros(self.n_rates, np.float32)
        self.rate_ptrs = [self.rates.ctypes.data + 4 * i for i in range(self.n_rates)]
        self.prims = {}  # parameter size -> this rule's primitives
        self.lock = threading.Lock()

    def __call__(self, *inputs):
        refs = self.refs
        rates = inputs[refs:]  # lr, grad, and the rule's run-time hyperparameters
        grad = rates[1]
        store = self.store
        arrays = [store.get(n) for n in inputs[:refs]]
        ok = all(arrays[i] is not None and _fits(arrays[i], grad) and sole(arrays[i])
                 for i in range(len(arrays)))  # by index: a loop name would be one more holder
        if not ok:
            del arrays
            return self.reference(*inputs)
        n = grad.size
        with self.lock:
            prims = self.prims.get(n)
            if prims is None:
                prims = self.prims[n] = self.make(n)
            self.apply(prims, np.ascontiguousarray(grad), rates, *arrays)
        return ()


class ApplyMomentum(_Update):
    """TF's Momentum rule (use_nesterov=False): a = a·m + g (mul, post-op add), w = w + a·(−lr)
    (mul, post-op sum); the same roundings as the reference."""

    refs, n_rates = 2, 2

    def make(self, n):
        return _binary(n, BINARY_MUL, "add"), _binary(n, BINARY_MUL, "sum")

    def apply(self, prims, g, rates, w, a):
        lr, _, momentum = rates
        self.rates[0], self.rates[1] = momentum, -lr
        scale, step = prims
        scale({ARG_SRC_0: a.ctypes.data, ARG_SRC_1: self.rate_ptrs[0], L.ARG_DST: a.ctypes.data,
               ARG_POST_OP0_SRC_1: g.ctypes.data})
        step({ARG_SRC_0: a.ctypes.data, ARG_SRC_1: self.rate_ptrs[1], L.ARG_DST: w.ctypes.data})


class ApplyGradientDescent(_Update):
    """TF's GradientDescent rule: w = w + g·(−lr) in one pass (mul, post-op sum)."""

    def make(self, n):
        return _binary(n, BINARY_MUL, "sum")

    def apply(self, prim, g, rates, w):
        self.rates[0] = -rates[0]
        prim({ARG_SRC_0: g.ctypes.data, ARG_SRC_1: self.rate_ptrs[0], L.ARG_DST: w.ctypes.data})


class CaffeSGD(_Update):
    """Caffe's SGD rule: h = h·m; h = h + g·lr; w = w − h, in place, with
    the reference rule's roundings (h·m and g·lr each rounded; a scaled sum post-op would fuse
    h·m + g·lr into one rounding and change the bits). The reference replaces the arrays; in
    place is the same numbers (each element depends on the same element only)."""

    refs, n_rates = 2, 2

    def __init__(self, reference, store, momentum):
        super().__init__(reference, store)
        self.rates[0] = momentum

    def make(self, n):
        return _binary(n, BINARY_MUL), _binary(n, BINARY_MUL, "sum"), _binary(n, BINARY_SUB, scalar_src1=False)

    def apply(self, prims, g, rates, w, h):
        self.rates[1] = rates[0]
        decay, accumulate, subtract = prims
        decay({ARG_SRC_0: h.ctypes.data, ARG_SRC_1: self.rate_ptrs[0], L.ARG_DST: h.ctypes.data})
        accumulate({ARG_SRC_0: g.ctypes.data, ARG_SRC_1: self.rate_ptrs[1], L.ARG_DST: h.ctypes.data})
        subtract({ARG_SRC_0: w.ctypes.data, ARG_SRC_1: h.ctypes.data, L.ARG_DST: w.ctypes.data})
