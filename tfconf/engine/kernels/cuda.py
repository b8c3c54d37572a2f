"""Single-kernel CUDA versions (CuPy ``ElementwiseKernel``) of the copy-heavy parts of the conv and
pooling kernels: im2col, col2im, and max/average pooling with their gradients.

The portable code in conv.py / pool.py expresses these as many strided slices, which numpy runs
well but which on a GPU cost one kernel launch each (25 for a 5x5 col2im, up to 45 for a 3x3
max-pool gradient). Here each is one launch. The gradients are written as gathers (every output
element sums what reaches it), so no atomics are needed and results are deterministic. Semantics
are those of the numpy kernels: pads count as -inf for max and as the window's divisor rule says
for average pooling; a max-pool gradient goes to the first maximal element of each window in
row-major order.

Only imported when an array module other than numpy is in use (``xp`` is cupy).
"""

from __future__ import annotations

_KERNELS = {}


def _kernel(name, in_params, out_params, body):
    k = _KERNELS.get(name)
    if k is None:
        import cupy

        k = _KERNELS[name] = cupy.ElementwiseKernel(in_params, out_params, body, f"tfconf_{name}")
    return k


_GEOM = "int32 C, int32 H, int32 W, int32 KH, int32 KW, int32 SH, int32 SW, int32 PT, int32 PL, " \
        "int32 OH, int32 OW"


def im2col(xp, x, g):
    """cols [N, C, kh, kw, OH, OW] of x [N, C, H, W] (zero padding), one launch."""
    k = _kernel("im2col", f"raw T x, {_GEOM}, int32 DH, int32 DW", "T cols", """
        int ow = i % OW; int t = i / OW;
        int oh = t % OH; t /= OH;
        int kj = t % KW; t /= KW;
        int ki = t % KH; t /= KH;
        int c = t % C; int n = t / C;
        int h = oh * SH - PT + ki * DH;
        int w = ow * SW - PL + kj * DW;
        cols = (h >= 0 && h < H && w >= 0 && w < W) ? x[((long long)(n * C + c) * H + h) * W + w] : (T)0;
    """)
    cols = xp.empty((g.N, g.C, g.kh, g.kw, g.OH, g.OW), dtype=x.dtype)
    k(xp.ascontiguousarray(x), g.C, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.OH, g.OW, g.dh, g.dw, cols)
    return cols


def col2im(xp, dcols, g, H, W):
    """dx [N, C, H, W] = the adjoint of :func:`im2col` applied to dcols, one launch (a gather)."""
    k = _kernel("col2im", f"raw T dcols, {_GEOM}, int32 DH, int32 DW", "T dx", """
        int w = i % W; int t = i / W;
        int h = t % H; t /= H;
        int c = t % C; int n = t / C;
        T acc = 0;
        for (int ki = 0; ki < KH; ++ki) {
            int hh = h + PT - ki * DH;
            if (hh < 0 || hh % SH) continue;
            int oh = hh / SH;
            if (oh >= OH) continue;
            for (int kj = 0; kj < KW; ++kj) {
                int ww = w + PL - kj * DW;
                if (ww < 0 || ww % SW) continue;
                int ow = ww / SW;
                if (ow >= OW) continue;
                acc += dcols[((((long long)(n * C + c) * KH + ki) * KW + kj) * OH + oh) * OW + ow];
            }
        }
        dx = acc;
    """)
    dx = xp.empty((g.N, g.C, H, W), dtype=dcols.dtype)
    k(dcols, g.C, H, W, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.OH, g.OW, g.dh, g.dw, dx)
    return dx


def max_pool(xp, x, g):
    k = _kernel("max_pool", f"raw T x, {_GEOM}", "T y", """
        int ow = i % OW; int t = i / OW;
        int oh = t % OH; int nc = t / OH;
        int h0 = oh * SH - PT, w0 = ow * SW - PL;
        int h1 = min(h0 + KH, H), w1 = min(w0 + KW, W);
        h0 = max(h0, 0); w0 = max(w0, 0);
        const T* p = &x[(long long)nc * H * W];
        T m = (T)__int_as_float(0xff800000);  // -inf: what an all-padding window holds
        for (int h = h0; h < h1; ++h)
            for (int w = w0; w < w1; ++w)
                if (p[h * W + w] > m) m = p[h * W + w];
        y = m;
    """)
    y = xp.empty(g.out_shape, dtype=x.dtype)
    k(xp.ascontiguousarray(x), g.C, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.OH, g.OW, y)
    return y


def max_pool_grad(xp, x, y, dy, g):
    """dx: each window's gradient to its first maximal element (row-major), as a gather over the
    windows that contain each input element."""
    k = _kernel("max_pool_grad", f"raw T x, raw T y, raw T dy, {_GEOM}", "T dx", """
        int w = i % W; int t = i / W;
        int h = t % H; int nc = t / H;
        const T* p = &x[(long long)nc * H * W];
        const T* py = &y[(long long)nc * OH * OW];
        const T* pd = &dy[(long long)nc * OH * OW];
        // windows containing (h, w): oh*SH - PT <= h < oh*SH - PT + KH
        int oh0 = max(0, (h + PT - KH + SH) / SH), oh1 = min(OH - 1, (h + PT) / SH);
        int ow0 = max(0, (w + PL - KW + SW) / SW), ow1 = min(OW - 1, (w + PL) / SW);
        if (h + PT - KH + 1 < 0) oh0 = 0;
        if (w + PL - KW + 1 < 0) ow0 = 0;
        T acc = 0;
        for (int oh = oh0; oh <= oh1; ++oh) {
            for (int ow = ow0; ow <= ow1; ++ow) {
                int hs = oh * SH - PT, ws = ow * SW - PL;
                if (h < hs || h >= hs + KH || w < ws || w >= ws + KW) continue;
                T m = py[oh * OW + ow];
                if (p[h * W + w] != m) continue;
                // is (h, w) the first maximal element of this window?
                int he = min(hs + KH, H), we = min(ws + KW, W);
                bool first = true;
                for (int hh = max(hs, 0); hh < he && first; ++hh)
                    for (int ww = max(ws, 0); ww < we; ++ww) {
                        if (hh == h && ww == w) { hh = he; break; }
                        if (p[hh * W + ww] == m) { first = false; break; }
                    }
                if (first) acc += pd[oh * OW + ow];
            }
        }
        dx = acc;
    """)
    dx = xp.empty((g.N, g.C, g.H, g.W), dtype=x.dtype)
    k(xp.ascontiguousarray(x), xp.ascontiguousarray(y), xp.ascontiguousarray(dy),
      g.C, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.OH, g.OW, dx)
    return dx


_AVG_DIV = """
        int hs = oh * SH - PT, ws = ow * SW - PL;
        int he = min(hs + KH, H + PB), we = min(ws + KW, W + PR);
        int div = INCLUDE ? (he - hs) * (we - ws)
                          : (min(he, H) - max(hs, 0)) * (min(we, W) - max(ws, 0));
        if (div < 1) div = 1;
"""


def avg_pool(xp, x, g, count_include_pad):
    k = _kernel("avg_pool", f"raw T x, {_GEOM}, int32 PB, int32 PR, bool INCLUDE", "T y", """
        int ow = i % OW; int t = i / OW;
        int oh = t % OH; int nc = t / OH;
    """ + _AVG_DIV + """
        const T* p = &x[(long long)nc * H * W];
        T s = 0;
        for (int h = max(hs, 0); h < min(he, H); ++h)
            for (int w = max(ws, 0); w < min(we, W); ++w)
                s += p[h * W + w];
        y = s / (T)div;
    """)
    y = xp.empty(g.out_shape, dtype=x.dtype)
    k(xp.ascontiguousarray(x), g.C, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.OH, g.OW, g.pb, g.pr,
      bool(count_include_pad), y)
    return y


def avg_pool_grad(xp, dy, g, count_include_pad):
    k = _kernel("avg_pool_grad", f"raw T dy, {_GEOM}, int32 PB, int32 PR, bool INCLUDE", "T dx", """
        int w = i % W; int t = i / W;
        int h = t % H; int nc = t / H;
        const T* pd = &dy[(long long)nc * OH * OW];
        int oh0 = max(0, (h + PT - KH + SH) / SH), oh1 = min(OH - 1, (h + PT) / SH);
        int ow0 = max(0, (w + PL - KW + SW) / SW), ow1 = min(OW - 1, (w + PL) / SW);
        if (h + PT - KH + 1 < 0) oh0 = 0;
        if (w + PL - KW + 1 < 0) ow0 = 0;
        T acc = 0;
        for (int oh = oh0; oh <= oh1; ++oh)
            for (int ow = ow0; ow <= ow1; ++ow) {
    """ + _AVG_DIV + """
                if (h < hs || h >= hs + KH || w < ws || w >= ws + KW) continue;
                acc += pd[oh * OW + ow] / (T)div;
            }
        dx = acc;
    """)
    dx = xp.empty((g.N, g.C, g.H, g.W), dtype=dy.dtype)
    k(xp.ascontiguousarray(dy), g.C, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.OH, g.OW, g.pb, g.pr,
      bool(count_include_pad), dx)
    return dx
