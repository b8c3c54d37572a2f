"""Elementwise math, comparisons, logic, where, cast, matmul and the Python operators on tensors."""

import numpy as np
import pytest

import tfconf as tc
from tests.engine.harness import away_from, check_op, distinct, run

#: the op types whose gradients this module's tests check through the harness (conftest.py
#: verifies the claim, and fails collection when an op type with a gradient is in no module's)
GRAD_CHECKS = frozenset({
    "Abs", "Acos", "Acosh", "Add", "Asin", "Asinh", "Atan", "Atanh", "Cast", "Ceil", "Cos", "Cosh",
    "Elu", "Exp", "Expm1",
    "Floor", "LeakyRelu", "Log", "Log1p", "MatMul", "Maximum", "Minimum", "Mul",
    "Neg", "Pow", "RealDiv", "Reciprocal", "Relu", "Round", "Rsqrt", "Select",
    "Sigmoid", "Sign", "Sin", "Sinh", "Softplus", "Sqrt", "Square", "SquaredDifference", "Sub",
    "Tan", "Tanh"
})

RNG = np.random.default_rng(0)


def rand(*shape, lo=-2.0, hi=2.0):
    return RNG.uniform(lo, hi, size=shape)


def _np_sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def _frac_away(lo, hi):
    """Kinks of floor/ceil (integers) or round (half-integers): keep the fraction in [lo, hi]."""
    return lambda x: np.floor(x) + np.clip(x - np.floor(x), lo, hi)


# ---------------------------------------------------------------------------- unary
UNARY = [
    # (fn, numpy reference, input sampler, kinks)
    (tc.negative, np.negative, lambda: rand(2, 3), None),
    (tc.square, np.square, lambda: rand(2, 3), None),
    (tc.sqrt, np.sqrt, lambda: rand(2, 3, lo=0.2, hi=3), None),
    (tc.rsqrt, lambda x: 1 / np.sqrt(x), lambda: rand(2, 3, lo=0.2, hi=3), None),
    (tc.exp, np.exp, lambda: rand(2, 3), None),
    (tc.expm1, np.expm1, lambda: rand(2, 3), None),
    (tc.log, np.log, lambda: rand(2, 3, lo=0.2, hi=3), None),
    (tc.log1p, np.log1p, lambda: rand(2, 3, lo=-0.7, hi=3), None),
    (tc.abs, np.abs, lambda: rand(2, 3), [0.0]),
    (tc.sign, np.sign, lambda: rand(2, 3), [0.0]),
    (tc.floor, np.floor, lambda: rand(2, 3, lo=-3, hi=3), _frac_away(0.2, 0.8)),
    (tc.ceil, np.ceil, lambda: rand(2, 3, lo=-3, hi=3), _frac_away(0.2, 0.8)),
    (tc.round, np.rint, lambda: rand(2, 3, lo=-3, hi=3), _frac_away(0.05, 0.4)),
    (tc.reciprocal, np.reciprocal, lambda: rand(2, 3), [0.0]),
    (tc.sin, np.sin, lambda: rand(2, 3), None),
    (tc.cos, np.cos, lambda: rand(2, 3), None),
    (tc.tan, np.tan, lambda: rand(2, 3, lo=-1.2, hi=1.2), None),
    (tc.asin, np.arcsin, lambda: rand(2, 3, lo=-0.9, hi=0.9), None),
    (tc.acos, np.arccos, lambda: rand(2, 3, lo=-0.9, hi=0.9), None),
    (tc.atan, np.arctan, lambda: rand(2, 3, lo=-4, hi=4), None),
    (tc.sinh, np.sinh, lambda: rand(2, 3), None),
    (tc.cosh, np.cosh, lambda: rand(2, 3), None),
    (tc.asinh, np.arcsinh, lambda: rand(2, 3, lo=-4, hi=4), None),
    (tc.acosh, np.arccosh, lambda: rand(2, 3, lo=1.2, hi=4), None),
    (tc.atanh, np.arctanh, lambda: rand(2, 3, lo=-0.9, hi=0.9), None),
    (tc.tanh, np.tanh, lambda: rand(2, 3), None),
    (tc.sigmoid, _np_sigmoid, lambda: rand(2, 3, lo=-5, hi=5), None),
    (tc.nn.softplus, lambda x: np.log1p(np.exp(x)), lambda: rand(2, 3, lo=-5, hi=5), None),
    (tc.nn.elu, lambda x: np.where(x > 0, x, np.expm1(x)), lambda: rand(2, 3), [0.0]),
    (tc.nn.relu, lambda x: np.maximum(x, 0), lambda: rand(2, 3), [0.0]),
    (tc.nn.leaky_relu, lambda x: np.where(x > 0, x, 0.2 * x), lambda: rand(2, 3), [0.0]),
    (lambda x: tc.nn.leaky_relu(x, alpha=0.01), lambda x: np.where(x > 0, x, 0.01 * x), lambda: rand(2, 3), [0.0]),
    (tc.nn.relu6, lambda x: np.clip(x, 0, 6), lambda: rand(2, 3, lo=-3, hi=9), [0.0, 6.0]),
]


@pytest.mark.parametrize("fn,ref,sample,kinks", UNARY, ids=lambda v: getattr(v, "__name__", None))
def test_unary(fn, ref, sample, kinks):
    check_op(fn, [sample()], ref, kinks=kinks)


def test_unary_dynamic_shapes_and_scalar():
    check_op(tc.tanh, [rand(2, 3)], np.tanh, dynamic=True)
    check_op(tc.exp, [np.float64(0.3)], np.exp, dynamic=True)


def test_stable_unaries_at_extremes():
    x = np.array([-1e4, -80.0, -1.0, 0.0, 1.0, 80.0, 1e4])
    with np.errstate(over="ignore"):
        sig = run(tc.sigmoid, x, dtype=tc.float64)
        sp = run(tc.nn.softplus, x, dtype=tc.float64)
        sp32 = run(tc.nn.softplus, x, dtype=tc.float32)
    np.testing.assert_allclose(sig, [0, 1 / (1 + np.exp(80)), _np_sigmoid(-1), 0.5, _np_sigmoid(1), 1 / (1 + np.exp(-80)), 1], rtol=1e-12, atol=0)
    np.testing.assert_allclose(sp, np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))), rtol=1e-12)
    assert np.all(np.isfinite(sp32)) and sp32.dtype == np.float32
    # gradients at extremes stay finite
    g = tc.Graph()
    with g.as_default():
        p = tc.placeholder(tc.float32, [7])
        grads = tc.gradients([tc.reduce_sum(tc.sigmoid(p)), tc.reduce_sum(tc.nn.softplus(p))], [p])[0]
        with tc.Session() as s:
            v = s.run(grads, {p: x})
    assert np.all(np.isfinite(v))
    np.testing.assert_allclose(v, _np_sigmoid(x) * (1 - _np_sigmoid(x)) + _np_sigmoid(x), rtol=1e-5, atol=1e-7)


def test_unary_rejects_integers():
    x = tc.constant([1, 2])
    with pytest.raises(TypeError, match="floating-point"):
        tc.sqrt(x)
    # sign, abs, neg, square work on integers
    with tc.Session() as s:
        np.testing.assert_array_equal(s.run(tc.abs(tc.constant([-3, 2]))), [3, 2])
        np.testing.assert_array_equal(s.run(tc.negative(x)), [-1, -2])
        np.testing.assert_array_equal(s.run(tc.square(x)), [1, 4])
        np.testing.assert_array_equal(s.run(tc.sign(tc.constant([-3, 0, 2]))), [-1, 0, 1])


# ---------------------------------------------------------------------------- binary + broadcasting
BINARY = [
    ("add", tc.add, np.add, None),
    ("sub", tc.subtract, np.subtract, None),
    ("mul", tc.multiply, np.multiply, None),
    ("div", tc.divide, np.divide, "y_away"),
    ("pow", tc.pow, np.power, "x_pos"),
    ("maximum", tc.maximum, np.maximum, "distinct"),
    ("minimum", tc.minimum, np.minimum, "distinct"),
    ("squared_difference", tc.squared_difference, lambda a, b: (a - b) ** 2, None),
]

SHAPES = [
    ((2, 3), (2, 3)),
    ((3, 1, 4), (2, 4)),
    ((2, 4), (3, 1, 4)),
    ((), (2, 3)),
    ((2, 3), ()),
    ((2, 1), (1, 3)),
    ((1,), (3, 1)),
    ((4, 1, 1), (1, 3, 2)),
]


def _binary_inputs(kind, sa, sb):
    a, b = rand(*sa), rand(*sb)
    if kind == "y_away":
        b = away_from(b, [0.0], 0.5)
    elif kind == "x_pos":
        a = rand(*sa, lo=0.3, hi=2.0)
    elif kind == "distinct":
        # all values of a and b differ: interleave one ramp over both
        both = distinct(np.zeros(a.size + b.size), gap=0.1)
        a, b = both[: a.size].reshape(sa), both[a.size:].reshape(sb)
    return a, b


@pytest.mark.parametrize("sa,sb", SHAPES, ids=str)
@pytest.mark.parametrize("name,fn,ref,kind", BINARY, ids=[b[0] for b in BINARY])
def test_binary_broadcasting(name, fn, ref, kind, sa, sb):
    a, b = _binary_inputs(kind, sa, sb)
    check_op(fn, [a, b], ref)


@pytest.mark.parametrize("name,fn,ref,kind", BINARY, ids=[b[0] for b in BINARY])
def test_binary_none_dims_fed_at_run_time(name, fn, ref, kind):
    a, b = _binary_inputs(kind, (3, 1, 4), (2, 4))
    check_op(fn, [a, b], ref, dynamic=True)


def test_broadcast_gradient_unknown_rank():
    """A placeholder of unknown rank still gets a gradient of its own run-time shape."""
    a, b = rand(3, 1, 4), rand(2, 4)
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float64, None)
        y = tc.placeholder(tc.float64, [None, 4])
        z = x * y + x
        gx, gy = tc.gradients(z, [x, y])
        with tc.Session() as s:
            vx, vy = s.run([gx, gy], {x: a, y: b})
    np.testing.assert_allclose(vx, np.broadcast_to(b.sum(0) + 2, (3, 1, 4)))
    np.testing.assert_allclose(vy, np.broadcast_to(a, (3, 2, 4)).sum(0))


def test_binary_with_python_and_numpy_operands_take_tensor_dtype():
    x = tc.placeholder(tc.float64, [2])
    assert (x + 1).dtype == tc.float64
    assert (2.5 * x).dtype == tc.float64
    assert (np.float32(2) - x).dtype == tc.float64
    assert (x / np.array([1.0, 2.0])).dtype == tc.float64
    with tc.Session() as s:
        np.testing.assert_allclose(s.run(2.0 - x / np.array([1.0, 2.0]), {x: [4.0, 4.0]}), [-2.0, 0.0])


def test_binary_dtype_mismatch_is_an_error():
    a = tc.placeholder(tc.float32, [2])
    b = tc.placeholder(tc.float64, [2])
    with pytest.raises(TypeError, match="same dtype"):
        a + b


def test_binary_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        tc.placeholder(tc.float32, [2, 3]) + tc.placeholder(tc.float32, [4])


def test_pow_negative_base_integer_exponent():
    x = np.array([[-1.5, -0.5, 0.7], [1.2, -2.0, 0.4]])
    y = np.array([2.0, 3.0, 2.0])
    check_op(tc.pow, [x, y], np.power, wrt=[0])


def test_pow_gradient_wrt_exponent_is_zero_for_nonpositive_base():
    g = tc.Graph()
    with g.as_default():
        x = tc.constant([-2.0, 0.0, 2.0], dtype=tc.float64)
        y = tc.placeholder(tc.float64, [3])
        (gy,) = tc.gradients(tc.pow(x, y), [y])
        with tc.Session() as s:
            v = s.run(gy, {y: [2.0, 2.0, 2.0]})
    np.testing.assert_allclose(v, [0.0, 0.0, 4 * np.log(2)])


def test_maximum_minimum_ties_send_gradient_to_x():
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float64, [3])
        y = tc.placeholder(tc.float64, [3])
        gmax = tc.gradients(tc.maximum(x, y), [x, y])
        gmin = tc.gradients(tc.minimum(x, y), [x, y])
        with tc.Session() as s:
            vmax, vmin = s.run([gmax, gmin], {x: [1.0, 2.0, 3.0], y: [1.0, 1.0, 4.0]})
    np.testing.assert_array_equal(vmax, [[1, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(vmin, [[1, 0, 1], [0, 1, 0]])


def test_floordiv_floormod_numpy_semantics():
    a = np.array([7, -7, 7, -7, 0], dtype=np.int32)
    b = np.array([2, 2, -2, -2, 3], dtype=np.int32)
    check_op(tc.floordiv, [a, b], np.floor_divide)
    check_op(tc.floormod, [a, b], np.mod)
    af, bf = np.array([7.5, -7.5, 3.0]), np.array([2.0, 2.0, -2.0])
    check_op(tc.floordiv, [af, bf], np.floor_divide, grad=False)
    check_op(tc.mod, [af, bf], np.mod, grad=False)


def test_integer_arithmetic_keeps_integer_dtype():
    a = np.array([[1, 2, 3]], dtype=np.int32)
    b = np.array([[4], [5]], dtype=np.int32)
    for fn, ref in [(tc.add, np.add), (tc.subtract, np.subtract), (tc.multiply, np.multiply),
                    (tc.maximum, np.maximum), (tc.minimum, np.minimum)]:
        check_op(fn, [a, b], ref)
    out = run(lambda x, y: x * y, a.astype(np.int64), b.astype(np.int64))
    assert out.dtype == np.int64


# ---------------------------------------------------------------------------- comparisons / logic
@pytest.mark.parametrize("fn,ref", [
    (tc.equal, np.equal), (tc.not_equal, np.not_equal), (tc.less, np.less),
    (tc.less_equal, np.less_equal), (tc.greater, np.greater), (tc.greater_equal, np.greater_equal),
], ids=lambda v: getattr(v, "__name__", None))
def test_comparisons(fn, ref):
    a = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    b = np.array([2.0, 2.0, 2.0])
    out = check_op(fn, [a, b], ref)
    assert out[0].dtype == np.bool_
    check_op(fn, [a.astype(np.int32), np.int32(2)], ref)


@pytest.mark.parametrize("fn,ref", [
    (tc.logical_and, np.logical_and), (tc.logical_or, np.logical_or), (tc.logical_xor, np.logical_xor),
], ids=lambda v: getattr(v, "__name__", None))
def test_logical_binary(fn, ref):
    a = np.array([[True, False], [True, True]])
    b = np.array([True, False])
    check_op(fn, [a, b], ref)


def test_logical_not():
    check_op(tc.logical_not, [np.array([True, False, True])], np.logical_not)


def test_comparison_is_not_differentiable():
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [2])
        assert tc.gradients(tc.cast(x > 0, tc.float32), [x]) == [None]


# ---------------------------------------------------------------------------- where / cast
def test_where_broadcasting():
    c = np.array([[True], [False], [True]])
    x, y = rand(3, 4), rand(4)
    check_op(lambda c_, a, b: tc.where(c_, a, b), [c, x, y], np.where)
    check_op(lambda c_, a, b: tc.where(c_, a, b), [c, x, y], np.where, dynamic=True)
    check_op(lambda a, b: tc.where(a > b, a, b * 2.0), [x, y], lambda a, b: np.where(a > b, a, 2 * b),
             kinks=lambda v: v)


def test_where_needs_bool_condition_and_both_branches():
    x = tc.placeholder(tc.float32, [2])
    with pytest.raises(TypeError, match="bool"):
        tc.where(x, x, x)
    with pytest.raises(ValueError):
        tc.where(x > 0)


def test_cast():
    x = rand(2, 3, lo=-3, hi=3)
    check_op(lambda a: tc.cast(a, tc.float64), [x], lambda a: a, check_dtype=False, dtypes=(tc.float32,))
    # float64 -> float32 -> gradient cast back; float32 rounding needs a wide finite-difference step
    check_op(lambda a: tc.cast(a, tc.float32), [x], lambda a: a.astype(np.float32), check_dtype=False,
             dtypes=(tc.float64,), rtol64=1e-6, eps=1e-2, grad_rtol=1e-3, grad_atol=1e-4)
    # float -> int truncates toward zero (C semantics), and carries no gradient
    out = run(lambda a: tc.cast(a, tc.int32), np.array([-1.7, -0.2, 0.2, 1.7]))
    np.testing.assert_array_equal(out, [-1, 0, 0, 1])
    assert out.dtype == np.int32
    b = run(lambda a: tc.cast(a, tc.bool_), np.array([0.0, 2.0]))
    np.testing.assert_array_equal(b, [False, True])
    g = tc.Graph()
    with g.as_default():
        p = tc.placeholder(tc.float32, [2])
        assert tc.gradients(tc.cast(tc.cast(p, tc.int32), tc.float32), [p]) == [None]
        q = tc.placeholder(tc.float32, [2])
        assert tc.cast(q, tc.float32) is q
        assert tc.to_float(tc.constant([1, 2])).dtype == tc.float32


def test_cast_gradient_between_float_widths():
    x = rand(3)
    g = tc.Graph()
    with g.as_default():
        p = tc.placeholder(tc.float32, [3])
        y = tc.cast(p, tc.float64) * 3.0
        (gp,) = tc.gradients(y, [p])
        assert gp.dtype == tc.float32
        with tc.Session() as s:
            np.testing.assert_allclose(s.run(gp, {p: x}), [3, 3, 3])


# ---------------------------------------------------------------------------- matmul
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_matmul_transposes(ta, tb):
    a = rand(*((4, 3) if ta else (3, 4)))
    b = rand(*((5, 4) if tb else (4, 5)))

    def ref(x, y):
        return (x.T if ta else x) @ (y.T if tb else y)

    check_op(lambda x, y: tc.matmul(x, y, transpose_a=ta, transpose_b=tb), [a, b], ref)


@pytest.mark.parametrize("sa,sb", [
    ((2, 3, 4), (2, 4, 5)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (3, 4, 2)),
], ids=str)
def test_matmul_batched_broadcast(sa, sb):
    check_op(tc.matmul, [rand(*sa), rand(*sb)], np.matmul)


def test_matmul_batched_transposed_dynamic():
    a, b = rand(2, 4, 3), rand(2, 5, 4)
    check_op(lambda x, y: tc.matmul(x, y, transpose_a=True, transpose_b=True), [a, b],
             lambda x, y: np.swapaxes(x, -1, -2) @ np.swapaxes(y, -1, -2), dynamic=True)
    check_op(tc.matmul, [rand(2, 3, 4), rand(4, 2)], np.matmul, dynamic=True)


def test_matmul_shape_errors():
    a = tc.placeholder(tc.float32, [3, 4])
    with pytest.raises(ValueError, match="Dimensions must be equal"):
        tc.matmul(a, tc.placeholder(tc.float32, [5, 2]))
    with pytest.raises(ValueError, match="rank"):
        tc.matmul(a, tc.placeholder(tc.float32, [4]))


# ---------------------------------------------------------------------------- python operators
def test_python_arithmetic_operators():
    a, b = rand(2, 3), away_from(rand(3), [0.0], 0.5)
    check_op(lambda x, y: x + y, [a, b], lambda x, y: x + y)
    check_op(lambda x, y: x - y, [a, b], lambda x, y: x - y)
    check_op(lambda x, y: x * y, [a, b], lambda x, y: x * y)
    check_op(lambda x, y: x / y, [a, b], lambda x, y: x / y)
    check_op(lambda x: -x, [a], lambda x: -x)
    check_op(lambda x: abs(x), [a], np.abs, kinks=[0.0])
    check_op(lambda x: x ** 2, [a], lambda x: x ** 2)
    check_op(lambda y: 2.0 ** y, [b], lambda y: 2.0 ** y)
    check_op(lambda x: 1.0 - x * 3.0 + 2.0 / (x * x + 1.0), [a], lambda x: 1 - 3 * x + 2 / (x * x + 1))
    check_op(lambda x, y: x @ y, [rand(2, 3), rand(3, 4)], lambda x, y: x @ y)
    check_op(lambda x: np.ones((4, 2)) @ x, [rand(2, 3)], lambda x: np.ones((4, 2)) @ x)
    check_op(lambda x, y: x // y, [a, b], lambda x, y: x // y, grad=False)
    check_op(lambda x, y: x % y, [a, b], lambda x, y: x % y, grad=False)


def test_reflected_operators_with_numpy_arrays():
    a = rand(2, 3)
    n = rand(2, 3)
    check_op(lambda x: n + x, [a], lambda x: n + x)
    check_op(lambda x: n - x, [a], lambda x: n - x)
    check_op(lambda x: n * x, [a], lambda x: n * x)
    check_op(lambda x: n / (x * x + 1), [a], lambda x: n / (x * x + 1))


def test_python_comparison_operators():
    a, b = rand(2, 3), rand(3)
    for op in ("<", "<=", ">", ">="):
        fn = eval(f"lambda x, y: x {op} y")  # noqa: S307 - fixed operator strings
        out = check_op(fn, [a, b], fn)
        assert out[0].dtype == np.bool_
    out = run(lambda x: 0.5 < x, np.array([0.0, 1.0]))
    np.testing.assert_array_equal(out, [False, True])


def test_tensor_equality_is_identity():
    x = tc.placeholder(tc.float32, [2])
    y = tc.placeholder(tc.float32, [2])
    assert x == x and x != y and not (x == y)
    assert len({x, y, x}) == 2


def test_python_bool_operators():
    a = np.array([[True, False, True, False]])
    b = np.array([[True], [False]])
    check_op(lambda x, y: x & y, [a, b], np.logical_and)
    check_op(lambda x, y: x | y, [a, b], np.logical_or)
    check_op(lambda x, y: x ^ y, [a, b], np.logical_xor)
    check_op(lambda x: ~x, [a], np.logical_not)
    check_op(lambda x, y: (x > 0) & ~(y > 1), [rand(5), rand(5)], lambda x, y: (x > 0) & ~(y > 1))


def test_tensor_cannot_be_python_bool():
    x = tc.placeholder(tc.float32, [2])
    with pytest.raises(TypeError, match="bool"):
        bool(x > 0)


def test_integer_true_division_gives_floats():
    a = np.array([3, -4, 7], dtype=np.int32)
    b = np.array([2, 2, -2], dtype=np.int32)
    for fn in (tc.divide, tc.truediv, lambda x, y: x / y):
        out = check_op(fn, [a, b], np.true_divide)
        assert out[0].dtype == np.float64
    out = run(lambda x, y: x / y, a.astype(np.int16), b.astype(np.int16))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [1.5, -2, -3.5])


def test_round_half_to_even():
    np.testing.assert_array_equal(run(tc.round, np.array([0.5, 1.5, 2.5, -0.5, -1.5])), [0, 2, 2, -0, -2])


@pytest.mark.parametrize("name,fn,ref,kind", BINARY[:4], ids=[b[0] for b in BINARY[:4]])
def test_binary_unknown_dim_that_is_one_at_run_time(name, fn, ref, kind):
    """x: [None, 4] fed with [1, 4] against a static [3, 4]: x's gradient must still be summed."""
    a, b = _binary_inputs(kind, (1, 4), (3, 4))
    check_op(fn, [a, b], ref, dynamic=[0])
    check_op(fn, [b, a], ref, dynamic=[1])
    check_op(fn, [a, b], ref, dynamic=True)
