"""Common subexpression elimination: equal computations run once; state, randomness and fetches
are never merged."""

import numpy as np

import tfconf as tc

from .common import OFF


def test_duplicate_subgraphs_are_merged():
    x = tc.placeholder(tc.float32, [None, 3], name="x")
    a = tc.exp(x * 2.0) + tc.exp(x * 2.0)  # the same expression twice
    b = (x + 1.0) * (1.0 + x)              # commutative: one Add
    out = a + b
    feed = {x: np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)}
    with tc.Session() as sess:
        got = sess.run(out, feed)
        info = sess.plan_info(out, feed)
    with tc.Session(config=tc.SessionConfig(**OFF)) as sess:
        want = sess.run(out, feed)
    np.testing.assert_array_equal(got, want)
    assert info.passes["cse"]["merged"] >= 4  # Const 2.0, Mul, Exp, Add(x, 1) (+ constants 1.0)
    assert info.types_before["Exp"] == 2


def test_random_ops_and_variables_are_never_merged():
    u1 = tc.random_uniform([1000], seed=None)
    u2 = tc.random_uniform([1000], seed=None)
    v1 = tc.Variable(np.ones(3, np.float32), name="v1")
    v2 = tc.Variable(np.ones(3, np.float32), name="v2")
    bump = v2.assign_add(np.ones(3, np.float32))
    with tc.Session() as sess:
        sess.run(tc.global_variables_initializer())
        a, b = sess.run([u1 - u2, v1 + v2])
        sess.run(bump)
        assert list(sess.run(v1 + v2)) == [3.0, 3.0, 3.0]
    assert np.abs(a).max() > 0  # two draws, not one
    np.testing.assert_array_equal(b, [2.0, 2.0, 2.0])


def test_seeded_random_ops_keep_their_own_streams():
    """Two ops with the same seed attr are separate generators (keyed by op name)."""
    g = tc.Graph()
    with g.as_default():
        g.seed = 7
        a = tc.random_normal([4], seed=1)
        b = tc.random_normal([4], seed=1)
        out = [a, b, a - b]
    runs = []
    for cfg in ({}, OFF):
        with tc.Session(graph=g, config=tc.SessionConfig(**cfg)) as sess:
            runs.append([sess.run(out) for _ in range(2)])
    for x, y in zip(runs[0], runs[1]):
        for u, w in zip(x, y):
            np.testing.assert_array_equal(u, w)


def test_fetching_two_equal_tensors_gives_two_arrays():
    x = tc.placeholder(tc.float32, [3], name="x")
    a, b = x * 2.0, x * 2.0
    with tc.Session() as sess:
        ra, rb = sess.run([a, b], {x: [1.0, 2.0, 3.0]})
    assert ra is not rb
    ra += 1
    np.testing.assert_array_equal(rb, [2.0, 4.0, 6.0])
