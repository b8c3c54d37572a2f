"""The oneDNN provider against the numpy reference kernels: the same graph run by a session with
``kernels="onednn"`` and one with ``kernels="numpy"``, forward and every gradient, on randomized
convolution and pooling geometries (strides, asymmetric pads, groups, dilations, ceil mode, ties),
plus the kernel-choice and layout stages (what runs where, layouts never leak, determinism).

float32 tolerances: convolutions accumulate in a different order (blocked GEMM-free kernels vs
im2col + BLAS), so results agree to ~1e-5 of the largest magnitude; pooling is exact except the
gradients of overlapping windows (sums in another order).
"""

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine.kernels.onednn import lib as L

pytestmark = pytest.mark.skipif(not L.available(), reason=f"oneDNN unavailable: {L.unavailable_reason()}")


def _sessions(graph):
    return (tc.Session(graph=graph, config=tc.SessionConfig(kernels="onednn")),
            tc.Session(graph=graph, config=tc.SessionConfig(kernels="numpy")))


def _close(a, b, rel=2e-5, what=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, what
    scale = max(float(np.abs(b).max()), 1e-6)
    err = float(np.abs(a.astype(np.float64) - b).max())
    assert err <= rel * scale, f"{what}: max error {err:.3g} against scale {scale:.3g}"


def _run_both(g, fetches, feeds, kernels=False):
    """(oneDNN results, reference results, plan_info) and, with ``kernels``, the kernels made."""
    fast, ref = _sessions(g)
    with fast, ref:
        got = fast.run(fetches, feeds)
        want = ref.run(fetches, feeds)
        info = fast.plan_info(fetches, feeds)
        made = [k for comp in fast._plans.values() for k in comp.kernel_plan._kernels.values()]
    return (got, want, info, made) if kernels else (got, want, info)


def _conv_cases(n=24, seed=0):
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        groups = int(rng.choice([1, 1, 1, 2, 4]))
        cg = int(rng.integers(1, 6))
        og = int(rng.integers(1, 6))
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        dh, dw = (1, 1) if i % 3 else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pads = tuple(int(p) for p in rng.integers(0, 3, size=4))
        h = int(rng.integers((kh - 1) * dh + 1, 14))
        w = int(rng.integers((kw - 1) * dw + 1, 14))
        cases.append(((int(rng.integers(1, 5)), cg * groups, h, w), (og * groups, cg, kh, kw),
                      (sh, sw), pads, (dh, dw), groups))
    # the benchmark nets' layers (blocked layouts of 16 channels, NHWC for LeNet's 20 -> 50)
    cases += [((4, 3, 32, 32), (32, 3, 5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 1),
              ((4, 32, 16, 16), (32, 32, 5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 1),
              ((4, 20, 12, 12), (50, 20, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1),
              ((2, 16, 9, 9), (32, 16, 3, 3), (2, 2), "SAME", (1, 1), 1)]
    return cases


@pytest.mark.parametrize("xs,ws,strides,pads,dil,groups", _conv_cases())
def test_conv2d_forward_and_gradients(g, xs, ws, strides, pads, dil, groups):
    rng = np.random.default_rng(abs(hash((xs, ws))) % 2**32)
    xv = rng.standard_normal(xs).astype(np.float32)
    x = tc.placeholder(tc.float32, xs)
    w = tc.constant(rng.standard_normal(ws).astype(np.float32))
    y = tc.nn.conv2d(x, w, strides=strides, padding=pads, dilations=dil, groups=groups)
    r = tc.constant(rng.standard_normal(y.shape.as_list()).astype(np.float32))
    dx, dw = tc.gradients(tc.reduce_sum(y * r), [x, w])
    got, want, info = _run_both(g, [y, dx, dw], {x: xv})
    for a, b, name in zip(got, want, ("y", "dx", "dw")):
        _close(a, b, what=name)
    assert info.kernels["types"]["onednn"].get("Conv2D") == 1
    assert not info.kernels["fallbacks"], info.kernels["fallbacks"]


@pytest.mark.parametrize("shape", [(2, 16, 5, 5), (3, 5, 4, 7)])
def test_relu_and_bias_gradient(g, shape):
    rng = np.random.default_rng(2)
    x = tc.placeholder(tc.float32, shape)
    b = tc.constant(rng.standard_normal((shape[1], 1, 1)).astype(np.float32))
    y = tc.nn.relu(x + b)
    r = tc.constant(rng.standard_normal(shape).astype(np.float32))
    dx, db = tc.gradients(tc.reduce_sum(y * r), [x, b])
    xv = rng.standard_normal(shape).astype(np.float32)
    xv[0, 0, 0, :2] = -b.op.attrs["value"][0, 0, 0]  # y exactly 0 there: no gradient, as ReluGrad
    got, want, info = _run_both(g, [y, dx, db], {x: xv})
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    _close(got[2], want[2], rel=1e-6)


@pytest.mark.parametrize("relu", [True, False])
def test_fused_conv_bias_relu(g, relu):
    rng = np.random.default_rng(1)
    x = tc.placeholder(tc.float32, (3, 8, 10, 10))
    w = tc.constant(rng.standard_normal((16, 8, 3, 3)).astype(np.float32))
    b = tc.constant(rng.standard_normal(16).astype(np.float32))
    y = tc.nn.bias_add(tc.nn.conv2d(x, w, padding=1), b)
    if relu:
        y = tc.nn.relu(y)
    r = tc.constant(rng.standard_normal((3, 16, 10, 10)).astype(np.float32))
    grads = tc.gradients(tc.reduce_sum(y * r), [x, w, b])
    got, want, info = _run_both(g, [y] + grads, {x: rng.standard_normal((3, 8, 10, 10)).astype(np.float32)})
    for a, bb in zip(got, want):
        _close(a, bb)
    assert info.kernels["types"]["onednn"].get("FusedConv2D") == 1


def _pool_cases():
    rng = np.random.default_rng(5)
    cases = [((2, 3, 9, 9), (3, 3), (2, 2), (0, 0, 0, 0), True),     # Caffe's ceil rounding
             ((2, 16, 32, 32), (3, 3), (2, 2), (0, 0, 0, 0), True),  # CIFAR-10 quick's pools
             ((2, 20, 24, 24), (2, 2), (2, 2), (0, 0, 0, 0), False),  # LeNet's
             ((1, 2, 7, 8), (3, 2), (2, 1), (1, 0, 1, 1), False),
             ((1, 2, 8, 8), (3, 3), (3, 3), (1, 1, 1, 1), True),
             ((2, 3, 6, 6), (2, 2), (1, 1), "SAME", False)]
    for _ in range(10):
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        pads = tuple(int(p) for p in rng.integers(0, 2, size=4))
        pads = (min(pads[0], kh - 1), min(pads[1], kh - 1), min(pads[2], kw - 1), min(pads[3], kw - 1))
        cases.append(((int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(kh, 12)),
                       int(rng.integers(kw, 12))), (kh, kw), (int(rng.integers(1, 4)), int(rng.integers(1, 4))),
                      pads, bool(rng.integers(0, 2))))
    return cases


@pytest.mark.parametrize("xs,ks,st,pads,ceil_mode", _pool_cases())
def test_max_pool_with_ties(g, xs, ks, st, pads, ceil_mode):
    rng = np.random.default_rng(7)
    # small integers: many windows hold several equal maxima (the first one takes the gradient)
    xv = rng.integers(-2, 3, size=xs).astype(np.float32)
    x = tc.placeholder(tc.float32, xs)
    y = tc.nn.max_pool(x, ks, st, padding=pads, ceil_mode=ceil_mode)
    r = tc.constant(rng.standard_normal(y.shape.as_list()).astype(np.float32))
    dx = tc.gradients(tc.reduce_sum(y * r), x)[0]
    (yg, dxg), (yw, dxw), info = _run_both(g, [y, dx], {x: xv})
    np.testing.assert_array_equal(yg, yw)
    _close(dxg, dxw, rel=1e-6, what="dx")
    assert info.kernels["types"]["onednn"] == {"MaxPool": 1, "MaxPoolGrad": 1}


@pytest.mark.parametrize("include", [True, False])
@pytest.mark.parametrize("xs,ks,st,pads,ceil_mode", _pool_cases())
def test_avg_pool(g, xs, ks, st, pads, ceil_mode, include):
    rng = np.random.default_rng(8)
    x = tc.placeholder(tc.float32, xs)
    y = tc.nn.avg_pool(x, ks, st, padding=pads, ceil_mode=ceil_mode, count_include_pad=include)
    r = tc.constant(rng.standard_normal(y.shape.as_list()).astype(np.float32))
    dx = tc.gradients(tc.reduce_sum(y * r), x)[0]
    (yg, dxg), (yw, dxw), info = _run_both(g, [y, dx], {x: rng.standard_normal(xs).astype(np.float32)})
    _close(yg, yw, rel=1e-6, what="y")
    _close(dxg, dxw, rel=1e-6, what="dx")


@pytest.mark.parametrize("static", [True, False])
def test_avg_pool_without_an_exact_onednn_algorithm_runs_the_reference(g, static):
    # Caffe's average with pads and ceil rounding clips the last window at the pad: no oneDNN
    # algorithm divides that way, so the reference runs it, and plan_info says why (at plan time
    # for a known shape, after the run that met the shape otherwise)
    x = tc.placeholder(tc.float32, (1, 1, 6, 6) if static else (None, 1, None, None))
    y = tc.nn.avg_pool(x, 3, 2, padding=1, ceil_mode=True)
    xv = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)
    (got,), (want,), info = _run_both(g, [y], {x: xv})
    np.testing.assert_array_equal(got, want)
    k = info.kernels
    if static:
        assert "AvgPool" in k["declined"] and not k["kernels"]
    else:
        assert k["kernels"] == {"onednn": 1}
        assert any("same numbers" in v for v in k["fallbacks"].values()), k


def _net(x, rng):
    w1 = tc.Variable(rng.standard_normal((32, 3, 5, 5)).astype(np.float32) * 0.1, name="w1")
    b1 = tc.Variable(np.zeros(32, np.float32), name="b1")
    w2 = tc.Variable(rng.standard_normal((32, 32, 3, 3)).astype(np.float32) * 0.05, name="w2")
    h = tc.nn.max_pool(tc.nn.bias_add(tc.nn.conv2d(x, w1, padding=2), b1), 3, 2, ceil_mode=True)
    h = tc.nn.avg_pool(tc.nn.conv2d(tc.nn.relu(h), w2, padding=1), 3, 2, ceil_mode=True)
    return tc.reduce_mean(tc.square(h)), [w1, b1, w2], h


def test_blocked_layouts_stay_inside_and_never_leak(g):
    rng = np.random.default_rng(0)
    x = tc.placeholder(tc.float32, (4, 3, 16, 16))
    loss, params, h = _net(x, rng)
    grads = tc.gradients(loss, params)
    xv = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    fast, ref = _sessions(g)
    with fast, ref:
        for s in (fast, ref):
            s.run(tc.global_variables_initializer())
        got = fast.run([loss, h] + grads, {x: xv})
        want = ref.run([loss, h] + grads, {x: xv})
        info = fast.plan_info([loss, h] + grads, {x: xv})
        # conv1 -> pool -> relu -> conv2 -> pool and back (the bias gradient reads the blocked
        # gradient too); only the fetched h and what numpy ops read are plain
        assert info.kernels["blocked_tensors"] >= 6, info
        assert {"Relu", "ReluGrad", "Conv2DBackpropFilterBias"} <= set(info.kernels["types"]["onednn"])
        assert isinstance(got[0], np.floating)
        for a, b in zip(got[1:], want[1:]):
            assert type(a) is np.ndarray and a.dtype == np.float32 and a.flags.c_contiguous
            _close(a, b)
        # a tensor in a blocked layout inside one plan is a plain array when another run fetches it
        mid = g.get_tensor_by_name(h.op.inputs[0].name)
        v = fast.run(mid, {x: xv})
        assert type(v) is np.ndarray
        _close(v, ref.run(mid, {x: xv}))
        # Variables are plain numpy arrays in the session, whichever kernels read them
        assert all(type(fast.run(p)) is np.ndarray for p in params)


def test_training_is_deterministic_and_matches_the_reference(g):
    rng = np.random.default_rng(0)
    x = tc.placeholder(tc.float32, (4, 3, 16, 16))
    loss, params, _ = _net(x, rng)
    train = tc.train.MomentumOptimizer(0.05, 0.9).minimize(loss)
    xs = [np.random.default_rng(i).standard_normal((4, 3, 16, 16)).astype(np.float32) for i in range(5)]

    def trained(kernels):
        with tc.Session(graph=g, config=tc.SessionConfig(kernels=kernels)) as s:
            s.run(tc.global_variables_initializer())
            for xv in xs:
                s.run(train, {x: xv})
            return s.run(params)

    a, b, ref = trained("onednn"), trained("onednn"), trained("numpy")
    for u, v, w in zip(a, b, ref):
        np.testing.assert_array_equal(u, v)  # same threads, same layouts: bit-identical
        _close(u, w, rel=1e-4)


def test_kernel_choice_settings(g, monkeypatch):
    x = tc.placeholder(tc.float32, (1, 2, 6, 6))
    y = tc.nn.max_pool(x, 2, 2)
    xv = np.ones((1, 2, 6, 6), np.float32)
    with tc.Session(graph=g, config=tc.SessionConfig(kernels="numpy")) as s:
        s.run(y, {x: xv})
        assert s.plan_info(y, {x: xv}).kernels["kernels"] == {}
    monkeypatch.setenv("TFCONF_KERNELS", "numpy")
    with tc.Session(graph=g) as s:
        assert s.plan_info(y, {x: xv}).kernels["providers"] == []
    monkeypatch.setenv("TFCONF_KERNELS", "auto")
    with tc.Session(graph=g) as s:
        assert s.plan_info(y, {x: xv}).kernels["kernels"] == {"onednn": 1}
        assert "kernels: providers=onednn" in str(s.plan_info(y, {x: xv}))
    with pytest.raises(ValueError, match="unknown kernel provider 'mkl'"):
        tc.Session(graph=g, config=tc.SessionConfig(kernels="mkl"))


def test_float64_stays_on_the_reference_and_says_why(g):
    x = tc.placeholder(tc.float64, (1, 2, 6, 6))
    y = tc.nn.max_pool(x, 2, 2)
    with tc.Session(graph=g, config=tc.SessionConfig(kernels="onednn")) as s:
        s.run(y, {x: np.ones((1, 2, 6, 6))})
        k = s.plan_info(y, {x: np.ones((1, 2, 6, 6))}).kernels
    assert k["kernels"] == {} and "float64" in k["declined"]["MaxPool"]


def test_required_provider_that_cannot_load_is_an_error(g, monkeypatch):
    from tfconf.engine import kernel_choice

    monkeypatch.setattr(kernel_choice, "provider_available", lambda name: "no library here")
    with pytest.raises(ValueError, match="cannot run here: no library here"):
        tc.Session(graph=g, config=tc.SessionConfig(kernels="onednn"))
    with tc.Session(graph=g) as s:  # auto: quietly the reference
        assert s._providers == ()


def test_check_numerics_sees_blocked_values(g):
    x = tc.placeholder(tc.float32, (2, 16, 8, 8))
    w = tc.constant(np.ones((16, 16, 3, 3), np.float32))
    y = tc.nn.max_pool(tc.nn.conv2d(tc.nn.max_pool(x, 2, 1), w, padding=1), 2, 2)
    xv = np.ones((2, 16, 8, 8), np.float32)
    xv[0, 0, 0, 0] = np.inf
    with tc.Session(graph=g, config=tc.SessionConfig(kernels="onednn")) as s:
        with pytest.raises(tc.errors.InvalidArgumentError, match="produced Inf"):
            s.run(y, {x: xv}, options=tc.RunOptions(check_numerics=True))


def test_blas_threads_are_restored_after_a_run(g):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    x = tc.placeholder(tc.float32, (1, 2, 6, 6))
    with tc.Session(graph=g, config=tc.SessionConfig(kernels="onednn")) as s:
        s.run(tc.nn.max_pool(x, 2, 2), {x: np.ones((1, 2, 6, 6), np.float32)})
    assert [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"] == before


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m,k,n", [(64, 800, 500), (8, 300, 2000), (3, 5, 7), (1, 9, 1)])
def test_matmul_on_onednn_gemm(g, ta, tb, m, k, n):
    # a plan of products alone runs them on oneDNN's GEMM (one thread team for the whole plan)
    rng = np.random.default_rng(4)
    a = tc.placeholder(tc.float32, (k, m) if ta else (m, k))
    b = tc.constant(rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32))
    z = tc.matmul(a, b, transpose_a=ta, transpose_b=tb)
    av = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    got, want, info = _run_both(g, z, {a: av})
    _close(got, want, 2e-5, "matmul")
    assert info.kernels["types"]["onednn"].get("MatMul") == 1


def test_matmul_of_other_dtypes_and_ranks_stays_on_the_reference(g):
    a64 = tc.placeholder(tc.float64, (4, 3))
    z64 = tc.matmul(a64, tc.constant(np.ones((3, 2))))
    a3 = tc.placeholder(tc.float32, (2, 4, 3))
    z3 = tc.matmul(a3, tc.constant(np.ones((2, 3, 2), np.float32)))
    feeds = {a64: np.ones((4, 3)), a3: np.ones((2, 4, 3), np.float32)}
    (g64, g3), (w64, w3), info = _run_both(g, [z64, z3], feeds)
    np.testing.assert_array_equal(g64, w64)
    np.testing.assert_array_equal(g3, w3)
    assert "MatMul" not in info.kernels["types"].get("onednn", {})
    assert "MatMul" in info.kernels["declined"]


def test_sgemm_reads_operands_as_they_are_stored():
    from tfconf.engine.kernels.onednn.gemm import matmul, sgemm

    rng = np.random.default_rng(0)
    big = rng.standard_normal((12, 40)).astype(np.float32)
    w = rng.standard_normal((40, 9)).astype(np.float32)
    cases = [
        (big, w),                                # C order
        (big[2:7], w),                           # a row slice
        (big[:, 3:20], w[3:20]),                 # a column slice: rows contiguous, ld > cols
        (big.T.copy().T, w),                     # Fortran order: the transposed product
        (big[::2], w),                           # rows strided
        (big[:, ::2], w[::2]),                   # columns strided: copied first
        (big[::-1], w),                          # negative strides: copied first
        (np.broadcast_to(big[:1], (5, 40)), w),  # a zero stride
        (big.T.copy().T[:, 1:31], w[1:31].T.copy().T),
    ]
    for x, y in cases:
        want = x.astype(np.float64) @ y.astype(np.float64)
        _close(sgemm(x, y), want, 1e-5, f"{x.strides} @ {y.strides}")
        _close(sgemm(x.T, y, trans_a=True), want, 1e-5, "trans_a")
        _close(sgemm(x, y.T, trans_b=True), want, 1e-5, "trans_b")
    out = np.full((12, 9), np.nan, np.float32)
    assert sgemm(big, w, out=out) is out and np.isfinite(out).all()
    np.testing.assert_array_equal(sgemm(big[:, :0], w[:0]), np.zeros((12, 9), np.float32))
    assert sgemm(big[:0], w).shape == (0, 9)
    with pytest.raises(ValueError, match="inner dimensions"):
        sgemm(big, w[:5])
    # the fused epilogue: bias per column, then ReLU (also when there is nothing to multiply)
    bias = rng.standard_normal(9).astype(np.float32)
    want = big.astype(np.float64) @ w + bias
    _close(sgemm(big, w, bias=bias), want, 1e-5, "bias")
    _close(sgemm(big, w, bias=bias.reshape(1, 9), relu=True), np.maximum(want, 0), 1e-5, "bias relu")
    np.testing.assert_array_equal(sgemm(big[:, :0], w[:0], bias=bias, relu=True),
                                  np.broadcast_to(np.maximum(bias, 0), (12, 9)))
    # the array-module form: float32 2-D products here, everything else numpy's
    _close(matmul(big, w), big.astype(np.float64) @ w, 1e-5)
    x64 = rng.standard_normal((3, 4))
    np.testing.assert_array_equal(matmul(x64, x64.T), x64 @ x64.T)


@pytest.mark.parametrize("reverse,init", [(False, False), (True, True)])
def test_lstm_scan_on_onednn_gemm_equals_the_reference(g, reverse, init):
    from tfconf.engine.ops.rnn import lstm_sequence

    rng = np.random.default_rng(7)
    T, N, H = 5, 3, 8
    gx = tc.placeholder(tc.float32, (T, N, 4 * H))
    w = tc.Variable(rng.standard_normal((4 * H, H)).astype(np.float32) * 0.3)
    mask_v = np.ones((T, N, 1), np.float32)
    mask_v[2, 1] = 0  # a reset inside the sequence
    h0 = c0 = None
    if init:
        h0 = tc.constant(rng.standard_normal((N, H)).astype(np.float32))
        c0 = tc.constant(rng.standard_normal((N, H)).astype(np.float32))
    hs, h, c = lstm_sequence(gx, w, tc.constant(mask_v), h0, c0, reverse=reverse)
    loss = tc.reduce_sum(hs * hs) + tc.reduce_sum(h * c)
    grads = tc.gradients(loss, [gx, w])
    feeds = {gx: rng.standard_normal((T, N, 4 * H)).astype(np.float32)}
    fast, ref = _sessions(g)
    with fast, ref:
        for s in (fast, ref):
            s.run(tc.global_variables_initializer())
        got = fast.run([hs, h, c] + grads, feeds)
        want = ref.run([hs, h, c] + grads, feeds)
        types = fast.plan_info([hs, h, c] + grads, feeds).kernels["types"]["onednn"]
    for a, b, what in zip(got, want, ("hs", "h", "c", "d gx", "d w")):
        _close(a, b, 1e-5, what)
    assert types.get("LSTMSequence") == 1 and types.get("LSTMSequenceGrad") == 1


# ---------------------------------------------------------------------------- products + epilogue, updates
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("m,tb", [(3, False), (128, False), (64, True)])
def test_fused_matmul_bias_relu_on_onednn_equals_the_reference(g, relu, m, tb):
    rng = np.random.default_rng(3)
    x = tc.placeholder(tc.float32, (None, 200))
    w = tc.constant(rng.standard_normal((300, 200) if tb else (200, 300)).astype(np.float32))
    b = tc.constant(rng.standard_normal(300).astype(np.float32))
    z = tc.matmul(x, w, transpose_b=tb) + b
    y = tc.nn.relu(z) if relu else z
    loss = tc.reduce_sum(y * y)
    gx = tc.gradients(loss, x)[0]
    feeds = {x: rng.standard_normal((m, 200)).astype(np.float32)}
    (gy, ggx), (wy, wgx), info = _run_both(g, [y, gx], feeds)
    _close(gy, wy, 2e-5, "y")
    _close(ggx, wgx, 2e-5, "dx")
    assert info.kernels["types"]["onednn"].get("FusedMatMul") == 1
    if relu:
        assert info.kernels["types"]["onednn"].get("ReluGrad") == 1  # a 2-D ReLU gradient too


def _train_both(build, steps=3, seed=0):
    """Weights after ``steps`` updates with oneDNN kernels and with the reference."""
    out = []
    for kernels in ("onednn", "numpy"):
        g = tc.Graph()
        with g.as_default():
            train, params, feeds, counted = build(np.random.default_rng(seed))
            init = tc.global_variables_initializer()
            with tc.Session(config=tc.SessionConfig(kernels=kernels)) as s:
                s.run(init)
                for _ in range(steps):
                    s.run(train, feeds)
                out.append((s.run(params), s.plan_info(train, feeds).kernels["types"].get("onednn", {}), counted))
    return out


def _dense(rng, rows=200, cols=100):
    x = tc.placeholder(tc.float32, (16, rows))
    w = tc.Variable(rng.standard_normal((rows, cols)).astype(np.float32) * 0.1)
    small = tc.Variable(rng.standard_normal(cols).astype(np.float32))  # below MIN_ELEMENTS: numpy
    loss = tc.reduce_sum(tc.square(tc.matmul(x, w) + small))
    return x, w, small, loss, {x: rng.standard_normal((16, rows)).astype(np.float32)}


@pytest.mark.parametrize("opt", ["momentum", "sgd", "nesterov"])
def test_tf_updates_on_onednn_equal_the_reference(opt):
    def build(rng):
        x, w, small, loss, feeds = _dense(rng)
        o = {"momentum": tc.train.MomentumOptimizer(0.01, 0.9),
             "nesterov": tc.train.MomentumOptimizer(0.01, 0.9, use_nesterov=True),
             "sgd": tc.train.GradientDescentOptimizer(0.01)}[opt]
        return o.minimize(loss), [w, small], feeds, None

    (fast, types, _), (ref, _, _) = _train_both(build)
    for a, b in zip(fast, ref):
        _close(a, b, 1e-5, opt)
    op = "ApplyUpdate"  # the GradientDescent and Momentum rules
    if opt == "nesterov":
        assert op not in types  # the reference kernel
    else:
        assert types.get(op) == 2  # the large weight on oneDNN, the small bias through its fallback


def test_caffe_sgd_update_on_onednn_equals_the_reference():
    def build(rng):
        x, w, small, loss, feeds = _dense(rng)
        gw, gs = tc.gradients(loss, [w, small])
        ops = []
        for v, gr in ((w, gw), (small, gs)):
            h = tc.Variable(np.zeros(v.shape.as_list(), np.float32), trainable=False)
            ops.append(tc.get_default_graph().create_op(
                "ApplyUpdate", [v.handle, h.handle, tc.constant(np.float32(0.01)), gr, tc.constant(np.float32(1))],
                {"rule": "SGD", "hyper": {"momentum": 0.9}}, "update"))
        return tc.group(*ops), [w, small], feeds, None

    (fast, types, _), (ref, _, _) = _train_both(build, steps=4)
    for a, b in zip(fast, ref):
        _close(a, b, 1e-5, "caffe sgd")
    assert types.get("ApplyUpdate") == 2


def test_an_update_of_a_weight_someone_else_holds_replaces_it(g):
    # a fetched weight array is never mutated by a later update (the reference's rule)
    rng = np.random.default_rng(1)
    x, w, small, loss, feeds = _dense(rng)
    train = tc.train.MomentumOptimizer(0.01, 0.9).minimize(loss)
    with tc.Session(graph=g, config=tc.SessionConfig(kernels="onednn")) as s:
        s.run(tc.global_variables_initializer())
        s.run(train, feeds)
        held = s.run(w)
        before = held.copy()
        s.run(train, feeds)
        np.testing.assert_array_equal(held, before)
        assert not np.array_equal(s.run(w), before)


def test_binary_primitive_post_ops():
    from tfconf.engine.kernels.onednn import binary as B

    rng = np.random.default_rng(2)
    a, c = (rng.standard_normal((6, 5)).astype(np.float32) for _ in range(2))
    row = rng.standard_normal((1, 5)).astype(np.float32)
    s = np.array([0.5], np.float32)
    cases = [((1, 1), B.BINARY_MUL, "add", lambda: a * 0.5 + c, s),
             ((1, 1), B.BINARY_MUL, "sum", lambda: c * 2.0 + a * 0.5, s),
             ((1, 5), B.BINARY_ADD, "relu", lambda: np.maximum(a + row, 0), row),
             ((6, 5), B.BINARY_SUB, None, lambda: a - c, c)]
    for shape1, alg, post, want, src1 in cases:
        prim = B.binary((6, 5), shape1, alg, post, sum_scale=2.0)
        dst = c.copy() if post == "sum" else np.empty_like(a)
        args = {B.ARG_SRC_0: a.ctypes.data, B.ARG_SRC_1: src1.ctypes.data, B.ARG_DST: dst.ctypes.data}
        if post == "add":
            args[B.ARG_POST_OP0_SRC_1] = c.ctypes.data
        prim(args)
        np.testing.assert_allclose(dst, want(), rtol=1e-6, atol=1e-6, err_msg=f"{alg:#x} {post}")
    with pytest.raises(ValueError, match="unknown post-op"):
        B.binary((2,), (1,), B.BINARY_ADD, "tanh")


_SIGNALS_DURING_PRODUCTS = r"""
import os, signal, sys, threading, time
import numpy as np
from tfconf.engine.kernels.onednn.gemm import sgemm
signal.signal(signal.SIGINT, lambda s, f: None)
rng = np.random.default_rng(0)
x = rng.standard_normal((256, 768), dtype=np.float32)
w = rng.standard_normal((1024, 768), dtype=np.float32)
v = rng.standard_normal((768, 1024), dtype=np.float32)
h = rng.standard_normal((64, 800), dtype=np.float32)[:, :700]
u = rng.standard_normal((700, 500), dtype=np.float32)
cases = [(x, w, False, True), (x, v, False, False), (w, v, True, True), (h, u, False, False)]
want = [(a.T if ta else a).astype(np.float64) @ (b.T if tb else b) for a, b, ta, tb in cases]
stop = False
def kill():
    while not stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.0005)
t = threading.Thread(target=kill)
t.start()
for i in range(12):
    for (a, b, ta, tb), ref in zip(cases, want):
        got = sgemm(a, b, ta, tb)
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    junk = [np.ones(1000 + 7 * j) for j in range(2000)]  # malloc and free: corruption shows here
    del junk
stop = True
t.join()
print("ok")
"""


def test_products_survive_signals_landing_during_them():
    # dnnl_sgemm corrupted the heap when a signal landed during the call (Ctrl-C during a step
    # aborted `tfconf train` with "corrupted size vs. prev_size"); the matmul primitive must not
    import subprocess
    import sys

    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", _SIGNALS_DURING_PRODUCTS], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_integer_products_stay_on_the_reference(g):
    x = tc.placeholder(tc.int32, [2, 3])
    c = tc.matmul(x, tc.constant(np.arange(12, dtype=np.int32).reshape(3, 4)))
    xv = np.arange(6, dtype=np.int32).reshape(2, 3)
    got, want, info = _run_both(g, c, {x: xv})
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    assert "MatMul" not in info.kernels["types"].get("onednn", {})
    y = tc.nn.relu(tc.placeholder(tc.int32, [4], name="i"))
    with tc.Session(graph=g, config=tc.SessionConfig(kernels="onednn")) as s:
        np.testing.assert_array_equal(s.run(y, {"i:0": np.array([-1, 0, 2, -3], np.int32)}), [0, 0, 2, 0])


def test_an_update_follows_its_variable_when_it_changes_size(g):
    v = tc.Variable(np.ones((200, 128), np.float32), validate_shape=False, shape=[None, 128])
    train = tc.train.GradientDescentOptimizer(0.1).minimize(tc.reduce_sum(tc.square(v)))
    with tc.Session(graph=g, config=tc.SessionConfig(kernels="onednn")) as s:
        s.run(tc.global_variables_initializer())
        s.run(train)
        v.load(np.ones((130, 128), np.float32), s)
        s.run(train)
        np.testing.assert_allclose(s.run(v), np.full((130, 128), 0.8, np.float32), rtol=1e-6)


def test_sgemm_refuses_an_out_it_cannot_write():
    from tfconf.engine.kernels.onednn.gemm import sgemm

    a = np.ones((3, 4), np.float32)
    b = np.ones((4, 5), np.float32)
    readonly = np.empty((3, 5), np.float32)
    readonly.flags.writeable = False
    for out in (np.empty((3, 4), np.float32), np.empty((5, 3), np.float32).T, np.empty((3, 5)), readonly):
        with pytest.raises(ValueError, match="out must be"):
            sgemm(a, b, out=out)
    big = np.ones((7, 5), np.float32)
    with pytest.raises(ValueError, match="apart from the operands"):
        sgemm(a, big[2:6], out=big[:3])  # row 2 is both an operand and the output
    out = np.empty((4, 5), np.float32)[:3]  # a row slice is C-contiguous: fine
    np.testing.assert_array_equal(sgemm(a, b, out=out), np.full((3, 5), 4, np.float32))


def test_held_signals_are_restored_even_when_a_handler_raises():
    import signal

    from tfconf.engine.kernels.onednn.lib import call_with_signals_held

    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    assert call_with_signals_held(lambda: signal.pthread_sigmask(signal.SIG_BLOCK, set())) >= {signal.SIGINT,
                                                                                                signal.SIGTERM}
    with pytest.raises(ZeroDivisionError):
        call_with_signals_held(lambda: 1 / 0)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before


@pytest.mark.parametrize("reset,fetch", [(None, "all"), ("inside", "all"), ("first", "all"), (None, "hs")])
def test_lstm_layer_on_the_onednn_primitive_equals_the_reference(g, reset, fetch):
    from tfconf.engine.ops.rnn import lstm_layer

    rng = np.random.default_rng(8)
    T, N, C, H = 6, 4, 5, 8
    x = tc.placeholder(tc.float32, (T, None, C))
    w_x = tc.Variable(rng.uniform(-0.4, 0.4, (4 * H, C)).astype(np.float32))
    b = tc.Variable(rng.uniform(-0.3, 0.3, 4 * H).astype(np.float32))
    w_h = tc.Variable(rng.uniform(-0.4, 0.4, (4 * H, H)).astype(np.float32))
    mask_v = np.ones((T, N, 1), np.float32)
    if reset == "inside":
        mask_v[3, 2] = 0  # a reset inside the sequence: the reference kernel runs
    elif reset == "first":
        mask_v[0, 1] = 0  # a stream starting here: oneDNN starts it from a zero state
    mask = tc.placeholder(tc.float32, (T, None, 1))
    h0 = tc.constant(rng.standard_normal((N, H)).astype(np.float32))
    c0 = tc.constant(rng.standard_normal((N, H)).astype(np.float32))
    hs, h, c = lstm_layer(x, w_x, b, w_h, mask, h0, c0)
    loss = tc.reduce_sum(hs * hs) + (tc.reduce_sum(h * c) if fetch == "all" else 0.0)
    grads = tc.gradients(loss, [x, w_x, b, w_h, h0, c0])
    feeds = {x: rng.standard_normal((T, N, C)).astype(np.float32), mask: mask_v}
    fetches = [hs, h, c] + grads
    fast, ref = _sessions(g)
    with fast, ref:
        for s in (fast, ref):
            s.run(tc.global_variables_initializer())
        got = fast.run(fetches, feeds)
        want = ref.run(fetches, feeds)
        got2 = fast.run(fetches, feeds)  # the workspace and the weight buffers are reused
        types = fast.plan_info(fetches, feeds).kernels["types"]["onednn"]
    for a, bb, a2, what in zip(got, want, got2, ("hs", "h", "c", "dx", "dw_x", "db", "dw_h", "dh0", "dc0")):
        _close(a, bb, 2e-5, what)
        np.testing.assert_array_equal(a, a2, err_msg=what)
    assert types.get("LSTMLayer") == 1 and types.get("LSTMLayerGrad") == 1


@pytest.mark.parametrize("reset,fetch,H", [(None, "all", 8), ("inside", "all", 8), ("first", "all", 8), (None, "hs", 8),
                                           (None, "all", 64)])
def test_gru_layer_on_the_onednn_primitive_equals_the_reference(g, reset, fetch, H):
    # (H = 64: large enough that a freed temporary the primitive read was overwritten in time)
    from tfconf.engine.ops.rnn import gru_layer

    rng = np.random.default_rng(9)
    T, N, C = 6, 4, 5
    x = tc.placeholder(tc.float32, (T, None, C))
    w_x = tc.Variable(rng.uniform(-0.4, 0.4, (3 * H, C)).astype(np.float32))
    b_x = tc.Variable(rng.uniform(-0.3, 0.3, 3 * H).astype(np.float32))
    w_h = tc.Variable(rng.uniform(-0.4, 0.4, (3 * H, H)).astype(np.float32))
    b_h = tc.Variable(rng.uniform(-0.3, 0.3, 3 * H).astype(np.float32))
    mask_v = np.ones((T, N, 1), np.float32)
    if reset == "inside":
        mask_v[3, 2] = 0  # a reset inside the sequence: the reference kernel runs
    elif reset == "first":
        mask_v[0, 1] = 0  # a stream starting here: oneDNN starts it from a zero state
    mask = tc.placeholder(tc.float32, (T, None, 1))
    h0 = tc.constant(rng.standard_normal((N, H)).astype(np.float32))
    hs, h = gru_layer(x, w_x, b_x, w_h, b_h, mask, h0)
    loss = tc.reduce_sum(hs * hs) + (tc.reduce_sum(h * h * h) if fetch == "all" else 0.0)
    grads = tc.gradients(loss, [x, w_x, b_x, w_h, b_h, h0])
    feeds = {x: rng.standard_normal((T, N, C)).astype(np.float32), mask: mask_v}
    fetches = [hs, h] + grads
    fast, ref = _sessions(g)
    with fast, ref:
        for s in (fast, ref):
            s.run(tc.global_variables_initializer())
        got = fast.run(fetches, feeds)
        want = ref.run(fetches, feeds)
        got2 = fast.run(fetches, feeds)  # the workspace and the weight buffers are reused
        types = fast.plan_info(fetches, feeds).kernels["types"]["onednn"]
        kernels = [k for comp in fast._plans.values() for k in comp.kernel_plan._kernels.values()]
    for a, bb, a2, what in zip(got, want, got2, ("hs", "h", "dx", "dw_x", "db_x", "dw_h", "db_h", "dh0")):
        _close(a, bb, 2e-5, what)
        np.testing.assert_array_equal(a, a2, err_msg=what)
    assert types.get("GRULayer") == 1 and types.get("GRULayerGrad") == 1
    (fwd,) = [k for k in kernels if type(k).__name__ == "GRULayerForward"]
    if reset != "inside":  # the primitive ran (it was built for the shape)
        assert fwd.built and all(v is not None for v in fwd.built.values())


def test_lstm_layer_training_keeps_updating_its_weights_in_place(g):
    # the gradient kernel matches the forward's weight copies by id, holding no reference that
    # would stop the Momentum update working in place
    from tfconf.engine.ops.rnn import lstm_layer

    rng = np.random.default_rng(9)
    T, N, C, H = 5, 3, 4, 6
    x = tc.placeholder(tc.float32, (T, N, C))
    w_x = tc.Variable(rng.uniform(-0.4, 0.4, (4 * H, C)).astype(np.float32))
    w_h = tc.Variable(rng.uniform(-0.4, 0.4, (4 * H, H)).astype(np.float32))
    zeros = tc.constant(np.zeros((N, H), np.float32))
    hs, _, _ = lstm_layer(x, w_x, tc.constant(np.zeros(4 * H, np.float32)), w_h,
                          tc.constant(np.ones((T, N, 1), np.float32)), zeros, zeros)
    train = tc.train.MomentumOptimizer(0.1, 0.9).minimize(tc.reduce_sum(hs * hs), var_list=[w_x, w_h])
    feeds = {x: rng.standard_normal((T, N, C)).astype(np.float32)}
    with tc.Session(graph=g, config=tc.SessionConfig(kernels="onednn")) as s:
        s.run(tc.global_variables_initializer())
        s.run(train, feeds)
        store = s._ctx.variables
        ids = [id(store[v.op.name]) for v in (w_x, w_h)]
        before = [store[v.op.name].copy() for v in (w_x, w_h)]
        s.run(train, feeds)
        assert [id(store[v.op.name]) for v in (w_x, w_h)] == ids
        assert all(not np.array_equal(store[v.op.name], b) for v, b in zip((w_x, w_h), before))


def _in_threads(run, threads, repeat):
    """{k: [run(k) results]} from ``threads`` threads calling ``run(k)`` ``repeat`` times at once."""
    import threading

    got, errors = {k: [] for k in range(threads)}, []

    def work(k):
        try:
            for _ in range(repeat):
                got[k].append(run(k))
        except Exception as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return got


def test_lstm_layer_runs_an_empty_batch_and_concurrent_runs(g):
    from tfconf.engine.ops.rnn import lstm_layer

    rng = np.random.default_rng(10)
    T, C, H = 4, 3, 5
    x = tc.placeholder(tc.float32, (T, None, C))
    mask = tc.placeholder(tc.float32, (T, None, 1))
    h0 = tc.placeholder(tc.float32, (None, H))
    w_x = tc.constant(rng.uniform(-0.5, 0.5, (4 * H, C)).astype(np.float32))
    w_h = tc.constant(rng.uniform(-0.5, 0.5, (4 * H, H)).astype(np.float32))
    hs, _, _ = lstm_layer(x, w_x, tc.constant(np.zeros(4 * H, np.float32)), w_h, mask, h0, h0)
    grads = tc.gradients(tc.reduce_sum(hs * hs), [x, w_x, w_h])

    def feeds(n, seed):
        r = np.random.default_rng(seed)
        return {x: r.standard_normal((T, n, C)).astype(np.float32), mask: np.ones((T, n, 1), np.float32),
                h0: r.standard_normal((n, H)).astype(np.float32)}

    with tc.Session(graph=g, config=tc.SessionConfig(kernels="onednn")) as s:
        out = s.run([hs] + grads, feeds(0, 0))  # N = 0: the reference, no oneDNN error
        assert out[0].shape == (T, 0, H) and not out[2].any()
        want = [s.run([hs] + grads, feeds(3, k)) for k in range(4)]
        got = _in_threads(lambda k: s.run([hs] + grads, feeds(3, k)), 4, 8)
    for k in range(4):
        for run in got[k]:
            for a, b in zip(run, want[k]):
                np.testing.assert_array_equal(a, b)  # every run's own numbers, bit for bit


def test_concurrent_runs_of_a_conv_plan_give_each_run_its_own_numbers(g):
    # the kernels keep reorder buffers and primitives between calls: runs take turns through them
    rng = np.random.default_rng(11)
    x = tc.placeholder(tc.float32, (4, 16, 12, 12))
    w = tc.constant(rng.standard_normal((32, 16, 3, 3)).astype(np.float32))
    y = tc.nn.max_pool(tc.nn.relu(tc.nn.conv2d(x, w, padding="SAME")), 2, 2)
    grads = tc.gradients(tc.reduce_sum(y * y), [x])
    xs = [rng.standard_normal((4, 16, 12, 12)).astype(np.float32) for _ in range(4)]
    with tc.Session(graph=g, config=tc.SessionConfig(kernels="onednn")) as s:
        want = [s.run([y] + grads, {x: v}) for v in xs]
        got = _in_threads(lambda k: s.run([y] + grads, {x: xs[k]}), 4, 10)
    bad = [k for k in range(4) for run in got[k] for a, b in zip(run, want[k]) if not np.array_equal(a, b)]
    assert not bad
