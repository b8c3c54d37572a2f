"""Constant folding: constant subgraphs are computed once at plan time; state, randomness,
large results, non-finite results, failing kernels and fetches are left alone."""

import numpy as np
import pytest

import tfconf as tc

from .common import OFF


def test_constant_subgraphs_fold_into_one_constant():
    x = tc.placeholder(tc.float32, [None, 3], name="x")
    c = tc.exp(tc.constant([1.0, 2.0, 3.0])) * 2.0 + tc.reduce_sum(tc.constant([[1.0, 2.0]]))
    y = x * c
    feed = {x: np.ones((2, 3), np.float32)}
    with tc.Session() as sess:
        got = sess.run(y, feed)
        info = sess.plan_info(y, feed)
    with tc.Session(config=tc.SessionConfig(**OFF)) as sess:
        np.testing.assert_array_equal(got, sess.run(y, feed))
    assert info.passes["constant_folding"]["folded"] == 4  # Exp, Mul, Sum, Add
    assert info.types_after == {"Const": 1, "Mul": 1}


def test_static_shapes_materialize():
    x = tc.placeholder(tc.float32, [4, 3], name="x")
    n = tc.cast(tc.size(x), tc.float32)
    y = tc.reduce_sum(x) / n + tc.cast(tc.shape(x)[0], tc.float32)
    with tc.Session() as sess:
        got = sess.run(y, {x: np.ones((4, 3), np.float32)})
        info = sess.plan_info(y, {x: np.ones((4, 3), np.float32)})
    assert got == 5.0
    assert info.passes["constant_folding"]["shapes_materialized"] == 2
    assert "Size" not in info.types_after and "Shape" not in info.types_after


def test_unknown_shapes_state_and_randomness_are_not_folded():
    x = tc.placeholder(tc.float32, [None, 3], name="x")
    v = tc.Variable(2.0, name="v")
    r = tc.random_uniform([3], seed=3)
    y = tc.cast(tc.size(x), tc.float32) * v * tc.exp(r)
    with tc.Session() as sess:
        sess.run(v.initializer)
        a = sess.run(y, {x: np.ones((2, 3))})
        b = sess.run(y, {x: np.ones((2, 3))})
        info = sess.plan_info(y, {x: np.ones((2, 3))})
    assert not np.array_equal(a, b)  # the random op still draws each run
    assert info.passes["constant_folding"] == {"folded": 0, "shapes_materialized": 0}


def test_large_nonfinite_and_failing_results_stay_as_ops():
    s = tc.placeholder(tc.float32, [], name="s")
    big = (tc.zeros([600, 600]) + 1.0) * s  # the sum is 1.4 MB: above the default limit
    bad = tc.log(tc.constant([-1.0, 0.0]))  # nan, -inf: left to run (and warn) at run time
    idx = tc.gather(tc.constant([1.0, 2.0]), tc.constant([5]))  # fails: at run time, named
    with tc.Session() as sess:
        assert sess.run(big, {s: 1.0}).sum() == 360000
        with np.errstate(all="ignore"):
            assert np.isnan(sess.run(bad)[0])
        assert sess.plan_info(big, {s: 1.0}).passes["constant_folding"]["folded"] == 0
        with pytest.raises(tc.errors.InvalidArgumentError) as ei:
            sess.run(idx)
    assert ei.value.op is idx.op
    with tc.Session(config=tc.SessionConfig(graph_rewrites={"fold_max_bytes": 2 << 20})) as sess:
        assert sess.plan_info(big, {s: 1.0}).passes["constant_folding"]["folded"] == 1


def test_fetched_results_are_fresh_writable_arrays():
    a = tc.constant([1.0, 2.0]) * 2.0
    with tc.Session() as sess:
        r = sess.run(a)
        r += 1  # must not raise (a folded constant is read-only) and must not leak into later runs
        np.testing.assert_array_equal(sess.run(a), [2.0, 4.0])
