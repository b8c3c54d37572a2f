"""ApplyMomentum / ApplyGradientDescent update in place only when nothing else holds the array."""

import numpy as np

import tfconf as tc


def _setup(opt):
    g = tc.Graph()
    with g.as_default():
        w0 = np.arange(6, dtype=np.float32).reshape(2, 3)
        v = tc.Variable(w0)
        loss = tc.reduce_sum(tc.square(v))
        train = opt().minimize(loss)
        sess = tc.Session(graph=g)
        sess.run(tc.global_variables_initializer())
    return w0, v, train, sess


def test_momentum_matches_formula_and_leaves_fetches_alone():
    w0, v, train, sess = _setup(lambda: tc.train.MomentumOptimizer(0.1, 0.9))
    w, acc = w0.astype(np.float64), np.zeros((2, 3))
    for _ in range(4):
        before = sess.run(v)
        same_run = sess.run([train, v])[1]       # read in the same run as the update
        acc = 0.9 * acc + 2 * w
        w = w - 0.1 * acc
        np.testing.assert_allclose(sess.run(v), w, rtol=1e-6)
        assert not np.shares_memory(same_run, sess.run(v))
    np.testing.assert_array_equal(w0, np.arange(6, dtype=np.float32).reshape(2, 3))  # initial value untouched


def test_fetched_value_is_not_mutated_by_later_steps():
    _, v, train, sess = _setup(lambda: tc.train.GradientDescentOptimizer(0.1))
    held = sess.run(v)
    keep = held.copy()
    for _ in range(3):
        sess.run(train)
    np.testing.assert_array_equal(held, keep)
    assert not np.allclose(sess.run(v), keep)
