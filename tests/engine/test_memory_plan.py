"""Memory planning in the executor: every intermediate is released after its last reader, and an
elementwise step whose input dies there writes into that input's buffer, but only when nothing
else (a variable, a feed, a fetch, another slot, a view) holds the array."""

import tracemalloc

import numpy as np
import pytest

import tfconf as tc

N = 1 << 17  # 512 KiB of float32 per array
NO_REWRITES = {"graph_rewrites": False}


def peak_bytes(sess, fetches, feed=None):
    """Bytes allocated at the peak of one run (after a warm-up run compiled the plan)."""
    sess.run(fetches, feed)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = sess.run(fetches, feed)
        return tracemalloc.get_traced_memory()[1] - base, out
    finally:
        tracemalloc.stop()


def chain(x, n=12):
    h = x
    for i in range(n):
        h = tc.sin(h) if i % 2 else tc.exp(-h)
    return h


@pytest.mark.parametrize("planning", [False, True])
def test_intermediates_are_released_after_their_last_reader(planning):
    x = tc.placeholder(tc.float32, [N], name="x")
    y = chain(x)
    xv = np.linspace(0, 1, N, dtype=np.float32)
    with tc.Session(config=tc.SessionConfig(memory_planning=planning, **NO_REWRITES)) as sess:
        peak, _ = peak_bytes(sess, y, {x: xv})
    # 12 ops of 512 KiB: never more than two arrays alive at once (one with in-place updates)
    assert peak < (1.5 if planning else 2.5) * xv.nbytes, peak / xv.nbytes


def test_in_place_updates_give_the_same_values_and_a_lower_peak():
    x = tc.placeholder(tc.float32, [None, 512], name="x")
    b = tc.placeholder(tc.float32, [512], name="b")
    y = chain(x * 2.0 + b, 6) * 3.0
    rng = np.random.default_rng(0)
    feed = {x: rng.standard_normal((256, 512)).astype(np.float32), b: rng.standard_normal(512).astype(np.float32)}
    keep = {k: v.copy() for k, v in feed.items()}
    results = {}
    for planning in (False, True):
        with tc.Session(config=tc.SessionConfig(memory_planning=planning, **NO_REWRITES)) as sess:
            results[planning] = peak_bytes(sess, y, feed)
            info = sess.plan_info(y, feed)
    np.testing.assert_array_equal(results[True][1], results[False][1])
    assert info.memory["inplace_steps"] == 11  # every op but the first (it reads only the feed)
    assert results[True][0] < 0.7 * results[False][0]
    for k in feed:
        np.testing.assert_array_equal(feed[k], keep[k])  # a fed array is never written


def test_arrays_held_elsewhere_are_never_overwritten():
    x = tc.placeholder(tc.float32, [None, 64], name="x")
    v = tc.Variable(np.ones((64, 64), np.float32), name="v")
    a = tc.exp(x)
    alias = tc.identity(a)            # a second slot holding a's array
    view = tc.reshape(tc.exp(x), [-1, 64])
    first = alias + 1.0               # alias dies here, but a is read again below
    second = a * 2.0
    var_read = tc.identity(v.value()) + 1.0  # the variable's array must stay as it is
    from_view = view + 1.0
    fetched = tc.sin(x)
    after = fetched * 2.0             # fetched is also returned: not overwritten
    outs = [first, second, var_read, from_view, fetched, after]
    xv = np.random.default_rng(1).standard_normal((128, 64)).astype(np.float32)
    with tc.Session(config=tc.SessionConfig(**NO_REWRITES)) as sess:
        sess.run(v.initializer)
        got = sess.run(outs, {x: xv})
        assert sess.run(v).sum() == 64 * 64
    e = np.exp(xv)
    np.testing.assert_array_equal(got[0], e + 1)
    np.testing.assert_array_equal(got[1], e * 2)
    np.testing.assert_array_equal(got[2], np.full((64, 64), 2.0))
    np.testing.assert_array_equal(got[3], e + 1)
    np.testing.assert_array_equal(got[4], np.sin(xv))
    np.testing.assert_array_equal(got[5], np.sin(xv) * 2)


def test_broadcasting_that_enlarges_the_dying_input_falls_back():
    x = tc.placeholder(tc.float32, [None, 4096], name="x")
    y = tc.placeholder(tc.float32, [None, 4096], name="y")
    out = tc.exp(x) + y  # same static shape, but x has 1 row and y 3 at run time
    with tc.Session() as sess:
        got = sess.run(out, {x: np.zeros((1, 4096), np.float32), y: np.ones((3, 4096), np.float32)})
    np.testing.assert_array_equal(got, np.full((3, 4096), 2.0))


def test_small_and_scalar_outputs_are_left_alone():
    x = tc.placeholder(tc.float32, [], name="x")
    y = tc.placeholder(tc.float32, [16], name="y")
    with tc.Session() as sess:
        assert sess.run(tc.exp(x) + 1.0, {x: 0.0}) == 2.0
        assert sess.plan_info(tc.exp(y) + 1.0, {y: np.zeros(16)}).memory["inplace_steps"] == 0


def test_the_thread_pool_executor_never_updates_in_place():
    x = tc.placeholder(tc.float32, [None, 4096], name="x")
    a = tc.exp(x)
    outs = [a + 1.0, a * 2.0, tc.sin(a) - 1.0]  # three readers of a that may run in any order
    xv = np.random.default_rng(2).standard_normal((8, 4096)).astype(np.float32)
    with tc.Session(config=tc.SessionConfig(inter_op_threads=3)) as sess:
        for _ in range(5):
            got = sess.run(outs, {x: xv})
            e = np.exp(xv)
            np.testing.assert_array_equal(got[0], e + 1)
            np.testing.assert_array_equal(got[1], e * 2)
