"""Pruning: a plan holds only the ops its fetches and targets need, stops at fed tensors, and
drops what the rewrites left without readers."""

import numpy as np

import tfconf as tc

from .common import OFF


def test_only_needed_ops_run_and_feeds_cut_the_graph():
    x = tc.placeholder(tc.float32, [3], name="x")
    unfed = tc.placeholder(tc.float32, [3], name="unfed")
    a = tc.exp(x, name="a")
    unused = tc.log(unfed, name="unused")  # needs an unfed placeholder: must never be planned
    b = tc.add(a, unfed, name="b")
    c = tc.multiply(b, 2.0, name="c")
    for cfg in ({}, OFF):
        with tc.Session(config=tc.SessionConfig(**cfg)) as sess:
            # feeding b cuts everything above it (a, x, unfed) out of the plan
            np.testing.assert_array_equal(sess.run(c, {b: np.ones(3, np.float32)}), [2.0, 2.0, 2.0])
            info = sess.plan_info(c, {b: np.ones(3, np.float32)})
            assert info.ops_before == 2  # c and its constant
            where = sess.placement(a, {x: np.zeros(3, np.float32)})
            assert set(where) == {"a"}  # x is fed, so its Placeholder op is not even planned
    del unused


def test_ops_left_without_readers_are_dropped():
    x = tc.placeholder(tc.float32, [None, 4], name="x")
    p = tc.nn.softmax(x)
    y = tc.log(p)  # becomes log_softmax: the Softmax is dead afterwards
    with tc.Session() as sess:
        info = sess.plan_info(y, {x: np.zeros((1, 4))})
    assert info.types_after == {"LogSoftmax": 1}
    assert info.passes["prune"]["needed"] == 2

