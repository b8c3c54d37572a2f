"""The oneDNN provider's batch normalisation (FusedBatchNorm and its gradient), elementwise chains
(Add/Sub/Mul/RealDiv/AddN and FusedElementwise programs) and its recycled output buffers, against
the numpy reference kernels: standalone, and inside Session plans against the same graph run
with ``kernels="numpy"`` (a ResNet block: convolution, batch norm, Caffe's Scale, ReLU and an
Eltwise sum, forward and every gradient).

float32 tolerances, relative to the largest magnitude of the reference: batch norm 2e-6 (oneDNN
sums the statistics in another order), elementwise chains exact (each step rounds to float32
like numpy's), whole plans with convolutions 2e-5 as in test_onednn.py.
"""

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine.kernels.onednn import lib as L
from tfconf.engine.ops.nn import fused_batch_norm_training

from test_onednn import _run_both as run_both  # same folder (rootdir import mode)
from test_onednn_norm import _close, _of

pytestmark = pytest.mark.skipif(not L.available(), reason=f"oneDNN unavailable: {L.unavailable_reason()}")

BN_TOL = 2e-6
PLAN_TOL = 2e-5


# ---------------------------------------------------------------------------- batch norm alone
@pytest.mark.parametrize("shape", [(8, 16, 7, 7), (4, 3, 9, 9), (32, 10), (2, 5, 3, 4, 4), (6, 20, 5, 5),
                                   (1, 64, 2, 2)], ids=str)
def test_batch_norm_forward_and_gradient(g, shape):
    rng = np.random.default_rng(sum(shape))
    x = tc.placeholder(tc.float32, shape)
    y, m, v = fused_batch_norm_training(x, 1e-5)
    c = tc.constant(rng.standard_normal(shape).astype(np.float32))
    (dx,) = tc.gradients(tc.reduce_sum(y * c), [x])
    xv = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    got, want, info, kernels = run_both(g, [y, m, v, dx], {x: xv}, kernels=True)
    for a, b, name in zip(got, want, ("y", "mean", "variance", "dx")):
        assert type(a) is np.ndarray and a.dtype == np.float32, name
        _close(a, b, BN_TOL, name)
    types = info.kernels["types"]["onednn"]
    assert types.get("FusedBatchNorm") == 1 and types.get("FusedBatchNormGrad") == 1, types
    assert not info.kernels["fallbacks"], info.kernels["fallbacks"]
    assert _of(kernels, "BatchNormForward") and _of(kernels, "BatchNormBackward")


def test_batch_norm_float64_stays_on_the_reference(g):
    x = tc.placeholder(tc.float64, (4, 3, 2, 2))
    y, _, _ = fused_batch_norm_training(x)
    xv = np.random.default_rng(0).standard_normal((4, 3, 2, 2))
    got, want, info = run_both(g, [y], {x: xv})
    np.testing.assert_array_equal(got[0], want[0])
    assert "FusedBatchNorm" not in info.kernels["types"].get("onednn", {})


# ---------------------------------------------------------------------------- channel affine alone
@pytest.mark.parametrize("shape,offset", [((8, 16, 7, 7), True), ((4, 3, 9, 9), False), ((32, 10), True),
                                          ((2, 5, 3, 4, 4), True), ((6, 20, 5, 5), False)], ids=str)
def test_channel_affine_forward_and_gradients(g, shape, offset):
    from tfconf.engine.ops.nn import channel_affine

    rng = np.random.default_rng(sum(shape))
    c = shape[1]
    x = tc.placeholder(tc.float32, shape)
    s = tc.constant(rng.uniform(0.5, 2, c).astype(np.float32))
    o = tc.constant(rng.standard_normal(c).astype(np.float32)) if offset else None
    y = channel_affine(x, s, o)
    r = tc.constant(rng.standard_normal(shape).astype(np.float32))
    grads = tc.gradients(tc.reduce_sum(y * r), [x, s] + ([o] if offset else []))
    xv = rng.standard_normal(shape).astype(np.float32)
    got, want, info, kernels = run_both(g, [y] + grads, {x: xv}, kernels=True)
    for a, b in zip(got, want):
        _close(a, b, BN_TOL)
    types = info.kernels["types"]["onednn"]
    assert types.get("ChannelAffine") == 1 and types.get("ChannelAffineGrad") == 1, types
    assert not info.kernels["fallbacks"], info.kernels["fallbacks"]


def test_addn_of_blocked_values_is_one_sum(g):
    rng = np.random.default_rng(3)
    x = tc.placeholder(tc.float32, (2, 3, 8, 8))
    w1, w2 = (tc.constant(rng.standard_normal((16, 3, 3, 3)).astype(np.float32)) for _ in range(2))
    a, b = tc.nn.conv2d(x, w1, padding=1), tc.nn.conv2d(x, w2, padding=1)
    out = tc.nn.relu(tc.add_n([a, b, a]))
    xv = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    got, want, info, kernels = run_both(g, [out], {x: xv}, kernels=True)
    _close(got[0], want[0], PLAN_TOL)
    (k,) = _of(kernels, "SumN")
    assert all(key[1] is not None for key in k._by_shape), k._by_shape  # its inputs came blocked
    assert not info.kernels["fallbacks"], info.kernels["fallbacks"]


# ---------------------------------------------------------------------------- a ResNet block in a plan
def _resnet_block(g, c, stride_in=1):
    """conv -> BN -> Scale -> ReLU -> conv -> BN -> Scale, + shortcut, ReLU (Caffe's ResNet
    layers, from the front end), with the loss's gradient to the input and every parameter."""
    from tfconf.frontend.compiler import build_net
    from tfconf.frontend.layers import NetState, get_layer_class

    layers = [
        {"name": "c1", "type": "Convolution", "bottom": "data", "num_output": c, "kernel_size": 3, "pad": 1,
         "bias_term": False, "weight_filler": "msra"},
        {"name": "c1_bn", "type": "BatchNorm"}, {"name": "c1_scale", "type": "Scale", "bias_term": True,
                                                 "filler": {"type": "uniform", "min": 0.5, "max": 1.5},
                                                 "bias_filler": {"type": "uniform", "min": -0.2, "max": 0.2}},
        {"name": "c1_relu", "type": "ReLU"},
        {"name": "c2", "type": "Convolution", "num_output": c, "kernel_size": 3, "pad": 1, "bias_term": False,
         "weight_filler": "msra"},
        {"name": "c2_bn", "type": "BatchNorm"}, {"name": "c2_scale", "type": "Scale", "bias_term": True},
        {"name": "sum", "type": "Eltwise", "bottom": ["c1_relu", "c2_scale"], "operation": "sum"},
        {"name": "sum_relu", "type": "ReLU"},
    ]
    x = tc.placeholder(tc.float32, (4, 3, 8, 8), name="data")
    specs = [get_layer_class(d["type"]).model_validate(d) for d in layers]
    params = {}
    net = build_net(specs, NetState(phase="train"), g, params, {}, {"data": x})
    top = net.tops["sum_relu"]
    r = tc.constant(np.random.default_rng(c).standard_normal(top.shape.as_list()).astype(np.float32))
    grads = tc.gradients(tc.reduce_sum(top * r), [x] + list(params.values()))
    assert len(grads) >= 7 and grads[0] is not None
    kinks = [net.layer_tops[n][0] for n in ("c1_scale", "sum")]  # what the two ReLUs see
    return x, [top] + [d for d in grads if d is not None], kinks


def _clear_of_kinks(ref, kinks, feed, margin=2e-6):
    """A ReLU input within float32 noise of 0 may fall on either side in the two kernels, which
    turns one element's gradient on or off and (through batch norm's means) moves every gradient
    of its channel: about 1 draw in 300 of random weights did that. The weights are seeded, and
    this says so if a change of initializer ever lands one on a kink."""
    for t, v in zip(kinks, ref.run(kinks, feed)):
        near = float(np.abs(v).min() / np.abs(v).max())
        assert near > margin, f"{t.name}: a ReLU input {near:.2g} of its scale from 0; pick another seed"


@pytest.mark.parametrize("c", [16, 20, 8])
def test_resnet_block_forward_and_gradients(g, c):
    tc.set_random_seed(1000 + c)  # unseeded weights put a ReLU input on its kink now and then (see below)
    x, fetches, kinks = _resnet_block(g, c)
    xv = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    fast, ref = (tc.Session(graph=g, config=tc.SessionConfig(kernels=k)) for k in ("onednn", "numpy"))
    with fast, ref:
        init = tc.global_variables_initializer()
        ref.run(init)
        fast.run(init)
        for v in tc.global_variables():  # the same weights in both sessions
            v.load(ref.run(v), fast)
        _clear_of_kinks(ref, kinks, {x: xv})
        got, want = fast.run(fetches, {x: xv}), ref.run(fetches, {x: xv})
        info = fast.plan_info(fetches, {x: xv})
    for a, b in zip(got, want):
        assert type(a) is np.ndarray and a.dtype == np.float32
        _close(a, b, PLAN_TOL)
    types = info.kernels["types"]["onednn"]
    for t in ("FusedBatchNorm", "FusedBatchNormGrad", "ChannelAffine", "ChannelAffineGrad", "AddN", "Conv2D",
              "Conv2DBackpropInput", "Conv2DBackpropFilter", "ReluGrad"):
        assert types.get(t), (t, types)
    # every kernel of the block ran on oneDNN (none fell back to numpy for its layout), and the
    # activations between them stayed in oneDNN's layout
    assert not info.kernels["fallbacks"], info.kernels["fallbacks"]
    assert info.kernels["blocked_tensors"] >= 10, info.kernels["blocked_tensors"]


# ---------------------------------------------------------------------------- elementwise chains
@pytest.mark.parametrize("case", ["scale_relu", "sub_div", "addn3", "swap", "broadcast_first", "two_results"])
def test_elementwise_chains_equal_the_reference(g, case):
    rng = np.random.default_rng(7)
    full = (3, 5, 4, 6)
    x = tc.placeholder(tc.float32, full)
    y = tc.placeholder(tc.float32, full)
    s = tc.constant(rng.uniform(0.5, 1.5, (5, 1, 1)).astype(np.float32))
    b = tc.constant(rng.standard_normal((5, 1, 1)).astype(np.float32))
    if case == "scale_relu":
        out = tc.nn.relu(x * s + b)
    elif case == "sub_div":
        out = -((x - y) / s)
    elif case == "addn3":
        out = tc.add_n([x, y, x * y])
    elif case == "swap":  # the full-size operand second in a commutative first step
        out = s * x + y
    elif case == "broadcast_first":  # oneDNN broadcasts only its second source: the reference runs it
        out = s - x
    else:  # a step reading two earlier results: no chain
        out = (x * s) * (y + b)
    xv, yv = (rng.standard_normal(full).astype(np.float32) for _ in range(2))
    got, want, info = run_both(g, [out], {x: xv, y: yv})
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-6)
    served = info.kernels["types"].get("onednn", {})
    if case in ("broadcast_first",):
        assert info.kernels["fallbacks"] or not served, (served, info.kernels["fallbacks"])
    if case == "two_results":
        assert "FusedElementwise" in info.kernels["declined"]


def test_elementwise_chain_on_other_ranks_is_the_reference(g):
    x = tc.placeholder(tc.float32, (4, 6))
    out = tc.nn.relu(x * 2.0 + 1.0)
    got, want, info = run_both(g, [out], {x: np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)})
    np.testing.assert_array_equal(got[0], want[0])
    assert "not a 4-D output" in info.kernels["declined"].get("FusedElementwise", "")


# ---------------------------------------------------------------------------- recycled outputs
def test_output_pool_never_hands_out_a_live_buffer():
    pool = L._OutputPool()
    n = pool.MIN_BYTES
    a = pool.take(n)
    view = a.view(np.float32)[3:]  # a view keeps the buffer taken
    del a
    b = pool.take(n)
    assert not np.shares_memory(b, view)
    del view
    c = pool.take(n)  # the first buffer is free again: reused
    assert pool.held_bytes() == 2 * n
    assert c.ctypes.data % 64 == 0
    del b, c
    small = pool.take(100)
    assert small.nbytes == 100 and pool.held_bytes() == 2 * n


def test_fetched_outputs_survive_later_runs(g):
    # a fetched provider output is a recycled buffer: the next run must not write into it
    x = tc.placeholder(tc.float32, (8, 16, 32, 32))
    y = tc.nn.relu(x * 2.0 - 1.0)
    with tc.Session(graph=g, config=tc.SessionConfig(kernels="onednn")) as s:
        first = s.run(y, {x: np.ones((8, 16, 32, 32), np.float32)})
        s.run(y, {x: np.full((8, 16, 32, 32), 5.0, np.float32)})
    np.testing.assert_array_equal(first, np.ones((8, 16, 32, 32), np.float32))


def test_shape_readers_leave_a_value_blocked(g):
    # a batch norm over an unknown batch reads its input's Size (for the variance correction):
    # a reader of the shape alone must not force the convolution's output out of its layout
    rng = np.random.default_rng(4)
    x = tc.placeholder(tc.float32, (None, 3, 8, 8))
    w = tc.constant(rng.standard_normal((16, 3, 3, 3)).astype(np.float32))
    h = tc.nn.conv2d(x, w, padding=1)
    fetches = [tc.nn.relu(h), tc.size(h), tc.shape(h)]
    xv = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    got, want, info = run_both(g, fetches, {x: xv})
    _close(got[0], want[0], PLAN_TOL)
    assert int(got[1]) == 2 * 16 * 64 and list(got[2]) == [2, 16, 8, 8]
    assert info.kernels["blocked_tensors"] >= 1, info.kernels
