"""2-D convolution kernels (NCHW, Caffe filter layout) on plain arrays.

Every function takes the array module ``xp`` (numpy or cupy) first and uses
only functions that exist in both.  Filters are ``[O, C // groups, kh, kw]``.
Pads are ``(pad_top, pad_bottom, pad_left, pad_right)`` and may be
asymmetric; strides and dilations are ``(h, w)`` pairs.  Outputs have the
dtype of the input ``x`` (or ``dy``); float32 is never upcast.

Algorithm: im2col from a single strided view (one copy into a reused work
buffer), then one GEMM for the whole batch (a batched GEMM over groups when
``groups > 1``).  When the width stride is 1 the "wide" im2col is used: output
rows are computed over the full padded width, so every copied run is a long
contiguous segment (``OH * Wp`` elements) and the extra columns are dropped
afterwards; it is chosen only where the extra GEMM work is small.  The input
gradient uses the adjoint (GEMM, then col2im by slice accumulation over the
``kh * kw`` kernel offsets); the filter gradient is one GEMM against the same
im2col matrix.
"""

from __future__ import annotations

import threading

__all__ = [
    "conv_output_size",
    "conv2d",
    "conv2d_backprop_input",
    "conv2d_backprop_filter",
]


# --------------------------------------------------------------------------
# shared helpers (pool.py imports these too)
# --------------------------------------------------------------------------

_local = threading.local()

#: None = choose the im2col layout automatically; True/False force the "wide"
#: layout on/off where it is possible (for benchmarks and tests).
WIDE_IM2COL = None


#: Number of CPU threads used for the memory-bound numpy parts (copies,
#: col2im).  numpy releases the GIL inside these loops, so splitting them
#: halves their time in isolation; but right after a GEMM the OpenBLAS worker
#: threads keep spinning on the cores and the split measured slower on a
#: 2-core machine, so it is off (1) by default.  Results do not depend on it.
NUM_THREADS = 1
_MIN_PARALLEL_ELEMS = 1 << 16
_pool = None
_pool_lock = threading.Lock()


def _executor():
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                from concurrent.futures import ThreadPoolExecutor
                _pool = ThreadPoolExecutor(max_workers=max(1, NUM_THREADS - 1),
                                           thread_name_prefix="tfconf-kernel")
    return _pool


def _split_run(xp, n, work, fn):
    """Call ``fn(lo, hi)`` over a partition of ``range(n)``; in parallel
    threads when ``xp`` is numpy and ``work`` (elements touched) is large.
    The ranges must touch disjoint output memory."""
    nt = min(NUM_THREADS, n)
    if nt <= 1 or work < _MIN_PARALLEL_ELEMS or xp.__name__ != "numpy" \
            or threading.current_thread().name.startswith("tfconf-kernel"):
        fn(0, n)
        return
    bounds = [(n * k) // nt for k in range(nt + 1)]
    ex = _executor()
    futs = [ex.submit(fn, bounds[k], bounds[k + 1]) for k in range(nt - 1)]
    try:
        fn(bounds[nt - 1], bounds[nt])
    finally:
        for f in futs:
            f.result()


def _copy(xp, dst, src):
    """dst[...] = src, split over the leading axis."""
    def part(lo, hi):
        dst[lo:hi] = src[lo:hi]
    _split_run(xp, dst.shape[0], dst.size, part)


def _as_strided(xp, a, shape, strides):
    return xp.lib.stride_tricks.as_strided(a, shape=tuple(shape), strides=tuple(strides))


def _scratch(xp, role, shape, dtype):
    """Uninitialised work array of ``shape``/``dtype``, reused across calls.

    Fresh large allocations page-fault their memory in on every call, which
    costs as much as the copy that fills them.  Each (thread, array module,
    role, dtype) keeps one flat buffer that only grows.  A scratch array (or
    a view of it) must never be returned to the caller, and a role must not be
    requested twice while the first result is still in use.
    """
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    dtype = xp.dtype(dtype)
    size = 1
    for s in shape:
        size *= int(s)
    key = (xp.__name__, role, dtype.str)
    buf = cache.get(key)
    if buf is None or buf.size < size:
        cache.pop(key, None)
        buf = xp.empty(max(size, 1), dtype=dtype)
        cache[key] = buf
    return buf[:size].reshape(tuple(shape))


def clear_scratch():
    """Release the work buffers cached by the calling thread."""
    _local.cache = {}


def _pair(v, name):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an (h, w) pair, got {v!r}")
    return v


def _check_pads(pads):
    pads = tuple(int(p) for p in pads)
    if len(pads) != 4:
        raise ValueError(f"pads must be (top, bottom, left, right), got {pads!r}")
    if min(pads) < 0:
        raise ValueError(f"negative padding is not supported, got {pads!r}")
    return pads


def _pad_into(xp, x, pad_top, pad_left, out_h, out_w, fill, role, extra_rows=0):
    """Copy ``x`` [N, C, H, W] to offset (pad_top, pad_left) of a scratch
    [N, C, out_h + extra_rows, out_w] array filled with ``fill``.  Rows and
    columns of ``x`` that fall outside ``out_h x out_w`` are dropped.  Returns
    ``x`` itself when no copy is needed."""
    n, c, h, w = x.shape
    if (pad_top == 0 and pad_left == 0 and extra_rows == 0 and out_h <= h
            and out_w <= w):
        return x
    buf = _scratch(xp, role, (n, c, out_h + extra_rows, out_w), x.dtype)
    rows = max(0, min(h, out_h - pad_top))
    cols = max(0, min(w, out_w - pad_left))
    buf.fill(fill)
    if rows and cols:
        _copy(xp, buf[:, :, pad_top:pad_top + rows, pad_left:pad_left + cols], x[:, :, :rows, :cols])
    return buf


# --------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------


def conv_output_size(in_size, k, stride, pad_before, pad_after, dilation):
    """Output length of a convolution along one axis (floor rule)."""
    eff = (int(k) - 1) * int(dilation) + 1
    return (int(in_size) + int(pad_before) + int(pad_after) - eff) // int(stride) + 1


class _Geom:
    """All sizes of one convolution, validated."""

    __slots__ = ("N", "C", "H", "W", "O", "G", "Cg", "Og", "kh", "kw", "sh", "sw",
                 "dh", "dw", "pt", "pb", "pl", "pr", "OH", "OW", "Hn", "Wn", "wide")

    def __init__(self, x_shape, w_shape, strides, pads, dilations, groups):
        self.N, self.C, self.H, self.W = (int(s) for s in x_shape)
        self.O, self.Cg, self.kh, self.kw = (int(s) for s in w_shape)
        self.G = int(groups)
        self.sh, self.sw = _pair(strides, "strides")
        self.dh, self.dw = _pair(dilations, "dilations")
        self.pt, self.pb, self.pl, self.pr = _check_pads(pads)
        if self.G < 1 or self.C % self.G or self.O % self.G:
            raise ValueError(f"groups={self.G} must divide C={self.C} and O={self.O}")
        if self.Cg * self.G != self.C:
            raise ValueError(f"filter has {self.Cg} input channels per group, expected "
                             f"{self.C // self.G} (C={self.C}, groups={self.G})")
        if min(self.sh, self.sw, self.dh, self.dw) < 1:
            raise ValueError("strides and dilations must be >= 1")
        self.Og = self.O // self.G
        self.OH = conv_output_size(self.H, self.kh, self.sh, self.pt, self.pb, self.dh)
        self.OW = conv_output_size(self.W, self.kw, self.sw, self.pl, self.pr, self.dw)
        if self.OH < 1 or self.OW < 1:
            raise ValueError(f"convolution output would be empty ({self.OH}x{self.OW})")
        # padded extent actually touched by the windows
        self.Hn = (self.OH - 1) * self.sh + (self.kh - 1) * self.dh + 1
        self.Wn = (self.OW - 1) * self.sw + (self.kw - 1) * self.dw + 1
        # "wide" im2col: compute every output row over the full padded width
        # (only possible for width stride 1); worth it while the extra GEMM
        # work (Wn / OW) is small and the rows are short.
        self.wide = (self.sw == 1 and self.kw > 1 and self.Wn * 4 <= self.OW * 5)
        if WIDE_IM2COL is not None:
            self.wide = bool(WIDE_IM2COL) and self.sw == 1

    @property
    def K(self):
        return self.Cg * self.kh * self.kw


def _im2col(xp, x, g):
    """Column matrix [C*kh*kw, N*OH*OWc] in a scratch buffer, where
    OWc = Wn for the wide layout and OW otherwise."""
    e = x.dtype.itemsize
    if g.wide:
        # one extra zero row per plane keeps the wrapped reads in bounds
        xp_ = _pad_into(xp, x, g.pt, g.pl, g.Hn, g.Wn, 0, "conv_pad", extra_rows=1)
        sN, sC = xp_.strides[0], xp_.strides[1]
        Wn = g.Wn
        view = _as_strided(xp, xp_, (g.C, g.kh, g.kw, g.N, g.OH, Wn),
                           (sC, g.dh * Wn * e, g.dw * e, sN, g.sh * Wn * e, e))
        owc = Wn
    else:
        xp_ = _pad_into(xp, x, g.pt, g.pl, g.Hn, g.Wn, 0, "conv_pad")
        sN, sC, sH, sW = xp_.strides
        view = _as_strided(xp, xp_, (g.C, g.kh, g.kw, g.N, g.OH, g.OW),
                           (sC, g.dh * sH, g.dw * sW, sN, g.sh * sH, g.sw * sW))
        owc = g.OW
    cols = _scratch(xp, "conv_cols", view.shape, x.dtype)
    _copy(xp, cols, view)
    return cols.reshape(g.C * g.kh * g.kw, g.N * g.OH * owc), owc


def _dy_matrix(xp, dy, g, owc):
    """dy [N, O, OH, OW] as the GEMM operand [O, N*OH*owc] (zero columns
    for the wide layout)."""
    N, O, OH, OW = dy.shape
    if owc == OW and N == 1 and dy.flags.c_contiguous:
        return dy.reshape(O, OH * OW)
    buf = _scratch(xp, "conv_dyT", (O, N, OH, owc), dy.dtype)
    if owc != OW:
        buf[..., OW:] = 0
        _copy(xp, buf[..., :OW], dy.transpose(1, 0, 2, 3))
    else:
        _copy(xp, buf, dy.transpose(1, 0, 2, 3))
    return buf.reshape(O, N * OH * owc)


def _check_w(w, dtype):
    if w.dtype != dtype:
        w = w.astype(dtype)
    return w


# --------------------------------------------------------------------------
# public kernels
# --------------------------------------------------------------------------


def conv2d(xp, x, w, strides, pads, dilations, groups):
    """y[n, o, i, j] = sum_{c, p, q} w[o, c, p, q] *
    xpad[n, g(o)*C/G + c, i*sh + p*dh, j*sw + q*dw]; returns [N, O, OH, OW]."""
    g = _Geom(x.shape, w.shape, strides, pads, dilations, groups)
    w = _check_w(w, x.dtype)
    cols, owc = _im2col(xp, x, g)
    NP = g.N * g.OH * owc
    if g.N == 1 and owc == g.OW:
        # the GEMM result is already in NCHW order
        if g.G == 1:
            y = xp.matmul(w.reshape(g.O, g.K), cols)
        else:
            y = xp.matmul(w.reshape(g.G, g.Og, g.K), cols.reshape(g.G, g.K, NP))
        return y.reshape(1, g.O, g.OH, g.OW)
    out = _scratch(xp, "conv_gemm", (g.O, NP), x.dtype)
    if g.G == 1:
        xp.matmul(w.reshape(g.O, g.K), cols, out=out)
    else:
        xp.matmul(w.reshape(g.G, g.Og, g.K), cols.reshape(g.G, g.K, NP),
                  out=out.reshape(g.G, g.Og, NP))
    y = xp.empty((g.N, g.O, g.OH, g.OW), dtype=x.dtype)
    src = out.reshape(g.O, g.N, g.OH, owc)
    if owc != g.OW:
        src = src[..., :g.OW]
    _copy(xp, y, src.transpose(1, 0, 2, 3))
    return y


def conv2d_backprop_input(xp, dy, w, input_hw, strides, pads, dilations, groups):
    """Adjoint of :func:`conv2d` with respect to ``x``.

    ``input_hw`` = (H, W) of the forward input (needed because the stride
    rounding loses it).  Returns dx [N, C, H, W].
    """
    N, O, OH, OW = (int(s) for s in dy.shape)
    H, W = (int(s) for s in input_hw)
    Cg = int(w.shape[1])
    g = _Geom((N, Cg * int(groups), H, W), w.shape, strides, pads, dilations, groups)
    if (g.OH, g.OW) != (OH, OW) or g.O != O:
        raise ValueError(f"dy shape {tuple(dy.shape)} does not match a convolution of "
                         f"input {(N, g.C, H, W)} with filter {tuple(w.shape)} "
                         f"(expected output {(N, g.O, g.OH, g.OW)})")
    w = _check_w(w, dy.dtype)
    dtype = dy.dtype
    owc = g.Wn if g.wide else OW
    dyT = _dy_matrix(xp, dy, g, owc)
    NP = N * OH * owc
    # dcols [C*kh*kw, N*OH*owc] = w^T @ dy
    dcols = _scratch(xp, "conv_cols", (g.C, g.kh, g.kw, N, OH, owc), dtype)
    if g.G == 1:
        xp.matmul(w.reshape(O, g.K).T, dyT, out=dcols.reshape(g.K, NP))
    else:
        xp.matmul(w.reshape(g.G, g.Og, g.K).transpose(0, 2, 1), dyT.reshape(g.G, g.Og, NP),
                  out=dcols.reshape(g.G, g.K, NP))
    # col2im: accumulate into a padded [C, N, Hn(+1), Wn] buffer
    e = dcols.dtype.itemsize
    if g.wide:
        Wn = g.Wn
        acc = _scratch(xp, "conv_pad", (g.C, N, g.Hn + 1, Wn), dtype)
        sC, sN = acc.strides[0], acc.strides[1]
        flat = acc.reshape(-1)
        psize = acc[0].size

        def col2im_wide(c0, c1):
            acc[c0:c1].fill(0)
            for i in range(g.kh):
                for j in range(g.kw):
                    off = c0 * psize + i * g.dh * Wn + j * g.dw
                    # a [C, N, OH, Wn] window starting at `off` of every plane;
                    # the wrapped tail of each row only receives the zero
                    # columns of dy
                    dst = _as_strided(xp, flat[off:], (c1 - c0, N, OH, Wn),
                                      (sC, sN, g.sh * Wn * e, e))
                    dst += dcols[c0:c1, i, j]

        _split_run(xp, g.C, dcols.size, col2im_wide)
        acc = acc[:, :, :g.Hn, :]
    else:
        acc = _scratch(xp, "conv_pad", (g.C, N, g.Hn, g.Wn), dtype)
        hs = (OH - 1) * g.sh + 1
        ws = (OW - 1) * g.sw + 1

        def col2im(c0, c1):
            a = acc[c0:c1]
            a.fill(0)
            for i in range(g.kh):
                r0 = i * g.dh
                for j in range(g.kw):
                    q0 = j * g.dw
                    a[:, :, r0:r0 + hs:g.sh, q0:q0 + ws:g.sw] += dcols[c0:c1, i, j]

        _split_run(xp, g.C, dcols.size, col2im)
    # crop the padding and restore NCHW
    rows = max(0, min(H, g.Hn - g.pt))
    cols_ = max(0, min(W, g.Wn - g.pl))
    if rows == H and cols_ == W:
        dx = xp.empty((N, g.C, H, W), dtype=dtype)
    else:
        dx = xp.zeros((N, g.C, H, W), dtype=dtype)
    if rows and cols_:
        _copy(xp, dx[:, :, :rows, :cols_],
              acc[:, :, g.pt:g.pt + rows, g.pl:g.pl + cols_].transpose(1, 0, 2, 3))
    return dx


def conv2d_backprop_filter(xp, x, dy, filter_hw, strides, pads, dilations, groups):
    """Adjoint of :func:`conv2d` with respect to ``w``; returns
    dw [O, C // groups, kh, kw] with the dtype of ``x``."""
    N, C, H, W = (int(s) for s in x.shape)
    O = int(dy.shape[1])
    kh, kw = (int(s) for s in filter_hw)
    G = int(groups)
    if C % G:
        raise ValueError(f"groups={G} must divide C={C}")
    g = _Geom(x.shape, (O, C // G, kh, kw), strides, pads, dilations, groups)
    if tuple(int(s) for s in dy.shape) != (N, O, g.OH, g.OW):
        raise ValueError(f"dy shape {tuple(dy.shape)} does not match the convolution "
                         f"output {(N, O, g.OH, g.OW)}")
    if dy.dtype != x.dtype:
        dy = dy.astype(x.dtype)
    cols, owc = _im2col(xp, x, g)
    dyT = _dy_matrix(xp, dy, g, owc)
    NP = N * g.OH * owc
    if G == 1:
        dw = xp.matmul(dyT, cols.T)
    else:
        dw = xp.matmul(dyT.reshape(G, g.Og, NP), cols.reshape(G, g.K, NP).transpose(0, 2, 1))
    return dw.reshape(O, C // G, kh, kw)
