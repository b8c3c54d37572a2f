"""Conv or matmul + bias (+ relu) fusion: one FusedConv2D (FusedMatMul) whenever the intermediate values have no other
reader; the backward ops that read the convolution's input or the block's output still work."""

import numpy as np

import tfconf as tc

from .common import OFF, assert_same, run_both

RNG = np.random.default_rng(5)


def conv_graph(relu=True, fetch_conv=False, bias_shape=(3,)):
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [None, 2, 6, 6], name="x")
        w = tc.Variable(RNG.standard_normal((3, 2, 3, 3)).astype(np.float32), name="w")
        b = tc.Variable(RNG.standard_normal(bias_shape).astype(np.float32), name="b")
        conv = tc.nn.conv2d(x, w, padding="SAME", name="conv")
        pre = conv + b if len(bias_shape) != 1 else tc.nn.bias_add(conv, b)
        y = tc.nn.relu(pre) if relu else pre
        loss = tc.reduce_sum(tc.square(y - 0.5))
        gx, gw, gb = tc.gradients(loss, [x, w, b])
        fetches = [loss, gx, gw, gb] + ([conv] if fetch_conv else [])
    feed = {x: RNG.standard_normal((4, 2, 6, 6)).astype(np.float32)}
    return g, fetches, feed


def test_conv_bias_relu_fuses_and_gradients_match():
    g, fetches, feed = conv_graph()
    on, off, info = run_both(g, fetches, feed)
    assert_same(on, off)
    assert info.passes["conv_fusion"] == {"conv_bias": 0, "conv_bias_relu": 1, "filter_bias_grad": 1, "matmul_bias": 0, "matmul_bias_relu": 0}


def test_conv_bias_without_relu_and_a_4d_bias():
    g, fetches, feed = conv_graph(relu=False, bias_shape=(1, 3, 1, 1))
    on, off, info = run_both(g, fetches, feed)
    assert_same(on, off)
    assert info.passes["conv_fusion"] == {"conv_bias": 1, "conv_bias_relu": 0, "filter_bias_grad": 1, "matmul_bias": 0, "matmul_bias_relu": 0}


def test_a_conv_output_read_elsewhere_is_not_fused():
    g, fetches, feed = conv_graph(fetch_conv=True)
    on, off, info = run_both(g, fetches, feed)
    assert_same(on, off)
    assert info.passes["conv_fusion"] == {"conv_bias": 0, "conv_bias_relu": 0, "filter_bias_grad": 1, "matmul_bias": 0, "matmul_bias_relu": 0}


def test_a_bias_that_is_not_per_channel_constant_shape_is_not_fused():
    x = tc.placeholder(tc.float32, [None, 2, 5, 5], name="x")
    other = tc.placeholder(tc.float32, [None, 3, 3, 3], name="other")  # a run-time shaped addend
    w = tc.constant(RNG.standard_normal((3, 2, 3, 3)).astype(np.float32))
    y = tc.nn.relu(tc.nn.conv2d(x, w) + other)
    feed = {x: RNG.standard_normal((2, 2, 5, 5)).astype(np.float32),
            other: RNG.standard_normal((2, 3, 3, 3)).astype(np.float32)}
    with tc.Session() as sess:
        got = sess.run(y, feed)
        assert sess.plan_info(y, feed).passes["conv_fusion"]["conv_bias"] == 0
    with tc.Session(config=tc.SessionConfig(**OFF)) as sess:
        np.testing.assert_array_equal(got, sess.run(y, feed))


def test_filter_and_bias_gradients_share_one_op_only_for_a_per_channel_bias():
    # conv + b with b of shape [W] broadcasts along the width: its gradient sums over N, C, H,
    # which is not what the fused filter+bias gradient computes, so it stays a SumToShape
    for bias_shape, fused in (((3, 1, 1), 1), ((1, 3, 1, 1), 1), ((6,), 0)):
        g = tc.Graph()
        with g.as_default():
            x = tc.placeholder(tc.float32, [4, 2, 6, 6], name="x")
            w = tc.Variable(RNG.standard_normal((3, 2, 3, 3)).astype(np.float32), name="w")
            b = tc.Variable(RNG.standard_normal(bias_shape).astype(np.float32), name="b")
            y = tc.nn.conv2d(x, w, padding="SAME") + b
            grads = tc.gradients(tc.reduce_sum(tc.square(y)), [w, b])
        feed = {x: RNG.standard_normal((4, 2, 6, 6)).astype(np.float32)}
        on, off, info = run_both(g, grads, feed)
        assert_same(on, off)
        assert info.passes["conv_fusion"]["filter_bias_grad"] == fused, bias_shape
        assert ("Conv2DBackpropFilterBias" in info.types_after) == bool(fused)


# ---------------------------------------------------------------------------- matmul + bias + relu
def mlp_graph(relu=True, bias_shape=(4,), transpose_a=False, transpose_b=False, fetch_product=False):
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [3, 5] if transpose_a else [None, 3], name="x")
        w = tc.Variable(RNG.standard_normal((4, 3) if transpose_b else (3, 4)).astype(np.float32), name="w")
        b = tc.Variable(RNG.standard_normal(bias_shape).astype(np.float32), name="b")
        z = tc.matmul(x, w, transpose_a=transpose_a, transpose_b=transpose_b)
        pre = z + b
        y = tc.nn.relu(pre) if relu else pre
        loss = tc.reduce_sum(tc.square(y - 0.5))
        fetches = [loss] + tc.gradients(loss, [x, w, b]) + ([z] if fetch_product else [])
    feed = {x: RNG.standard_normal((3, 5) if transpose_a else (5, 3)).astype(np.float32)}
    return g, fetches, feed


def _mm(info):
    c = info.passes["conv_fusion"]
    return c["matmul_bias"], c["matmul_bias_relu"]


def test_matmul_bias_relu_fuses_and_gradients_match():
    g, fetches, feed = mlp_graph()
    on, off, info = run_both(g, fetches, feed)
    assert_same(on, off)
    assert _mm(info) == (0, 1)
    assert info.types_after.get("FusedMatMul") == 1 and "Relu" not in info.types_after


def test_matmul_bias_without_relu_and_a_row_bias():
    g, fetches, feed = mlp_graph(relu=False, bias_shape=(1, 4))
    on, off, info = run_both(g, fetches, feed)
    assert_same(on, off)
    assert _mm(info) == (1, 0)


def test_a_caffe_inner_product_with_its_weights_transposed_fuses_too():
    g, fetches, feed = mlp_graph(transpose_b=True)
    on, off, info = run_both(g, fetches, feed)
    assert_same(on, off)
    assert _mm(info) == (0, 1)


def test_matmuls_that_do_not_fit_the_epilogue_are_left_alone():
    for kw in ({"transpose_a": True}, {"fetch_product": True}):
        g, fetches, feed = mlp_graph(**kw)
        on, off, info = run_both(g, fetches, feed)
        assert_same(on, off)
        assert _mm(info) == (0, 0), kw
    # a per-row (not per-column) addend is no bias of the product's epilogue
    x = tc.placeholder(tc.float32, [5, 3])
    y = tc.nn.relu(tc.matmul(x, tc.constant(np.ones((3, 4), np.float32))) + tc.constant(np.ones((5, 1), np.float32)))
    with tc.Session() as sess:
        assert _mm(sess.plan_info(y, {x: np.ones((5, 3), np.float32)})) == (0, 0)


def test_a_fused_product_carries_the_products_name_in_traces():
    # the fused op does the product's work: a trace (and `tfconf time`, which attributes by op
    # name) charges it to the convolution or the matmul, not to the ReLU it absorbed
    for make in (lambda: conv_graph(), lambda: mlp_graph()):
        g, fetches, feed = make()
        with g.as_default():
            init = tc.global_variables_initializer()
        with tc.Session(graph=g) as sess:
            sess.run(init)
            md = tc.RunMetadata()
            sess.run(fetches, feed, options=tc.RunOptions(trace=True), run_metadata=md)
        fused = [s for s in md.step_stats if s.type in ("FusedConv2D", "FusedMatMul")]
        assert len(fused) == 1
        assert fused[0].name in ("conv", "MatMul"), fused[0].name
        assert not any(s.name == "Relu" for s in md.step_stats)
