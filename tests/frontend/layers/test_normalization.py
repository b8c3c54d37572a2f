"""Normalization layers: BatchNorm (Caffe's moving averages), Scale, Bias, LRN, MVN, Softmax."""

import numpy as np
import pytest
from pydantic import ValidationError

import tfconf as tc

from .helpers import X4, build, rng, roundtrip

# the layer types this module checks against numpy: minimal config, input shapes (conftest.py)
LAYER_CASES = {
    "BatchNorm": ({}, {"data": X4}),
    "Scale": ({}, {"data": X4}),
    "Bias": ({}, {"data": X4}),
    "LRN": ({}, {"data": X4}),
    "MVN": ({}, {"data": X4}),
    "Softmax": ({}, {"data": X4}),
}


# ---------------------------------------------------------------------------- BatchNorm
def _bn_ref(x, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps), mean.reshape(-1), var.reshape(-1)


class CaffeBN:
    """Caffe's three BatchNorm blobs, updated as batch_norm_layer.cpp does."""

    def __init__(self, c, f):
        self.f = f
        self.blobs = [np.zeros(c), np.zeros(c), 0.0]

    def update(self, x):
        _, mean, var = _bn_ref(x)
        m = x.size // x.shape[1]
        self.blobs[2] = self.blobs[2] * self.f + 1
        self.blobs[0] = self.blobs[0] * self.f + mean
        self.blobs[1] = self.blobs[1] * self.f + (m / (m - 1)) * var

    def stats(self):
        s = 1 / self.blobs[2]
        return self.blobs[0] * s, self.blobs[1] * s


def test_batchnorm_train_uses_batch_statistics():
    layer = {"name": "bn", "type": "BatchNorm"}
    roundtrip(layer)
    x = rng(0).standard_normal((4, 3, 2, 5)) * 3 + 1
    net = build([layer], {"data": x}, phases=("train", "test"))
    y = net.run("bn", "train")
    assert y.shape == x.shape
    np.testing.assert_allclose(y, _bn_ref(x)[0], rtol=1e-10, atol=1e-12)
    # no learned parameters, three non-trainable state variables
    assert sorted(net.params) == ["bn/moving_mean", "bn/moving_variance", "bn/scale_factor"]
    assert not any(net.meta[k]["trainable"] for k in net.params)


def test_batchnorm_moving_averages_follow_caffe_and_feed_the_test_phase():
    layer = {"name": "bn", "type": "BatchNorm", "moving_average_fraction": 0.9, "eps": 1e-3}
    roundtrip(layer)
    r = rng(1)
    batches = [r.standard_normal((5, 3, 2, 2)) * (i + 1) + i for i in range(3)]
    net = build([layer], {"data": batches[0]}, phases=("train", "test"), dynamic_batch=True)
    updates = net.net("train").updates
    assert len(updates) == 3
    # before training the test phase uses mean 0, variance 1
    np.testing.assert_allclose(net.run("bn", "test"), batches[0] / np.sqrt(1 + 1e-3), rtol=1e-12)
    caffe = CaffeBN(3, 0.9)
    for b in batches:
        net.sess.run(updates, feed_dict=net.feed({"data": b}))
        caffe.update(b)
        mean, var = caffe.stats()
        np.testing.assert_allclose(net.value("bn/moving_mean"), mean, rtol=1e-10)
        np.testing.assert_allclose(net.value("bn/moving_variance"), var, rtol=1e-10)
    np.testing.assert_allclose(net.value("bn/scale_factor"), caffe.blobs[2])
    x = r.standard_normal((2, 3, 2, 2))
    mean, var = caffe.stats()
    want = (x - mean.reshape(1, 3, 1, 1)) / np.sqrt(var.reshape(1, 3, 1, 1) + 1e-3)
    np.testing.assert_allclose(net.run("bn", "test", feeds={"data": x}), want, rtol=1e-10)
    # the first update stores the first batch's statistics exactly (Caffe's scale factor)
    _, m0, v0 = _bn_ref(batches[0])
    net2 = build([layer], {"data": batches[0]})
    net2.sess.run(net2.net().updates, feed_dict=net2.feed())
    np.testing.assert_allclose(net2.value("bn/moving_mean"), m0, rtol=1e-12)
    np.testing.assert_allclose(net2.value("bn/moving_variance"), v0 * 20 / 19, rtol=1e-12)


def test_batchnorm_use_global_stats_in_train_phase_and_rank2():
    layer = {"name": "bn", "type": "BatchNorm", "use_global_stats": True}
    roundtrip(layer)
    x = rng(2).standard_normal((6, 4))
    net = build([layer], {"data": x}, params={"bn/moving_mean": [1.0, -1.0, 0.5, 0.0],
                                              "bn/moving_variance": [4.0, 1.0, 0.25, 2.0]})
    assert net.net("train").updates == []
    want = (x - np.array([1.0, -1.0, 0.5, 0.0])) / np.sqrt(np.array([4.0, 1.0, 0.25, 2.0]) + 1e-5)
    np.testing.assert_allclose(net.run("bn"), want, rtol=1e-12)
    # rank 2 in train phase: statistics over the batch axis only
    net2 = build([{"name": "bn", "type": "BatchNorm"}], {"data": x})
    np.testing.assert_allclose(net2.run("bn"), _bn_ref(x)[0], rtol=1e-10)


def test_batchnorm_unknown_batch_size():
    x = rng(3).standard_normal((4, 2, 3))
    net = build([{"name": "bn", "type": "BatchNorm", "moving_average_fraction": 0.5}], {"data": x},
                dynamic_batch=True)
    np.testing.assert_allclose(net.run("bn"), _bn_ref(x)[0], rtol=1e-10)
    net.sess.run(net.net().updates, feed_dict=net.feed())
    _, _, v = _bn_ref(x)
    np.testing.assert_allclose(net.value("bn/moving_variance"), v * 12 / 11, rtol=1e-12)


def test_batchnorm_train_gradient():
    x = rng(4).standard_normal((3, 2, 2, 2))
    net = build([{"name": "bn", "type": "BatchNorm"}], {"data": x})
    net.grad_check("bn", ["data"])


def test_batchnorm_test_phase_gradient():
    x = rng(5).standard_normal((2, 2, 2, 2))
    net = build([{"name": "bn", "type": "BatchNorm"}], {"data": x}, phases=("test",),
                params={"bn/moving_variance": [0.5, 2.0]})
    net.grad_check("bn", ["data"])


# ---------------------------------------------------------------------------- Scale / Bias
def test_scale_one_bottom_learned_with_bias():
    layer = {"name": "sc", "type": "Scale", "bias_term": True}
    roundtrip(layer)
    x = rng(6).standard_normal((2, 3, 4, 2))
    net = build([layer], {"data": x})
    np.testing.assert_allclose(net.run("sc"), x)  # filler 1, bias 0
    s, b = np.array([0.5, -2.0, 3.0]), np.array([1.0, 0.0, -1.0])
    net.load("sc/scale", s)
    net.load("sc/bias", b)
    np.testing.assert_allclose(net.run("sc"), x * s.reshape(1, 3, 1, 1) + b.reshape(1, 3, 1, 1), rtol=1e-12)
    assert net.meta["sc/scale"]["trainable"] and net.meta["sc/bias"]["trainable"]


@pytest.mark.parametrize("axis,num_axes,shape", [(1, 2, (3, 4)), (1, -1, (3, 4, 2)), (0, 0, ()),
                                                  (-1, 1, (2,)), (2, 1, (4,))])
def test_scale_axis_and_num_axes(axis, num_axes, shape):
    layer = {"name": "sc", "type": "Scale", "axis": axis, "num_axes": num_axes,
             "filler": {"type": "constant", "value": 2.0}}
    roundtrip(layer)
    x = rng(7).standard_normal((2, 3, 4, 2))
    net = build([layer], {"data": x})
    assert net.value("sc/scale").shape == shape
    s = rng(8).standard_normal(shape)
    net.load("sc/scale", s)
    a = axis % 4
    want = x * s.reshape(shape + (1,) * (4 - a - len(shape)))
    np.testing.assert_allclose(net.run("sc"), want, rtol=1e-12)


def test_scale_two_bottoms_with_bias_and_gradient():
    layer = {"name": "sc", "type": "Scale", "bottom": ["data", "s"], "bias_term": True,
             "bias_filler": {"type": "constant", "value": 0.5}}
    roundtrip(layer)
    x = rng(9).standard_normal((2, 3, 2, 2))
    s = rng(10).standard_normal((2, 3))  # covers axes 0..1 with axis 0
    net = build([dict(layer, axis=0)], {"data": x, "s": s})
    assert "sc/bias" in net.params and "sc/scale" not in net.params
    np.testing.assert_allclose(net.run("sc"), x * s[:, :, None, None] + 0.5, rtol=1e-12)
    net.load("sc/bias", rng(11).standard_normal((2, 3)))
    net.grad_check("sc", ["data", "s", "sc/bias"])
    s1 = rng(12).standard_normal((3,))
    net1 = build([layer], {"data": x, "s": s1})
    np.testing.assert_allclose(net1.run("sc"), x * s1[None, :, None, None] + 0.5, rtol=1e-12)


def test_scale_two_bottoms_shape_mismatch_is_an_error():
    from tfconf.frontend.compiler import NetBuildError

    with pytest.raises(NetBuildError, match="second bottom"):
        build([{"name": "sc", "type": "Scale", "bottom": ["data", "s"]}],
              {"data": np.zeros((2, 3, 2, 2)), "s": np.zeros((4,))})


def test_bias_one_and_two_bottoms():
    layer = {"name": "bi", "type": "Bias", "axis": 1, "num_axes": 2}
    roundtrip(layer)
    x = rng(13).standard_normal((2, 3, 4))
    net = build([layer], {"data": x})
    b = rng(14).standard_normal((3, 4))
    net.load("bi/bias", b)
    np.testing.assert_allclose(net.run("bi"), x + b, rtol=1e-12)
    layer2 = {"name": "bi", "type": "Bias", "bottom": ["data", "b"]}
    roundtrip(layer2)
    b2 = rng(15).standard_normal((3,))
    net2 = build([layer2], {"data": x, "b": b2})
    np.testing.assert_allclose(net2.run("bi"), x + b2[None, :, None], rtol=1e-12)
    net2.grad_check("bi", ["data", "b"])


# ---------------------------------------------------------------------------- LRN
def _lrn_across(x, n, alpha, beta, k):
    c = x.shape[1]
    r = (n - 1) // 2
    sq = x ** 2
    s = np.zeros_like(x)
    for i in range(c):
        s[:, i] = sq[:, max(0, i - r):min(c, i + r + 1)].sum(axis=1)
    return x / (k + alpha / n * s) ** beta


def _lrn_within(x, n, alpha, beta):
    p = (n - 1) // 2
    sq = np.pad(x ** 2, ((0, 0), (0, 0), (p, p), (p, p)))
    h, w = x.shape[2:]
    s = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            s[:, :, i, j] = sq[:, :, i:i + n, j:j + n].sum(axis=(2, 3))
    return x * (1 + alpha * s / n ** 2) ** -beta


@pytest.mark.parametrize("cfg", [{}, {"local_size": 3, "alpha": 0.5, "beta": 0.6, "k": 2.0}])
def test_lrn_across_channels(cfg):
    layer = dict({"name": "lrn", "type": "LRN"}, **cfg)
    s = roundtrip(layer)
    x = rng(16).standard_normal((2, 7, 3, 3)) * 2
    net = build([layer], {"data": x})
    y = net.run("lrn")
    assert y.shape == x.shape
    np.testing.assert_allclose(y, _lrn_across(x, s.local_size, s.alpha, s.beta, s.k), rtol=1e-10)


@pytest.mark.parametrize("cfg", [{"local_size": 3, "alpha": 2.0}, {"local_size": 5, "beta": 0.5, "k": 7.0}])
def test_lrn_within_channel(cfg):
    layer = dict({"name": "lrn", "type": "LRN", "norm_region": "WITHIN_CHANNEL"}, **cfg)
    s = roundtrip(layer)
    assert s.norm_region == "within_channel"
    x = rng(17).standard_normal((2, 2, 5, 4))
    net = build([layer], {"data": x})
    np.testing.assert_allclose(net.run("lrn"), _lrn_within(x, s.local_size, s.alpha, s.beta), rtol=1e-10)


@pytest.mark.parametrize("region", ["across_channels", "within_channel"])
def test_lrn_gradient(region):
    x = rng(18).standard_normal((1, 4, 3, 3))
    net = build([{"name": "lrn", "type": "LRN", "local_size": 3, "alpha": 1.5, "norm_region": region}], {"data": x})
    net.grad_check("lrn", ["data"])


def test_lrn_even_local_size_is_rejected():
    with pytest.raises(ValidationError, match="odd"):
        roundtrip({"name": "lrn", "type": "LRN", "local_size": 4})


# ---------------------------------------------------------------------------- MVN / Softmax
def _mvn(x, normalize_variance, across, eps):
    axes = tuple(range(1 if across else 2, x.ndim))
    m = x.mean(axis=axes, keepdims=True)
    y = x - m
    if normalize_variance:
        var = (x ** 2).mean(axis=axes, keepdims=True) - m ** 2
        y = y / (np.sqrt(var) + eps)
    return y


@pytest.mark.parametrize("cfg", [{}, {"across_channels": True}, {"normalize_variance": False},
                                 {"eps": 0.1, "across_channels": True}])
def test_mvn(cfg):
    layer = dict({"name": "mvn", "type": "MVN"}, **cfg)
    s = roundtrip(layer)
    x = rng(19).standard_normal((2, 3, 4, 3)) * 2 + 1
    net = build([layer], {"data": x})
    np.testing.assert_allclose(net.run("mvn"), _mvn(x, s.normalize_variance, s.across_channels, s.eps),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("across", [False, True])
def test_mvn_gradient(across):
    x = rng(20).standard_normal((2, 2, 2, 3))
    net = build([{"name": "mvn", "type": "MVN", "across_channels": across, "eps": 1e-3}], {"data": x})
    net.grad_check("mvn", ["data"])


@pytest.mark.parametrize("axis", [1, -1, 2])
def test_softmax(axis):
    layer = {"name": "sm", "type": "Softmax", "axis": axis}
    roundtrip(layer)
    x = rng(21).standard_normal((2, 3, 4)) * 5
    net = build([layer], {"data": x})
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    np.testing.assert_allclose(net.run("sm"), e / e.sum(axis=axis, keepdims=True), rtol=1e-12)
    net.grad_check("sm", ["data"])


def test_softmax_default_axis_is_channels():
    s = roundtrip({"name": "sm", "type": "Softmax"})
    assert s.axis == 1
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    y = build([{"name": "sm", "type": "Softmax"}], {"data": x}, dtype=tc.float32).run("sm")
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
