"""Tests for tfconf.engine.kernels.lrn (TF local_response_normalization)."""

import numpy as np
import pytest

from tfconf.engine.kernels import lrn as L


def ref_lrn(x, r, bias, alpha, beta):
    N, C, H, W = x.shape
    y = np.zeros_like(x, dtype=np.float64)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    s = 0.0
                    for cc in range(max(0, c - r), min(C, c + r + 1)):
                        s += x[n, cc, h, w] ** 2
                    y[n, c, h, w] = x[n, c, h, w] / (bias + alpha * s) ** beta
    return y


PARAMS = [  # (x shape, depth_radius, bias, alpha, beta)
    ((2, 5, 3, 3), 2, 1.0, 1e-1, 0.75),      # CIFAR-full / AlexNet style
    ((1, 6, 2, 4), 1, 2.0, 0.3, 0.5),
    ((2, 4, 3, 2), 0, 1.5, 0.2, 1.0),
    ((1, 3, 2, 2), 5, 1.0, 0.5, 0.6),        # radius larger than C
    ((3, 7, 2, 3), 3, 0.8, 0.05, 0.9),
]


@pytest.mark.parametrize("xs,r,bias,alpha,beta", PARAMS)
def test_lrn_matches_reference(xs, r, bias, alpha, beta):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs)
    y = L.lrn(np, x, r, bias, alpha, beta)
    np.testing.assert_allclose(y, ref_lrn(x, r, bias, alpha, beta), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("xs,r,bias,alpha,beta", PARAMS)
def test_lrn_grad_finite_differences(xs, r, bias, alpha, beta):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs)
    y = L.lrn(np, x, r, bias, alpha, beta)
    dy = rng.standard_normal(xs)
    dx = L.lrn_grad(np, x, y, dy, r, bias, alpha, beta)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    eps = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp_, xm = x.copy(), x.copy()
        xp_[idx] += eps
        xm[idx] -= eps
        num[idx] = (np.sum(ref_lrn(xp_, r, bias, alpha, beta) * dy)
                    - np.sum(ref_lrn(xm, r, bias, alpha, beta) * dy)) / (2 * eps)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


def test_lrn_float32_stays_float32():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 8, 4, 4)).astype(np.float32)
    y = L.lrn(np, x, 2, 1.0, 1e-2, 0.75)
    assert y.dtype == np.float32
    dx = L.lrn_grad(np, x, y, np.ones_like(x), 2, 1.0, 1e-2, 0.75)
    assert dx.dtype == np.float32
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(y, ref_lrn(x64, 2, 1.0, 1e-2, 0.75), rtol=1e-5)
    dx64 = L.lrn_grad(np, x64, L.lrn(np, x64, 2, 1.0, 1e-2, 0.75), np.ones_like(x64),
                      2, 1.0, 1e-2, 0.75)
    np.testing.assert_allclose(dx, dx64, rtol=1e-4, atol=1e-6)


def test_caffe_mapping_matches_caffe_formula():
    # Caffe ACROSS_CHANNELS: x / (k + alpha / n * sum_{window of n}) ** beta
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, 3, 3))
    n, alpha_caffe, beta, k = 5, 5e-5 * 1e3, 0.75, 1.0
    expect = np.zeros_like(x)
    for c in range(7):
        lo, hi = max(0, c - (n - 1) // 2), min(7, c + (n - 1) // 2 + 1)
        s = np.sum(x[:, lo:hi] ** 2, axis=1)
        expect[:, c] = x[:, c] / (k + alpha_caffe / n * s) ** beta
    y = L.lrn(np, x, (n - 1) // 2, k, alpha_caffe / n, beta)
    np.testing.assert_allclose(y, expect, rtol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-2, 0.75, 1.0), (3, 0.3, 0.6, 2.0)])
def test_lrn_vs_torch(size, alpha, beta, k):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 9, 5, 6))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.local_response_norm(xt, size, alpha=alpha, beta=beta, k=k)
    dy = rng.standard_normal(x.shape)
    yt.backward(torch.tensor(dy))
    r = (size - 1) // 2
    y = L.lrn(np, x, r, k, alpha / size, beta)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    dx = L.lrn_grad(np, x, y, dy, r, k, alpha / size, beta)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-11)
