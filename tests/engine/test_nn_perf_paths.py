"""The performance paths of the nn kernels, checked at op level through a Session: each conv
column layout ("nchw" / "chwn") and each pooling reduction order, forced, must give the generic
result, and float64 finite-difference gradients (first and second order for conv)."""

import numpy as np
import pytest

import tfconf as tc
from tests.engine.harness import check_op, distinct
from tests.engine.ops.test_nn_ops import np_conv2d
from tfconf.engine.kernels import conv as K
from tfconf.engine.kernels import pool as P

CONV_CASES = [
    # x shape, w shape, strides, padding, dilations, groups
    ((4, 3, 8, 8), (5, 3, 3, 3), (1, 1), "VALID", (1, 1), 1),
    ((3, 4, 9, 7), (6, 2, 3, 2), (2, 1), "SAME", (1, 1), 2),
    ((2, 2, 9, 9), (3, 2, 3, 3), (1, 2), (1, 0, 2, 1), (2, 1), 1),
]


@pytest.mark.parametrize("layout", ["nchw", "chwn"])
@pytest.mark.parametrize("xs,ws,s,p,d,g", CONV_CASES)
def test_conv2d_layout_op_level(monkeypatch, layout, xs, ws, s, p, d, g):
    monkeypatch.setattr(K, "LAYOUT", layout)
    rng = np.random.default_rng(0)
    check_op(lambda x, w: tc.nn.conv2d(x, w, strides=s, padding=p, dilations=d, groups=g),
             [rng.standard_normal(xs), rng.standard_normal(ws)],
             lambda x, w: np_conv2d(x, w, s, p, d, g), second_order=True,
             rtol32=1e-4, atol32=1e-5)


def _train_values(layout, monkeypatch):
    """conv → bias → max_pool → conv → loss: the values and gradients of a LeNet-like step."""
    monkeypatch.setattr(K, "LAYOUT", layout)
    rng = np.random.default_rng(1)
    xv = rng.standard_normal((8, 1, 14, 14)).astype(np.float32)
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [None, 1, 14, 14])
        w1 = tc.Variable(rng.standard_normal((4, 1, 5, 5)).astype(np.float32))
        b1 = tc.Variable(rng.standard_normal(4).astype(np.float32))
        w2 = tc.Variable(rng.standard_normal((6, 4, 3, 3)).astype(np.float32))
        h = tc.nn.max_pool(tc.nn.bias_add(tc.nn.conv2d(x, w1), b1), 2, 2)
        loss = tc.reduce_sum(tc.square(tc.nn.conv2d(h, w2, padding="SAME")))
        grads = tc.gradients(loss, [x, w1, b1, w2])
        with tc.Session(graph=g) as sess:
            sess.run(tc.global_variables_initializer())
            return sess.run([loss] + grads, {x: xv})


def test_layouts_agree_on_a_training_graph(monkeypatch):
    a = _train_values("nchw", monkeypatch)
    b = _train_values("chwn", monkeypatch)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=2e-4, atol=1e-3)


@pytest.mark.parametrize("order", ["direct", "h", "w"])
@pytest.mark.parametrize("ks,st,pad,ceil", [(2, 2, "VALID", False), (3, 2, "VALID", True),
                                            (3, 1, "SAME", False)])
def test_pool_orders_op_level(monkeypatch, order, ks, st, pad, ceil):
    monkeypatch.setattr(P._PGeom, "reduce_order", lambda self: order)
    rng = np.random.default_rng(2)
    x = distinct(rng.standard_normal((2, 3, 7, 8)), rng=rng)
    monkeypatch.setattr(P._PGeom, "reduce_order", lambda self: "direct")
    want_max = P.max_pool(np, x, (ks, ks), (st, st), _pads(x, ks, st, pad), ceil)
    want_avg = P.avg_pool(np, x, (ks, ks), (st, st), _pads(x, ks, st, pad), ceil, pad != "SAME")
    monkeypatch.setattr(P._PGeom, "reduce_order", lambda self: order)
    check_op(lambda t: tc.nn.max_pool(t, ks, st, pad, ceil_mode=ceil), [x], lambda t: want_max)
    check_op(lambda t: tc.nn.avg_pool(t, ks, st, pad, ceil_mode=ceil), [x], lambda t: want_avg)


def _pads(x, k, s, pad):
    from tfconf.engine.ops.nn import resolve_pads

    if pad == "VALID":
        return (0, 0, 0, 0)
    return resolve_pads("SAME", x.shape[2:], (k, k), (s, s))
