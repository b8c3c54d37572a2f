"""Tests for tfconf.engine.kernels.pool against naive loop references."""

import math

import numpy as np
import pytest

from tfconf.engine.kernels import pool as P

# ---------------------------------------------------------------------------
# naive references (explicit Python loops, float64)
# ---------------------------------------------------------------------------


def ref_out_size(n, k, s, pb, pa, ceil_mode):
    span = (n + pb + pa - k) / s
    out = (math.ceil(span) if ceil_mode else math.floor(span)) + 1
    if ceil_mode and (out - 1) * s >= n + pb:
        out -= 1
    return out


def ref_pool(x, ksize, strides, pads, ceil_mode, mode, count_include_pad=True, dy=None):
    """mode 'max' or 'avg'; returns (y, dx) where dx is the gradient for dy."""
    N, C, H, W = x.shape
    kh, kw = ksize
    sh, sw = strides
    pt, pb, pl, pr = pads
    OH = ref_out_size(H, kh, sh, pt, pb, ceil_mode)
    OW = ref_out_size(W, kw, sw, pl, pr, ceil_mode)
    y = np.zeros((N, C, OH, OW))
    dx = np.zeros(x.shape)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    hs, ws = i * sh - pt, j * sw - pl
                    he, we = min(hs + kh, H + pb), min(ws + kw, W + pr)
                    h0, h1, w0, w1 = max(hs, 0), min(hs + kh, H), max(ws, 0), min(ws + kw, W)
                    if mode == "max":
                        best, arg = -np.inf, None
                        for h in range(h0, h1):
                            for w in range(w0, w1):
                                if x[n, c, h, w] > best:
                                    best, arg = x[n, c, h, w], (h, w)
                        y[n, c, i, j] = best
                        if dy is not None and arg is not None:
                            dx[n, c, arg[0], arg[1]] += dy[n, c, i, j]
                    else:
                        if count_include_pad:
                            div = (he - hs) * (we - ws)
                        else:
                            div = (min(he, H) - h0) * (min(we, W) - w0)
                        tot = 0.0
                        for h in range(h0, h1):
                            for w in range(w0, w1):
                                tot += x[n, c, h, w]
                                if dy is not None:
                                    dx[n, c, h, w] += dy[n, c, i, j] / div
                        y[n, c, i, j] = tot / div
    return y, dx


# (x shape, ksize, strides, pads, ceil_mode)
CASES = [
    ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0, 0, 0), False),      # LeNet style, exact cover
    ((1, 2, 9, 9), (2, 2), (2, 2), (0, 0, 0, 0), False),      # drops last row/col
    ((1, 2, 9, 9), (2, 2), (2, 2), (0, 0, 0, 0), True),       # ceil: partial last window
    ((2, 2, 10, 10), (3, 3), (2, 2), (0, 0, 0, 0), True),     # CIFAR style, ceil
    ((2, 2, 11, 11), (3, 3), (2, 2), (0, 0, 0, 0), True),
    ((2, 2, 10, 9), (3, 3), (2, 2), (1, 1, 1, 1), False),     # symmetric pad
    ((2, 2, 10, 9), (3, 3), (2, 2), (1, 1, 1, 1), True),
    ((2, 3, 7, 8), (3, 2), (2, 1), (1, 0, 0, 1), False),      # asym pads, non-square
    ((2, 3, 7, 8), (3, 2), (2, 1), (0, 1, 1, 0), True),
    ((1, 2, 10, 11), (2, 2), (3, 3), (0, 0, 1, 0), False),    # stride 3 > kernel (gaps)
    ((2, 2, 10, 11), (3, 3), (3, 3), (1, 1, 0, 1), True),     # stride 3 == kernel, ceil
    ((2, 2, 6, 6), (3, 3), (1, 1), (1, 1, 1, 1), False),      # stride 1, separable
    ((3, 2, 5, 6), (5, 6), (1, 1), (0, 0, 0, 0), False),      # kernel == input
    ((2, 2, 6, 7), (1, 1), (2, 2), (0, 0, 0, 0), False),      # 1x1 subsample
    ((1, 1, 4, 4), (2, 2), (2, 2), (1, 1, 1, 1), True),       # pads + ceil, TF-like
]


def _distinct(rng, shape):
    """Values with a clear gap between any two (no ties at a kink)."""
    v = rng.permutation(int(np.prod(shape))).astype(np.float64) * 0.1
    return v.reshape(shape) + 0.01 * rng.random(shape)


@pytest.mark.parametrize("xs,ks,st,pads,ceil_mode", CASES)
def test_pool_output_size(xs, ks, st, pads, ceil_mode):
    assert P.pool_output_size(xs[2], ks[0], st[0], pads[0], pads[1], ceil_mode) == \
        ref_out_size(xs[2], ks[0], st[0], pads[0], pads[1], ceil_mode)
    assert P.pool_output_size(xs[3], ks[1], st[1], pads[2], pads[3], ceil_mode) == \
        ref_out_size(xs[3], ks[1], st[1], pads[2], pads[3], ceil_mode)


def test_pool_output_size_known_values():
    assert P.pool_output_size(24, 2, 2, 0, 0, False) == 12
    assert P.pool_output_size(32, 3, 2, 0, 0, True) == 16     # cifar10_quick pool1
    assert P.pool_output_size(32, 3, 2, 0, 0, False) == 15
    assert P.pool_output_size(16, 3, 2, 0, 0, True) == 8
    assert P.pool_output_size(8, 3, 2, 0, 0, True) == 4
    # the last window must start inside input + pad_before
    assert P.pool_output_size(5, 2, 2, 1, 1, True) == 3
    assert P.pool_output_size(4, 3, 3, 1, 1, True) == 2


@pytest.mark.parametrize("xs,ks,st,pads,ceil_mode", CASES)
def test_max_pool_matches_reference(xs, ks, st, pads, ceil_mode):
    rng = np.random.default_rng(0)
    x = _distinct(rng, xs)
    y = P.max_pool(np, x, ks, st, pads, ceil_mode)
    dy = rng.standard_normal(y.shape)
    y_ref, dx_ref = ref_pool(x, ks, st, pads, ceil_mode, "max", dy=dy)
    np.testing.assert_array_equal(y, y_ref)
    dx = P.max_pool_grad(np, x, y, dy, ks, st, pads, ceil_mode)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("include", [True, False])
@pytest.mark.parametrize("xs,ks,st,pads,ceil_mode", CASES)
def test_avg_pool_matches_reference(xs, ks, st, pads, ceil_mode, include):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs)
    y = P.avg_pool(np, x, ks, st, pads, ceil_mode, include)
    dy = rng.standard_normal(y.shape)
    y_ref, dx_ref = ref_pool(x, ks, st, pads, ceil_mode, "avg", include, dy=dy)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-13)
    dx = P.avg_pool_grad(np, dy, xs, ks, st, pads, ceil_mode, include)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-13)
    # exact adjoint
    np.testing.assert_allclose(np.sum(y * dy), np.sum(x * dx), rtol=1e-10)


def test_avg_pool_divisors_ceil_mode_clipped():
    # 1x1x5x5 ones, 2x2/2 with pad 1 and ceil: windows running past
    # input + pad_after are clipped for count_include_pad
    x = np.ones((1, 1, 5, 5))
    y_inc = P.avg_pool(np, x, (2, 2), (2, 2), (1, 1, 1, 1), True, True)
    y_exc = P.avg_pool(np, x, (2, 2), (2, 2), (1, 1, 1, 1), True, False)
    np.testing.assert_allclose(y_exc, np.ones((1, 1, 3, 3)))
    edge = np.array([0.5, 1.0, 1.0])
    np.testing.assert_allclose(y_inc[0, 0], np.outer(edge, edge))
    # corner window: 1 real element out of 4 padded positions
    assert y_inc[0, 0, 0, 0] == 0.25
    assert y_inc[0, 0, 0, 1] == 0.5
    assert y_inc[0, 0, 1, 1] == 1.0
    # last window [3, 5) x [3, 5): inside input, no pad counted
    assert y_inc[0, 0, 2, 2] == 1.0


@pytest.mark.parametrize("xs,ks,st,pads,ceil_mode", [CASES[0], CASES[3], CASES[7], CASES[11]])
def test_max_pool_grad_finite_differences(xs, ks, st, pads, ceil_mode):
    rng = np.random.default_rng(5)
    x = _distinct(rng, xs)
    y = P.max_pool(np, x, ks, st, pads, ceil_mode)
    dy = rng.standard_normal(y.shape)
    dx = P.max_pool_grad(np, x, y, dy, ks, st, pads, ceil_mode)
    eps = 1e-4   # values are >= 0.1 apart, so no kink is crossed
    num = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp_, xm = x.copy(), x.copy()
        xp_[idx] += eps
        xm[idx] -= eps
        f_p = np.sum(P.max_pool(np, xp_, ks, st, pads, ceil_mode) * dy)
        f_m = np.sum(P.max_pool(np, xm, ks, st, pads, ceil_mode) * dy)
        num[idx] = (f_p - f_m) / (2 * eps)
    np.testing.assert_allclose(dx, num, rtol=1e-7, atol=1e-8)


def test_max_pool_grad_ties_go_to_first_element():
    x = np.ones((1, 2, 4, 4))
    y = P.max_pool(np, x, (2, 2), (2, 2), (0, 0, 0, 0))
    dy = np.arange(1.0, 9.0).reshape(1, 2, 2, 2)
    dx = P.max_pool_grad(np, x, y, dy, (2, 2), (2, 2), (0, 0, 0, 0))
    expect = np.zeros_like(x)
    expect[:, :, ::2, ::2] = dy
    np.testing.assert_array_equal(dx, expect)
    # overlapping windows with ties: each window picks its own first element
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = -1.0
    y = P.max_pool(np, x, (3, 3), (2, 2), (0, 0, 0, 0), ceil_mode=True)
    dy = np.ones(y.shape)
    dx = P.max_pool_grad(np, x, y, dy, (3, 3), (2, 2), (0, 0, 0, 0), ceil_mode=True)
    _, dx_ref = ref_pool(x, (3, 3), (2, 2), (0, 0, 0, 0), True, "max", dy=dy)
    np.testing.assert_array_equal(dx, dx_ref)
    assert dx.sum() == dy.sum() and np.count_nonzero(dx) == y.size
    # ties with the maximum in the middle of the window
    x = np.array([[[[0.0, 3.0, 3.0], [3.0, 1.0, 3.0], [2.0, 3.0, 0.0]]]])
    y = P.max_pool(np, x, (3, 3), (1, 1), (0, 0, 0, 0))
    dx = P.max_pool_grad(np, x, y, np.full(y.shape, 2.0), (3, 3), (1, 1), (0, 0, 0, 0))
    expect = np.zeros_like(x)
    expect[0, 0, 0, 1] = 2.0
    np.testing.assert_array_equal(dx, expect)


def test_max_pool_padding_is_minus_inf():
    x = -np.ones((1, 1, 3, 3)) * 5.0
    y = P.max_pool(np, x, (2, 2), (2, 2), (1, 1, 1, 1))
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), -5.0))


@pytest.mark.parametrize("fn", ["max", "avg"])
def test_float32_stays_float32(fn):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    args = ((3, 3), (2, 2), (1, 1, 1, 1), True)
    if fn == "max":
        y = P.max_pool(np, x, *args)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = P.max_pool_grad(np, x, y, dy, *args)
        _, dx_ref = ref_pool(x.astype(np.float64), *args, "max", dy=dy.astype(np.float64))
    else:
        y = P.avg_pool(np, x, *args)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = P.avg_pool_grad(np, dy, x.shape, *args)
        _, dx_ref = ref_pool(x.astype(np.float64), *args, "avg", dy=dy.astype(np.float64))
    assert y.dtype == np.float32 and dx.dtype == np.float32
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-6)


def test_repeated_calls_do_not_alias_scratch():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2, 7, 7))
    args = ((3, 3), (2, 2), (1, 1, 1, 1), True)
    y1 = P.avg_pool(np, x, *args)
    y2 = P.max_pool(np, x, *args)
    y1c, y2c = y1.copy(), y2.copy()
    P.avg_pool(np, 2 * x, *args)
    P.max_pool(np, 2 * x, *args)
    d1 = P.avg_pool_grad(np, y1, x.shape, *args)
    d1c = d1.copy()
    P.avg_pool_grad(np, 2 * y1, x.shape, *args)
    np.testing.assert_array_equal(y1, y1c)
    np.testing.assert_array_equal(y2, y2c)
    np.testing.assert_array_equal(d1, d1c)


def test_bad_shapes():
    with pytest.raises(ValueError):
        P.max_pool(np, np.zeros((1, 1, 2, 2)), (3, 3), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError):
        P.avg_pool_grad(np, np.zeros((1, 1, 3, 3)), (1, 1, 4, 4), (2, 2), (2, 2), (0, 0, 0, 0))


# ---------------------------------------------------------------------------
# optional PyTorch oracle
# ---------------------------------------------------------------------------

TORCH_CASES = [  # symmetric pads (torch requires pad <= k / 2)
    ((4, 3, 24, 24), (2, 2), (2, 2), 0, False),
    ((3, 4, 32, 32), (3, 3), (2, 2), 0, True),
    ((3, 4, 16, 15), (3, 3), (2, 2), 1, True),
    ((2, 3, 17, 13), (3, 2), (2, 3), 1, False),
    ((2, 3, 17, 13), (3, 3), (3, 2), 1, True),
]


@pytest.mark.torch
@pytest.mark.parametrize("xs,ks,st,pad,ceil_mode", TORCH_CASES)
def test_pool_vs_torch(xs, ks, st, pad, ceil_mode):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(9)
    pads = (pad, pad, pad, pad)
    # integer-valued data: plenty of ties to check the tie-breaking rule too
    for x in (rng.standard_normal(xs), rng.integers(0, 3, xs).astype(np.float64)):
        xt = torch.tensor(x, requires_grad=True)
        yt = F.max_pool2d(xt, ks, st, pad, ceil_mode=ceil_mode)
        dy = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.tensor(dy))
        y = P.max_pool(np, x, ks, st, pads, ceil_mode)
        np.testing.assert_array_equal(y, yt.detach().numpy())
        dx = P.max_pool_grad(np, x, y, dy, ks, st, pads, ceil_mode)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    x = rng.standard_normal(xs)
    for include in (True, False):
        xt = torch.tensor(x, requires_grad=True)
        yt = F.avg_pool2d(xt, ks, st, pad, ceil_mode=ceil_mode, count_include_pad=include)
        dy = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.tensor(dy))
        y = P.avg_pool(np, x, ks, st, pads, ceil_mode, include)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
        dx = P.avg_pool_grad(np, dy, xs, ks, st, pads, ceil_mode, include)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_overlapping_strided_max_pool_grad_on_random_geometries_with_ties(seed):
    """Overlapping windows with a stride > 1 (CIFAR-10 quick's kind) against the loop reference,
    on random sizes, windows, strides, pads and ceil modes, with integer data full of ties."""
    rng = np.random.default_rng(seed)
    kh, kw = (int(v) for v in rng.integers(2, 5, 2))
    sh, sw = int(rng.integers(2, kh + 1)), int(rng.integers(1, kw + 1))
    if sh >= kh and sw >= kw:
        sh = kh - 1
    pads = tuple(int(v) for v in rng.integers(0, [kh, kh, kw, kw]))
    H, W = int(rng.integers(kh + 1, 14)), int(rng.integers(kw + 1, 14))
    ceil = bool(rng.integers(0, 2))
    x = rng.integers(-2, 3, (2, 3, H, W)).astype(np.float64)
    y = P.max_pool(np, x, (kh, kw), (sh, sw), pads, ceil)
    dy = rng.standard_normal(y.shape)
    ref_y, ref_dx = ref_pool(x, (kh, kw), (sh, sw), pads, ceil, "max", dy=dy)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_allclose(P.max_pool_grad(np, x, y, dy, (kh, kw), (sh, sw), pads, ceil), ref_dx,
                               rtol=1e-12, atol=1e-12)
