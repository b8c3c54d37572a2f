"""The conv / pool kernels on a GPU (one-launch CuPy kernels for im2col, col2im and pooling)
agree with the numpy kernels. Skipped unless CuPy imports and CUDA reports a device."""

from __future__ import annotations

import numpy as np
import pytest

from tfconf.engine.devices import _cupy
from tfconf.engine.kernels import conv as K
from tfconf.engine.kernels import pool as P

cp = _cupy()
pytestmark = pytest.mark.skipif(cp is None, reason="needs CuPy and a CUDA device")

CONVS = [  # x shape, w shape, strides, pads, dilations, groups
    ((4, 3, 11, 9), (6, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 4, 10, 10), (6, 2, 3, 3), (2, 2), (0, 0, 0, 0), (1, 1), 2),
    ((3, 2, 9, 8), (4, 2, 3, 2), (1, 2), (2, 0, 1, 1), (2, 1), 1),   # asymmetric pads, dilation
    ((8, 20, 12, 12), (50, 20, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("xs,ws,st,pads,dil,groups", CONVS)
def test_conv_forward_and_both_gradients_match_numpy(xs, ws, st, pads, dil, groups):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    y = K.conv2d(np, x, w, st, pads, dil, groups)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yg = K.conv2d(cp, cp.asarray(x), cp.asarray(w), st, pads, dil, groups)
    np.testing.assert_allclose(cp.asnumpy(yg), y, rtol=1e-4, atol=1e-4)
    dx = K.conv2d_backprop_input(np, dy, w, xs[2:], st, pads, dil, groups)
    dxg = K.conv2d_backprop_input(cp, cp.asarray(dy), cp.asarray(w), xs[2:], st, pads, dil, groups)
    np.testing.assert_allclose(cp.asnumpy(dxg), dx, rtol=1e-4, atol=1e-4)
    dw = K.conv2d_backprop_filter(np, x, dy, ws[2:], st, pads, dil, groups)
    dwg = K.conv2d_backprop_filter(cp, cp.asarray(x), cp.asarray(dy), ws[2:], st, pads, dil, groups)
    np.testing.assert_allclose(cp.asnumpy(dwg), dw, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("xs,k,s,pads,ceil", [
    ((2, 3, 24, 24), 2, 2, (0, 0, 0, 0), False),
    ((2, 3, 32, 32), 3, 2, (0, 0, 0, 0), True),
    ((2, 3, 9, 7), 3, 2, (1, 1, 0, 1), True),
])
def test_max_pool_and_its_gradient_match_numpy(xs, k, s, pads, ceil):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs).astype(np.float32)
    y = P.max_pool(np, x, k, s, pads, ceil)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yg = P.max_pool(cp, cp.asarray(x), k, s, pads, ceil)
    np.testing.assert_array_equal(cp.asnumpy(yg), y)
    dx = P.max_pool_grad(np, x, y, dy, k, s, pads, ceil)
    dxg = P.max_pool_grad(cp, cp.asarray(x), yg, cp.asarray(dy), k, s, pads, ceil)
    np.testing.assert_allclose(cp.asnumpy(dxg), dx, rtol=1e-6, atol=1e-6)


def test_max_pool_gradient_goes_to_the_first_of_tied_maxima_as_on_the_cpu():
    x = np.zeros((1, 1, 4, 4), np.float32)   # every window is a tie (ReLU outputs often are)
    y = P.max_pool(np, x, 2, 2, (0, 0, 0, 0))
    dy = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2) + 1
    dx = P.max_pool_grad(np, x, y, dy, 2, 2, (0, 0, 0, 0))
    dxg = P.max_pool_grad(cp, cp.asarray(x), cp.asarray(y), cp.asarray(dy), 2, 2, (0, 0, 0, 0))
    np.testing.assert_array_equal(cp.asnumpy(dxg), dx)


@pytest.mark.parametrize("xs,k,s,pads,ceil,include", [
    ((2, 3, 16, 16), 3, 2, (0, 0, 0, 0), True, True),     # CIFAR-10 quick's AVE pooling
    ((2, 3, 9, 7), 3, 2, (1, 1, 1, 0), True, True),
    ((2, 3, 9, 7), 3, 2, (1, 1, 1, 1), False, False),     # TF 'SAME'-style divisor
    ((2, 3, 8, 8), 2, 2, (0, 0, 0, 0), False, True),
])
def test_avg_pool_and_its_gradient_match_numpy(xs, k, s, pads, ceil, include):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(xs).astype(np.float32)
    y = P.avg_pool(np, x, k, s, pads, ceil, include)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yg = P.avg_pool(cp, cp.asarray(x), k, s, pads, ceil, include)
    np.testing.assert_allclose(cp.asnumpy(yg), y, rtol=1e-5, atol=1e-6)
    dx = P.avg_pool_grad(np, dy, xs, k, s, pads, ceil, include)
    dxg = P.avg_pool_grad(cp, cp.asarray(dy), xs, k, s, pads, ceil, include)
    np.testing.assert_allclose(cp.asnumpy(dxg), dx, rtol=1e-5, atol=1e-6)
