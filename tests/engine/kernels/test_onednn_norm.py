"""The oneDNN provider's LRN, LRN gradient and softmax (kernels/onednn/norm.py) against
the numpy reference kernels: standalone on randomized shapes (channel counts that are and are not
multiples of 8 and 16, both radii oneDNN serves, plain, channel-blocked and NHWC inputs), and inside
Session plans against the same graph run with ``kernels="numpy"`` (a conv -> relu -> pool -> LRN
chain that stays blocked, plans mixing oneDNN and numpy kernels, float64 on the reference).

float32 tolerances, relative to the largest magnitude of the float64 reference: LRN forward and
gradient 2e-6 (oneDNN's jit kernels sum the window and raise to -0.75 through square roots in
float32 like numpy, but in another order; measured errors are 1e-7 to 5e-7); softmax 2e-6, and
elementwise within the op tests' float32 tolerance (1e-6 + 1e-5 * |y|: oneDNN's vectorised exp is
as accurate as numpy's there; its log-softmax is not, so LogSoftmax has no oneDNN kernel). Whole
plans with convolutions in them: 2e-5, as in test_onednn.py. Where a kernel runs the reference instead, results are
bit-identical to the numpy plan.
"""

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine.kernels.onednn import lib as L

from test_onednn import _run_both as run_both  # same folder (rootdir import mode)

pytestmark = pytest.mark.skipif(not L.available(), reason=f"oneDNN unavailable: {L.unavailable_reason()}")

LRN_TOL = 2e-6
SOFTMAX_TOL = 2e-6
PLAN_TOL = 2e-5


def _close(a, b, rel, what=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} against {b.shape}"
    scale = max(float(np.abs(b).max()), 1e-6)
    err = float(np.abs(a.astype(np.float64) - b).max())
    assert err <= rel * scale, f"{what}: max error {err:.3g} against scale {scale:.3g}"


def _plain(v):
    from tfconf.engine.kernels.onednn.tensors import to_plain

    return to_plain(v)


# ---------------------------------------------------------------------------- standalone LRN
def _ref_lrn(x, r, bias, alpha, beta):
    from tfconf.engine.kernels.lrn import lrn

    return lrn(np, np.asarray(x, np.float64), r, bias, alpha, beta)


def _ref_lrn_grad(x, dy, r, bias, alpha, beta):
    from tfconf.engine.kernels.lrn import lrn, lrn_grad

    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    return lrn_grad(np, x, lrn(np, x, r, bias, alpha, beta), dy, r, bias, alpha, beta)


def _kernels(r, bias, alpha, beta, training=True, blocked_out=False):
    from tfconf.engine.kernels import lrn as ref
    from tfconf.engine.kernels.onednn.norm import LRNBackward, LRNForward

    f = LRNForward(lambda x: ref.lrn(np, x, r, bias, alpha, beta), r, bias, alpha, beta, training=training,
                   blocked_out=blocked_out)
    b = LRNBackward(lambda x, y, dy: ref.lrn_grad(np, x, y, dy, r, bias, alpha, beta), r, bias, alpha, beta,
                    forward=f, blocked_out=blocked_out)
    return f, b


def _as_layout(x, layout):
    """x as a plain array, a Blocked value in the layout a convolution leaves it in, or NHWC."""
    from tfconf.engine.kernels.onednn import kernels as K
    from tfconf.engine.kernels.onednn.tensors import Blocked

    if layout == "plain":
        return x
    shape = x.shape
    if layout == "nhwc":
        md = K.activation_md(shape, True)
        buf = L.empty_bytes(md.nbytes)
        buf.view(np.float32)[:] = x.transpose(0, 2, 3, 1).ravel()
        return Blocked(shape, md, buf)
    c = shape[1]  # "conv": an identity 1x1 convolution's output in the layout oneDNN picks for it
    w = np.zeros((c, c, 1, 1), np.float32)
    w[np.arange(c), np.arange(c)] = 1
    conv = K.ConvForward(None, (1, 1), lambda hw, khw: (0, 0, 0, 0), (1, 1), 1, False, False, blocked_out=True)
    v = conv(x, w)
    np.testing.assert_array_equal(_plain(v), x)
    return v


def _lrn_cases(n=30, seed=11):
    rng = np.random.default_rng(seed)
    channels = [1, 2, 3, 5, 7, 8, 13, 16, 20, 24, 33, 50, 64, 96]
    cases = []
    for i in range(n):
        c = channels[i % len(channels)]
        shape = (int(rng.integers(1, 4)), c, int(rng.integers(1, 9)), int(rng.integers(1, 9)))
        cases.append((shape, int(rng.integers(1, 3)), float(rng.uniform(0.5, 2.5)), float(rng.uniform(1e-3, 0.5)),
                      ("plain", "conv", "nhwc")[i % 3]))
    cases += [((2, 96, 27, 27), 2, 1.0, 1e-4, "conv"),   # CaffeNet's norm1 (alpha 1e-4 = Caffe's 5e-4 / 5)
              ((2, 256, 13, 13), 2, 1.0, 1e-4, "conv"),  # and norm2
              ((2, 96, 27, 27), 2, 1.0, 1e-4, "plain")]
    return cases


@pytest.mark.parametrize("shape,r,bias,alpha,layout", _lrn_cases())
def test_lrn_kernels_against_the_reference(shape, r, bias, alpha, layout):
    rng = np.random.default_rng(abs(hash((shape, r, layout))) % 2**32)
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    f, b = _kernels(r, bias, alpha, 0.75, training=True, blocked_out=layout != "plain")
    xv = _as_layout(x, layout)
    y = f(xv)
    dx = b(xv, y, _as_layout(dy, layout))
    assert f.declined is None and b.declined is None, (f.declined, b.declined)
    _close(_plain(y), _ref_lrn(x, r, bias, alpha, 0.75), LRN_TOL, "y")
    _close(_plain(dx), _ref_lrn_grad(x, dy, r, bias, alpha, 0.75), LRN_TOL, "dx")
    assert b.reused in (True, None)  # the forward's workspace, where oneDNN keeps one
    # a second run with other values: nothing stale is kept between runs
    x2 = rng.standard_normal(shape).astype(np.float32)
    xv2 = _as_layout(x2, layout)
    y2 = f(xv2)
    _close(_plain(b(xv2, y2, dy)), _ref_lrn_grad(x2, dy, r, bias, alpha, 0.75), LRN_TOL, "dx, second run")


@pytest.mark.parametrize("layout", ["plain", "conv", "nhwc"])
def test_lrn_inference_forward_and_a_gradient_without_its_forward(layout):
    rng = np.random.default_rng(3)
    shape, r, bias, alpha = (2, 32, 5, 6), 2, 1.3, 0.2
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    f, _ = _kernels(r, bias, alpha, 0.75, training=False)
    _, b = _kernels(r, bias, alpha, 0.75)
    b.forward = None  # the plan runs LRNGrad without the LRN (y fed): a forward of its own
    y = f(_as_layout(x, layout))
    assert f.last is None and f.declined is None
    _close(_plain(y), _ref_lrn(x, r, bias, alpha, 0.75), LRN_TOL, "y")
    dx = b(_as_layout(x, layout), _ref_lrn(x, r, bias, alpha, 0.75).astype(np.float32), dy)
    _close(_plain(dx), _ref_lrn_grad(x, dy, r, bias, alpha, 0.75), LRN_TOL, "dx")


def test_lrn_layout_rule():
    from tfconf.engine.kernels.onednn import kernels as K
    from tfconf.engine.kernels.onednn.norm import lrn_layout, lrn_parameters

    shape = (2, 20, 4, 4)
    nhwc = K.activation_md(shape, True)
    p3, p5 = lrn_parameters(1, 1.0, 1e-4, 0.75), lrn_parameters(2, 1.0, 1e-4, 0.75)
    # plain NCHW has no oneDNN LRN backward: a training LRN computes in NHWC
    assert lrn_layout(shape, None, p5, True) == nhwc
    assert lrn_layout((2, 16, 4, 4), None, p5, False) == L.MemoryDesc.plain((2, 16, 4, 4))
    assert lrn_layout(shape, nhwc, p3, True) == nhwc
    # beta other than 0.75: only oneDNN's reference implementation, left to numpy
    assert lrn_layout(shape, None, lrn_parameters(2, 1.0, 1e-4, 0.5), True) is None


def test_lrn_parameter_mapping():
    # oneDNN divides alpha by its window size (local_size = 2r + 1) and adds k = bias
    from tfconf.engine.kernels.onednn.norm import lrn_parameters

    assert lrn_parameters(2, 1.5, 1e-4, 0.75) == (5, 1.5, pytest.approx(5e-4), 0.75)
    assert lrn_parameters(1, 2.0, 0.3, 0.75) == (3, 2.0, pytest.approx(0.9), 0.75)


def test_lrn_kernels_fall_back_to_the_reference():
    rng = np.random.default_rng(5)
    shape = (2, 8, 3, 3)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    f, b = _kernels(2, 1.0, 0.1, 0.5)  # beta 0.5: oneDNN's reference only
    y = f(x)
    dx = b(x, y, dy)
    assert "reference" in f.declined and "reference" in b.declined
    from tfconf.engine.kernels.lrn import lrn, lrn_grad

    np.testing.assert_array_equal(y, lrn(np, x, 2, 1.0, 0.1, 0.5))
    np.testing.assert_array_equal(dx, lrn_grad(np, x, y, dy, 2, 1.0, 0.1, 0.5))
    f, b = _kernels(1, 1.0, 0.1, 0.75)
    x64 = x.astype(np.float64)  # a float64 array reaching the kernel: the reference, in float64
    assert f(x64).dtype == np.float64


# ---------------------------------------------------------------------------- standalone softmax
def _ref_softmax(x, axis, log=False):
    from tfconf.engine.ops.nn import LogSoftmax, Softmax

    return (LogSoftmax if log else Softmax).forward(np, np.asarray(x, np.float64), axis=axis)


def _softmax_kernel(axis):
    from tfconf.engine.kernels.onednn.norm import SoftmaxForward
    from tfconf.engine.ops.nn import Softmax

    return SoftmaxForward(lambda x: Softmax.forward(np, x, axis=axis), axis)


def _softmax_cases():
    rng = np.random.default_rng(21)
    cases = [((64, 10), -1), ((100, 10), 1), ((1600, 98), 1), ((32, 1000), -1), ((3, 1), 1), ((1, 7), 1),
             ((2, 3, 5), 2), ((5, 7, 1), 1), ((4, 3, 1, 1), 1)]
    for _ in range(6):
        rank = int(rng.integers(1, 5))
        shape = tuple(int(rng.integers(1, 40)) for _ in range(rank))
        cases.append((shape, rank - 1))
    return cases


@pytest.mark.parametrize("scale", [1.0, 10.0])
@pytest.mark.parametrize("shape,axis", _softmax_cases())
def test_softmax_kernel_against_the_reference(shape, axis, scale):
    rng = np.random.default_rng(abs(hash((shape, axis))) % 2**32)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    k = _softmax_kernel(axis)
    y = k(x)
    assert k.declined is None, k.declined
    assert type(y) is np.ndarray and y.dtype == np.float32 and y.shape == shape
    want = _ref_softmax(x, axis)
    _close(y, want, SOFTMAX_TOL, "softmax")
    # elementwise too, as the op tests check float32 (small probabilities keep their digits)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    # a non-contiguous view of the same numbers gives the same result
    if len(shape) >= 2 and shape[0] > 1:
        xt = np.asfortranarray(x)
        np.testing.assert_array_equal(k(xt), y)


def test_softmax_extreme_logits():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, 0.0], [-np.inf, 0.0, 1.0],
                  [88.0, -88.0, 0.0], [-200.0, -100.0, -300.0]], np.float32)
    y = _softmax_kernel(-1)(x)
    np.testing.assert_allclose(y, _ref_softmax(x, -1), rtol=2e-6, atol=1e-7)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("shape,axis", [((64, 10), 0), ((4, 5, 7), 1), ((8, 21, 4, 4), 1)])
def test_softmax_along_an_outer_axis_runs_the_reference(shape, axis):
    from tfconf.engine.ops.nn import Softmax

    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    k = _softmax_kernel(axis)
    np.testing.assert_array_equal(k(x), Softmax.forward(np, x, axis=axis))
    assert "reference" in k.declined


# ---------------------------------------------------------------------------- inside plans
def _run_both(g, fetches, feeds):
    return run_both(g, fetches, feeds, kernels=True)


def _of(kernels, cls_name):
    return [k for k in kernels if type(k).__name__ == cls_name]


@pytest.mark.parametrize("c,r", [(96, 2), (20, 2), (16, 1), (50, 1), (7, 2)])
def test_conv_relu_pool_lrn_chain_stays_blocked(g, c, r):
    # CaffeNet's stage: conv -> relu -> max pool -> LRN -> conv, forward and every gradient
    rng = np.random.default_rng(c)
    x = tc.placeholder(tc.float32, (3, 3, 15, 15))
    w1 = tc.constant(rng.standard_normal((c, 3, 3, 3)).astype(np.float32) * 0.4)
    b1 = tc.constant(rng.standard_normal(c).astype(np.float32) * 0.1)
    w2 = tc.constant(rng.standard_normal((8, c, 3, 3)).astype(np.float32) * 0.1)
    h = tc.nn.max_pool(tc.nn.relu(tc.nn.bias_add(tc.nn.conv2d(x, w1, padding=1), b1)), 3, 2, ceil_mode=True)
    n = tc.nn.lrn(h, depth_radius=r, bias=1.0, alpha=0.05, beta=0.75)
    z = tc.nn.conv2d(n, w2, padding=1)
    rz = tc.constant(rng.standard_normal(z.shape.as_list()).astype(np.float32))
    grads = tc.gradients(tc.reduce_sum(z * rz), [x, w1, b1, w2])
    xv = rng.standard_normal((3, 3, 15, 15)).astype(np.float32)
    got, want, info, kernels = _run_both(g, [z] + grads, {x: xv})
    for a, b, name in zip(got, want, ("z", "dx", "dw1", "db1", "dw2")):
        assert type(a) is np.ndarray and a.dtype == np.float32 and a.flags.c_contiguous, name
        _close(a, b, PLAN_TOL, name)
    types = info.kernels["types"]["onednn"]
    assert types.get("LRN") == 1 and types.get("LRNGrad") == 1, types
    assert not info.kernels["fallbacks"], info.kernels["fallbacks"]
    (fwd,), (bwd,) = _of(kernels, "LRNForward"), _of(kernels, "LRNBackward")
    # the pool's output reached the LRN in oneDNN's layout (its key holds the layout), and the
    # gradient took the forward's workspace
    assert fwd.training and all(key[1] is not None for key in fwd._by_shape), fwd._by_shape
    assert bwd.forward is fwd and bwd.reused is True
    assert info.kernels["blocked_tensors"] >= 6


def test_lrn_output_fetched_is_plain(g):
    rng = np.random.default_rng(1)
    x = tc.placeholder(tc.float32, (2, 3, 8, 8))
    w = tc.constant(rng.standard_normal((32, 3, 3, 3)).astype(np.float32))
    h = tc.nn.relu(tc.nn.conv2d(x, w, padding=1))
    n = tc.nn.lrn(h, 2, 2.0, 1e-3, 0.75)
    dx = tc.gradients(tc.reduce_sum(tc.square(n)), x)[0]
    xv = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    got, want, info, _ = _run_both(g, [h, n, dx], {x: xv})
    for a, b in zip(got, want):
        assert type(a) is np.ndarray and a.dtype == np.float32
        _close(a, b, PLAN_TOL)


@pytest.mark.parametrize("dynamic", [False, True])
def test_lrn_alone_on_a_fed_array(g, dynamic):
    # plain input fed by the user: the kernel reorders to NHWC and back; shapes known only at run time too
    rng = np.random.default_rng(7)
    shapes = [(2, 12, 5, 4), (1, 33, 3, 7)]
    x = tc.placeholder(tc.float32, (None, None, None, None) if dynamic else shapes[0])
    y = tc.nn.lrn(x, 1, 1.2, 0.2, 0.75)
    dy = tc.placeholder(tc.float32, (None, None, None, None) if dynamic else shapes[0])
    dx = tc.gradients(y, x, grad_ys=dy)[0]
    for shape in shapes if dynamic else shapes[:1]:
        xv, dyv = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
        (yg, dxg), _, info, _ = _run_both(g, [y, dx], {x: xv, dy: dyv})
        _close(yg, _ref_lrn(xv, 1, 1.2, 0.2, 0.75), LRN_TOL, "y")
        _close(dxg, _ref_lrn_grad(xv, dyv, 1, 1.2, 0.2, 0.75), LRN_TOL, "dx")
        assert info.kernels["types"]["onednn"] == {"LRN": 1, "LRNGrad": 1}


def test_plan_mixing_onednn_and_numpy_kernels_equals_the_numpy_plan(g):
    rng = np.random.default_rng(9)
    x = tc.placeholder(tc.float32, (4, 16, 6, 6))
    w = tc.constant(rng.standard_normal((24, 16, 3, 3)).astype(np.float32) * 0.2)
    h = tc.nn.conv2d(x, w, padding=1)
    a = tc.nn.lrn(h, 2, 1.0, 0.1, 0.75)          # oneDNN
    b = tc.nn.lrn(h, 2, 1.0, 0.1, 0.5)           # beta 0.5: numpy
    c = tc.nn.lrn(tc.tanh(h), 3, 1.0, 0.1, 0.75)  # local_size 7: numpy
    flat = tc.reshape(a + b + c, [4, 24 * 36])
    wf = tc.constant(rng.standard_normal((24 * 36, 10)).astype(np.float32) * 0.05)
    logits = tc.matmul(flat, wf)
    p = tc.nn.softmax(logits)                    # oneDNN (last axis)
    q = tc.nn.softmax(logits, axis=0)            # numpy (outer axis)
    ls = tc.nn.log_softmax(logits)               # numpy (no oneDNN kernel)
    loss = tc.reduce_sum(p * q) + tc.reduce_sum(ls)
    grads = tc.gradients(loss, [x, w, wf])
    xv = rng.standard_normal((4, 16, 6, 6)).astype(np.float32)
    fetches = [p, q, ls, loss] + grads
    got, want, info, _ = _run_both(g, fetches, {x: xv})
    for u, v, name in zip(got, want, ("p", "q", "ls", "loss", "dx", "dw", "dwf")):
        _close(u, v, PLAN_TOL, name)
    k = info.kernels
    assert k["types"]["onednn"]["LRN"] == 1 and k["types"]["onednn"]["Softmax"] == 1
    assert "LogSoftmax" not in k["types"]["onednn"] and k["types"]["onednn"]["LRNGrad"] == 1
    assert "local_size 7" in k["declined"]["LRN"] or "beta 0.5" in k["declined"]["LRN"]
    assert "outer axis" in k["declined"]["Softmax"]


def test_declined_lrn_parameters_say_why(g):
    x = tc.placeholder(tc.float32, (1, 4, 3, 3))
    xv = np.random.default_rng(0).standard_normal((1, 4, 3, 3)).astype(np.float32)
    for r, beta, why in ((0, 0.75, "local_size 1"), (3, 0.75, "local_size 7"), (2, 0.5, "beta 0.5")):
        y = tc.nn.lrn(x, r, 1.0, 0.1, beta)
        (yg,), (yw,), info, _ = _run_both(g, [y], {x: xv})
        np.testing.assert_array_equal(yg, yw)
        assert why in info.kernels["declined"]["LRN"], info.kernels["declined"]


def test_softmax_in_a_plan(g):
    rng = np.random.default_rng(4)
    x = tc.placeholder(tc.float32, (None, 10))
    y, ly = tc.nn.softmax(x), tc.nn.log_softmax(x)
    dy = tc.placeholder(tc.float32, (None, 10))
    gx = tc.gradients([y, ly], x, grad_ys=[dy, dy])[0]  # composite gradients read the oneDNN outputs
    for n in (64, 100, 1):
        xv = (rng.standard_normal((n, 10)) * 3).astype(np.float32)
        dyv = rng.standard_normal((n, 10)).astype(np.float32)
        (yg, lyg, gg), (yw, lyw, gw), info, _ = _run_both(g, [y, ly, gx], {x: xv, dy: dyv})
        _close(yg, _ref_softmax(xv, -1, False), SOFTMAX_TOL, "softmax")
        _close(lyg, _ref_softmax(xv, -1, True), SOFTMAX_TOL, "log_softmax")
        _close(gg, gw, 1e-5, "gradient")
        assert info.kernels["types"]["onednn"] == {"Softmax": 1}
        assert all(type(v) is np.ndarray for v in (yg, lyg, gg))


def test_float64_stays_on_the_reference(g):
    x = tc.placeholder(tc.float64, (2, 4, 3, 3))
    z = tc.placeholder(tc.float64, (3, 5))
    y = tc.nn.lrn(x, 2, 1.0, 0.1, 0.75)
    dx = tc.gradients(tc.reduce_sum(y * y), x)[0]
    s, ls = tc.nn.softmax(z), tc.nn.log_softmax(z)
    rng = np.random.default_rng(0)
    feeds = {x: rng.standard_normal((2, 4, 3, 3)), z: rng.standard_normal((3, 5))}
    got, want, info, _ = _run_both(g, [y, dx, s, ls], feeds)
    for u, v in zip(got, want):
        assert u.dtype == np.float64
        np.testing.assert_array_equal(u, v)
    k = info.kernels
    assert k["kernels"] == {}
    for t in ("LRN", "LRNGrad", "Softmax"):
        assert "float64" in k["declined"][t], k["declined"]
