"""Activation layers: forward against numpy (float64), shapes, config round-trip, gradients."""

import numpy as np
import pytest

import tfconf as tc

from .helpers import X4, build, rng, roundtrip

# the layer types this module checks against numpy: minimal config, input shapes (conftest.py)
LAYER_CASES = {
    "PReLU": ({}, {"data": X4}),
    "ELU": ({}, {"data": X4}),
    "Sigmoid": ({}, {"data": X4}),
    "TanH": ({}, {"data": X4}),
    "AbsVal": ({}, {"data": X4}),
    "Power": ({}, {"data": X4}),
    "Exp": ({}, {"data": X4}),
    "Log": ({"shift": 10.0}, {"data": X4}),
    "BNLL": ({}, {"data": X4}),
    "Threshold": ({}, {"data": X4}),
    "Clip": ({"min": -1.0, "max": 1.0}, {"data": X4}),
    "Swish": ({}, {"data": X4}),
}


def _x(shape=(2, 3, 4, 5), seed=0, scale=2.0):
    x = rng(seed).standard_normal(shape) * scale
    x[np.abs(x) < 0.05] = 0.3  # keep off kinks at 0 for the gradient checks
    return x


def _softplus(x):
    return np.where(x > 0, x + np.log1p(np.exp(-x)), np.log1p(np.exp(x)))


def _sig(x):
    return 1 / (1 + np.exp(-x))


CASES = [
    ({"type": "ELU"}, lambda x: np.where(x > 0, x, np.exp(x) - 1)),
    ({"type": "ELU", "alpha": 0.4}, lambda x: np.where(x > 0, x, 0.4 * (np.exp(x) - 1))),
    ({"type": "Sigmoid"}, _sig),
    ({"type": "TanH"}, np.tanh),
    ({"type": "AbsVal"}, np.abs),
    ({"type": "Power", "power": 3.0, "scale": 0.5, "shift": 1.0}, lambda x: (1 + 0.5 * x) ** 3),
    ({"type": "Power", "power": 2.0, "scale": -1.5, "shift": 0.2}, lambda x: (0.2 - 1.5 * x) ** 2),
    ({"type": "Power", "power": 1.0, "scale": 2.0, "shift": -1.0}, lambda x: 2 * x - 1),
    ({"type": "Power", "power": 0.5, "scale": 1.0, "shift": 10.0}, lambda x: np.sqrt(10 + x)),
    ({"type": "Power", "power": -1.5, "scale": 0.1, "shift": 2.0}, lambda x: (2 + 0.1 * x) ** -1.5),
    ({"type": "Power", "power": 2.0, "scale": 0.0, "shift": 3.0}, lambda x: np.full_like(x, 9.0)),
    ({"type": "Exp"}, np.exp),
    ({"type": "Exp", "base": 2.0, "scale": 0.5, "shift": 1.0}, lambda x: 2.0 ** (1 + 0.5 * x)),
    ({"type": "Log", "shift": 10.0}, lambda x: np.log(10 + x)),
    ({"type": "Log", "base": 10.0, "scale": 2.0, "shift": 12.0}, lambda x: np.log10(12 + 2 * x)),
    ({"type": "BNLL"}, _softplus),
    ({"type": "Threshold"}, lambda x: (x > 0).astype(float)),
    ({"type": "Threshold", "threshold": 0.7}, lambda x: (x > 0.7).astype(float)),
    ({"type": "Clip", "min": -1.0, "max": 0.5}, lambda x: np.clip(x, -1.0, 0.5)),
    ({"type": "Swish"}, lambda x: x * _sig(x)),
    ({"type": "Swish", "beta": 2.5}, lambda x: x * _sig(2.5 * x)),
]
IDS = [f"{c['type']}-{i}" for i, (c, _) in enumerate(CASES)]


@pytest.mark.parametrize("cfg,ref", CASES, ids=IDS)
def test_forward_matches_numpy(cfg, ref):
    layer = dict(cfg, name="act")
    roundtrip(layer)
    x = _x()
    net = build([layer], {"data": x})
    y = net.run("act")
    assert y.shape == x.shape
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, ref(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg,ref", [c for c in CASES if c[0]["type"] not in ("Threshold",)],
                         ids=[i for i, c in zip(IDS, CASES) if c[0]["type"] != "Threshold"])
def test_gradient(cfg, ref):
    layer = dict(cfg, name="act")
    x = _x((2, 3), seed=1)
    x = np.where(np.abs(np.abs(x) - 1.0) < 0.05, 0.7, x)  # Clip's kinks at -1 and 0.5
    x = np.where(np.abs(x - 0.5) < 0.05, 0.7, x)
    net = build([layer], {"data": x})
    net.grad_check("act", ["data"])


def test_float32_and_unknown_batch():
    x = _x((3, 2, 2, 2)).astype(np.float32)
    net = build([{"name": "s", "type": "Swish", "beta": 1.5}], {"data": x}, dtype=tc.float32, dynamic_batch=True)
    assert net.top("s").shape.as_list() == [None, 2, 2, 2]
    y = net.run("s")
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x * _sig(1.5 * x.astype(np.float64)), rtol=1e-5)


def test_bnll_is_stable_for_large_inputs():
    x = np.array([[-800.0, -30.0, 0.0, 30.0, 800.0]])
    y = build([{"name": "b", "type": "BNLL"}], {"data": x}).run("b")
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y[0], [0.0, np.log1p(np.exp(-30.0)), np.log(2.0), 30 + np.log1p(np.exp(-30.0)), 800.0],
                               rtol=1e-12, atol=1e-300)


def test_threshold_has_no_gradient():
    x = _x((2, 3))
    net = build([{"name": "t", "type": "Threshold", "threshold": 0.1}], {"data": x})
    with net.graph.as_default():
        (g,) = tc.gradients(tc.reduce_sum(net.top("t")), [net.placeholders["data"]])
    assert g is None or not np.any(net.sess.run(g, feed_dict=net.feed()))


def test_clip_gradient_passes_inside_range_only():
    x = np.array([[-2.0, -0.5, 0.2, 0.9, 3.0]])
    net = build([{"name": "c", "type": "Clip", "min": -1.0, "max": 1.0}], {"data": x})
    with net.graph.as_default():
        (g,) = tc.gradients(tc.reduce_sum(net.top("c")), [net.placeholders["data"]])
    np.testing.assert_array_equal(net.sess.run(g, feed_dict=net.feed()), [[0, 1, 1, 1, 0]])


@pytest.mark.parametrize("bad", [{"type": "Clip", "min": 1.0, "max": 0.0}, {"type": "Clip", "min": 0.0},
                                 {"type": "Exp", "base": -2.0}, {"type": "Log", "base": 0.0}])
def test_invalid_configs_are_rejected(bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        roundtrip(dict(bad, name="x"))


# ---------------------------------------------------------------------------- PReLU
def _prelu(x, a):
    a = np.asarray(a)
    if a.ndim == 1:
        a = a.reshape((1, -1) + (1,) * (x.ndim - 2))
    return np.where(x > 0, x, a * x)


def test_prelu_default_filler_and_per_channel_slopes():
    layer = {"name": "pr", "type": "PReLU"}
    roundtrip(layer)
    x = _x((2, 3, 4, 4))
    net = build([layer], {"data": x})
    assert net.value("pr/slope").shape == (3,)
    np.testing.assert_allclose(net.value("pr/slope"), 0.25)
    np.testing.assert_allclose(net.run("pr"), _prelu(x, [0.25] * 3), rtol=1e-12)
    a = np.array([0.1, -0.3, 0.7])
    net.load("pr/slope", a)
    np.testing.assert_allclose(net.run("pr"), _prelu(x, a), rtol=1e-12)


def test_prelu_channel_shared_and_filler():
    layer = {"name": "pr", "type": "PReLU", "channel_shared": True, "filler": {"type": "constant", "value": 0.05}}
    roundtrip(layer)
    x = _x((4, 6))
    net = build([layer], {"data": x})
    assert net.value("pr/slope").shape == ()
    np.testing.assert_allclose(net.run("pr"), _prelu(x, 0.05), rtol=1e-12)


@pytest.mark.parametrize("shared", [False, True])
def test_prelu_gradient(shared):
    x = _x((2, 3, 2, 2), seed=3)
    net = build([{"name": "pr", "type": "PReLU", "channel_shared": shared}], {"data": x},
                params={"pr/slope": 0.3 if shared else [0.1, -0.2, 0.6]})
    net.grad_check("pr", ["data", "pr/slope"])
