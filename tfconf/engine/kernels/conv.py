"""2-D convolution kernels (NCHW, Caffe filter layout) on plain arrays.

Every function takes the array module ``xp`` (numpy or cupy) first and uses
only functions that exist in both.  Filters are ``[O, C // groups, kh, kw]``.
Pads are ``(pad_top, pad_bottom, pad_left, pad_right)`` and may be
asymmetric; strides and dilations are ``(h, w)`` pairs.  Outputs have the
dtype of the input ``x`` (or ``dy``); float32 is never upcast.

Algorithm: im2col from a single strided view (one copy into a reused work
buffer), then GEMMs (batched over groups when ``groups > 1``).  The input
gradient is the adjoint (GEMM, then col2im by slice accumulation over the
``kh * kw`` kernel offsets); the filter gradient is a GEMM against the same
im2col matrix.  Two column layouts, chosen per shape (see :func:`_layout`):

``"nchw"`` (batch outermost): columns ``[N, C*kh*kw, OH*OW]``.  The GEMM of
  each image writes NCHW output directly and dy needs no transpose, but every
  im2col / col2im run is only ``OW`` elements long.
``"chwn"`` (batch innermost): the input is first transposed to
  ``[C, H, W, N]``; columns are ``[C*kh*kw, OH*OW*N]``, so each im2col /
  col2im run is ``OW * N`` elements long.  It costs a transpose of the input
  and of the output (or dy / dx), which pays when the images are small: for
  LeNet's conv2 (12x12 → 8x8, batch 64) it is 3-4x faster than "nchw" on the
  copies, and col2im goes from ~3.7 ms to ~1 ms.
"""

from __future__ import annotations

import threading

from ..shapes import pair

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

#: None = choose the column layout per shape; "nchw" or "chwn" force one (for
#: benchmarks and tests).  Results agree to rounding either way.
LAYOUT = None


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
                 "dh", "dw", "pt", "pb", "pl", "pr", "OH", "OW", "Hn", "Wn", "layout")

    def __init__(self, x_shape, w_shape, strides, pads, dilations, groups):
        self.N, self.C, self.H, self.W = (int(s) for s in x_shape)
        self.O, self.Cg, self.kh, self.kw = (int(s) for s in w_shape)
        self.G = int(groups)
        self.sh, self.sw = pair(strides, "strides")
        self.dh, self.dw = pair(dilations, "dilations")
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
        self.layout = _layout(self) if LAYOUT is None else LAYOUT

    @property
    def K(self):
        return self.Cg * self.kh * self.kw


    @property
    def P(self):
        return self.OH * self.OW


def _layout(g):
    """'chwn' for small output planes (short im2col runs), else 'nchw'.

    NOTE: measured on LeNet / CIFAR-quick shapes (2 cores, OpenBLAS): "chwn"
    wins clearly at OW = 8, "nchw" at OW >= 24 (where the transposes of the
    large activations cost more than the longer runs save); with N = 1 there
    is nothing to gain from putting the batch innermost."""
    if g.N == 1:
        return "nchw"
    return "chwn" if g.OW <= 16 else "nchw"


def _window_view(xp, a, g, chwn):
    """The im2col view of a padded input: [C, kh, kw, OH, OW, N] of a
    [C, Hn, Wn, N] array (chwn) or [N, C, kh, kw, OH, OW] of [N, C, Hn, Wn]."""
    if chwn:
        sC, sH, sW, sN = a.strides
        return _as_strided(xp, a, (g.C, g.kh, g.kw, g.OH, g.OW, g.N),
                           (sC, g.dh * sH, g.dw * sW, g.sh * sH, g.sw * sW, sN))
    sN, sC, sH, sW = a.strides
    return _as_strided(xp, a, (g.N, g.C, g.kh, g.kw, g.OH, g.OW),
                       (sN, sC, g.dh * sH, g.dw * sW, g.sh * sH, g.sw * sW))


def _pad_chwn(xp, x, g, role):
    """x [N, C, H, W] transposed into a zero-padded scratch [C, Hn, Wn, N]."""
    buf = _scratch(xp, role, (g.C, g.Hn, g.Wn, g.N), x.dtype)
    rows = max(0, min(g.H, g.Hn - g.pt))
    cols = max(0, min(g.W, g.Wn - g.pl))
    if g.pt or g.pl or rows < g.Hn or cols < g.Wn:
        buf.fill(0)
    if rows and cols:
        _copy(xp, buf[:, g.pt:g.pt + rows, g.pl:g.pl + cols],
              x[:, :, :rows, :cols].transpose(1, 2, 3, 0))
    return buf


def _on_gpu(xp, g):
    """Whether ``xp`` is an accelerator's array module; its kernels use the "nchw" layout and the
    one-launch im2col / col2im of cuda.py."""
    if xp.__name__ == "numpy":
        return False
    g.layout = "nchw"
    return True


def _im2col(xp, x, g):
    """Column matrix in a scratch buffer: [G, K, OH*OW*N] (chwn) or
    [N, G, K, OH*OW] (nchw)."""
    if _on_gpu(xp, g):
        from . import cuda

        return cuda.im2col(xp, x, g).reshape(g.N, g.G, g.K, g.P)
    if g.layout == "chwn":
        view = _window_view(xp, _pad_chwn(xp, x, g, "conv_pad"), g, True)
        cols = _scratch(xp, "conv_cols", view.shape, x.dtype)
        _copy(xp, cols, view)
        return cols.reshape(g.G, g.K, g.P * g.N)
    xpd = _pad_into(xp, x, g.pt, g.pl, g.Hn, g.Wn, 0, "conv_pad")
    view = _window_view(xp, xpd, g, False)
    cols = _scratch(xp, "conv_cols", view.shape, x.dtype)
    _copy(xp, cols, view)
    return cols.reshape(g.N, g.G, g.K, g.P)


def _dy_chwn(xp, dy, g):
    """dy [N, O, OH, OW] as the chwn GEMM operand [G, Og, OH*OW*N] (scratch)."""
    buf = _scratch(xp, "conv_dyT", (g.O, g.OH, g.OW, g.N), dy.dtype)
    _copy(xp, buf, dy.transpose(1, 2, 3, 0))
    return buf.reshape(g.G, g.Og, g.P * g.N)


def _check_w(w, dtype):
    if w.dtype != dtype:
        w = w.astype(dtype)
    return w


def _mm(xp, a, b, out=None):
    """matmul of [G, m, k] @ [..., G, k, n]; plain 2-D GEMMs when G == 1."""
    if a.shape[0] == 1 and b.ndim == 3:
        r = xp.matmul(a[0], b[0], out=None if out is None else out[0])
        return r[None] if out is None else out
    return xp.matmul(a, b, out=out)


# --------------------------------------------------------------------------
# public kernels
# --------------------------------------------------------------------------


#: Upper bound (bytes) of the im2col matrix on the CPU: a larger batch runs in chunks of images.
#: Measured on CIFAR-10 quick's conv2 (batch 100: an 82 MB matrix): chunks of 8-20 images are as
#: fast or faster (the matrix stays in cache) and the peak memory of a step drops by the rest.
MAX_COLS_BYTES = 16 << 20


def _chunks(xp, g, itemsize):
    """Image ranges to run separately, or None for one pass."""
    if xp.__name__ != "numpy" or g.N == 1:
        return None
    per_image = g.C * g.kh * g.kw * g.OH * g.OW * itemsize
    n = max(1, MAX_COLS_BYTES // per_image)
    if n >= g.N:
        return None
    return [(i, min(i + n, g.N)) for i in range(0, g.N, n)]


def conv2d(xp, x, w, strides, pads, dilations, groups):
    """y[n, o, i, j] = sum_{c, p, q} w[o, c, p, q] *
    xpad[n, g(o)*C/G + c, i*sh + p*dh, j*sw + q*dw]; returns [N, O, OH, OW]."""
    g = _Geom(x.shape, w.shape, strides, pads, dilations, groups)
    w = _check_w(w, x.dtype)
    parts = _chunks(xp, g, x.dtype.itemsize)
    if parts is not None:
        y = xp.empty((g.N, g.O, g.OH, g.OW), dtype=x.dtype)
        for a, b in parts:
            y[a:b] = conv2d(xp, x[a:b], w, strides, pads, dilations, groups)
        return y
    cols = _im2col(xp, x, g)
    wg = w.reshape(g.G, g.Og, g.K)
    y = xp.empty((g.N, g.O, g.OH, g.OW), dtype=x.dtype)
    if g.layout == "chwn":
        # NOTE: computed as cols^T @ w^T ([OH*OW*N, Og] per group): OpenBLAS runs this
        # orientation ~20% faster here, and the transpose back to NCHW is cheaper from it.
        out = _scratch(xp, "conv_gemm", (g.G, g.P * g.N, g.Og), x.dtype)
        _mm(xp, cols.transpose(0, 2, 1), wg.transpose(0, 2, 1), out=out)
        _copy(xp, y.reshape(g.N, g.G, g.Og, g.OH, g.OW),
              out.reshape(g.G, g.OH, g.OW, g.N, g.Og).transpose(3, 0, 4, 1, 2))
    elif g.G == 1:
        # [O, K] @ [N, K, P] -> [N, O, P]: each image's GEMM writes NCHW directly
        xp.matmul(wg[0], cols[:, 0], out=y.reshape(g.N, g.O, g.P))
    else:
        xp.matmul(wg, cols, out=y.reshape(g.N, g.G, g.Og, g.P))
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
    parts = _chunks(xp, g, dtype.itemsize)
    if parts is not None:
        dx = xp.empty((N, g.C, H, W), dtype=dtype)
        for a, b in parts:
            dx[a:b] = conv2d_backprop_input(xp, dy[a:b], w, input_hw, strides, pads, dilations, groups)
        return dx
    gpu = _on_gpu(xp, g)
    wT = w.reshape(g.G, g.Og, g.K).transpose(0, 2, 1)
    hs = (OH - 1) * g.sh + 1
    ws = (OW - 1) * g.sw + 1
    rows = max(0, min(H, g.Hn - g.pt))
    cols_ = max(0, min(W, g.Wn - g.pl))
    crop = not (g.pt == 0 and g.pl == 0 and g.Hn == H and g.Wn == W)
    if g.layout == "chwn":
        # dcols [C, kh, kw, OH, OW, N] = w^T @ dy; col2im into [C, Hn, Wn, N]
        dcols = _scratch(xp, "conv_cols", (g.C, g.kh, g.kw, OH, OW, N), dtype)
        _mm(xp, wT, _dy_chwn(xp, dy, g), out=dcols.reshape(g.G, g.K, g.P * N))
        acc = _scratch(xp, "conv_pad", (g.C, g.Hn, g.Wn, N), dtype)

        def col2im(c0, c1):
            a = acc[c0:c1]
            a.fill(0)
            for i in range(g.kh):
                r0 = i * g.dh
                for j in range(g.kw):
                    q0 = j * g.dw
                    a[:, r0:r0 + hs:g.sh, q0:q0 + ws:g.sw] += dcols[c0:c1, i, j]

        _split_run(xp, g.C, dcols.size, col2im)
        dx = (xp.zeros if rows < H or cols_ < W else xp.empty)((N, g.C, H, W), dtype=dtype)
        if rows and cols_:
            _copy(xp, dx[:, :, :rows, :cols_],
                  acc[:, g.pt:g.pt + rows, g.pl:g.pl + cols_].transpose(3, 0, 1, 2))
        return dx
    # nchw: dcols [N, C, kh, kw, OH, OW] = w^T @ dy per image; col2im into [N, C, Hn, Wn]
    dcols = _scratch(xp, "conv_cols", (N, g.C, g.kh, g.kw, OH, OW), dtype)
    dyg = dy.reshape(N, g.G, g.Og, g.P)
    if g.G == 1:
        xp.matmul(wT[0], dyg[:, 0], out=dcols.reshape(N, g.K, g.P))
    else:
        xp.matmul(wT, dyg, out=dcols.reshape(N, g.G, g.K, g.P))
    if gpu:
        from . import cuda

        return cuda.col2im(xp, dcols, g, H, W)
    if crop:
        acc = _scratch(xp, "conv_pad", (N, g.C, g.Hn, g.Wn), dtype)
    else:
        acc = xp.empty((N, g.C, H, W), dtype=dtype)  # accumulate straight into dx

    def col2im_n(n0, n1):
        a = acc[n0:n1]
        a.fill(0)
        for i in range(g.kh):
            r0 = i * g.dh
            for j in range(g.kw):
                q0 = j * g.dw
                a[:, :, r0:r0 + hs:g.sh, q0:q0 + ws:g.sw] += dcols[n0:n1, :, i, j]

    _split_run(xp, N, dcols.size, col2im_n)
    if not crop:
        return acc
    dx = (xp.zeros if rows < H or cols_ < W else xp.empty)((N, g.C, H, W), dtype=dtype)
    if rows and cols_:
        _copy(xp, dx[:, :, :rows, :cols_], acc[:, :, g.pt:g.pt + rows, g.pl:g.pl + cols_])
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
    parts = _chunks(xp, g, x.dtype.itemsize)
    if parts is not None:
        dw = None
        for a, b in parts:
            part = conv2d_backprop_filter(xp, x[a:b], dy[a:b], filter_hw, strides, pads, dilations, groups)
            dw = part if dw is None else xp.add(dw, part, out=dw)
        return dw
    cols = _im2col(xp, x, g)
    if g.layout == "chwn":
        # dw^T [G, K, Og] = cols @ dy^T (faster in OpenBLAS than dy @ cols^T)
        dw = xp.ascontiguousarray(_mm(xp, cols, _dy_chwn(xp, dy, g).transpose(0, 2, 1)).transpose(0, 2, 1))
    else:
        # one GEMM per image, then the sum over the batch
        dyg = dy.reshape(N, G, g.Og, g.P)
        part = _scratch(xp, "conv_dwpart", (N, G, g.Og, g.K), x.dtype)
        xp.matmul(dyg, cols.transpose(0, 1, 3, 2), out=part)
        dw = part.sum(axis=0)
    return dw.reshape(O, C // G, kh, kw)
