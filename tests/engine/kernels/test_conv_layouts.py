"""The two column layouts of the conv kernels ("nchw": batch outermost, "chwn": batch innermost)
against the loop reference, each forced on every case; and the automatic choice."""

import numpy as np
import pytest

from tfconf.engine.kernels import conv as K

from test_conv_kernels import CASES, ref_conv_all  # same folder (rootdir import mode)

# LeNet-like shapes plus padded / strided / grouped ones with a batch big enough to matter
EXTRA = [
    ((5, 3, 12, 12), (4, 3, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((3, 4, 9, 10), (6, 2, 3, 3), (2, 1), (1, 2, 1, 0), (1, 2), 2),
    ((4, 2, 7, 7), (3, 2, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
]


@pytest.fixture(params=["nchw", "chwn"])
def layout(request, monkeypatch):
    monkeypatch.setattr(K, "LAYOUT", request.param)
    return request.param


@pytest.mark.parametrize("xs,ws,st,pads,dil,groups", CASES + EXTRA)
def test_layout_matches_reference(layout, xs, ws, st, pads, dil, groups):
    rng = np.random.default_rng(abs(hash((xs, ws, layout))) % 2**32)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    y = K.conv2d(np, x, w, st, pads, dil, groups)
    dy = rng.standard_normal(y.shape)
    y_ref, dx_ref, dw_ref = ref_conv_all(x, w, dy, st, pads, dil, groups)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    dx = K.conv2d_backprop_input(np, dy, w, xs[2:], st, pads, dil, groups)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
    dw = K.conv2d_backprop_filter(np, x, dy, ws[2:], st, pads, dil, groups)
    assert dw.shape == w.shape and dw.flags.c_contiguous
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12)


def test_layouts_agree_float32(monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 6, 12, 12)).astype(np.float32)
    w = rng.standard_normal((8, 6, 5, 5)).astype(np.float32)
    args = ((1, 1), (2, 1, 0, 2), (1, 1), 1)
    out = {}
    for lay in ("nchw", "chwn"):
        monkeypatch.setattr(K, "LAYOUT", lay)
        y = K.conv2d(np, x, w, *args)
        dy = np.cos(np.arange(y.size, dtype=np.float32)).reshape(y.shape)
        out[lay] = (y, K.conv2d_backprop_input(np, dy, w, (12, 12), *args),
                    K.conv2d_backprop_filter(np, x, dy, (5, 5), *args))
        assert all(a.dtype == np.float32 for a in out[lay])
    for a, b in zip(out["nchw"], out["chwn"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_layouts_do_not_alias_scratch(layout):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 3, 8, 8))
    w = rng.standard_normal((5, 3, 3, 3))
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    y = K.conv2d(np, x, w, *args)
    dy = rng.standard_normal(y.shape)
    dx = K.conv2d_backprop_input(np, dy, w, (8, 8), *args)
    dw = K.conv2d_backprop_filter(np, x, dy, (3, 3), *args)
    keep = [a.copy() for a in (y, dx, dw)]
    K.conv2d(np, 2 * x, w, *args)
    K.conv2d_backprop_input(np, 3 * dy, w, (8, 8), *args)
    K.conv2d_backprop_filter(np, 2 * x, 3 * dy, (3, 3), *args)
    for a, b in zip((y, dx, dw), keep):
        np.testing.assert_array_equal(a, b)


def test_threaded_chwn_col2im_is_identical(monkeypatch):
    rng = np.random.default_rng(4)
    dy = rng.standard_normal((32, 8, 8, 8)).astype(np.float32)
    w = rng.standard_normal((8, 16, 5, 5)).astype(np.float32)
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    monkeypatch.setattr(K, "LAYOUT", "chwn")
    monkeypatch.setattr(K, "NUM_THREADS", 1)
    dx1 = K.conv2d_backprop_input(np, dy, w, (12, 12), *args)
    monkeypatch.setattr(K, "NUM_THREADS", 2)
    np.testing.assert_array_equal(K.conv2d_backprop_input(np, dy, w, (12, 12), *args), dx1)


def test_automatic_layout_choice():
    lenet_conv1 = K._Geom((64, 1, 28, 28), (20, 1, 5, 5), (1, 1), (0,) * 4, (1, 1), 1)
    lenet_conv2 = K._Geom((64, 20, 12, 12), (50, 20, 5, 5), (1, 1), (0,) * 4, (1, 1), 1)
    single = K._Geom((1, 20, 12, 12), (50, 20, 5, 5), (1, 1), (0,) * 4, (1, 1), 1)
    assert lenet_conv1.layout == "nchw"
    assert lenet_conv2.layout == "chwn"
    assert single.layout == "nchw"
