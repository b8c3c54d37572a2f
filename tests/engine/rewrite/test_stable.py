"""Numerically stable rewrites: each gives the accurate (or finite) answer where the composite
the user wrote does not, and the same answer elsewhere."""

import numpy as np

import tfconf as tc

from .common import OFF


def both(fetches, feed=None):
    with tc.Session() as sess:
        on = sess.run(fetches, feed)
        info = sess.plan_info(fetches, feed)
    with tc.Session(config=tc.SessionConfig(**OFF)) as sess, np.errstate(all="ignore"):
        off = sess.run(fetches, feed)
    return on, off, info.passes["stable"]


def test_log_of_one_plus_x_is_log1p():
    x = tc.placeholder(tc.float32, [None], name="x")
    y1, y2 = tc.log(1.0 + x), tc.log(1.0 - x)
    xv = np.array([1e-10, -3e-9, 0.5], np.float32)
    (a1, a2), (b1, b2), stats = both([y1, y2], {x: xv})
    assert stats["log1p"] == 2
    np.testing.assert_allclose(a1, np.log1p(xv.astype(np.float64)), rtol=1e-6)
    np.testing.assert_allclose(a2, np.log1p(-xv.astype(np.float64)), rtol=1e-6)
    assert b1[0] == 0.0  # the composite loses the small value entirely in float32


def test_a_constant_that_broadcasts_x_is_not_rewritten():
    x = tc.placeholder(tc.float32, [3], name="x")
    y = tc.log(tc.ones([2, 3]) + x)  # [2, 3], not x's shape
    on, off, stats = both(y, {x: [0.1, 0.2, 0.3]})
    assert stats["log1p"] == 0 and on.shape == (2, 3)
    np.testing.assert_array_equal(on, off)


def test_exp_minus_one_is_expm1():
    x = tc.placeholder(tc.float32, [None], name="x")
    y = tc.exp(x) - 1.0
    xv = np.array([1e-10, 2.0], np.float32)
    on, off, stats = both(y, {x: xv})
    assert stats["expm1"] == 1 and off[0] == 0.0
    np.testing.assert_allclose(on, np.expm1(xv.astype(np.float64)), rtol=1e-6)


def test_log_softmax_and_its_gradient_stay_finite():
    x = tc.placeholder(tc.float32, [None, 3], name="x")
    z = tc.placeholder(tc.float32, [None, 3], name="z")
    logp = tc.log(tc.nn.softmax(x))  # the classic TF1 tutorial loss
    loss = -tc.reduce_sum(z * logp)
    (gx,) = tc.gradients(loss, [x])
    xv = np.array([[1000.0, 0.0, -1000.0], [0.5, 0.2, 0.1]], np.float32)
    zv = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], np.float32)
    (lp, lv, gv), (lp_off, lv_off, gv_off), stats = both([logp, loss, gx], {x: xv, z: zv})
    assert stats["log_softmax"] == 1 and stats["log_softmax_grad"] == 1
    assert np.isinf(lp_off).any() and not np.isfinite(gv_off).all()  # the composite overflows
    s = xv.astype(np.float64) - xv.max(1, keepdims=True)
    ref = s - np.log(np.exp(s).sum(1, keepdims=True))
    np.testing.assert_allclose(lp, ref, rtol=1e-6)
    np.testing.assert_allclose(lv, -(zv * ref).sum(), rtol=1e-6)
    np.testing.assert_allclose(gv, np.exp(ref) * zv.sum(1, keepdims=True) - zv, atol=1e-6)


def test_log_softmax_gradient_matches_on_moderate_logits():
    rng = np.random.default_rng(0)
    x = tc.placeholder(tc.float64, [4, 5], name="x")
    c = tc.placeholder(tc.float64, [4, 5], name="c")
    y = tc.reduce_sum(c * tc.log(tc.nn.softmax(x)))
    (gx,) = tc.gradients(y, [x])
    feed = {x: rng.standard_normal((4, 5)), c: rng.standard_normal((4, 5))}
    (a, ga), (b, gb), stats = both([y, gx], feed)
    assert stats["log_softmax_grad"] == 1
    np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(ga, gb, rtol=1e-10, atol=1e-12)


def test_softmax_cross_entropy_fuses_when_nothing_else_reads_the_parts():
    x = tc.placeholder(tc.float32, [None, 4], name="x")
    z = tc.placeholder(tc.float32, [None, 4], name="z")
    loss = tc.reduce_mean(tc.nn.softmax_cross_entropy_with_logits(labels=z, logits=x))
    rng = np.random.default_rng(1)
    feed = {x: rng.standard_normal((6, 4)).astype(np.float32) * 50, z: rng.dirichlet(np.ones(4), 6).astype(np.float32)}
    on, off, stats = both(loss, feed)
    assert stats["softmax_cross_entropy"] == 1
    np.testing.assert_allclose(on, off, rtol=1e-5)
    # in a training plan the backward pass reads log_softmax's output: no fusion there
    (gx,) = tc.gradients(loss, [x])
    (l2, g2), (l3, g3), stats = both([loss, gx], feed)
    assert stats["softmax_cross_entropy"] == 0
    np.testing.assert_allclose(g2, g3, rtol=1e-5, atol=1e-7)
