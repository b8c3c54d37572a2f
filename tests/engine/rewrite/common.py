"""Helpers for the rewrite tests: run the same graph with and without plan rewrites."""

from __future__ import annotations

import numpy as np

import tfconf as tc

OFF = {"graph_rewrites": False, "memory_planning": False}


def session(graph, **config):
    # NOTE: rewrites must not change a single bit, which is a property of the plan, checked on the
    # reference kernels; provider kernels agree with those to rounding (kernels/test_onednn.py)
    config.setdefault("kernels", "numpy")
    return tc.Session(graph=graph, config=tc.SessionConfig(**config))


def run_both(graph, fetches, feed=None, init=True, steps=1, on=None, off=None):
    """Run ``fetches`` ``steps`` times in a session with all rewrites (``on`` overrides) and one
    without; returns (results with, results without, plan info with)."""
    out = []
    info = None
    for cfg in (dict(on or {}), dict(OFF, **(off or {}))):
        with session(graph, **cfg) as sess:
            if init:
                with graph.as_default():
                    sess.run(tc.global_variables_initializer())
            res = [sess.run(fetches, feed) for _ in range(steps)]
            if info is None:
                info = sess.plan_info(fetches, feed)
        out.append(res)
    return out[0], out[1], info


def assert_same(a, b, exact=True, rtol=1e-6, atol=1e-7):
    """Nested lists/tuples/dicts of arrays are equal (bit for bit when ``exact``)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k], exact, rtol, atol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            assert_same(u, v, exact, rtol, atol)
    elif a is None:
        assert b is None
    elif exact:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    else:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def snapshot(graph):
    """Everything about a user graph a rewrite could change by mistake."""
    return [(op.name, op.type, tuple(op.inputs), tuple(op.control_inputs), dict(op.attrs),
             tuple(tuple(t._consumers) for t in op.outputs), tuple(t._shape for t in op.outputs))
            for op in graph.get_operations()]


def lenet_train_graph(batch=8, seed=0, momentum=True, device=None):
    """A small LeNet-style training graph (conv + bias (+ relu), pooling, dense layers, softmax
    cross-entropy, a momentum update), all on ``device`` if given; returns (graph, x, y, train_op,
    loss, variables, feed)."""
    rng = np.random.default_rng(seed)
    g = tc.Graph()
    with g.as_default(), g.device(device):
        x = tc.placeholder(tc.float32, [None, 1, 14, 14], name="x")
        y = tc.placeholder(tc.int64, [None], name="y")
        w1 = tc.Variable(rng.standard_normal((4, 1, 3, 3)).astype(np.float32) * 0.5, name="w1")
        b1 = tc.Variable(rng.standard_normal(4).astype(np.float32) * 0.1, name="b1")
        w2 = tc.Variable(rng.standard_normal((6, 4, 3, 3)).astype(np.float32) * 0.3, name="w2")
        b2 = tc.Variable(rng.standard_normal(6).astype(np.float32) * 0.1, name="b2")
        w3 = tc.Variable(rng.standard_normal((24, 10)).astype(np.float32) * 0.3, name="w3")
        b3 = tc.Variable(np.zeros(10, np.float32), name="b3")
        h = tc.nn.relu(tc.nn.bias_add(tc.nn.conv2d(x, w1), b1))            # conv + bias + relu
        h = tc.nn.max_pool(h, 2, 2)
        h = tc.nn.bias_add(tc.nn.conv2d(h, w2), b2)                         # conv + bias
        h = tc.nn.max_pool(h, 2, 2)
        h = tc.reshape(h, [-1, 24])
        logits = tc.matmul(h, w3) + b3
        loss = tc.reduce_mean(tc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        opt = tc.train.MomentumOptimizer(0.05, 0.9) if momentum else tc.train.GradientDescentOptimizer(0.05)
        train = opt.minimize(loss)
    feed = {x: rng.random((batch, 1, 14, 14), dtype=np.float32), y: rng.integers(0, 10, batch)}
    return g, x, y, train, loss, [w1, b1, w2, b2, w3, b3], feed
