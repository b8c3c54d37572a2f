"""Loss layers against numpy (float64) with Caffe's normalizations, and their gradients."""

import numpy as np
import pytest
from pydantic import ValidationError

from tfconf.frontend.compiler import NetBuildError

from .helpers import LABEL, X4, build, rng, roundtrip

# the layer types this module checks against numpy: minimal config, input shapes (conftest.py)
LAYER_CASES = {
    "SigmoidCrossEntropyLoss": ({"bottom": ["data", "t"]}, {"data": X4, "t": X4}),
    "EuclideanLoss": ({"bottom": ["data", "t"]}, {"data": X4, "t": X4}),
    "HingeLoss": ({"bottom": ["data", LABEL]}, {"data": (2, 3), LABEL: "labels"}),
    "ContrastiveLoss": ({"bottom": ["data", "t", LABEL]}, {"data": (2, 3), "t": (2, 3), LABEL: "labels"}),
    "MultinomialLogisticLoss": ({"bottom": ["data", LABEL]}, {"data": (2, 3), LABEL: "labels"}),
    "InfogainLoss": ({"bottom": ["data", LABEL, "H"]}, {"data": (2, 3), LABEL: "labels", "H": (3, 3)}),
}


def _r(shape, seed=0):
    return rng(seed).standard_normal(shape)


def _sce(x, t):
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


# ---------------------------------------------------------------------------- SigmoidCrossEntropyLoss
@pytest.mark.parametrize("cfg,norm", [
    ({}, "batch_size"), ({"normalization": "FULL"}, "full"), ({"normalization": "valid"}, "valid"),
    ({"normalization": "none"}, "none"), ({"normalize": True}, "valid"), ({"normalize": False}, "batch_size"),
    ({"ignore_label": -1, "normalization": "valid"}, "valid"), ({"ignore_label": -1}, "batch_size"),
    ({"ignore_label": -1, "normalization": "full"}, "full"),
])
def test_sigmoid_cross_entropy(cfg, norm):
    layer = dict({"name": "loss", "type": "SigmoidCrossEntropyLoss", "bottom": ["x", "t"]}, **cfg)
    s = roundtrip(layer)
    assert s.norm_mode() == norm
    x = _r((4, 3, 2)) * 3
    t = (rng(1).random((4, 3, 2)) > 0.5).astype(float)
    if "ignore_label" in cfg:
        t[rng(2).random(t.shape) < 0.3] = -1
    valid = t != -1
    per = np.where(valid, _sce(x, t), 0.0)
    denom = {"batch_size": 4, "full": x.size, "valid": valid.sum(), "none": 1}[norm]
    net = build([layer], {"x": x, "t": t})
    y = net.run("loss")
    assert np.shape(y) == ()
    np.testing.assert_allclose(y, per.sum() / denom, rtol=1e-12)
    assert net.net().loss is not None
    net.grad_check("loss", ["x"])


def test_sigmoid_cross_entropy_is_stable_and_accepts_a_reshaped_target():
    x = np.array([[1000.0, -1000.0, 0.0]])
    t = np.array([0.0, 1.0, 1.0])
    net = build([{"name": "loss", "type": "SigmoidCrossEntropyLoss", "bottom": ["x", "t"]}], {"x": x, "t": t})
    np.testing.assert_allclose(net.run("loss"), 2000.0 + np.log(2.0), rtol=1e-12)


# ---------------------------------------------------------------------------- EuclideanLoss
def test_euclidean():
    layer = {"name": "loss", "type": "EuclideanLoss", "bottom": ["a", "b"]}
    roundtrip(layer)
    a, b = _r((5, 3, 2)), _r((5, 6), 1)
    net = build([layer], {"a": a, "b": b})
    np.testing.assert_allclose(net.run("loss"), ((a - b.reshape(a.shape)) ** 2).sum() / (2 * 5), rtol=1e-12)
    net.grad_check("loss", ["a", "b"])


def test_euclidean_unknown_batch():
    a, b = _r((3, 2)), _r((3, 2), 1)
    net = build([{"name": "loss", "type": "EuclideanLoss", "bottom": ["a", "b"]}], {"a": a, "b": b}, dynamic_batch=True)
    np.testing.assert_allclose(net.run("loss"), ((a - b) ** 2).sum() / 6, rtol=1e-12)


# ---------------------------------------------------------------------------- HingeLoss
@pytest.mark.parametrize("norm", ["L1", "l2"])
def test_hinge(norm):
    layer = {"name": "loss", "type": "HingeLoss", "bottom": ["x", "label"], "norm": norm}
    roundtrip(layer)
    x = _r((4, 5)) * 1.5
    x[np.abs(np.abs(x) - 1) < 0.05] = 0.5  # off the hinge's kinks at x = ±1
    label = np.array([0, 3, 4, 1], dtype=np.float64)
    t = -np.ones_like(x)
    t[np.arange(4), label.astype(int)] = 1
    m = np.maximum(0, 1 - t * x)
    want = (m if norm == "L1" else m ** 2).sum() / 4
    net = build([layer], {"x": x, "label": label})
    np.testing.assert_allclose(net.run("loss"), want, rtol=1e-12)
    net.grad_check("loss", ["x"])


# ---------------------------------------------------------------------------- ContrastiveLoss
@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive(legacy):
    layer = {"name": "loss", "type": "ContrastiveLoss", "bottom": ["a", "b", "y"], "margin": 2.0,
             "legacy_version": legacy}
    roundtrip(layer)
    a, b = _r((6, 3, 1, 1)) * 0.6, _r((6, 3, 1, 1), 1) * 0.6
    y = np.array([1, 0, 0, 1, 0, 0], dtype=np.float64)
    d2 = ((a - b) ** 2).reshape(6, -1).sum(1)
    dis = np.maximum(2.0 - d2, 0) if legacy else np.maximum(2.0 - np.sqrt(d2), 0) ** 2
    want = np.where(y != 0, d2, dis).sum() / (2 * 6)
    net = build([layer], {"a": a, "b": b, "y": y})
    np.testing.assert_allclose(net.run("loss"), want, rtol=1e-12)
    net.grad_check("loss", ["a", "b"])


def test_contrastive_identical_dissimilar_pair_has_finite_gradient():
    import tfconf as tc

    a = np.ones((2, 3))
    net = build([{"name": "loss", "type": "ContrastiveLoss", "bottom": ["a", "b", "y"]}],
                {"a": a, "b": a.copy(), "y": np.zeros(2)})
    np.testing.assert_allclose(net.run("loss"), 2 * 1.0 / 4)
    with net.graph.as_default():
        (g,) = tc.gradients(net.top("loss"), [net.placeholders["a"]])
    assert np.all(np.isfinite(net.sess.run(g, feed_dict=net.feed())))


# ---------------------------------------------------------------------------- MultinomialLogisticLoss
def test_multinomial_logistic():
    layer = {"name": "loss", "type": "MultinomialLogisticLoss", "bottom": ["p", "label"]}
    roundtrip(layer)
    z = np.exp(_r((4, 5)))
    p = (z / z.sum(1, keepdims=True)).reshape(4, 5, 1, 1)
    p[2, 1] = 0.0  # clipped at 1e-20
    label = np.array([0, 3, 1, 4], dtype=np.float64)
    pl = np.maximum(p.reshape(4, 5)[np.arange(4), label.astype(int)], 1e-20)
    net = build([layer], {"p": p, "label": label})
    np.testing.assert_allclose(net.run("loss"), -np.log(pl).sum() / 4, rtol=1e-12)
    p[2, 1] = 0.3
    net = build([layer], {"p": p, "label": label})
    net.grad_check("loss", ["p"])


# ---------------------------------------------------------------------------- InfogainLoss
def _infogain(x, label, h, axis=1, ignore=None, norm="valid"):
    outer = int(np.prod(x.shape[:axis]))
    x = np.moveaxis(x, axis, -1)
    k = x.shape[-1]
    e = np.exp(x - x.max(-1, keepdims=True))
    logp = np.log(np.maximum(e / e.sum(-1, keepdims=True), 1e-20)).reshape(-1, k)
    lab = label.reshape(-1).astype(int)
    valid = np.ones(len(lab), bool) if ignore is None else lab != ignore
    per = np.array([-(h[lab[i]] * logp[i]).sum() if valid[i] else 0.0 for i in range(len(lab))])
    denom = {"valid": valid.sum(), "full": len(lab), "batch_size": outer, "none": 1}[norm]
    return per.sum() / max(1, denom)


def test_infogain_with_matrix_bottom_and_prob_top():
    layer = {"name": "loss", "type": "InfogainLoss", "bottom": ["x", "label", "H"], "top": ["loss", "prob"]}
    roundtrip(layer)
    x = _r((4, 3)) * 2
    label = np.array([0, 2, 1, 2], dtype=np.float64)
    h = np.abs(_r((3, 3), 1)) + np.eye(3)
    net = build([layer], {"x": x, "label": label, "H": h})
    loss, prob = net.run(["loss", "prob"])
    np.testing.assert_allclose(loss, _infogain(x, label, h), rtol=1e-12)
    e = np.exp(x)
    np.testing.assert_allclose(prob, e / e.sum(1, keepdims=True), rtol=1e-12)
    assert set(net.net().losses) == {"loss"}  # the second top has loss_weight 0
    net.grad_check("loss", ["x"])


def test_infogain_identity_matrix_equals_softmax_loss():
    x, label = _r((5, 4)), np.array([0, 1, 2, 3, 1], dtype=np.float64)
    net = build([{"name": "ig", "type": "InfogainLoss", "bottom": ["x", "label", "H"]},
                 {"name": "sm", "type": "SoftmaxWithLoss", "bottom": ["x", "label"]}],
                {"x": x, "label": label, "H": np.eye(4)})
    a, b = net.run(["ig", "sm"])
    np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("norm", ["valid", "full", "batch_size", "none"])
def test_infogain_source_file_axis_and_ignore_label(tmp_path, norm):
    h = np.abs(_r((3, 3), 2))
    path = tmp_path / "H.npy"
    np.save(path, h)
    layer = {"name": "loss", "type": "InfogainLoss", "bottom": ["x", "label"], "source": str(path),
             "ignore_label": 9, "normalization": norm}
    roundtrip(layer)
    x = _r((2, 3, 2, 2), 3)  # classes on axis 1, positions N·H·W
    label = rng(4).integers(0, 3, (2, 1, 2, 2)).astype(np.float64)
    label[0, 0, 1, 1] = 9
    net = build([layer], {"x": x, "label": label})
    np.testing.assert_allclose(net.run("loss"), _infogain(x, label, h, ignore=9, norm=norm), rtol=1e-12)
    net.grad_check("loss", ["x"], max_points=12)


def test_infogain_errors(tmp_path):
    x, label = np.zeros((2, 3)), np.zeros(2)
    with pytest.raises(NetBuildError, match="infogain matrix"):
        build([{"name": "l", "type": "InfogainLoss", "bottom": ["x", "label"]}], {"x": x, "label": label})
    with pytest.raises(NetBuildError, match="not found"):
        build([{"name": "l", "type": "InfogainLoss", "bottom": ["x", "label"], "source": str(tmp_path / "no.npy")}],
              {"x": x, "label": label})
    np.save(tmp_path / "h.npy", np.eye(2))
    with pytest.raises(NetBuildError, match="3x3"):
        build([{"name": "l", "type": "InfogainLoss", "bottom": ["x", "label"], "source": str(tmp_path / "h.npy")}],
              {"x": x, "label": label})
    with pytest.raises(ValidationError, match="normalize"):
        roundtrip({"name": "l", "type": "InfogainLoss", "normalize": True})


# ---------------------------------------------------------------------------- loss_weight (compiler)
def test_loss_weight_scales_the_total_and_non_loss_layers_can_contribute():
    a, b = _r((2, 3)), _r((2, 3), 1)
    layers = [{"name": "e", "type": "EuclideanLoss", "bottom": ["a", "b"], "loss_weight": 2.5},
              {"name": "r", "type": "Reduction", "bottom": "a", "loss_weight": 0.5}]
    roundtrip(layers[0])
    net = build(layers, {"a": a, "b": b})
    built = net.net()
    e = ((a - b) ** 2).sum() / 4
    np.testing.assert_allclose(net.run(built.loss), 2.5 * e + 0.5 * a.sum(), rtol=1e-12)
    assert set(built.losses) == {"e", "r"}


def test_loss_layers_default_to_weight_one():
    from tfconf.frontend.layers import LAYERS

    losses = sorted(n for n, c in LAYERS.items() if c.is_loss)
    assert losses == ["ContrastiveLoss", "EuclideanLoss", "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss",
                      "SigmoidCrossEntropyLoss", "SoftmaxWithLoss"]
