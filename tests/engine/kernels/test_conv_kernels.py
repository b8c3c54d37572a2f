"""Tests for tfconf.engine.kernels.conv against naive loop references."""

import numpy as np
import pytest

from tfconf.engine.kernels import conv as K

# ---------------------------------------------------------------------------
# naive references (explicit Python loops, float64)
# ---------------------------------------------------------------------------


def ref_out_size(n, k, s, pb, pa, d):
    out = 0
    # count window starts whose last tap is still inside the padded input
    while out * s + (k - 1) * d <= n + pb + pa - 1:
        out += 1
    return out


def ref_conv_all(x, w, dy, strides, pads, dil, groups):
    """Returns (y, dx, dw) with explicit loops over every tap."""
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    sh, sw = strides
    dh, dw_ = dil
    pt, pb, pl, pr = pads
    OH = ref_out_size(H, kh, sh, pt, pb, dh)
    OW = ref_out_size(W, kw, sw, pl, pr, dw_)
    Og = O // groups
    y = np.zeros((N, O, OH, OW))
    dx = np.zeros_like(x, dtype=np.float64)
    dwt = np.zeros_like(w, dtype=np.float64)
    for n in range(N):
        for o in range(O):
            g = o // Og
            for i in range(OH):
                for j in range(OW):
                    acc = 0.0
                    for c in range(Cg):
                        ci = g * Cg + c
                        for p in range(kh):
                            h = i * sh - pt + p * dh
                            if h < 0 or h >= H:
                                continue
                            for q in range(kw):
                                v = j * sw - pl + q * dw_
                                if v < 0 or v >= W:
                                    continue
                                acc += x[n, ci, h, v] * w[o, c, p, q]
                                if dy is not None:
                                    dx[n, ci, h, v] += w[o, c, p, q] * dy[n, o, i, j]
                                    dwt[o, c, p, q] += x[n, ci, h, v] * dy[n, o, i, j]
                    y[n, o, i, j] = acc
    return y, dx, dwt


# (x shape, w shape, strides, pads, dilations, groups)
CASES = [
    ((2, 3, 7, 7), (4, 3, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((1, 3, 7, 8), (4, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 2, 9, 8), (3, 2, 3, 2), (2, 2), (1, 0, 2, 1), (1, 1), 1),       # asym pads, non-square
    ((2, 3, 10, 11), (2, 3, 3, 3), (3, 3), (2, 1, 0, 2), (1, 1), 1),     # stride 3
    ((2, 2, 9, 9), (3, 2, 3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 1),       # dilation 2
    ((2, 2, 11, 10), (2, 2, 3, 2), (2, 1), (1, 2, 0, 1), (2, 1), 1),     # mixed stride / dilation
    ((2, 4, 6, 6), (6, 2, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),       # groups 2
    ((2, 4, 7, 6), (4, 1, 3, 3), (2, 1), (1, 1, 0, 2), (1, 1), 4),       # depthwise
    ((1, 3, 6, 6), (6, 1, 2, 3), (1, 2), (0, 1, 1, 0), (1, 1), 3),       # depthwise, multiplier 2
    ((3, 2, 5, 4), (3, 2, 5, 4), (1, 1), (0, 0, 0, 0), (1, 1), 1),       # kernel == input
    ((2, 3, 5, 5), (4, 3, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),       # 1x1
    ((2, 3, 6, 7), (4, 3, 1, 1), (2, 2), (0, 1, 1, 0), (1, 1), 1),       # 1x1 strided, padded
    ((2, 2, 6, 14), (3, 2, 2, 3), (1, 1), (0, 0, 1, 1), (1, 1), 1),      # wide im2col path
    ((2, 2, 9, 16), (3, 2, 3, 3), (2, 1), (1, 0, 1, 2), (1, 1), 1),      # wide path, row stride 2
    ((1, 2, 8, 20), (2, 2, 2, 3), (1, 1), (1, 1, 0, 0), (2, 2), 1),      # wide path, dilation 2
    ((2, 4, 8, 16), (4, 2, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),      # wide path, groups
]


def _rand(rng, shape):
    return rng.standard_normal(shape)


@pytest.mark.parametrize("xs,ws,st,pads,dil,groups", CASES)
def test_conv_matches_reference(xs, ws, st, pads, dil, groups):
    rng = np.random.default_rng(hash((xs, ws, st, pads)) % 2**32)
    x = _rand(rng, xs)
    w = _rand(rng, ws)
    OH = K.conv_output_size(xs[2], ws[2], st[0], pads[0], pads[1], dil[0])
    OW = K.conv_output_size(xs[3], ws[3], st[1], pads[2], pads[3], dil[1])
    assert OH == ref_out_size(xs[2], ws[2], st[0], pads[0], pads[1], dil[0])
    assert OW == ref_out_size(xs[3], ws[3], st[1], pads[2], pads[3], dil[1])
    dy = _rand(rng, (xs[0], ws[0], OH, OW))
    y_ref, dx_ref, dw_ref = ref_conv_all(x, w, dy, st, pads, dil, groups)
    y = K.conv2d(np, x, w, st, pads, dil, groups)
    assert y.shape == y_ref.shape and y.dtype == np.float64
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    dx = K.conv2d_backprop_input(np, dy, w, xs[2:], st, pads, dil, groups)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
    dw = K.conv2d_backprop_filter(np, x, dy, ws[2:], st, pads, dil, groups)
    assert dw.shape == w.shape
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xs,ws,st,pads,dil,groups", CASES)
def test_conv_adjoint_identity(xs, ws, st, pads, dil, groups):
    rng = np.random.default_rng(7)
    x = _rand(rng, xs)
    w = _rand(rng, ws)
    y = K.conv2d(np, x, w, st, pads, dil, groups)
    dy = _rand(rng, y.shape)
    dx = K.conv2d_backprop_input(np, dy, w, xs[2:], st, pads, dil, groups)
    dw = K.conv2d_backprop_filter(np, x, dy, ws[2:], st, pads, dil, groups)
    a = np.sum(y * dy)
    np.testing.assert_allclose(np.sum(x * dx), a, rtol=1e-10)
    np.testing.assert_allclose(np.sum(w * dw), a, rtol=1e-10)


def test_output_size_floor_rule():
    assert K.conv_output_size(28, 5, 1, 0, 0, 1) == 24
    assert K.conv_output_size(32, 5, 1, 2, 2, 1) == 32
    assert K.conv_output_size(7, 3, 2, 0, 0, 1) == 3
    assert K.conv_output_size(8, 3, 2, 0, 0, 1) == 3
    assert K.conv_output_size(8, 3, 2, 0, 1, 1) == 4
    assert K.conv_output_size(9, 3, 1, 0, 0, 2) == 5
    for n in range(1, 12):
        for k in range(1, 5):
            for s in range(1, 4):
                for d in (1, 2):
                    for pb, pa in ((0, 0), (1, 2), (2, 0)):
                        if (k - 1) * d + 1 <= n + pb + pa:
                            assert K.conv_output_size(n, k, s, pb, pa, d) == \
                                ref_out_size(n, k, s, pb, pa, d)


def test_repeated_calls_do_not_alias_scratch():
    rng = np.random.default_rng(3)
    x1 = rng.standard_normal((2, 3, 8, 8))
    x2 = rng.standard_normal((2, 3, 8, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    y1 = K.conv2d(np, x1, w, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    y1c = y1.copy()
    K.conv2d(np, x2, w, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    dy = rng.standard_normal(y1.shape)
    dx1 = K.conv2d_backprop_input(np, dy, w, (8, 8), (1, 1), (1, 1, 1, 1), (1, 1), 1)
    dx1c = dx1.copy()
    K.conv2d_backprop_input(np, 2 * dy, w, (8, 8), (1, 1), (1, 1, 1, 1), (1, 1), 1)
    np.testing.assert_array_equal(y1, y1c)
    np.testing.assert_array_equal(dx1, dx1c)


@pytest.mark.parametrize("xs,ws,pads", [((3, 4, 12, 12), (5, 4, 5, 5), (0, 0, 0, 0)),
                                        ((2, 3, 16, 16), (4, 3, 5, 5), (2, 2, 2, 2))])
def test_float32_stays_float32(xs, ws, pads):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    y = K.conv2d(np, x, w, (1, 1), pads, (1, 1), 1)
    assert y.dtype == np.float32
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = K.conv2d_backprop_input(np, dy, w, xs[2:], (1, 1), pads, (1, 1), 1)
    dw = K.conv2d_backprop_filter(np, x, dy, ws[2:], (1, 1), pads, (1, 1), 1)
    assert dx.dtype == np.float32 and dw.dtype == np.float32
    y64 = K.conv2d(np, x.astype(np.float64), w.astype(np.float64), (1, 1), pads, (1, 1), 1)
    np.testing.assert_allclose(y, y64, rtol=1e-4, atol=1e-4)
    dx64 = K.conv2d_backprop_input(np, dy.astype(np.float64), w.astype(np.float64), xs[2:],
                                   (1, 1), pads, (1, 1), 1)
    np.testing.assert_allclose(dx, dx64, rtol=1e-4, atol=1e-4)
    dw64 = K.conv2d_backprop_filter(np, x.astype(np.float64), dy.astype(np.float64), ws[2:],
                                    (1, 1), pads, (1, 1), 1)
    np.testing.assert_allclose(dw, dw64, rtol=1e-4, atol=1e-3)


def test_shape_errors():
    x = np.zeros((1, 4, 5, 5))
    with pytest.raises(ValueError):
        K.conv2d(np, x, np.zeros((3, 4, 3, 3)), (1, 1), (0, 0, 0, 0), (1, 1), 2)
    with pytest.raises(ValueError):
        K.conv2d(np, x, np.zeros((3, 4, 7, 7)), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    with pytest.raises(ValueError):
        K.conv2d_backprop_input(np, np.zeros((1, 3, 4, 4)), np.zeros((3, 4, 3, 3)), (5, 5),
                                (1, 1), (0, 0, 0, 0), (1, 1), 1)


# ---------------------------------------------------------------------------
# optional PyTorch oracle
# ---------------------------------------------------------------------------

TORCH_CASES = [
    ((4, 3, 17, 15), (6, 3, 5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 1),
    ((3, 4, 16, 16), (8, 4, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ((2, 6, 13, 14), (6, 3, 3, 2), (1, 2), (0, 0, 1, 1), (2, 1), 2),
    ((2, 5, 12, 12), (5, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 5),
    ((8, 20, 12, 12), (50, 20, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1),
]


@pytest.mark.torch
@pytest.mark.parametrize("xs,ws,st,pads,dil,groups", TORCH_CASES)
def test_conv_vs_torch(xs, ws, st, pads, dil, groups):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(11)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    pt, pb, pl, pr = pads
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    # symmetric pads go straight to torch; F.pad covers asymmetric ones
    yt = F.conv2d(F.pad(xt, (pl, pr, pt, pb)), wt, stride=st, dilation=dil, groups=groups)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    y = K.conv2d(np, x, w, st, pads, dil, groups)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    dx = K.conv2d_backprop_input(np, dy, w, xs[2:], st, pads, dil, groups)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    dw = K.conv2d_backprop_filter(np, x, dy, ws[2:], st, pads, dil, groups)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("pads", [(2, 2, 2, 2), (1, 0, 2, 1)])
def test_threaded_split_gives_identical_results(monkeypatch, pads):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 8, 24, 24)).astype(np.float32)
    w = rng.standard_normal((8, 8, 5, 5)).astype(np.float32)
    args = ((1, 1), pads, (1, 1), 1)
    monkeypatch.setattr(K, "NUM_THREADS", 1)
    y1 = K.conv2d(np, x, w, *args)
    dy = rng.standard_normal(y1.shape).astype(np.float32)
    dx1 = K.conv2d_backprop_input(np, dy, w, (24, 24), *args)
    dw1 = K.conv2d_backprop_filter(np, x, dy, (5, 5), *args)
    monkeypatch.setattr(K, "NUM_THREADS", 2)
    np.testing.assert_array_equal(K.conv2d(np, x, w, *args), y1)
    np.testing.assert_array_equal(K.conv2d_backprop_input(np, dy, w, (24, 24), *args), dx1)
    np.testing.assert_array_equal(K.conv2d_backprop_filter(np, x, dy, (5, 5), *args), dw1)
