"""Ops for recurrent nets: CarriedState (a stored state read for a batch of streams)."""

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine.ops.rnn import carried_state
from tests.engine.harness import check_op

RNG = np.random.default_rng(7)


def _ref(state, like):
    if state.shape[0] == like.shape[0]:
        return state
    return np.zeros((like.shape[0],) + state.shape[1:])


@pytest.mark.parametrize("rows", [3, 1])
def test_carried_state_forward_and_gradients(rows):
    """Same rows: the state passes through (d state = dy). Other rows: zeros (d state = 0)."""
    state, like = RNG.standard_normal((rows, 4)), RNG.standard_normal((3, 1))
    check_op(carried_state, [state, like], _ref, second_order=True, dynamic=True)


def test_carried_state_in_a_product_with_the_cont_mask():
    """What a recurrent layer builds: carried_state(h, cont) · cont, differentiated w.r.t. both."""
    h, cont = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 1))
    check_op(lambda a, c: carried_state(a, c) * c, [h, cont], lambda a, c: a * c)


def test_carried_state_static_shape_and_variable_input():
    v = tc.Variable(np.zeros((1, 5), np.float32), validate_shape=False, shape=[None, 5])
    like = tc.placeholder(tc.float32, [None, 1])
    y = carried_state(v, like)
    assert y.shape.as_list() == [None, 5]
    assert carried_state(v, tc.placeholder(tc.float32, [7, 1])).shape.as_list() == [7, 5]
    with tc.Session() as s:
        s.run(v.initializer)
        assert s.run(y, {like: np.ones((2, 1), np.float32)}).shape == (2, 5)
        s.run(v.assign(np.ones((2, 5), np.float32)))
        np.testing.assert_array_equal(s.run(y, {like: np.ones((2, 1), np.float32)}), np.ones((2, 5)))
        np.testing.assert_array_equal(s.run(y, {like: np.ones((3, 1), np.float32)}), np.zeros((3, 5)))
