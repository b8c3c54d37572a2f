"""The shipped test kit (tfconf.testing) catches what it is for: a wrong forward, a wrong first
derivative, a wrong second derivative; and passes a right op, reporting the ops it checked."""

import numpy as np
import pytest

from tfconf.engine import api as tc
from tfconf.testing import check_op

X = [np.random.default_rng(0).standard_normal((3, 4)) + 2.0]


def test_a_right_op_passes_and_reports_the_ops_it_checked():
    seen = []
    check_op(lambda x: tc.square(x) * x, X, lambda x: x ** 3, second_order=True,
             checked=lambda ops: seen.extend(op.type for op in ops))
    assert {"Square", "Mul"} <= set(seen)


def test_a_wrong_forward_fails():
    with pytest.raises(AssertionError):
        check_op(lambda x: tc.square(x), X, lambda x: x ** 3)


def test_a_wrong_gradient_fails():
    # forward x², but the gradient only flows through one factor: x instead of 2x
    with pytest.raises(AssertionError):
        check_op(lambda x: tc.stop_gradient(x) * x, X, lambda x: x ** 2)


def test_a_wrong_second_derivative_fails():
    # y = sg(3x²)·x - sg(2x³): the value x³ and the first derivative 3x² are right, the second
    # derivative is 0 instead of 6x
    def build(x):
        return tc.stop_gradient(3 * tc.square(x)) * x - tc.stop_gradient(2 * tc.square(x) * x)

    check_op(build, X, lambda x: x ** 3)  # first order: passes
    with pytest.raises(AssertionError):
        check_op(build, X, lambda x: x ** 3, second_order=True)
