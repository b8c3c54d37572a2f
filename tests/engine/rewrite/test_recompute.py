"""memory="recompute": forward activations dropped after the forward pass and recomputed in the
backward pass give the same training, bit for bit, with a lower peak of live arrays."""

import tracemalloc

import numpy as np
import pytest

import tfconf as tc

from .common import assert_same, lenet_train_graph


def mlp(depth=16, width=64, batch=32, seed=0):
    rng = np.random.default_rng(seed)
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [None, width], name="x")
        y = tc.placeholder(tc.int64, [None], name="y")
        h = x
        for i in range(depth):
            w = tc.Variable((rng.standard_normal((width, width)) * np.sqrt(2.0 / width)).astype(np.float32),
                            name=f"w{i}")
            b = tc.Variable(np.full(width, 0.01, np.float32), name=f"b{i}")
            h = tc.nn.relu(tc.matmul(h, w) + b)
        wo = tc.Variable((rng.standard_normal((width, 10)) * 0.1).astype(np.float32), name="wo")
        loss = tc.reduce_mean(tc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=tc.matmul(h, wo)))
        train = tc.train.GradientDescentOptimizer(0.05).minimize(loss)
        init = tc.global_variables_initializer()
    feed = {x: rng.standard_normal((batch, width)).astype(np.float32), y: rng.integers(0, 10, batch)}
    return g, train, loss, init, feed, g.get_collection("trainable_variables")


def train_and_measure(memory, steps=3, **extra):
    g, train, loss, init, feed, params = mlp()
    with tc.Session(graph=g, config=tc.SessionConfig(memory=memory, **extra)) as sess:
        sess.run(init)
        sess.run([train, loss], feed)  # compile and warm up
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            losses = [sess.run([train, loss], feed)[1]]
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        losses += [sess.run([train, loss], feed)[1] for _ in range(steps - 1)]
        return losses, sess.run(params), peak, sess.plan_info([train, loss], feed)


def test_recompute_trains_identically_with_a_lower_peak():
    l0, p0, peak0, _ = train_and_measure("default")
    l1, p1, peak1, info = train_and_measure("recompute")
    assert_same([l0, p0], [l1, p1])
    rc = info.passes["recompute"]
    assert rc["candidates"] == 16 and rc["checkpoints"] == 4 and rc["dropped"] == 12
    assert rc["recomputed_ops"] == 12  # one FusedMatMul (product, bias, relu) per dropped activation
    # 16 activations of 8 KiB live at the backward pass's start without recompute; with it,
    # 4 checkpoints plus one segment's 4 recomputed values
    assert peak1 < 0.7 * peak0, (peak0, peak1)


def test_recompute_with_the_parallel_executor():
    l0, p0, _, _ = train_and_measure("default", steps=2)
    l1, p1, _, _ = train_and_measure("recompute", steps=2, inter_op_threads=2)
    assert_same([l0, p0], [l1, p1])


def test_recompute_on_a_conv_net_matches():
    runs = []
    for memory in ("default", "recompute"):
        g, x, y, train, loss, params, feed = lenet_train_graph(batch=6)
        with tc.Session(graph=g, config=tc.SessionConfig(memory=memory, graph_rewrites={
                "recompute_min_elements": 1})) as sess:
            with g.as_default():
                sess.run(tc.global_variables_initializer())
            runs.append([sess.run([train, loss, params], feed) for _ in range(3)])
            info = sess.plan_info([train, loss, params], feed)
    assert_same(runs[0], runs[1])
    assert info.passes["recompute"]["dropped"] > 0


def test_without_a_backward_pass_nothing_is_recomputed():
    g, train, loss, init, feed, params = mlp(depth=4)
    with tc.Session(graph=g, config=tc.SessionConfig(memory="recompute")) as sess:
        sess.run(init)
        sess.run(loss, feed)
        assert sess.plan_info(loss, feed).passes["recompute"]["candidates"] == 0


TINY = """
name: tiny
data:
  train: {source: spirals, batch_size: 32}
layers:
  - {name: ip1, type: InnerProduct, bottom: data, num_output: 64, weight_filler: xavier}
  - {name: relu1, type: ReLU}
  - {name: ip2, type: InnerProduct, num_output: 64, weight_filler: xavier}
  - {name: relu2, type: ReLU}
  - {name: ip3, type: InnerProduct, num_output: 64, weight_filler: xavier}
  - {name: relu3, type: ReLU}
  - {name: ip4, type: InnerProduct, num_output: 3, weight_filler: xavier}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip4, label]}
solver: {type: SGD, base_lr: 0.1, momentum: 0.9, max_iter: 10}
"""


def test_the_config_key_reaches_the_solvers_session(tmp_path):
    from tfconf.frontend import config as cfgmod
    from tfconf.train.solver import Solver

    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    weights = []
    for memory in ("default", "recompute"):
        cfg = cfgmod.load(str(path), [f"memory={memory}"], check=False)
        s = Solver(cfg.net, None, root=cfg.root, prefetch=0)
        try:
            assert s.sess.config.memory == memory
            for _ in range(3):
                s.step()
            weights.append(s.weights())
            feed = {s.inputs["data"]: np.zeros((32, 2), np.float32), s.inputs["label"]: np.zeros(32, np.int64),
                    s.lr: 0.0, s.t: 1.0}
            info = s.sess.plan_info([s.train_op, s.train_net.loss], feed)
            if memory == "recompute":
                assert info.passes["recompute"]["dropped"] >= 1
            else:
                assert "recompute" not in info.passes
        finally:
            s.close()
    assert_same(weights[0], weights[1])
    with pytest.raises(Exception, match="memory"):
        cfgmod.load(str(path), ["memory=lots"], check=False)
