"""Reductions: sum, mean, max, min, prod (axes, negative axes, keepdims), argmax, argmin."""

import numpy as np
import pytest

import tfconf as tc
from tests.engine.harness import check_op, distinct, run

#: the op types whose gradients this module's tests check through the harness (conftest.py
#: verifies the claim, and fails collection when an op type with a gradient is in no module's)
GRAD_CHECKS = frozenset({
    "Max", "Mean", "Min", "Prod", "Sum"
})

RNG = np.random.default_rng(1)

AXES = [None, 0, 1, -1, (0, 2), [2, 0], (0, 1, 2)]


def _np_axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "prod"])
def test_reductions(name, axis, keepdims):
    fn = getattr(tc, f"reduce_{name}")
    ref = getattr(np, name)
    x = RNG.uniform(-2, 2, size=(2, 3, 4))
    kinks = None
    if name in ("max", "min"):
        kinks = distinct  # no ties inside a reduction group
    elif name == "prod":
        x = RNG.uniform(0.5, 1.5, size=(2, 3, 4)) * RNG.choice([-1, 1], size=(2, 3, 4))
    check_op(lambda t: fn(t, axis=axis, keepdims=keepdims), [x],
             lambda a: ref(a, axis=_np_axis(axis), keepdims=keepdims), kinks=kinks)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "prod"])
def test_reductions_dynamic_shapes(name):
    fn = getattr(tc, f"reduce_{name}")
    ref = getattr(np, name)
    x = RNG.uniform(0.5, 1.5, size=(3, 4))
    kinks = distinct if name in ("max", "min") else None
    check_op(lambda t: fn(t, axis=1), [x], lambda a: ref(a, axis=1), kinks=kinks, dynamic=True)
    check_op(lambda t: fn(t, axis=0, keepdims=True), [x], lambda a: ref(a, axis=0, keepdims=True),
             kinks=kinks, dynamic=True)
    check_op(lambda t: fn(t), [x], lambda a: ref(a), kinks=kinks, dynamic=True)


def test_reduce_scalar_and_empty_axes():
    x = np.float64(1.5)
    check_op(tc.reduce_sum, [x], np.sum)
    y = RNG.standard_normal((2, 3))
    check_op(lambda t: tc.reduce_sum(t, axis=[]), [y], lambda a: a)


def test_max_min_gradient_split_between_ties():
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float64, [2, 3])
        gmax = tc.gradients(tc.reduce_max(x, axis=1), [x])[0]
        gmin = tc.gradients(tc.reduce_min(x), [x])[0]
        with tc.Session() as s:
            vmax, vmin = s.run([gmax, gmin], {x: [[1.0, 3.0, 3.0], [2.0, 0.0, 0.0]]})
    np.testing.assert_allclose(vmax, [[0, 0.5, 0.5], [1, 0, 0]])
    np.testing.assert_allclose(vmin, [[0, 0, 0], [0, 0.5, 0.5]])


def test_prod_gradient_with_zeros_is_exact():
    x = np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0], [1.0, 2.0, 5.0]])
    # ProdGrad uses no division, so zeros in a group are exact: d/dx0 of 0*2*3 is 6
    check_op(lambda t: tc.reduce_prod(t, axis=1), [x], lambda a: np.prod(a, axis=1))
    check_op(lambda t: tc.reduce_prod(t, axis=0, keepdims=True), [x], lambda a: np.prod(a, axis=0, keepdims=True))
    check_op(tc.reduce_prod, [x[2]], np.prod)


def test_mean_of_float32_stays_float32_and_integer_mean():
    x = run(lambda t: tc.reduce_mean(t, axis=0), np.ones((3, 2)))
    assert x.dtype == np.float32
    m = run(lambda t: tc.reduce_mean(t), np.array([1, 2, 4], dtype=np.int32))
    assert m.dtype == np.int32 and m == 2  # TF: integer mean truncates, keeps the dtype
    m2 = run(lambda t: tc.reduce_mean(t, axis=1), np.array([[-1, -2, -4], [1, 2, 4]], dtype=np.int64))
    assert m2.dtype == np.int64
    np.testing.assert_array_equal(m2, [-2, 2])  # toward zero: -7/3 -> -2
    s = run(lambda t: tc.reduce_sum(t, axis=1), np.array([[1, 2], [3, 4]], dtype=np.int32))
    np.testing.assert_array_equal(s, [3, 7])
    assert s.dtype == np.int32
    pr = run(lambda t: tc.reduce_prod(t, axis=0), np.array([[1, 2], [3, 4]], dtype=np.int32))
    np.testing.assert_array_equal(pr, [3, 8])
    assert pr.dtype == np.int32


def test_reduction_axis_errors():
    x = tc.placeholder(tc.float32, [2, 3])
    with pytest.raises(ValueError, match="out of range"):
        tc.reduce_sum(x, axis=2)
    with pytest.raises(ValueError, match="repeated"):
        tc.reduce_sum(x, axis=[1, -1])


def test_static_shapes_of_reductions():
    x = tc.placeholder(tc.float32, [None, 3, 4])
    assert tc.reduce_sum(x, axis=1).shape.as_list() == [None, 4]
    assert tc.reduce_mean(x, axis=[0, 2], keepdims=True).shape.as_list() == [1, 3, 1]
    assert tc.reduce_max(x).shape.as_list() == []


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_argmax_argmin(name, axis):
    x = distinct(np.zeros((3, 4)))
    fn, ref = getattr(tc, name), getattr(np, name)
    out = check_op(lambda t: fn(t, axis=axis), [x], lambda a: ref(a, axis=axis))
    assert out[0].dtype == np.int64
    out32 = run(lambda t: fn(t, axis=axis, output_type=tc.int32), x)
    assert out32.dtype == np.int32
    np.testing.assert_array_equal(out32, ref(x, axis=axis))


def test_argmax_default_axis_is_zero_and_first_of_ties():
    x = np.array([[1.0, 5.0], [5.0, 5.0], [0.0, 1.0]])
    np.testing.assert_array_equal(run(tc.argmax, x), [1, 0])
    np.testing.assert_array_equal(run(lambda t: tc.argmin(t, axis=1), x), [0, 0, 0])
    np.testing.assert_array_equal(run(tc.argmax, np.array([3, 9, 2], dtype=np.int32)), 1)


def test_sum_mean_prod_reject_bool():
    b = tc.placeholder(tc.bool_, [3])
    for fn in (tc.reduce_sum, tc.reduce_mean, tc.reduce_prod):
        with pytest.raises(TypeError, match="bool"):
            fn(b)
    s = run(lambda t: tc.reduce_sum(tc.cast(t, tc.int32)), np.array([True, False, True]))
    assert s == 2 and s.dtype == np.int32
