"""Fused ops (ops/fused.py): each checked against an independent numpy reference and its own
composite, with float64 finite-difference gradients (and second derivatives)."""

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine.ops import fused
from tests.engine.harness import check_op
from tests.engine.ops.test_nn_ops import np_conv2d

#: the op types whose gradients this module's tests check through the harness (conftest.py
#: verifies the claim, and fails collection when an op type with a gradient is in no module's)
GRAD_CHECKS = frozenset({
    "Conv2DBackpropFilter", "FusedConv2D", "FusedMatMul", "SoftmaxCrossEntropyWithLogits"
})

RNG = np.random.default_rng(11)


def np_log_softmax(x):
    s = x - x.max(-1, keepdims=True)
    return s - np.log(np.exp(s).sum(-1, keepdims=True))


def np_xent(x, z):
    return -(z * np_log_softmax(x)).sum(-1)


def np_xent_backprop(x, z):
    return np.exp(np_log_softmax(x)) * z.sum(-1, keepdims=True) - z


# ---------------------------------------------------------------------------- softmax cross-entropy
def fused_xent(labels, logits):
    """The loss output of the fused op (which the stable rewrite makes from tc.nn's composite)."""
    labels = tc.convert_to_tensor(labels, dtype=logits.dtype)
    return logits.graph.create_op("SoftmaxCrossEntropyWithLogits", [logits, labels]).outputs[0]


def test_softmax_cross_entropy_loss_and_backprop():
    x = RNG.standard_normal((4, 5)) * 2
    z = RNG.uniform(0.1, 1.0, (4, 5))  # not normalised: the op is exact for any labels
    check_op(lambda a, b: fused_xent(labels=b, logits=a), [x, z], np_xent,
             second_order=True)

    def both(a, b):
        op = a.graph.create_op("SoftmaxCrossEntropyWithLogits", [a, b])
        return list(op.outputs)

    check_op(both, [x, z], lambda a, b: [np_xent(a, b), np_xent_backprop(a, b)], second_order=True)


def test_softmax_cross_entropy_run_time_shapes_and_leading_axes():
    x = RNG.standard_normal((2, 3, 4))
    z = RNG.dirichlet(np.ones(4), size=(2, 3))
    check_op(lambda a, b: fused_xent(labels=b, logits=a), [x, z], np_xent,
             dynamic=True)


@pytest.mark.parametrize("dtype", [tc.float32, tc.float64])
def test_softmax_cross_entropy_is_stable_and_matches_the_composite(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, -1e4]])
    labels = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [1.0, 0.0, 0.0]])
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(dtype, [3, 3])
        z = tc.placeholder(dtype, [3, 3])
        loss = fused_xent(labels=z, logits=x)
        comp = tc.nn.softmax_cross_entropy_with_logits(labels=z, logits=x)
        gx, gz = tc.gradients(tc.reduce_sum(loss), [x, z])
        cx, cz = tc.gradients(tc.reduce_sum(comp), [x, z])
        with tc.Session(config=tc.SessionConfig(graph_rewrites=False)) as s:
            got = s.run([loss, gx, gz, comp, cx, cz], {x: logits, z: labels})
    assert all(np.all(np.isfinite(v)) for v in got)
    np.testing.assert_allclose(got[0], np_xent(logits, labels), rtol=1e-6)
    for a, b in zip(got[:3], got[3:]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_softmax_cross_entropy_shape_errors():
    x = tc.placeholder(tc.float32, [4, 3])
    with pytest.raises(ValueError, match="labels"):
        fused_xent(labels=tc.placeholder(tc.float32, [4, 2]), logits=x)
    with pytest.raises(TypeError, match="dtypes differ"):
        tc.get_default_graph().create_op("SoftmaxCrossEntropyWithLogits", [x, tc.placeholder(tc.float64, [4, 3])])


# ---------------------------------------------------------------------------- conv + bias + relu
CASES = [
    # x shape, w shape, strides, padding, activation
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, "VALID", "Relu"),
    ((1, 2, 5, 6), (3, 2, 3, 2), 2, "SAME", "Relu"),
    ((2, 2, 4, 4), (3, 2, 2, 2), 1, (1, 0, 1, 1), None),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"x{c[0]}-w{c[1]}-{c[4]}".replace(" ", ""))
def test_fused_conv2d(case):
    xs, ws, s, p, act = case
    x, w, b = RNG.standard_normal(xs), RNG.standard_normal(ws), RNG.standard_normal(ws[0])

    def ref(x, w, b):
        y = np_conv2d(x, w, (s, s), p) + b[:, None, None]
        return np.maximum(y, 0) if act else y

    # kinks: keep pre-activations away from 0 by shifting the bias per channel is not enough in
    # general, so compare at points where |conv + b| > 0.05 (reseeded until true)
    for seed in range(20):
        pre = np_conv2d(x, w, (s, s), p) + b[:, None, None]
        if not act or np.abs(pre).min() > 0.05:
            break
        b = np.random.default_rng(seed).standard_normal(ws[0])
    check_op(lambda a, f, c: fused.fused_conv2d(a, f, c, strides=s, padding=p, activation=act),
             [x, w, b], ref, rtol32=1e-4, atol32=1e-5, second_order=act is None)


def test_fused_conv2d_matches_the_composite_and_runs_with_a_run_time_batch():
    x, w, b = RNG.standard_normal((3, 2, 6, 6)), RNG.standard_normal((4, 2, 3, 3)), RNG.standard_normal(4)
    g = tc.Graph()
    with g.as_default():
        xp = tc.placeholder(tc.float64, [None, 2, 6, 6])
        y = fused.fused_conv2d(xp, w, b, padding="SAME")
        comp = tc.nn.relu(tc.nn.bias_add(tc.nn.conv2d(xp, w, padding="SAME"), b))
        with tc.Session(config=tc.SessionConfig(graph_rewrites=False)) as s:
            a, c = s.run([y, comp], {xp: x})
    np.testing.assert_array_equal(a, c)


def test_fused_conv2d_rejects_a_bias_that_broadcasts_the_output():
    x = tc.placeholder(tc.float32, [1, 2, 4, 4])
    w = tc.constant(np.ones((3, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="broadcast"):
        tc.get_default_graph().create_op(
            "FusedConv2D", [x, w, tc.constant(np.ones((2, 3, 1, 1), np.float32))],
            {"strides": (1, 1), "padding": (0, 0, 0, 0), "dilations": (1, 1), "groups": 1, "activation": None})


# ---------------------------------------------------------------------------- matmul + bias + relu
@pytest.mark.parametrize("act", ["Relu", None])
@pytest.mark.parametrize("bias_shape,tb", [((5,), False), ((1, 5), False), ((5,), True)])
def test_fused_matmul(act, bias_shape, tb):
    a, b = RNG.standard_normal((4, 3)), RNG.standard_normal((3, 5))
    bias = RNG.standard_normal(bias_shape)
    for seed in range(50):  # keep pre-activations away from the ReLU's kink
        if not act or np.abs(a @ b + bias).min() > 0.05:
            break
        bias = np.random.default_rng(seed).standard_normal(bias_shape)

    def ref(a, b, c):
        z = a @ (b.T if tb else b) + c
        return np.maximum(z, 0) if act else z

    check_op(lambda x, y, c: fused.fused_matmul(x, y, c, activation=act, transpose_b=tb),
             [a, b.T.copy() if tb else b, bias], ref, rtol32=1e-5, atol32=1e-6, second_order=act is None)


def test_fused_matmul_matches_the_composite_with_a_run_time_batch():
    w, bias = RNG.standard_normal((3, 4)), RNG.standard_normal(4)
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float64, [None, 3])
        y = fused.fused_matmul(x, w, bias)
        comp = tc.nn.relu(tc.matmul(x, w) + bias)
        with tc.Session(config=tc.SessionConfig(graph_rewrites=False)) as s:
            got, want = s.run([y, comp], {x: RNG.standard_normal((6, 3))})
    np.testing.assert_array_equal(got, want)


def test_fused_matmul_shape_and_type_errors():
    x = tc.placeholder(tc.float32, [2, 3])
    w = tc.constant(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="one value per output column"):
        fused.fused_matmul(x, w, np.ones((3, 1, 4), np.float32))
    with pytest.raises(ValueError, match="broadcast"):
        fused.fused_matmul(x, w, np.ones((1, 5), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        fused.fused_matmul(tc.placeholder(tc.float32, [2, 2, 3]), w, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="activation"):
        fused.fused_matmul(x, w, np.ones(4, np.float32), activation="Tanh")
    with pytest.raises(ValueError, match="one value per output column"):  # a per-row bias
        fused.fused_matmul(tc.placeholder(tc.float32, [4, 3]), w, np.ones((4, 1), np.float32))
    with pytest.raises(TypeError, match="dtypes differ"):
        tc.get_default_graph().create_op("FusedMatMul", [x, w, tc.constant(np.ones(4))], {"activation": None})
