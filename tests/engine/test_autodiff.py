"""TF1 ``gradients`` semantics: ops under "gradients/", sums over paths, unconnected xs, integer
constants, stop_gradient / stop_gradients, grad_ys, Variables, deep graphs and the usage example."""

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine.registry import OpDef, register


@register
class _AutodiffTestNoGrad(OpDef):
    """Test-only op: y = x, with no gradient rule."""

    def infer(op):
        return [(op.inputs[0]._shape, op.inputs[0].dtype)]

    def forward(xp, x):
        return x


def _run(*fetches, feed=None):
    with tc.Session() as sess:
        sess.run(tc.global_variables_initializer())
        return sess.run(list(fetches), feed)


USAGE_EXAMPLE = """\
import numpy as np, tfconf as tc
x = tc.placeholder(tc.float32, shape=[None, 784], name="x")
W = tc.Variable(tc.random_normal([784, 100], stddev=0.01), name="W")
b = tc.Variable(tc.zeros([100]), name="b")
relu = tc.nn.relu(tc.matmul(x, W) + b)
loss = tc.reduce_mean(tc.square(relu))
dW, db, dx = tc.gradients(loss, [W, b, x])
with tc.Session() as sess:
    sess.run(tc.global_variables_initializer())
    out, g = sess.run([relu, {"dW": dW}], feed_dict={x: np.random.rand(32, 784)})
"""


def test_usage_example_exactly_as_written():
    """The README/issue example, run verbatim as a script on a fresh default graph."""
    tc.reset_default_graph()
    ns = {"__name__": "usage_example"}
    try:
        exec(compile(USAGE_EXAMPLE, "usage_example.py", "exec"), ns)
        x, W, relu, loss, dW, db, dx = (ns[k] for k in ("x", "W", "relu", "loss", "dW", "db", "dx"))
        out, grads = ns["out"], ns["g"]
        assert ns["sess"].closed
        assert isinstance(grads, dict) and set(grads) == {"dW"} and grads["dW"].shape == (784, 100)
        assert out.shape == (32, 100) and out.dtype == np.float32
        assert (out >= 0).all() and (out > 0).any()
        # Check the values against numpy, in a new session on the same graph.
        feed = np.random.rand(32, 784)
        with tc.Session() as sess:
            sess.run(tc.global_variables_initializer())
            Wv = sess.run(W)
            got_out, got_db, got_dx, got_dW, got_loss = sess.run(
                [relu, db, dx, dW, loss], feed_dict={x: feed})
    finally:
        tc.reset_default_graph()
    assert 0.008 < Wv.std() < 0.012 and abs(Wv.mean()) < 0.001
    xf = feed.astype(np.float32).astype(np.float64)
    pre = xf @ Wv.astype(np.float64)
    r = np.maximum(pre, 0.0)
    dpre = (2.0 * r / r.size) * (pre > 0)
    np.testing.assert_allclose(got_out, r, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got_loss, (r ** 2).mean(), rtol=1e-4)
    np.testing.assert_allclose(got_dW, xf.T @ dpre, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(got_db, dpre.sum(0), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(got_dx, dpre @ Wv.T, rtol=1e-4, atol=1e-11)
    assert got_dx.shape == (32, 784)


def test_gradient_ops_live_under_the_gradients_scope(g):
    x = tc.placeholder(tc.float32, [3])
    y = tc.reduce_sum(tc.sin(x) * x)
    n = len(g.get_operations())
    (dx,) = tc.gradients(y, [x])
    new = g.get_operations()[n:]
    assert new and all(op.name.startswith("gradients/") for op in new)
    m = len(g.get_operations())
    (dx2,) = tc.gradients(y, x, name="my_grads")
    assert all(op.name.startswith("my_grads/") for op in g.get_operations()[m:])
    k = len(g.get_operations())
    tc.gradients(y, x)
    assert all(op.name.startswith("gradients_1/") for op in g.get_operations()[k:])
    xv = np.array([0.1, 0.5, 2.0], np.float32)
    got, got2 = _run(dx, dx2, feed={x: xv})
    np.testing.assert_allclose(got, np.cos(xv) * xv + np.sin(xv), rtol=1e-6)
    np.testing.assert_array_equal(got, got2)


def test_contributions_of_several_paths_are_summed(g):
    x = tc.placeholder(tc.float32, [2])
    a = x * 3.0
    y = tc.reduce_sum(a * x + tc.exp(x) + a)  # x reaches y by four paths
    (dx,) = tc.gradients(y, x)
    xv = np.array([0.5, -1.0], np.float32)
    (got,) = _run(dx, feed={x: xv})
    np.testing.assert_allclose(got, 6.0 * xv + np.exp(xv) + 3.0, rtol=1e-6)
    # several ys: the gradient of their sum
    y1, y2 = tc.reduce_sum(x * x), tc.reduce_sum(4.0 * x)
    (d12,) = tc.gradients([y1, y2], x)
    (got,) = _run(d12, feed={x: xv})
    np.testing.assert_allclose(got, 2.0 * xv + 4.0, rtol=1e-6)


def test_unconnected_xs_give_none_or_zeros(g):
    x = tc.placeholder(tc.float32, [2])
    z = tc.placeholder(tc.float32, [3])
    y = tc.reduce_sum(x * 2.0)
    dx, dz = tc.gradients(y, [x, z])
    assert dz is None and dx is not None
    dx0, dz0 = tc.gradients(y, [x, z], unconnected_gradients="zero")
    got_dx, got_dz = _run(dx0, dz0, feed={x: [1.0, 2.0], z: [1.0, 2.0, 3.0]})
    np.testing.assert_array_equal(got_dx, [2.0, 2.0])
    np.testing.assert_array_equal(got_dz, [0.0, 0.0, 0.0])
    assert got_dz.dtype == np.float32
    with pytest.raises(ValueError, match="unconnected_gradients"):
        tc.gradients(y, x, unconnected_gradients="bogus")
    # x depends on y, not y on x
    assert tc.gradients(x, y) == [None]


def test_integer_tensors_are_constants(g):
    n = tc.placeholder(tc.int32, [2], name="n")
    x = tc.placeholder(tc.float32, [2], name="x")
    y = tc.reduce_sum(tc.cast(n, tc.float32) * x)
    dn, dx = tc.gradients(y, [n, x])
    assert dn is None
    (got,) = _run(dx, feed={n: [3, 4], x: [1.0, 1.0]})
    np.testing.assert_array_equal(got, [3.0, 4.0])
    k = tc.reduce_sum(n * 2)
    assert tc.gradients(k, n) == [None]
    assert tc.gradients(k, x) == [None]


def test_stop_gradient_blocks_a_path(g):
    x = tc.placeholder(tc.float32, [2])
    y = tc.reduce_sum(x * tc.stop_gradient(x * 5.0))
    (dx,) = tc.gradients(y, x)
    xv = np.array([1.0, 2.0], np.float32)
    got, val = _run(dx, y, feed={x: xv})
    np.testing.assert_allclose(got, 5.0 * xv)  # d/dx (x * c), c held constant
    np.testing.assert_allclose(val, (5.0 * xv * xv).sum())
    only_stopped = tc.reduce_sum(tc.stop_gradient(x))
    assert tc.gradients(only_stopped, x) == [None]


def test_stop_gradients_gives_partial_derivatives_tf_docstring_example(g):
    a = tc.constant(0.0)
    b = 2 * a
    total = _run(*tc.gradients(a + b, [a, b]))
    partial = _run(*tc.gradients(a + b, [a, b], stop_gradients=[a, b]))
    np.testing.assert_array_equal(total, [3.0, 1.0])
    np.testing.assert_array_equal(partial, [1.0, 1.0])
    # stopping only b: d/da still skips the path through b
    only_b = _run(*tc.gradients(a + b, [a], stop_gradients=[b]))
    np.testing.assert_array_equal(only_b, [1.0])
    # a stopped y is a constant: nothing flows back from it
    assert tc.gradients(b, a, stop_gradients=[b]) == [None]
    np.testing.assert_array_equal(_run(*tc.gradients(b, b, stop_gradients=[b])), [1.0])


def test_grad_ys_weights_the_output(g):
    x = tc.placeholder(tc.float32, [3])
    y = x * x
    w = np.array([1.0, 10.0, -2.0], np.float32)
    (dx,) = tc.gradients(y, x, grad_ys=w)
    gy = tc.placeholder(tc.float32, [3])
    (dx2,) = tc.gradients(y, x, grad_ys=[gy])
    xv = np.array([1.0, 2.0, 3.0], np.float32)
    got, got2 = _run(dx, dx2, feed={x: xv, gy: 2 * w})
    np.testing.assert_allclose(got, 2.0 * xv * w)
    np.testing.assert_allclose(got2, 4.0 * xv * w)
    with pytest.raises(ValueError, match="grad_ys"):
        tc.gradients([y, y], x, grad_ys=[w])
    with pytest.raises(ValueError, match=r"grad_ys.*\[4\].*\[3\]"):
        tc.gradients(y, x, grad_ys=np.ones(4, np.float32))


def test_gradient_with_respect_to_variables(g):
    W = tc.Variable(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), name="W")
    b = tc.Variable(np.array([0.5, -0.5], np.float32), name="b")
    x = tc.constant(np.array([[1.0, -1.0]], np.float32))
    loss = tc.reduce_sum(tc.square(tc.matmul(x, W) + b))
    dW, db = tc.gradients(loss, [W, b])
    assert dW.shape.as_list() == [2, 2] and db.shape.as_list() == [2]
    got_dW, got_db = _run(dW, db)
    pre = np.array([[1.0, -1.0]]) @ np.array([[1.0, 2.0], [3.0, 4.0]]) + [0.5, -0.5]
    np.testing.assert_allclose(got_db, 2.0 * pre[0])
    np.testing.assert_allclose(got_dW, np.array([[1.0], [-1.0]]) @ (2.0 * pre))


def test_second_derivative(g):
    x = tc.placeholder(tc.float32, [3])
    y = tc.reduce_sum(x * x * x)
    (dx,) = tc.gradients(y, x)
    (ddx,) = tc.gradients(tc.reduce_sum(dx), x)
    xv = np.array([1.0, -2.0, 0.5], np.float32)
    got = _run(dx, ddx, feed={x: xv})
    np.testing.assert_allclose(got[0], 3.0 * xv ** 2, rtol=1e-6)
    np.testing.assert_allclose(got[1], 6.0 * xv, rtol=1e-6)


def test_missing_gradient_rule_is_a_clear_error(g):
    x = tc.placeholder(tc.float32, [2])
    y = tc.reduce_sum(g.create_op("_AutodiffTestNoGrad", [x * 2.0], name="mystery").outputs[0])
    with pytest.raises(tc.GradientError, match="mystery.*_AutodiffTestNoGrad"):
        tc.gradients(y, x)
    # a stopped path needs no rule
    z = tc.reduce_sum(tc.stop_gradient(g.create_op("_AutodiffTestNoGrad", [x]).outputs[0]) * x)
    (dz,) = tc.gradients(z, x)
    (got,) = _run(dz, feed={x: [3.0, 4.0]})
    np.testing.assert_array_equal(got, [3.0, 4.0])


def test_a_2000_op_chain_differentiates_without_recursion_error(g):
    x = tc.placeholder(tc.float32, [2])
    h = x
    for i in range(2000):
        h = h * 1.0005 if i % 2 else h + 0.001
    (dx,) = tc.gradients(tc.reduce_sum(h), x)
    (got,) = _run(dx, feed={x: [0.0, 1.0]})
    np.testing.assert_allclose(got, [1.0005 ** 1000] * 2, rtol=1e-4)
