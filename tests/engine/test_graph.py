"""TF1 graph semantics: default graphs, naming, name scopes, control dependencies, collections,
placeholders, feeding any tensor, build-time shape/dtype inference and the text dump."""

import inspect
import os

import numpy as np
import pytest

import tfconf as tc


@pytest.fixture
def g():
    graph = tc.Graph()
    with graph.as_default():
        yield graph


def _next_line():
    """The line number after the caller's current line (where the op under test is created)."""
    return inspect.currentframe().f_back.f_lineno + 1


# ------------------------------------------------------------------------- default graph
def test_as_default_switches_and_restores_the_default_graph():
    outer = tc.get_default_graph()
    g1, g2 = tc.Graph(), tc.Graph()
    with g1.as_default() as entered:
        assert entered is g1
        assert tc.get_default_graph() is g1
        c = tc.constant(1.0)
        with g2.as_default():
            assert tc.get_default_graph() is g2
            d = tc.constant(2.0)
        assert tc.get_default_graph() is g1
    assert tc.get_default_graph() is outer
    assert c.graph is g1 and d.graph is g2
    assert g1.get_operations() == [c.op] and g2.get_operations() == [d.op]


def test_reset_default_graph_gives_a_fresh_graph_and_is_refused_inside_as_default():
    tc.reset_default_graph()
    before = tc.get_default_graph()
    tc.constant(1.0, name="old")
    tc.reset_default_graph()
    after = tc.get_default_graph()
    assert after is not before
    assert after.get_operations() == []
    assert tc.constant(1.0, name="old").name == "old:0"  # names start over too
    with tc.Graph().as_default():
        with pytest.raises(AssertionError):
            tc.reset_default_graph()
    tc.reset_default_graph()


def test_ops_of_different_graphs_cannot_be_mixed(g):
    a = tc.constant(1.0)
    with tc.Graph().as_default():
        b = tc.constant(2.0)
    with pytest.raises(tc.GraphError, match="different graph"):
        tc.add(a, b)
    # nor through control dependencies
    with pytest.raises(ValueError, match="different graph"):
        with tc.control_dependencies([b]):
            pass
    with pytest.raises(ValueError, match="different graph"):
        a.op._add_control_inputs([b.op])
    assert a.op.control_inputs == []


def test_finalize_makes_the_graph_read_only(g):
    a = tc.constant(1.0)
    g.finalize()
    assert g.finalized
    with pytest.raises(tc.GraphError, match="finalized"):
        tc.constant(2.0)
    with pytest.raises(tc.GraphError, match="finalized"):
        a + a
    with pytest.raises(tc.GraphError, match="finalized"):
        tc.Variable(1.0)
    assert g.get_operations() == [a.op]
    with tc.Session() as sess:  # running a finalized graph is fine
        assert sess.run(a) == 1.0


# ------------------------------------------------------------------------- ops and tensors
def test_operations_and_tensors_are_named_op_colon_index(g):
    a = tc.constant([1.0, 2.0], name="a")
    parts = tc.split(tc.constant(np.arange(4.0)), 2)
    assert isinstance(a, tc.Tensor) and isinstance(a.op, tc.Operation)
    assert a.name == "a:0" and a.op.name == "a" and a.op.type == "Const"
    assert [t.name for t in parts] == ["split:0", "split:1"]
    assert parts[1].op is parts[0].op and parts[1].value_index == 1
    assert g.get_tensor_by_name("split:1") is parts[1]
    assert g.get_operation_by_name("a") is a.op
    assert a.op.outputs == (a,)
    s = tc.add(a, a)
    assert s.op.inputs == (a, a)
    assert a.consumers() == [s.op, s.op]
    with pytest.raises(KeyError, match="nope"):
        g.get_operation_by_name("nope")
    with pytest.raises(ValueError, match="op_name:0"):
        g.get_tensor_by_name("a")
    with pytest.raises(KeyError):
        g.get_tensor_by_name("a:1")


def test_op_names_are_uniquified_like_tensorflow(g):
    a = tc.constant(1.0)
    names = [tc.add(a, a).op.name for _ in range(3)]
    assert names == ["Add", "Add_1", "Add_2"]
    # A user-given name that collides is uniquified too.
    assert [tc.identity(a, name="x").op.name for _ in range(3)] == ["x", "x_1", "x_2"]
    # A user name equal to a generated one: TF skips to a free suffix.
    assert tc.identity(a, name="y_1").op.name == "y_1"
    assert tc.identity(a, name="y").op.name == "y"
    assert tc.identity(a, name="y").op.name == "y_2"
    assert tc.identity(a, name="y_1").op.name == "y_1_1"
    # Names are unique across the whole graph.
    all_names = [op.name for op in g.get_operations()]
    assert len(all_names) == len(set(all_names))


def test_name_scopes_nest_reenter_and_uniquify(g):
    a = tc.constant(1.0, name="a")
    with tc.name_scope("layer") as s:
        assert s == "layer/"
        assert g.get_name_scope() == "layer"
        x = tc.identity(a)
        with tc.name_scope("inner") as inner:
            assert inner == "layer/inner/"
            y = tc.identity(a, name="y")
        z = tc.identity(a)
    assert g.get_name_scope() == ""
    assert x.op.name == "layer/Identity"
    assert y.op.name == "layer/inner/y"
    assert z.op.name == "layer/Identity_1"
    # A second scope with the same name is a new one.
    with tc.name_scope("layer") as s2:
        assert s2 == "layer_1/"
        assert tc.identity(a).op.name == "layer_1/Identity"
    # Re-entering the first scope by its returned name puts ops back into it, uniquified.
    with tc.name_scope(s):
        w = tc.identity(a)
        with tc.name_scope("inner") as inner2:
            assert inner2 == "layer/inner_1/"
    assert w.op.name == "layer/Identity_2"
    # A scope named like an existing op is uniquified against it (shared namespace).
    with tc.name_scope("a") as sa:
        assert sa == "a_1/"
    # The TF convention: an op named by a scope string takes the scope's own name.
    with tc.name_scope("out") as so:
        out = tc.identity(a, name=so)
    assert out.op.name == "out"
    # None / "" return to the top level.
    with tc.name_scope("deep"):
        with tc.name_scope(None) as top:
            assert top == ""
            assert tc.identity(a, name="top").op.name == "top"


# ------------------------------------------------------------------------- control flow
def test_control_dependencies_nest_and_none_clears(g):
    a = tc.constant(1.0, name="a")
    b = tc.constant(2.0, name="b")
    c = tc.constant(3.0, name="c")
    with tc.control_dependencies([a]):
        x = tc.identity(c, name="x")
        with tc.control_dependencies([b.op]):  # ops and tensors both accepted
            y = tc.identity(c, name="y")
        with tc.control_dependencies(None):
            z = tc.identity(c, name="z")
            with tc.control_dependencies([b]):
                w = tc.identity(c, name="w")
        after = tc.identity(c, name="after")
    outside = tc.identity(c, name="outside")
    assert x.op.control_inputs == [a.op]
    assert y.op.control_inputs == [a.op, b.op]
    assert z.op.control_inputs == []
    assert w.op.control_inputs == [b.op]
    assert after.op.control_inputs == [a.op]
    assert outside.op.control_inputs == []


def test_control_dependencies_order_execution(g):
    v = tc.Variable(0.0, name="v")
    inc = v.assign_add(1.0)
    with tc.control_dependencies([inc]):
        read = tc.identity(tc.constant(5.0))
    with tc.Session() as sess:
        sess.run(v.initializer)
        for i in range(3):
            assert sess.run(read) == 5.0
            assert sess.run(v) == i + 1.0


def test_variables_ignore_enclosing_control_dependencies(g):
    """TF1 creates variables in an init_scope: reading or initializing one must not run the
    control inputs of the block it was created in."""
    counter = tc.Variable(0.0, name="counter")
    inc = counter.assign_add(1.0)
    with tc.control_dependencies([inc]):
        w = tc.Variable(5.0, name="w")
    assert w.op.control_inputs == [] and w.initializer.control_inputs == []
    with tc.Session() as sess:
        sess.run(tc.global_variables_initializer())
        assert sess.run(w) == 5.0
        assert sess.run(counter) == 0.0


def test_group_identity_no_op(g):
    v1 = tc.Variable(0.0, name="v1")
    v2 = tc.Variable(10.0, name="v2")
    both = tc.group(v1.assign_add(1.0), [v2.assign_sub(1.0)], name="both")
    assert isinstance(both, tc.Operation) and both.type == "NoOp" and both.name == "both"
    assert both.outputs == ()
    assert sorted(c.type for c in both.control_inputs) == ["AssignAdd", "AssignSub"]
    nop = tc.no_op(name="nothing")
    assert isinstance(nop, tc.Operation) and nop.type == "NoOp"
    ident = tc.identity(v1, name="read")
    assert ident.op.type == "Identity" and ident.op.inputs[0] is v1.value()
    with tc.Session() as sess:
        sess.run(tc.global_variables_initializer())
        assert sess.run(both) is None
        assert sess.run(nop) is None
        assert sess.run([v1, v2]) == [1.0, 9.0]
        assert sess.run(ident) == 1.0


# ------------------------------------------------------------------------- collections
def test_collections_global_and_trainable_variables(g):
    w = tc.Variable(tc.zeros([2]), name="w")
    step = tc.Variable(0, trainable=False, name="step")
    with tc.name_scope("layer"):
        b = tc.Variable(tc.zeros([2]), name="b")
    assert tc.global_variables() == [w, step, b]
    assert tc.trainable_variables() == [w, b]
    assert tc.get_collection(tc.GraphKeys.GLOBAL_VARIABLES) == [w, step, b]
    assert tc.get_collection(tc.GraphKeys.TRAINABLE_VARIABLES, scope="layer") == [b]
    assert b.name == "layer/b:0"
    tc.add_to_collection("losses", w.value())
    assert tc.get_collection("losses") == [w.value()]
    assert tc.get_collection("missing") == []
    # get_collection returns a copy; get_collection_ref the live list
    tc.get_collection("losses").append("junk")
    assert len(tc.get_collection("losses")) == 1
    with tc.Graph().as_default():
        assert tc.global_variables() == []


# ------------------------------------------------------------------------- placeholders / feeds
def test_placeholder_with_partially_known_shape(g):
    x = tc.placeholder(tc.float32, shape=[None, 3], name="x")
    assert x.shape.as_list() == [None, 3] and x.dtype == tc.float32
    assert not x.shape.is_fully_defined()
    y = tc.matmul(x, tc.ones([3, 2]))
    assert y.shape.as_list() == [None, 2]
    unknown = tc.placeholder(tc.float32, name="u")
    assert unknown.shape.ndims is None
    with tc.Session() as sess:
        for n in (1, 5):
            out = sess.run(y, {x: np.ones((n, 3), np.float32)})
            np.testing.assert_array_equal(out, np.full((n, 2), 3.0, np.float32))
        np.testing.assert_array_equal(sess.run(unknown * 2, {unknown: np.ones((2, 2, 2))}),
                                      np.full((2, 2, 2), 2.0))


def test_any_tensor_can_be_fed_and_its_producers_are_skipped(g):
    never_fed = tc.placeholder(tc.float32, [2], name="never_fed")
    hidden = tc.exp(never_fed, name="hidden")  # would fail: its input is an unfed placeholder
    out = hidden * 2.0
    with tc.Session() as sess:
        with pytest.raises(tc.errors.InvalidArgumentError, match="never_fed"):
            sess.run(out)
        np.testing.assert_array_equal(sess.run(out, {hidden: [1.0, 2.0]}), [2.0, 4.0])
        # a constant can be fed too
        c = tc.constant(3.0)
        assert sess.run(c * 2.0, {c: 10.0}) == 20.0


def test_a_fed_tensor_that_is_fetched_returns_the_fed_value(g):
    x = tc.placeholder(tc.float32, [2], name="x")
    mid = x + 1.0
    out = mid * 3.0
    with tc.Session() as sess:
        got_mid, got_out = sess.run([mid, out], {x: [0.0, 0.0], mid: [5.0, 6.0]})
    np.testing.assert_array_equal(got_mid, [5.0, 6.0])
    np.testing.assert_array_equal(got_out, [15.0, 18.0])


# ------------------------------------------------------------------------- inference at build time
def test_matmul_shape_mismatch_fails_at_creation_naming_shapes_and_user_line(g):
    a = tc.zeros([2, 3])
    b = tc.zeros([4, 5])
    n_before = len(g.get_operations())
    with pytest.raises(ValueError) as ei:
        line = _next_line()
        tc.matmul(a, b)
    msg = str(ei.value)
    assert "[2, 3]" in msg and "[4, 5]" in msg
    assert f"{os.path.basename(__file__)}:{line}" in msg
    assert "MatMul" in msg
    assert len(g.get_operations()) == n_before  # nothing half-made stays in the graph


def test_shapes_and_dtypes_are_inferred_at_build_time(g):
    x = tc.placeholder(tc.float32, [None, 4])
    y = tc.reduce_sum(tc.matmul(x, tc.ones([4, 3])), axis=1)
    assert y.shape.as_list() == [None] and y.dtype == tc.float32
    i = tc.placeholder(tc.int32, [2])
    assert (i + 1).dtype == tc.int32
    with pytest.raises(TypeError, match="int32"):
        tc.add(tc.placeholder(tc.float32, [2]), i)
    with pytest.raises(ValueError):
        tc.add(tc.zeros([2, 3]), tc.zeros([4]))


# ------------------------------------------------------------------------- text dump
def test_as_text_is_a_readable_dump(g):
    x = tc.placeholder(tc.float32, [None, 3], name="x")
    with tc.control_dependencies([x]):
        y = tc.identity(x, name="y")
    text = g.as_text()
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("x = Placeholder(")
    assert "[None, 3] float32" in lines[0]
    assert lines[1].startswith("y = Identity(")
    assert "x:0" in lines[1] and "^x" in lines[1]
    assert y.name == "y:0"


def test_dtypes_survive_pickling_as_the_same_objects():
    """Graph pieces travel to other processes (sweeps, Ray workers): a DType must come back as
    itself, since DTypes compare by identity."""
    import pickle

    for dt in (tc.float32, tc.float64, tc.int64, tc.bool_):
        assert pickle.loads(pickle.dumps(dt)) is dt
