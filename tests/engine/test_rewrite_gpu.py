"""Plan rewrites on a GPU (issue 8): a fused elementwise chain is one CuPy ElementwiseKernel
(compiled once per chain signature), conv + bias + relu runs fused, and results match the CPU.
Skipped unless CuPy imports and CUDA reports a device (see test_devices_gpu.py)."""

from __future__ import annotations

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine.devices import _cupy
from tfconf.engine.ops import fused

pytestmark = pytest.mark.skipif(_cupy() is None, reason="needs CuPy and a CUDA device")

LOCAL = "/job:localhost/replica:0/task:0"
GPU0 = f"{LOCAL}/device:GPU:0"


def _chain(x, b):
    h = tc.nn.relu(x * 1.5 + b)
    h = tc.sigmoid(h) * 2.0 - tc.tanh(h)
    return tc.where(h > 0.5, tc.square(h), -h) / 3.0


@pytest.mark.parametrize("dtype", [tc.float32, tc.float64])
def test_a_fused_chain_is_one_elementwise_kernel_and_matches_the_cpu(dtype):
    rng = np.random.default_rng(0)
    x = tc.placeholder(dtype, [None, 64], name="x")
    b = tc.placeholder(dtype, [64], name="b")
    with tc.device("/gpu:0"):
        y = _chain(x, b)
    feed = {x: rng.standard_normal((32, 64)).astype(dtype.np), b: rng.standard_normal(64).astype(dtype.np)}
    fused._CUDA_KERNELS.clear()
    with tc.Session() as sess:
        got = sess.run(y, feed)
        info = sess.plan_info(y, feed)
        steps = [s for s in sess._compiled_for(y, feed).plan.steps if s.op.type == "FusedElementwise"]
        assert sess.placement(y, feed)[steps[0].op.name] == GPU0
        sess.run(y, feed)
    assert info.passes["fusion"]["groups"] == 1 and len(steps) == 1
    assert len(fused._CUDA_KERNELS) == 1  # compiled once, reused by the second run
    kern = next(iter(fused._CUDA_KERNELS.values()))
    assert kern.__class__.__name__ == "ElementwiseKernel"
    with tc.Session(config=tc.SessionConfig(device_count={"GPU": 0}, graph_rewrites=False)) as sess:
        want = sess.run(y, feed)
    tol = 1e-5 if dtype == tc.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_the_same_chain_signature_reuses_its_kernel():
    fused._CUDA_KERNELS.clear()
    outs = []
    for _ in range(2):
        g = tc.Graph()
        with g.as_default():
            x = tc.placeholder(tc.float32, [None, 8], name="x")
            with tc.device("/gpu:0"):
                y = tc.nn.relu(x * 2.0 + 1.0)
            with tc.Session() as sess:
                outs.append(sess.run(y, {x: np.ones((2, 8), np.float32)}))
    assert len(fused._CUDA_KERNELS) == 1
    np.testing.assert_allclose(outs[0], np.full((2, 8), 3.0))


def test_training_a_conv_net_on_the_gpu_with_rewrites_matches_the_cpu():
    from tests.engine.rewrite.common import lenet_train_graph

    results = []
    for device, cfg in (("/gpu:0", {}), ("/cpu:0", {"device_count": {"GPU": 0}, "graph_rewrites": False})):
        g, x, y, train, loss, params, feed = lenet_train_graph(batch=16, device=device)
        with tc.Session(graph=g, config=tc.SessionConfig(**cfg)) as sess:
            with g.as_default():
                sess.run(tc.global_variables_initializer())
            if device == "/gpu:0":
                info = sess.plan_info([train, loss], feed)
                assert info.types_after.get("FusedConv2D") == 2
            results.append([sess.run([train, loss], feed)[1] for _ in range(3)] + sess.run(params))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
