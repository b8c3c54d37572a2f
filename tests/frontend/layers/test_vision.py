"""Convolution, Deconvolution and Pooling against direct numpy loops with Caffe's conventions."""

import math

import numpy as np
import pytest
from pydantic import ValidationError

from tfconf.frontend.compiler import NetBuildError

from .helpers import X4, build, rng, roundtrip

# the layer types this module checks against numpy: minimal config, input shapes (conftest.py)
LAYER_CASES = {
    "Convolution": ({"num_output": 2, "kernel_size": 3}, {"data": X4}),
    "Deconvolution": ({"num_output": 2, "kernel_size": 3}, {"data": X4}),
    "Pooling": ({"kernel_size": 2}, {"data": X4}),
}


def _r(shape, seed=0):
    return rng(seed).standard_normal(shape)


def conv_ref(x, w, b, stride=(1, 1), pad=(0, 0), dil=(1, 1), group=1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - (dil[0] * (kh - 1) + 1)) // stride[0] + 1
    ow = (wd + 2 * pad[1] - (dil[1] * (kw - 1) + 1)) // stride[1] + 1
    y = np.zeros((n, o, oh, ow))
    og = o // group
    for oc in range(o):
        g = oc // og
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg,
                           i * stride[0]:i * stride[0] + dil[0] * (kh - 1) + 1:dil[0],
                           j * stride[1]:j * stride[1] + dil[1] * (kw - 1) + 1:dil[1]]
                y[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3))
    return y + (0 if b is None else b.reshape(1, -1, 1, 1))


def deconv_ref(x, w, b, stride=(1, 1), pad=(0, 0), dil=(1, 1), group=1):
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    fh = (h - 1) * stride[0] + dil[0] * (kh - 1) + 1
    fw = (wd - 1) * stride[1] + dil[1] * (kw - 1) + 1
    full = np.zeros((n, og * group, fh, fw))
    cg = c // group
    for ci in range(c):
        g = ci // cg
        for i in range(h):
            for j in range(wd):
                for p in range(kh):
                    for q in range(kw):
                        full[:, g * og:(g + 1) * og, i * stride[0] + p * dil[0], j * stride[1] + q * dil[1]] += \
                            x[:, ci, i, j][:, None] * w[ci, :, p, q][None]
    y = full[:, :, pad[0]:fh - pad[0], pad[1]:fw - pad[1]]
    return y + (0 if b is None else b.reshape(1, -1, 1, 1))


def pool_ref(x, k, s, p, mode, ceil=True):
    """Caffe's pooling_layer.cpp, including its output size and AVE divisor rules."""
    n, c, h, w = x.shape

    def out(size, k, s, p):
        o = (math.ceil if ceil else math.floor)((size + 2 * p - k) / s) + 1
        if p and (o - 1) * s >= size + p:
            o -= 1
        return o

    oh, ow = out(h, k[0], s[0], p[0]), out(w, k[1], s[1], p[1])
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * s[0] - p[0], j * s[1] - p[1]
            he, we = min(hs + k[0], h + p[0]), min(ws + k[1], w + p[1])
            size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            win = x[:, :, hs:he, ws:we]
            y[:, :, i, j] = win.max(axis=(2, 3)) if mode == "max" else win.sum(axis=(2, 3)) / size
    return y


# ---------------------------------------------------------------------------- Convolution
CONV_CASES = [
    ({"num_output": 4, "kernel_size": 3}, {}),
    ({"num_output": 4, "kernel_size": 3, "stride": 2, "pad": 1}, {"stride": (2, 2), "pad": (1, 1)}),
    ({"num_output": 2, "kernel_h": 3, "kernel_w": 2, "stride_h": 2, "stride_w": 1, "pad_h": 0, "pad_w": 1},
     {"stride": (2, 1), "pad": (0, 1)}),
    ({"num_output": 6, "kernel_size": 2, "group": 3, "bias_term": False}, {"group": 3}),
    ({"num_output": 3, "kernel_size": 2, "dilation": 2, "pad": [1, 2]}, {"dil": (2, 2), "pad": (1, 2)}),
]


@pytest.mark.parametrize("cfg,kw", CONV_CASES)
def test_convolution(cfg, kw):
    layer = dict({"name": "conv", "type": "Convolution"}, **cfg)
    s = roundtrip(layer)
    x = _r((2, 3 if s.group != 3 else 6, 6, 5))
    kh, kwd = s.kernel()
    w = _r((s.num_output, x.shape[1] // s.group, kh, kwd), 1)
    params = {"conv/weights": w}
    b = None
    if s.bias_term:
        b = params["conv/bias"] = _r((s.num_output,), 2)
    net = build([layer], {"data": x}, params=params)
    want = conv_ref(x, w, b, **kw)
    assert net.top("conv").shape.as_list() == list(want.shape)
    np.testing.assert_allclose(net.run("conv"), want, rtol=1e-10, atol=1e-12)


def test_convolution_gradient_and_default_fillers():
    x = _r((1, 2, 4, 4))
    net = build([{"name": "conv", "type": "Convolution", "num_output": 2, "kernel_size": 2, "stride": 2, "pad": 1,
                  "group": 2}], {"data": x})
    w = net.value("conv/weights")
    assert w.shape == (2, 1, 2, 2)
    lim = np.sqrt(3.0 / 4)  # xavier, fan_in = 1·2·2
    assert np.all(np.abs(w) <= lim) and np.any(w != 0)
    np.testing.assert_array_equal(net.value("conv/bias"), 0.0)
    net.load("conv/bias", [0.3, -0.2])
    net.grad_check("conv", ["data", "conv/weights", "conv/bias"])


@pytest.mark.parametrize("bad", [{"num_output": 4}, {"num_output": 0, "kernel_size": 3},
                                 {"num_output": 5, "kernel_size": 1, "group": 2}, {"num_output": 2, "kernel_size": 0}])
def test_convolution_invalid_configs(bad):
    with pytest.raises(ValidationError):
        roundtrip(dict({"name": "conv", "type": "Convolution"}, **bad))


def test_convolution_kernel_larger_than_input_names_the_layer():
    with pytest.raises(NetBuildError) as err:
        build([{"name": "conv2", "type": "Convolution", "num_output": 2, "kernel_size": 5}],
              {"data": np.zeros((1, 1, 3, 3))})
    assert err.value.layer.name == "conv2"


# ---------------------------------------------------------------------------- Deconvolution
@pytest.mark.parametrize("cfg,kw", [
    ({"num_output": 3, "kernel_size": 3}, {}),
    ({"num_output": 2, "kernel_size": 4, "stride": 2, "pad": 1}, {"stride": (2, 2), "pad": (1, 1)}),
    ({"num_output": 4, "kernel_size": 2, "stride": 2, "group": 2, "bias_term": False}, {"stride": (2, 2), "group": 2}),
])
def test_deconvolution(cfg, kw):
    layer = dict({"name": "up", "type": "Deconvolution"}, **cfg)
    s = roundtrip(layer)
    x = _r((2, 2, 3, 3))
    k = s.kernel()
    w = _r((2, s.num_output // s.group, k[0], k[1]), 1)
    params = {"up/weights": w}
    b = None
    if s.bias_term:
        b = params["up/bias"] = _r((s.num_output,), 2)
    net = build([layer], {"data": x}, params=params)
    want = deconv_ref(x, w, b, **kw)
    assert net.top("up").shape.as_list() == list(want.shape)
    np.testing.assert_allclose(net.run("up"), want, rtol=1e-10, atol=1e-12)
    net.grad_check("up", ["data", "up/weights"], max_points=10)


def test_deconvolution_bilinear_filler_upsamples():
    layer = {"name": "up", "type": "Deconvolution", "num_output": 1, "kernel_size": 4, "stride": 2, "pad": 1,
             "bias_term": False, "weight_filler": "bilinear"}
    roundtrip(layer)
    x = np.ones((1, 1, 3, 3))
    y = build([layer], {"data": x}).run("up")
    assert y.shape == (1, 1, 6, 6)
    np.testing.assert_allclose(y[0, 0, 1:-1, 1:-1], 1.0)  # interior of a constant image stays constant


# ---------------------------------------------------------------------------- Pooling
POOL_CASES = [
    ({"pool": "MAX", "kernel_size": 2, "stride": 2}, (2, 2), (2, 2), (0, 0)),
    ({"pool": "max", "kernel_size": 3, "stride": 2}, (3, 3), (2, 2), (0, 0)),  # ceil: 7→3 windows
    ({"pool": "ave", "kernel_size": 3, "stride": 2}, (3, 3), (2, 2), (0, 0)),
    ({"pool": "AVE", "kernel_size": 3, "stride": 2, "pad": 1}, (3, 3), (2, 2), (1, 1)),
    ({"pool": "max", "kernel_size": 3, "stride": 2, "pad": 1}, (3, 3), (2, 2), (1, 1)),
    ({"pool": "ave", "kernel_h": 2, "kernel_w": 3, "stride_h": 1, "stride_w": 2}, (2, 3), (1, 2), (0, 0)),
    ({"pool": "ave", "kernel_size": 2, "stride": 3, "pad": 1}, (2, 2), (3, 3), (1, 1)),  # clipped last window
]


@pytest.mark.parametrize("cfg,k,s,p", POOL_CASES)
def test_pooling_caffe_semantics(cfg, k, s, p):
    layer = dict({"name": "pool", "type": "Pooling"}, **cfg)
    spec = roundtrip(layer)
    x = _r((2, 2, 7, 6))
    net = build([layer], {"data": x})
    want = pool_ref(x, k, s, p, spec.pool)
    assert net.top("pool").shape.as_list() == list(want.shape)
    np.testing.assert_allclose(net.run("pool"), want, rtol=1e-12)


def test_pooling_floor_rounding():
    layer = {"name": "pool", "type": "Pooling", "pool": "max", "kernel_size": 3, "stride": 2, "round_mode": "FLOOR"}
    roundtrip(layer)
    x = _r((1, 1, 6, 6))
    y = build([layer], {"data": x}).run("pool")
    np.testing.assert_allclose(y, pool_ref(x, (3, 3), (2, 2), (0, 0), "max", ceil=False))
    assert y.shape == (1, 1, 2, 2)


@pytest.mark.parametrize("pool", ["max", "ave"])
def test_global_pooling(pool):
    layer = {"name": "gp", "type": "Pooling", "pool": pool, "global_pooling": True}
    roundtrip(layer)
    x = _r((2, 3, 4, 5))
    y = build([layer], {"data": x}).run("gp")
    assert y.shape == (2, 3, 1, 1)
    np.testing.assert_allclose(y[:, :, 0, 0], x.max(axis=(2, 3)) if pool == "max" else x.mean(axis=(2, 3)), rtol=1e-12)


@pytest.mark.parametrize("pool", ["max", "ave"])
def test_pooling_gradient(pool):
    x = rng(5).permutation(np.arange(2 * 5 * 5) * 0.1).reshape(1, 2, 5, 5)  # distinct values: no max ties
    layer = {"name": "pool", "type": "Pooling", "pool": pool, "kernel_size": 3, "stride": 2, "pad": 1}
    net = build([layer], {"data": x})
    net.grad_check("pool", ["data"])


def test_pooling_needs_a_kernel_and_a_fitting_window():
    with pytest.raises(ValidationError, match="kernel_size"):
        roundtrip({"name": "pool", "type": "Pooling"})
    with pytest.raises(NetBuildError, match="does not fit"):
        build([{"name": "pool", "type": "Pooling", "kernel_size": 5}], {"data": np.zeros((1, 1, 3, 3))})
