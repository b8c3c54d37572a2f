"""ApplyUpdate's Momentum and GradientDescent rules update in place only when nothing else holds the array."""

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


def _numpy_steps(rule, w, steps, **hp):
    """TensorFlow's formulas (training_ops.cc) for the gradient of sum(w²), in float64."""
    w, s1, s2 = w.astype(np.float64), np.zeros(w.shape), np.zeros(w.shape)
    for t in range(1, steps + 1):
        g = 2 * w
        if rule == "nesterov":
            s1 = hp["m"] * s1 + g
            w = w - hp["lr"] * (g + hp["m"] * s1)
        else:  # adam
            s1 = hp["b1"] * s1 + (1 - hp["b1"]) * g
            s2 = hp["b2"] * s2 + (1 - hp["b2"]) * g * g
            w = w - hp["lr"] * np.sqrt(1 - hp["b2"] ** t) / (1 - hp["b1"] ** t) * s1 / (np.sqrt(s2) + hp["eps"])
    return w


def test_nesterov_and_adam_follow_tensorflows_formulas_in_float64():
    w0 = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    for rule, make, hp in (
            ("nesterov", lambda: tc.train.MomentumOptimizer(0.05, 0.9, use_nesterov=True), {"lr": 0.05, "m": 0.9}),
            ("adam", lambda: tc.train.AdamOptimizer(0.1, 0.8, 0.95, 1e-6), {"lr": 0.1, "b1": 0.8, "b2": 0.95, "eps": 1e-6})):
        g = tc.Graph()
        with g.as_default():
            a, b = tc.Variable(w0), tc.Variable(2 * w0)  # two variables: Adam's one step count serves both
            step = tc.train.get_or_create_global_step()
            train = make().minimize(tc.reduce_sum(tc.square(a)) + tc.reduce_sum(tc.square(b)), global_step=step)
            sess = tc.Session(graph=g)
            sess.run(tc.global_variables_initializer())
            for _ in range(5):
                sess.run(train)
            assert a.dtype == tc.float64 and sess.run(step) == 5
            np.testing.assert_allclose(sess.run(a), _numpy_steps(rule, w0, 5, **hp), rtol=1e-12, err_msg=rule)
            np.testing.assert_allclose(sess.run(b), _numpy_steps(rule, 2 * w0, 5, **hp), rtol=1e-12, err_msg=rule)
