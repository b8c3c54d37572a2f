"""The rewrite pipeline as a whole: switches, the user's graph left alone, errors that still name
the user's ops, and a training graph that trains identically with and without rewrites."""

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine.rewrite import RewriteConfig

from .common import OFF, assert_same, lenet_train_graph, run_both, session, snapshot


def test_training_with_every_rewrite_matches_training_without_bit_for_bit():
    g, x, y, train, loss, params, feed = lenet_train_graph()
    with_rw, without, info = run_both(g, [train, loss, params], feed, steps=4)
    assert_same(with_rw, without)  # losses and every variable after each of 4 momentum steps
    assert info.ops_after < info.ops_before
    assert info.passes["conv_fusion"] == {"conv_bias": 1, "conv_bias_relu": 1, "filter_bias_grad": 2,
                                          "matmul_bias": 1, "matmul_bias_relu": 0}
    assert info.passes["cse"]["merged"] > 0
    assert info.types_after.get("Conv2D", 0) == 0 and info.types_after["FusedConv2D"] == 2


def test_gradients_on_random_inputs_match():
    g, x, y, train, loss, params, feed = lenet_train_graph(batch=5, seed=3)
    with g.as_default():
        grads = tc.gradients(loss, params)
    a, b, _ = run_both(g, [loss] + grads, feed)
    assert_same(a, b)


def test_the_users_graph_is_not_changed():
    g, x, y, train, loss, params, feed = lenet_train_graph()
    with g.as_default():
        init = tc.global_variables_initializer()
    before = snapshot(g)
    with session(g) as sess:
        sess.run(init)
        sess.run([train, loss], feed)
    assert snapshot(g) == before


def test_passes_can_be_switched_off_one_by_one():
    g, x, y, train, loss, params, feed = lenet_train_graph()
    with session(g, graph_rewrites={"conv_fusion": False}) as sess:
        info = sess.plan_info([train, loss], feed)
    assert "conv_fusion" not in info.passes and info.types_after["Conv2D"] == 2
    with session(g, graph_rewrites=False) as sess:
        info = sess.plan_info([train, loss], feed)
    assert info.passes == {} and info.ops_after == info.ops_before
    assert "conv_fusion" in str(session(g).plan_info([train, loss], feed))
    with pytest.raises(ValueError, match="unknown option.*fuse"):
        session(g, graph_rewrites={"fuse": False})
    with pytest.raises(ValueError, match="memory"):
        session(g, memory="lots")
    cfg = RewriteConfig.of(False, memory="recompute")
    assert cfg.recompute and cfg.active and not cfg.fusion


def test_a_kernel_error_in_a_fused_op_names_the_users_op():
    x = tc.placeholder(tc.float32, [None, None, 5, 5], name="x")
    w = tc.constant(np.ones((2, 1, 3, 3), np.float32), name="w")
    conv = tc.nn.conv2d(x, w, name="conv")
    y = tc.nn.relu(tc.nn.bias_add(conv, [1.0, 2.0]))
    with tc.Session() as sess:
        got = sess.run(y, {x: np.ones((1, 1, 5, 5))})
        np.testing.assert_array_equal(got, np.full((1, 2, 3, 3), [[[10.0]], [[11.0]]]))
        assert sess.plan_info(y, {x: None}).types_after.get("FusedConv2D") == 1
        with pytest.raises(tc.errors.OpError) as ei:  # 3 input channels for a 1-channel filter
            sess.run(y, {x: np.ones((1, 3, 5, 5))})
    assert ei.value.op is conv.op  # the Conv2D the user wrote
    assert "'conv' (type Conv2D, run fused with add (Add), Relu (Relu) as one FusedConv2D)" in str(ei.value)


def test_uninitialized_variable_error_names_the_variable():
    v = tc.Variable(np.ones(3, np.float32), name="v")
    y = tc.nn.relu(v * 2.0 + 1.0)
    with tc.Session() as sess, pytest.raises(tc.errors.FailedPreconditionError) as ei:
        sess.run(y)
    assert ei.value.op is v.op


def test_placement_reports_fused_and_merged_ops():
    x = tc.placeholder(tc.float32, [None, 3], name="x")
    a = tc.add(x, 1.0, name="a")
    b = tc.nn.relu(a, name="b")
    c = tc.add(x, 1.0, name="c")  # merged into a by CSE (then fused into b)
    out = tc.add(b, c, name="out")
    with tc.Session() as sess:
        where = sess.placement(out, {x: np.ones((1, 3))})
        got = sess.run(out, {x: np.ones((1, 3), np.float32)})
    assert {"a", "b", "c", "out"} <= set(where)
    np.testing.assert_array_equal(got, [[4.0, 4.0, 4.0]])


def test_rewrites_work_on_several_devices():
    from tests.engine.test_partition import CPU

    x = tc.placeholder(tc.float32, [None, 4], name="x")
    with tc.device("/cpu:1"):
        h = tc.nn.relu(x * 2.0 + 1.0, name="h")
        h2 = tc.nn.relu(x * 2.0 + 1.0, name="h2")  # a duplicate: merged
    with tc.device("/cpu:0"):
        out = tc.reduce_sum(tc.exp(h) - 1.0, name="out") + tc.reduce_sum(h2)
    feed = {x: np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)}
    with tc.Session(config=tc.SessionConfig(device_count={"CPU": 2})) as sess:
        got = sess.run(out, feed)
        where = sess.placement(out, feed)
        info = sess.plan_info(out, feed)
    with tc.Session(config=tc.SessionConfig(device_count={"CPU": 2}, **OFF)) as sess:
        want = sess.run(out, feed)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert where["h"] == CPU[1] and where["out"] == CPU[0]
    assert info.passes["stable"]["expm1"] == 1 and info.passes["cse"]["merged"] >= 1


def test_the_parallel_executor_runs_rewritten_plans():
    g, x, y, train, loss, params, feed = lenet_train_graph()
    with_rw, without, _ = run_both(g, [train, loss, params], feed, steps=2, on={"inter_op_threads": 2})
    assert_same(with_rw, without)
