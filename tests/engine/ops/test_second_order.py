"""Second derivatives: gradients are graph ops, so the gradient of a gradient is checked numerically
(central differences of the first-gradient graph) with respect to the inputs and the cotangents.
Differentiating w.r.t. the cotangent checks the gradient rules of the gradient ops themselves
(ReluGrad, GatherGrad, TileGrad, GetItemGrad, SumToShape, Conv2DBackpropInput/Filter, ...)."""

import numpy as np
import pytest

import tfconf as tc
from tests.engine.harness import away_from, check_op, distinct

from .test_math_ops import BINARY, UNARY, _binary_inputs
from .test_nn_ops import np_conv2d, np_conv2d_transpose, np_log_softmax, np_pool, np_sparse_xent

#: the op types whose gradients this module's tests check through the harness (conftest.py
#: verifies the claim, and fails collection when an op type with a gradient is in no module's)
GRAD_CHECKS = frozenset({
    "AvgPoolGrad", "GatherGrad", "GetItemGrad", "ReluGrad", "TileGrad"
})

RNG = np.random.default_rng(4)


def rand(*shape):
    return RNG.standard_normal(shape)


def check2(build, inputs, expected=None, **kw):
    """Forward in float64 only, then first and second derivatives."""
    return check_op(build, inputs, expected, second_order=True, dtypes=(tc.float64,), **kw)


# ---------------------------------------------------------------------------- closed forms
def test_hessian_of_cubic_and_mixed_partials():
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float64, [3])
        y = tc.placeholder(tc.float64, [3])
        f = tc.reduce_sum(x * x * x + x * y * y)
        (dx,) = tc.gradients(f, [x])                 # 3x² + y²
        dxx, dxy = tc.gradients(dx, [x, y])          # Σ over the outputs: 6x, 2y
        (d3,) = tc.gradients(dxx, [x])               # 6
        with tc.Session() as s:
            vs = s.run([dx, dxx, dxy, d3], {x: [1.0, -2.0, 0.5], y: [3.0, 0.0, -1.0]})
    np.testing.assert_allclose(vs[0], [12.0, 12.0, 1.75])
    np.testing.assert_allclose(vs[1], [6.0, -12.0, 3.0])
    np.testing.assert_allclose(vs[2], [6.0, 0.0, -2.0])
    np.testing.assert_allclose(vs[3], [6.0, 6.0, 6.0])


def test_hessian_of_matmul_quadratic_form():
    a = rand(3, 3)
    x0 = rand(3, 1)
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float64, [3, 1])
        f = tc.matmul(x, tc.matmul(tc.constant(a), x), transpose_a=True)   # xᵀAx
        (gx,) = tc.gradients(f, [x])
        rows = [tc.gradients(gx[i, 0], [x])[0] for i in range(3)]
        with tc.Session() as s:
            gv, hv = s.run([gx, rows], {x: x0})
    np.testing.assert_allclose(gv, (a + a.T) @ x0)
    np.testing.assert_allclose(np.concatenate(hv, axis=1).T, a + a.T)


# ---------------------------------------------------------------------------- elementwise
SMOOTH_UNARY = [u for u in UNARY if u[1] not in (np.sign, np.floor, np.ceil, np.rint)]


@pytest.mark.parametrize("fn,ref,sample,kinks", SMOOTH_UNARY, ids=lambda v: getattr(v, "__name__", None))
def test_unary_second_order(fn, ref, sample, kinks):
    check2(fn, [sample()], ref, kinks=kinks)


@pytest.mark.parametrize("name,fn,ref,kind", BINARY, ids=[b[0] for b in BINARY])
def test_binary_second_order_with_broadcasting(name, fn, ref, kind):
    a, b = _binary_inputs(kind, (3, 1, 2), (2, 2))
    check2(fn, [a, b], ref)
    check2(fn, [a, b], ref, dynamic=True)


def test_where_and_cast_second_order():
    c = np.array([[True], [False], [True]])
    check2(lambda c_, a, b: tc.where(c_, a * a, b * a), [c, rand(3, 2), rand(2)],
           lambda c_, a, b: np.where(c_, a * a, b * a))
    check_op(lambda a: tc.cast(tc.cast(a, tc.float32) * tc.cast(a, tc.float32), tc.float64), [rand(3)],
             lambda a: a * a, dtypes=(tc.float64,), rtol64=1e-6, second_order=True, eps=1e-3,
             grad_rtol=1e-3, grad_atol=1e-3, eps2=1e-2, grad2_rtol=1e-3, grad2_atol=1e-3)


# ---------------------------------------------------------------------------- matmul
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_second_order(ta, tb):
    a = rand(*((3, 2) if ta else (2, 3)))
    b = rand(*((4, 3) if tb else (3, 4)))
    check2(lambda x, y: tc.matmul(x, y, transpose_a=ta, transpose_b=tb), [a, b],
           lambda x, y: (x.T if ta else x) @ (y.T if tb else y))


def test_batched_matmul_second_order():
    check2(tc.matmul, [rand(2, 1, 2, 3), rand(3, 3, 2)], np.matmul)
    check2(lambda x: tc.matmul(x, x, transpose_b=True), [rand(2, 2, 3)], lambda x: x @ np.swapaxes(x, -1, -2))


# ---------------------------------------------------------------------------- reductions
@pytest.mark.parametrize("axis,keepdims", [(None, False), (1, False), ((0, 2), True), (-1, True)], ids=str)
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
def test_reduction_second_order(name, axis, keepdims):
    fn = getattr(tc, f"reduce_{name}")
    x = rand(2, 3, 2)
    # square inside so the first gradient depends on x
    check2(lambda t: fn(t * t, axis=axis, keepdims=keepdims), [x],
           lambda a: getattr(np, name)(a * a, axis=axis, keepdims=keepdims),
           kinks=lambda v: distinct(v, gap=0.1) + 0.3 if name in ("max", "min") else v)


def test_reduction_second_order_dynamic():
    check2(lambda t: tc.reduce_mean(t * t, axis=0), [rand(3, 2)], lambda a: (a * a).mean(0), dynamic=True)
    check2(lambda t: tc.reduce_sum(t * t, axis=1, keepdims=True), [rand(3, 2)],
           lambda a: (a * a).sum(1, keepdims=True), dynamic=True)


# ---------------------------------------------------------------------------- array ops
def test_array_ops_second_order():
    x = rand(2, 3)
    check2(lambda t: tc.reshape(t * t, [3, 2]), [x], lambda a: (a * a).reshape(3, 2))
    check2(lambda t: tc.transpose(t * t), [x], lambda a: (a * a).T)
    check2(lambda t: tc.expand_dims(t * t, 1), [x], lambda a: (a * a)[:, None])
    check2(lambda t: tc.squeeze(t * t), [rand(2, 1, 3)], lambda a: np.squeeze(a * a))
    check2(lambda t, u: tc.concat([t * u, u], 0), [x, rand(2, 3)], lambda a, b: np.concatenate([a * b, b], 0))
    check2(lambda t: [p * p for p in tc.split(t, [1, 2], axis=1)], [x], lambda a: [a[:, :1] ** 2, a[:, 1:] ** 2])
    check2(lambda t: tc.stack([t, t * t], 1), [x], lambda a: np.stack([a, a * a], 1))
    check2(lambda t: tc.tile(t * t, [2, 2]), [x], lambda a: np.tile(a * a, (2, 2)))
    check2(lambda t: tc.pad(t * t, [[1, 0], [2, 1]]), [x], lambda a: np.pad(a * a, [[1, 0], [2, 1]]))
    check2(lambda t: (t * t)[::-1, None, 1:], [x], lambda a: (a * a)[::-1, None, 1:])
    check2(lambda t: tc.broadcast_to(t * t, [2, 2, 3]), [x], lambda a: np.broadcast_to(a * a, (2, 2, 3)))
    check2(lambda t: tc.add_n([t * t, t, t]), [x], lambda a: a * a + 2 * a)
    check2(lambda t: tc.identity(t * t), [x], lambda a: a * a)
    check2(lambda t: tc.placeholder_with_default(t * t, [2, 3]), [x], lambda a: a * a)
    check2(lambda v: tc.fill([2, 2], v * v), [np.float64(0.7)], lambda v: np.full((2, 2), v * v))


def test_gather_second_order_repeated_indices():
    params = rand(4, 3)
    idx = np.array([[1, 1], [3, 1]], dtype=np.int32)
    check2(lambda p, i: tc.gather(p * p, i), [params, idx], lambda p, i: (p * p)[i])
    check2(lambda p, i: tc.gather(p * p, i, axis=1), [params, np.array([2, 2, 0], np.int32)],
           lambda p, i: (p * p)[:, i])


# ---------------------------------------------------------------------------- nn ops
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_log_softmax_second_order(axis):
    x = rand(3, 4)
    check2(lambda t: tc.nn.softmax(t, axis), [x], lambda a: np.exp(np_log_softmax(a, axis)))
    check2(lambda t: tc.nn.log_softmax(t, axis), [x], lambda a: np_log_softmax(a, axis))


def test_cross_entropies_second_order():
    logits, labels = rand(3, 4), np.array([0, 3, 3], dtype=np.int32)
    check2(lambda x, y: tc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
           [logits, labels], np_sparse_xent)
    z = RNG.uniform(0, 1, size=(3, 4))
    check2(lambda x, t: tc.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=x), [logits, z],
           lambda x, t: np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))), kinks=[0.0])


CONV2 = [
    ((1, 2, 4, 4), (3, 2, 2, 2), (1, 1), "VALID", (1, 1), 1),
    ((1, 2, 5, 4), (2, 2, 3, 3), (2, 2), "SAME", (1, 1), 1),
    ((1, 4, 4, 4), (4, 2, 2, 2), (1, 2), 1, (2, 1), 2),
]


@pytest.mark.parametrize("case", CONV2, ids=lambda c: f"x{c[0]}-s{c[2]}-p{c[3]}-d{c[4]}-g{c[5]}".replace(" ", ""))
def test_conv2d_second_order(case):
    xs, ws, s, p, d, g = case
    check2(lambda x, w: tc.nn.conv2d(x, w, strides=s, padding=p, dilations=d, groups=g),
           [rand(*xs), rand(*ws)], lambda x, w: np_conv2d(x, w, s, p, d, g))


def test_conv2d_transpose_second_order():
    dy, w = rand(1, 2, 3, 3), rand(2, 3, 3, 3)
    out = (1, 3, 5, 6)
    check2(lambda a, b: tc.nn.conv2d_transpose(a, b, out, strides=2, padding="SAME"), [dy, w],
           lambda a, b: np_conv2d_transpose(a, b, out, (2, 2), "SAME"))


def test_conv2d_with_nonlinearity_second_order():
    """conv(x, w)² makes the first gradient depend on x and w, so d²/dx dw is non-trivial."""
    x, w = rand(1, 2, 4, 4), rand(2, 2, 3, 3)
    check2(lambda a, b: tc.square(tc.nn.conv2d(a, b, padding=1)), [x, w],
           lambda a, b: np_conv2d(a, b, (1, 1), 1) ** 2)


def test_pooling_second_order():
    x = rand(1, 2, 5, 5)
    check2(lambda t: tc.nn.avg_pool(t * t, 3, 2, padding=1, ceil_mode=True), [x],
           lambda a: np_pool(a * a, (3, 3), (2, 2), 1, True, "avg", True))
    check2(lambda t: tc.nn.avg_pool(t, 2, 2, padding="SAME"), [x],
           lambda a: np_pool(a, (2, 2), (2, 2), "SAME", False, "avg", False))


def test_moments_and_l2_loss_second_order():
    x = rand(4, 3)
    check2(lambda t: tc.nn.moments(t, [0]), [x], lambda a: (a.mean(0), a.var(0)))
    check2(tc.nn.l2_loss, [x], lambda a: (a * a).sum() / 2)
    check2(lambda t, b: tc.nn.bias_add(t * t, b), [rand(2, 3, 2, 2), rand(3)],
           lambda a, b: a * a + b[None, :, None, None])


def test_relu_second_order_through_relugrad():
    x = away_from(rand(3, 4), [0.0], 0.1)
    check2(lambda t: tc.nn.relu(t) * t, [x], lambda a: np.maximum(a, 0) * a)
