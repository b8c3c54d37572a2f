"""GPU devices through CuPy (issue 4). Skipped unless CuPy imports and CUDA reports a device; run
them whenever a machine with an NVIDIA GPU is at hand."""

from __future__ import annotations

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine.devices import _cupy

pytestmark = pytest.mark.skipif(_cupy() is None, reason="needs CuPy and a CUDA device")

LOCAL = "/job:localhost/replica:0/task:0"
GPU0 = f"{LOCAL}/device:GPU:0"
CPU0 = f"{LOCAL}/device:CPU:0"


def test_gpus_are_listed_with_memory():
    found = [d for d in tc.list_devices() if d.device_type == "GPU"]
    assert found and found[0].name == GPU0
    assert all(d.memory_limit_bytes > 0 and d.gflops > 0 for d in found)
    assert not [d for d in tc.list_devices(tc.SessionConfig(device_count={"GPU": 0})) if d.device_type == "GPU"]


def test_ops_on_the_gpu_match_the_cpu():
    rng = np.random.RandomState(0)
    x = tc.placeholder(tc.float32, [None, 64], name="x")
    w = tc.constant(rng.randn(64, 32).astype(np.float32))
    with tc.device("/gpu:0"):
        y = tc.nn.relu(tc.matmul(x, w, name="mm"))
    with tc.device("/cpu:0"):
        out = tc.reduce_sum(y * 2.0)
    feed = {x: rng.randn(8, 64).astype(np.float32)}
    with tc.Session() as sess:
        assert sess.placement(out, feed)["mm"] == GPU0
        got = sess.run([y, out], feed)
        assert isinstance(got[0], np.ndarray)  # fetched GPU arrays come back as numpy
        md = tc.RunMetadata()
        sess.run(out, feed, options=tc.RunOptions(trace=True), run_metadata=md)
    ref = np.maximum(feed[x] @ np.asarray(w.op.attrs["value"]), 0)
    np.testing.assert_allclose(got[0], ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[1], 2 * ref.sum(), rtol=1e-4)
    assert {s.device for s in md.step_stats} == {CPU0, GPU0}


def test_training_a_variable_on_the_gpu_matches_the_cpu():
    def train(device):
        g = tc.Graph()
        with g.as_default():
            rng = np.random.RandomState(1)
            x = tc.constant(rng.randn(16, 8).astype(np.float32))
            t = tc.constant(rng.randn(16, 1).astype(np.float32))
            with tc.device(device):
                w = tc.Variable(rng.randn(8, 1).astype(np.float32), name="w")
                loss = tc.reduce_mean(tc.square(tc.matmul(x, w) - t))
                step = tc.train.GradientDescentOptimizer(0.1).minimize(loss)
            init = tc.global_variables_initializer()
        with tc.Session(graph=g) as sess:
            sess.run(init)
            for _ in range(5):
                sess.run(step)
            return sess.run(w)

    np.testing.assert_allclose(train("/gpu:0"), train("/cpu:0"), rtol=1e-4, atol=1e-5)


def test_a_plan_wholly_on_the_gpu_takes_numpy_feeds():
    """Placeholders inside a GPU scope: the plan is not partitioned, so the feeds themselves
    must move to the GPU (with no Send/Recv to carry them)."""
    rng = np.random.default_rng(3)
    with tc.device("/gpu:0"):
        x = tc.placeholder(tc.float32, [None, 1, 8, 8], name="x")
        w = tc.Variable(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), name="w")
        y = tc.reduce_sum(tc.nn.max_pool(tc.nn.relu(tc.nn.conv2d(x, w)), 2, 2))
        step = tc.train.GradientDescentOptimizer(0.1).minimize(y)
    xv = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    with tc.Session() as sess:
        sess.run(tc.global_variables_initializer())
        assert set(sess.placement(y, {x: xv}).values()) == {GPU0}
        before = sess.run(y, {x: xv})
        sess.run(step, {x: xv})
        assert sess.run(y, {x: xv}) < before
        assert isinstance(sess.run(w), np.ndarray)


def test_the_lstm_scan_and_its_gradient_on_the_gpu_match_the_cpu():
    from tfconf.engine.ops.rnn import lstm_sequence

    rng = np.random.default_rng(4)
    T, N, H = 6, 3, 5
    vals = [rng.standard_normal((T, N, 4 * H)), rng.standard_normal((4 * H, H)) * 0.5,
            (rng.random((T, N, 1)) > 0.2).astype(np.float32), rng.standard_normal((N, H)),
            rng.standard_normal((N, H))]

    def run(device):
        g = tc.Graph()
        with g.as_default(), tc.device(device):
            ins = [tc.constant(v.astype(np.float32)) for v in vals]
            hs, h, c = lstm_sequence(*ins)
            loss = tc.reduce_sum(tc.square(hs)) + tc.reduce_sum(h * c)
            grads = tc.gradients(loss, [ins[0], ins[1], ins[3], ins[4]])
        with tc.Session(graph=g) as sess:
            return sess.run([hs, grads])

    (hg, gg), (hc, gc) = run("/gpu:0"), run("/cpu:0")
    np.testing.assert_allclose(hg, hc, rtol=1e-4, atol=1e-5)
    for a, b in zip(gg, gc):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
