"""Elementwise fusion: chains of elementwise ops run as one FusedElementwise op with the same
values bit for bit (the same numpy kernels, some writing into a dead buffer of the chain)."""

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine.ops.fused import cuda_source

from .common import assert_same, run_both


def chain(x, b):
    h = tc.nn.relu(x * 1.5 + b)          # broadcasting bias
    h = tc.sigmoid(h) * 2.0 - tc.tanh(h)  # h read twice (inside the group)
    return tc.where(h > 0.5, tc.square(h), -h) / 3.0


def test_chains_fuse_and_match_on_random_inputs():
    rng = np.random.default_rng(0)
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [None, 5], name="x")
        b = tc.placeholder(tc.float32, [5], name="b")
        y = chain(x, b)
    for shape in ((3, 5), (1, 5), (64, 5)):
        feed = {x: rng.standard_normal(shape).astype(np.float32), b: rng.standard_normal(5).astype(np.float32)}
        keep = {k: v.copy() for k, v in feed.items()}
        on, off, info = run_both(g, y, feed, init=False)
        assert_same(on, off)
        assert_same(feed, keep)  # fed arrays are never written
    assert info.passes["fusion"] == {"groups": 1, "ops_fused": 12}  # h is read 3 times, all inside
    assert info.types_after == {"FusedElementwise": 1, "Const": 4}


def test_gradients_and_training_with_fused_chains_match():
    rng = np.random.default_rng(1)
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [None, 4], name="x")
        w = tc.Variable(rng.standard_normal((4, 4)).astype(np.float32), name="w")
        b = tc.Variable(rng.standard_normal(4).astype(np.float32), name="b")
        h = chain(tc.matmul(x, w), b)
        loss = tc.reduce_mean(tc.square(h - 0.25))
        train = tc.train.GradientDescentOptimizer(0.1).minimize(loss)
    feed = {x: rng.standard_normal((8, 4)).astype(np.float32)}
    on, off, info = run_both(g, [train, loss, w, b], feed, steps=3)
    assert_same(on, off)
    assert info.passes["fusion"]["ops_fused"] > 10


def test_values_read_elsewhere_fetched_or_across_devices_are_not_fused_away():
    x = tc.placeholder(tc.float32, [2], name="x")
    a = x * 2.0
    b = a + 1.0          # fetched: stays a value of its own
    c = tc.exp(b) * 3.0
    with tc.Session() as sess:
        got = sess.run([b, c], {x: [0.0, 1.0]})
        info = sess.plan_info([b, c], {x: [0.0, 1.0]})
    np.testing.assert_allclose(got[1], np.exp([1.0, 3.0]) * 3.0, rtol=1e-6)
    assert info.passes["fusion"] == {"groups": 2, "ops_fused": 4}  # (Mul, Add) and (Exp, Mul)
    with tc.device("/cpu:1"):
        d = tc.exp(x)
    e = d * 2.0
    with tc.Session(config=tc.SessionConfig(device_count={"CPU": 2})) as sess:
        assert sess.plan_info(e, {x: [0.0, 1.0]}).passes["fusion"]["groups"] == 0


def test_broadcasting_that_enlarges_a_buffer_still_gives_the_right_shape():
    x = tc.placeholder(tc.float32, [None, 1], name="x")
    y = tc.placeholder(tc.float32, [None, 3], name="y")
    out = tc.exp(x) * 2.0 + y  # exp(x) is [n, 1]; the sum is [n, 3]
    feed = {x: np.ones((2, 1), np.float32), y: np.zeros((2, 3), np.float32)}
    with tc.Session() as sess:
        got = sess.run(out, feed)
    np.testing.assert_allclose(got, np.full((2, 3), 2 * np.e), rtol=1e-6)


@pytest.mark.parametrize("dtype", [tc.float64, tc.int32])
def test_other_dtypes(dtype):
    x = tc.placeholder(dtype, [None], name="x")
    y = tc.maximum(x * 3 - 1, x) + tc.cast(x > 1, dtype)
    xv = np.array([0, 1, 2, 5], dtype=dtype.np)
    with tc.Session() as sess:
        got = sess.run(y, {x: xv})
        assert sess.plan_info(y, {x: xv}).passes["fusion"]["groups"] == 1
    np.testing.assert_array_equal(got, np.maximum(xv * 3 - 1, xv) + (xv > 1))


def test_the_gpu_kernel_source_of_a_chain():
    """The CuPy ElementwiseKernel's source (checked here; compiled in test_rewrite_gpu.py)."""
    x = tc.placeholder(tc.float32, [None, 5], name="x")
    b = tc.placeholder(tc.float32, [5], name="b")
    y = tc.nn.relu(x * 1.5 + b)
    with tc.Session() as sess:
        step = next(s for s in list(sess._fast.values()) + [sess._compiled_for(y, {x: None, b: None})]
                    for s in s.plan.steps if s.op.type == "FusedElementwise")
    in_params, out_params, body = cuda_source(step.op.attrs["program"], [t.dtype for t in step.op.inputs])
    assert in_params == "float32 in0, float32 in1, float32 in2" and out_params == "float32 out0"
    assert body == ("float t0 = in0 * in1; float t1 = t0 + in2; "
                    "float t2 = (t1 < ((float)0) ? ((float)0) : t1); out0 = t2;")


def test_every_elementwise_expression_names_only_its_inputs_and_known_fields():
    # OpDef.elementwise is what makes an op fusable and what its CUDA kernel is generated from
    import string

    from tfconf.engine.ops.fused import fusable
    from tfconf.engine.registry import registered_ops

    declared = {name: d.elementwise for name, d in registered_ops().items() if d.elementwise is not None}
    assert {"Add", "Relu", "ReluGrad", "Select", "Cast", "Tanh"} <= set(declared)
    for name, expr in declared.items():
        fields = {f for _, f, _, _ in string.Formatter().parse(expr) if f is not None}
        args = sorted(int(f) for f in fields if f.isdigit())
        assert args == list(range(len(args))) and args, (name, expr)
        assert fields - {str(i) for i in args} <= {"T", "zero", "one", "alpha"}, (name, expr)
        assert fusable(name)
    assert not fusable("MatMul") and not fusable("NoSuchOp")
