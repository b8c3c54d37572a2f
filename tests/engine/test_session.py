"""TF1 Session semantics: fetch structures, pruning to the needed subgraph, feed checks before
anything runs, the plan cache, memory release within a run, Extend, and the parallel executor."""

import collections
import time
import tracemalloc

import numpy as np
import pytest

import tfconf as tc
import tfconf.engine.session as session_mod
from tfconf.engine.registry import OpDef, register


@register
class _SessionTestSleep(OpDef):
    """Test-only op: sleeps 50 ms, then returns x + 1 (to observe concurrency)."""

    def infer(op):
        return [(op.inputs[0]._shape, op.inputs[0].dtype)]

    def forward(xp, x):
        time.sleep(0.05)
        return x + 1


def _sleep_op(x):
    return x.graph.create_op("_SessionTestSleep", [x]).outputs[0]


# ------------------------------------------------------------------------- lifecycle
def test_session_graph_config_close_and_context_manager(g):
    a = tc.constant(2.0)
    sess = tc.Session()
    assert sess.graph is g
    assert isinstance(sess.config, tc.SessionConfig)
    assert sess.run(a) == 2.0
    sess.close()
    assert sess.closed
    with pytest.raises(RuntimeError, match="closed"):
        sess.run(a)
    other = tc.Graph()
    with other.as_default():
        b = tc.constant(3.0)
    with tc.Session(graph=other, config=tc.SessionConfig(inter_op_threads=2)) as s2:
        assert s2.graph is other and s2.config.inter_op_threads == 2
        assert s2.run(b) == 3.0
        with pytest.raises(ValueError):
            s2.run(a)  # an element of another graph


def test_context_manager_sets_the_default_session_for_eval(g):
    x = tc.placeholder(tc.float32, [])
    y = x * 2.0
    init = tc.no_op()
    assert tc.get_default_session() is None
    with pytest.raises(ValueError, match="session"):
        y.eval({x: 1.0})
    with tc.Session() as sess:
        assert tc.get_default_session() is sess
        assert y.eval(feed_dict={x: 4.0}) == 8.0
        assert init.run() is None
        with tc.Session() as inner:
            assert tc.get_default_session() is inner
        assert tc.get_default_session() is sess
    assert tc.get_default_session() is None
    assert sess.closed
    s = tc.Session()
    with s.as_default():
        assert y.eval({x: 1.5}) == 3.0
    assert tc.get_default_session() is None
    assert s.run(y, {x: 1.0}) == 2.0  # as_default does not close
    s.close()


# ------------------------------------------------------------------------- fetches
Pair = collections.namedtuple("Pair", ["first", "second"])


def test_fetch_kinds_and_nested_structures(g):
    a = tc.constant([1.0, 2.0], name="a")
    b = tc.add(a, a, name="b")
    v = tc.Variable([10.0, 20.0], name="v")
    init = tc.global_variables_initializer()
    with tc.Session() as sess:
        assert sess.run(init) is None  # an op
        assert sess.run("init") is None  # an op name
        np.testing.assert_array_equal(sess.run("b:0"), [2.0, 4.0])  # a tensor name
        np.testing.assert_array_equal(sess.run(v), [10.0, 20.0])  # a Variable
        out = sess.run({"x": [a, (b, Pair(a, b))], "y": v, "op": init, "again": a})
        assert set(out) == {"x", "y", "op", "again"}
        assert isinstance(out["x"], list) and isinstance(out["x"][1], tuple)
        pair = out["x"][1][1]
        assert isinstance(pair, Pair)
        np.testing.assert_array_equal(pair.first, [1.0, 2.0])
        np.testing.assert_array_equal(pair.second, [2.0, 4.0])
        np.testing.assert_array_equal(out["x"][0], [1.0, 2.0])
        np.testing.assert_array_equal(out["again"], [1.0, 2.0])
        np.testing.assert_array_equal(out["y"], [10.0, 20.0])
        assert out["op"] is None
        same = sess.run([b, b, (b,)])
        for s in (same[0], same[1], same[2][0]):
            np.testing.assert_array_equal(s, [2.0, 4.0])
        assert sess.run([]) == [] and sess.run({}) == {}
        od = sess.run(collections.OrderedDict([("z", a), ("y", b)]))
        assert isinstance(od, collections.OrderedDict) and list(od) == ["z", "y"]
        dd = sess.run(collections.defaultdict(list, {"b": b}))
        assert isinstance(dd, collections.defaultdict) and dd.default_factory is list
        np.testing.assert_array_equal(dd["b"], [2.0, 4.0])
        with pytest.raises(TypeError):
            sess.run(None)
        with pytest.raises(TypeError):
            sess.run(3.5)


def test_fetched_arrays_never_alias_variable_storage(g):
    """Mutating a fetched array must not change the variable (TF returns copies)."""
    v = tc.Variable(np.zeros(3, np.float32), name="v")
    fetches = [v, v.assign_add(np.ones(3, np.float32)), tc.identity(v), tc.reshape(v, [3, 1])]
    with tc.Session() as sess:
        sess.run(v.initializer)
        for f in fetches:
            before = sess.run(v).copy()
            got = sess.run(f)
            got[...] = 123.0
            after = sess.run(v)
            np.testing.assert_array_equal(after, before + (1.0 if f is fetches[1] else 0.0))
        s = tc.Variable(np.float32(1.0), name="scalar")
        sess.run(s.initializer)
        got = sess.run(s.assign(np.float32(5.0)))
        if isinstance(got, np.ndarray):
            got[...] = 123.0
        assert sess.run(s) == 5.0


# ------------------------------------------------------------------------- pruning
def test_only_the_needed_subgraph_runs(g):
    v = tc.Variable(0.0, name="v")
    bump = v.assign_add(1.0)  # stateful, not fetched
    unfed = tc.placeholder(tc.float32, [], name="unfed")
    unused = unfed * 2.0  # off the fetched subgraph: no need to feed it
    c = tc.constant(5.0) + 1.0
    with tc.Session() as sess:
        sess.run(v.initializer)
        for _ in range(3):
            assert sess.run(c) == 6.0
        assert sess.run(v) == 0.0
        sess.run(bump)
        assert sess.run(v) == 1.0
    assert unused.op.inputs[0] is unfed


def test_unfed_placeholder_error_names_it_with_dtype_and_shape(g):
    x = tc.placeholder(tc.int32, [None, 7], name="images")
    y = tc.cast(x, tc.float32) * 2.0
    with tc.Session() as sess:
        with pytest.raises(tc.errors.InvalidArgumentError) as ei:
            sess.run(y)
    msg = str(ei.value)
    assert "images" in msg and "int32" in msg and "[None, 7]" in msg
    assert ei.value.op is x.op


def test_bad_feeds_fail_before_anything_runs(g):
    v = tc.Variable(0, name="counter")
    bump = v.assign_add(1)
    xi = tc.placeholder(tc.int32, [2], name="xi")
    xf = tc.placeholder(tc.float32, [None, 2], name="xf")
    with tc.Session() as sess:
        sess.run(v.initializer)
        with pytest.raises(ValueError, match=r"\[3\].*xi"):
            sess.run([bump, xi * 2], {xi: np.array([1, 2, 3], np.int32)})
        with pytest.raises(TypeError, match="float64.*xi.*int32"):
            sess.run([bump, xi * 2], {xi: np.array([1.5, 2.5])})
        with pytest.raises(ValueError, match=r"\[2, 3\].*\[None, 2\]"):
            sess.run([bump, xf * 2.0], {xf: np.zeros((2, 3), np.float32)})
        with pytest.raises(ValueError):
            sess.run([bump, xf * 2.0], {xf: np.zeros(2, np.float32)})  # wrong rank
        assert sess.run(v) == 0  # bump never ran
        # float64 numpy into float32 is converted; Python ints are fine for int32
        out = sess.run(xf * 2.0, {xf: np.array([[0.5, 1.5]], np.float64)})
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, [[1.0, 3.0]])
        np.testing.assert_array_equal(sess.run(xi + 1, {xi: [4, 5]}), [5, 6])


# ------------------------------------------------------------------------- plan cache
def test_plan_is_built_once_per_signature(g, monkeypatch):
    calls = []
    from tfconf.engine import pipeline

    real = pipeline.build_plan

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "build_plan", counting)
    x = tc.placeholder(tc.float32, [2])
    y = x * 3.0
    z = y + 1.0
    with tc.Session() as sess:
        for i in range(4):
            np.testing.assert_array_equal(sess.run(y, {x: [i, i]}), [3.0 * i] * 2)
        assert len(calls) == 1
        for i in range(3):
            sess.run([y, {"z": z}], {x: [i, 1.0]})
        assert len(calls) == 2
        sess.run(z, {x: [1.0, 1.0]})  # a new fetch: a new plan
        sess.run(z, {y: [1.0, 1.0]})  # same fetch, new feeds: a new plan
        assert len(calls) == 4
        sess.run(z, {y: [2.0, 2.0]})
        assert len(calls) == 4
    with tc.Session() as other:  # each session has its own cache
        other.run(y, {x: [0.0, 0.0]})
    assert len(calls) == 5


# ------------------------------------------------------------------------- memory
@pytest.mark.parametrize("threads", [1, 2])
def test_intermediates_are_released_after_their_last_consumer(g, threads):
    arr = np.ones((1024, 1024), np.float32)  # 4 MB
    x = tc.placeholder(tc.float32, [1024, 1024])
    h = x
    for i in range(20):
        h = h * 1.0001 if i % 2 else tc.abs(h)
    with tc.Session(config=tc.SessionConfig(inter_op_threads=threads)) as sess:
        sess.run(h, {x: arr})  # warm up (plan, kernels)
        tracemalloc.start()
        try:
            out = sess.run(h, {x: arr})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert out.shape == (1024, 1024)
    np.testing.assert_allclose(out, np.float32(1.0001) ** 10, rtol=1e-5)
    assert peak < 3.5 * arr.nbytes, f"peak {peak / arr.nbytes:.1f} arrays"


# ------------------------------------------------------------------------- Extend
def test_graph_can_grow_after_a_run_but_ran_ops_cannot_change(g):
    a = tc.constant(2.0, name="a")
    b = a * 3.0
    with tc.Session() as sess:
        assert sess.run(b) == 6.0
        c = b + 1.0  # new nodes after the session ran
        d = tc.square(c)
        assert sess.run([c, d]) == [7.0, 49.0]
        v = tc.Variable(1.0, name="late")
        sess.run(v.initializer)
        assert sess.run(v * d) == 49.0
        with pytest.raises(tc.GraphError, match="already run"):
            b.op._add_control_inputs([tc.no_op()])
        # an op that has not run yet may still be edited
        e = tc.identity(a, name="e")
        bump = v.assign_add(1.0)
        e.op._add_control_inputs([bump])
        assert e.op.control_inputs == [bump.op]
        assert sess.run(e) == 2.0
        assert sess.run(v) == 2.0


# ------------------------------------------------------------------------- parallel executor
def _wide_graph(x, width=16):
    branches = []
    for i in range(width):
        h = tc.matmul(x, tc.constant(np.random.RandomState(i).randn(32, 32).astype(np.float32)))
        h = tc.tanh(h) * float(i + 1)
        h = tc.reduce_sum(h * h, axis=1)
        branches.append(h)
    return tc.add_n(branches), branches


def test_parallel_execution_is_bitwise_identical_to_serial(g):
    x = tc.placeholder(tc.float32, [64, 32])
    total, branches = _wide_graph(x)
    feed = {x: np.random.RandomState(0).randn(64, 32).astype(np.float32)}
    with tc.Session() as serial:
        ref_total, ref_branches = serial.run([total, branches], feed)
    with tc.Session(config=tc.SessionConfig(inter_op_threads=4)) as par:
        for _ in range(20):
            got_total, got_branches = par.run([total, branches], feed)
            assert got_total.tobytes() == ref_total.tobytes()
            for r, b in zip(ref_branches, got_branches):
                assert r.tobytes() == b.tobytes()


def test_independent_ops_run_concurrently(g):
    x = tc.constant(np.zeros(4, np.float32))
    outs = [_sleep_op(x) for _ in range(8)]
    with tc.Session(config=tc.SessionConfig(inter_op_threads=8)) as sess:
        sess.run(outs)  # warm up the pool
        t0 = time.perf_counter()
        got = sess.run(outs)
        elapsed = time.perf_counter() - t0
    for v in got:
        np.testing.assert_array_equal(v, np.ones(4, np.float32))
    # serial would take 8 x 0.05 = 0.4 s; parallel is about 0.05 s
    assert elapsed < 0.25, f"8 sleeping ops took {elapsed:.3f} s with 8 threads"


def test_parallel_executor_respects_dependencies_and_control_inputs(g):
    w = tc.Variable(0.0, name="w")
    x = tc.constant(np.zeros(2, np.float32))
    slow = _sleep_op(x)
    with tc.control_dependencies([slow]):
        reset = w.assign(10.0)
    with tc.control_dependencies([reset]):
        bump = w.assign_add(1.0)  # only correct if it runs after the (slow) reset
    chain = _sleep_op(_sleep_op(x))
    with tc.Session(config=tc.SessionConfig(inter_op_threads=4)) as sess:
        sess.run(w.initializer)
        for _ in range(3):
            b, c = sess.run([bump, chain])
            assert b == 11.0
            np.testing.assert_array_equal(c, [2.0, 2.0])
        assert sess.run(w) == 11.0


def test_a_target_is_refused_with_a_pointer_to_cluster_sessions():
    with pytest.raises(ValueError, match="ClusterSession"):
        tc.Session("grpc://localhost:2222")
