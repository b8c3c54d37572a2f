"""TF1 Variable semantics: initial values (tensor, array or callable), initializers, assignment
ops, state that persists across runs and is private to each Session, uninitialized reads."""

import numpy as np
import pytest

import tfconf as tc


@pytest.fixture
def g():
    graph = tc.Graph()
    with graph.as_default():
        yield graph


def test_variable_from_value_tensor_or_callable(g):
    a = tc.Variable([[1.0, 2.0], [3.0, 4.0]], name="a")
    b = tc.Variable(tc.ones([3]) * 2.0, name="b")
    calls = []

    def init():
        calls.append(1)
        return tc.fill([2], 7.0)

    c = tc.Variable(init, name="c")
    assert calls == [1]  # called once, at construction
    d = tc.Variable(np.arange(3, dtype=np.float64), name="d")
    e = tc.Variable(5, name="e")
    assert a.name == "a:0" and a.op.name == "a" and a.op.type == "VariableV2"
    assert a.shape.as_list() == [2, 2] and a.dtype == tc.float32
    assert c.initializer.name == "c/Assign"
    assert d.dtype == tc.float64 and e.dtype == tc.int32
    assert c.initial_value.op.name.startswith("c/Initializer/")
    assert a.trainable and a.graph is g and a.value() is a.op.outputs[0]
    with tc.Session() as sess:
        sess.run(tc.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(a), [[1.0, 2.0], [3.0, 4.0]])
        np.testing.assert_array_equal(sess.run(b), [2.0, 2.0, 2.0])
        np.testing.assert_array_equal(sess.run(c), [7.0, 7.0])
        got = sess.run(d)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, [0.0, 1.0, 2.0])
        assert sess.run(e) == 5
        assert a.eval() is not None and b.eval().shape == (3,)


def test_variable_names_are_uniquified_and_follow_name_scopes(g):
    v1 = tc.Variable(0.0, name="w")
    v2 = tc.Variable(0.0, name="w")
    v3 = tc.Variable(0.0)
    with tc.name_scope("layer"):
        v4 = tc.Variable(0.0, name="w")
    assert [v.name for v in (v1, v2, v3, v4)] == ["w:0", "w_1:0", "Variable:0", "layer/w:0"]


def test_variables_used_in_expressions_act_as_their_value(g):
    v = tc.Variable(np.array([1.0, 2.0], np.float32), name="v")
    exprs = [v + 1.0, 1.0 + v, v * v, -v, v[1], np.float32(2.0) * v, np.ones(2, np.float32) + v]
    assert all(isinstance(e, tc.Tensor) for e in exprs)
    with tc.Session() as sess:
        sess.run(v.initializer)
        got = sess.run(exprs)
    want = [[2.0, 3.0], [2.0, 3.0], [1.0, 4.0], [-1.0, -2.0], 2.0, [2.0, 4.0], [2.0, 3.0]]
    for gv, wv in zip(got, want):
        np.testing.assert_array_equal(gv, wv)


def test_initializer_global_variables_initializer_and_variables_initializer(g):
    a = tc.Variable(1.0, name="a")
    b = tc.Variable(2.0, name="b")
    init_all = tc.global_variables_initializer()
    init_a = tc.variables_initializer([a])
    assert init_all.type == "NoOp"
    with tc.Session() as sess:
        sess.run(init_a)
        assert sess.run(a) == 1.0
        assert sess.run(tc.is_variable_initialized(a))
        assert not sess.run(tc.is_variable_initialized(b))
        sess.run(init_all)
        assert sess.run([a, b]) == [1.0, 2.0]
        # running the initializer again resets the value
        sess.run(a.assign(10.0))
        sess.run(a.initializer)
        assert sess.run(a) == 1.0


def test_assign_assign_add_assign_sub_persist_across_runs(g):
    v = tc.Variable(np.array([1.0, 2.0], np.float32), name="v")
    set_ = v.assign([5.0, 5.0])
    add = tc.assign_add(v, [1.0, 0.5])
    sub = v.assign_sub(np.array([0.5, 0.5], np.float32))
    with tc.Session() as sess:
        sess.run(tc.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(set_), [5.0, 5.0])  # the new value is returned
        for i in range(1, 4):
            np.testing.assert_array_equal(sess.run(add), [5.0 + i, 5.0 + 0.5 * i])
        np.testing.assert_array_equal(sess.run(v), [8.0, 6.5])
        np.testing.assert_array_equal(sess.run(sub), [7.5, 6.0])
        np.testing.assert_array_equal(sess.run(tc.assign(v, [0.0, 0.0])), [0.0, 0.0])
        np.testing.assert_array_equal(sess.run(v), [0.0, 0.0])


def test_assign_from_a_placeholder_does_not_alias_the_fed_array(g):
    v = tc.Variable(np.zeros(3, np.float32), name="v")
    x = tc.placeholder(tc.float32, [3])
    upd = v.assign(x)
    feed = np.array([1.0, 2.0, 3.0], np.float32)
    with tc.Session() as sess:
        sess.run(v.initializer)
        sess.run(upd, {x: feed})
        feed[:] = -1.0
        np.testing.assert_array_equal(sess.run(v), [1.0, 2.0, 3.0])


def test_assign_checks_shape_and_dtype_when_created(g):
    v = tc.Variable(np.zeros([2, 3], np.float32), name="v")
    with pytest.raises(ValueError, match=r"\[4\].*\[2, 3\]"):
        v.assign(np.zeros(4, np.float32))
    with pytest.raises(TypeError):
        v.assign(tc.constant([1, 2, 3], dtype=tc.int32))
    with pytest.raises(ValueError, match="fully defined"):
        tc.Variable(tc.placeholder(tc.float32, [None, 2]))


def test_two_sessions_on_one_graph_have_separate_values(g):
    v = tc.Variable(0.0, name="v")
    inc = v.assign_add(1.0)
    with tc.Session() as s1, tc.Session() as s2:
        s1.run(v.initializer)
        s2.run(v.initializer)
        for _ in range(3):
            s1.run(inc)
        s2.run(inc)
        assert s1.run(v) == 3.0
        assert s2.run(v) == 1.0
        with tc.Session() as s3:
            with pytest.raises(tc.errors.FailedPreconditionError):
                s3.run(v)


def test_reading_an_uninitialized_variable_names_it(g):
    v = tc.Variable(tc.zeros([2]), name="weights")
    w = tc.Variable(tc.zeros([2]), name="other")
    y = v * 2.0
    with tc.Session() as sess:
        with pytest.raises(tc.errors.FailedPreconditionError, match="weights") as ei:
            sess.run(y)
        assert ei.value.op is v.op
        with pytest.raises(tc.errors.FailedPreconditionError, match="other"):
            sess.run(w.assign_add([1.0, 1.0]))
        sess.run(v.initializer)
        np.testing.assert_array_equal(sess.run(y), [0.0, 0.0])


def test_load_sets_a_value_without_graph_ops(g):
    v = tc.Variable(np.zeros(2, np.float32), name="v")
    n_ops = len(g.get_operations())
    with tc.Session() as sess:
        v.load([3.0, 4.0], sess)
        np.testing.assert_array_equal(sess.run(v), [3.0, 4.0])
        with pytest.raises(ValueError):
            v.load([1.0, 2.0, 3.0], sess)
    assert len(g.get_operations()) == n_ops


def test_read_value_inside_control_dependencies_sees_the_update(g):
    v = tc.Variable(0.0, name="v")
    bump = v.assign_add(1.0)
    with tc.control_dependencies([bump]):
        after = v.read_value()
    with tc.Session() as sess:
        sess.run(v.initializer)
        assert sess.run(after) == 1.0
        assert sess.run(after) == 2.0  # every run bumps first, then reads
        (dv,) = tc.gradients(after * 3.0, [v])
        assert sess.run(dv) == 3.0
