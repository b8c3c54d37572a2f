"""Identity and no-op removal: readers bypass identities, control dependencies still hold."""

import numpy as np

import tfconf as tc

from .common import OFF


def test_identities_are_bypassed_and_values_unchanged():
    x = tc.placeholder(tc.float32, [None, 3], name="x")
    a = tc.identity(tc.identity(x * 2.0))
    b = tc.stop_gradient(a) + tc.placeholder_with_default(a, [None, 3])
    feed = {x: np.arange(6, dtype=np.float32).reshape(2, 3)}
    with tc.Session() as sess:
        got = sess.run(b, feed)
        info = sess.plan_info(b, feed)
    np.testing.assert_array_equal(got, feed[x] * 4)
    assert info.passes["identity"]["identities_removed"] == 4
    assert not {"Identity", "StopGradient", "PlaceholderWithDefault"} & set(info.types_after)


def test_a_placeholder_with_default_that_is_fed_stays_fed():
    x = tc.placeholder(tc.float32, [2], name="x")
    d = tc.placeholder_with_default(x * 2.0, [2])
    y = d + 1.0
    with tc.Session() as sess:
        assert list(sess.run(y, {x: [1.0, 2.0]})) == [3.0, 5.0]
        assert list(sess.run(y, {x: [1.0, 2.0], d: [10.0, 20.0]})) == [11.0, 21.0]


def test_control_dependencies_of_a_removed_identity_move_to_its_readers():
    for cfg in ({}, OFF):
        g = tc.Graph()
        with g.as_default():
            v = tc.Variable(0.0, name="v")
            with tc.control_dependencies([v.assign_add(1.0)]):
                read = tc.identity(v.read_value())  # runs after the increment
            out = read * 10.0
            with tc.Session(config=tc.SessionConfig(**cfg)) as sess:
                sess.run(v.initializer)
                assert [float(sess.run(out)) for _ in range(3)] == [10.0, 20.0, 30.0]
                info = sess.plan_info(out)
        if cfg == {}:
            assert info.passes["identity"]["identities_removed"] == 1


def test_fetched_identities_stay_and_return_their_own_value():
    x = tc.placeholder(tc.float32, [2], name="x")
    y = tc.identity(x * 3.0, name="y")
    with tc.Session() as sess:
        got = sess.run([y, y * 1.0], {x: [1.0, 2.0]})
        assert sess.plan_info([y, y * 1.0], {x: [1.0, 2.0]}).types_after.get("Identity") == 1
    np.testing.assert_array_equal(got[0], [3.0, 6.0])


def test_pass_through_noops_become_direct_edges():
    v = tc.Variable(0.0, name="v")
    inc = v.assign_add(1.0)
    gate = tc.group(inc)  # one control input, one waiter: replaced by a direct edge
    with tc.control_dependencies([gate]):
        out = v.read_value() * 1.0
    final = tc.group(out)  # a target NoOp stays
    with tc.Session() as sess:
        sess.run(v.initializer)
        assert float(sess.run(out)) == 1.0
        info = sess.plan_info(out)
        sess.run(final)
        assert float(sess.run(v)) == 2.0
    assert info.passes["identity"]["noops_removed"] == 1
