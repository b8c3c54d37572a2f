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


def _run_both(g, fetches, feeds):
    fast, ref = _sessions(g)
    with fast, ref:
        got = fast.run(fetches, feeds)
        want = ref.run(fetches, feeds)
        info = fast.plan_info(fetches, feeds)
    return got, want, info


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
@pytest.mark.parametrize("m,k,n", [(64, 800, 500), (8, 300, 2000), (3, 5, 7)])
def test_matmul_split_over_the_cores(g, ta, tb, m, k, n):
    # inside a plan that holds the cores (a convolution is there), products run split over threads
    rng = np.random.default_rng(4)
    a = tc.placeholder(tc.float32, (k, m) if ta else (m, k))
    b = tc.constant(rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32))
    z = tc.matmul(a, b, transpose_a=ta, transpose_b=tb)
    x = tc.placeholder(tc.float32, (1, 2, 6, 6))
    pooled = tc.nn.max_pool(x, 2, 2)
    av = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    feeds = {a: av, x: np.ones((1, 2, 6, 6), np.float32)}
    (zg, _), (zw, _), info = _run_both(g, [z, pooled], feeds)
    np.testing.assert_allclose(zg, zw, rtol=2e-5, atol=2e-5 * np.abs(zw).max())
    assert info.kernels["types"]["onednn"].get("MatMul") == 1


def test_a_plan_of_products_alone_keeps_blas_threads(g):
    a = tc.placeholder(tc.float32, (4, 3))
    z = tc.matmul(a, tc.constant(np.ones((3, 2), np.float32)))
    with tc.Session(graph=g, config=tc.SessionConfig(kernels="onednn")) as s:
        assert s.plan_info(z, {a: np.ones((4, 3), np.float32)}).kernels["kernels"] == {}


def test_split_matmul_directly(monkeypatch):
    from tfconf.engine import threads

    rng = np.random.default_rng(0)
    monkeypatch.setattr(threads, "SPLIT_MIN_MACS", 1)
    with threads.onednn_owns_cores():
        monkeypatch.setattr(threads, "_parts", 3)
        for shape_a, shape_b in (((10, 7), (7, 40)), ((40, 7), (7, 10)), ((5, 2), (2, 5))):
            x, y = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
            np.testing.assert_allclose(threads.matmul(x, y), x @ y, rtol=1e-12)
            np.testing.assert_allclose(threads.matmul(x.T.copy().T, y), x @ y, rtol=1e-12)
