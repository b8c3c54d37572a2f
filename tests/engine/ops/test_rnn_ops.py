"""Ops for recurrent nets: CarriedState (a stored state read for a batch of streams) and the fused
LSTMCell (one step from its gate pre-activations, with its own gradient op)."""

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine.ops.rnn import carried_state
from tests.engine.harness import check_op

#: the op types whose gradients this module's tests check through the harness (conftest.py
#: verifies the claim, and fails collection when an op type with a gradient is in no module's)
GRAD_CHECKS = frozenset({
    "CarriedState", "GRULayer", "LSTMCell", "LSTMLayer", "LSTMSequence"
})

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


# ----------------------------------------------------------------------------- LSTMCell
def _sig(x):
    return 1 / (1 + np.exp(-x))


def _lstm_ref(pre, c_prev=None):
    h = pre.shape[1] // 4
    i, f, o, g = _sig(pre[:, :h]), _sig(pre[:, h:2 * h]), _sig(pre[:, 2 * h:3 * h]), np.tanh(pre[:, 3 * h:])
    c = i * g + (0 if c_prev is None else f * c_prev)
    return o * np.tanh(c), c


def _cell_outputs(pre, c_prev=None):
    from tfconf.engine.ops.rnn import lstm_cell

    return list(lstm_cell(pre, c_prev))


@pytest.mark.parametrize("with_prev", [True, False])
def test_lstm_cell_forward_and_gradients(with_prev):
    """Both outputs (h and c) against numpy, and d pre, d c_prev by central differences."""
    pre = RNG.standard_normal((3, 4 * 5)) * 2
    ins = [pre, RNG.standard_normal((3, 5))] if with_prev else [pre]
    check_op(_cell_outputs, ins, lambda *a: list(_lstm_ref(*a)), dynamic=True)


@pytest.mark.parametrize("which", [0, 1])
def test_lstm_cell_gradient_with_only_one_output_used(which):
    """Only h (as at a layer's last step, whose c is stored, not differentiated) or only c."""
    pre, c_prev = RNG.standard_normal((2, 12)), RNG.standard_normal((2, 3))
    check_op(lambda p, c: _cell_outputs(p, c)[which], [pre, c_prev], lambda p, c: _lstm_ref(p, c)[which])


def test_lstm_cell_is_stable_for_large_pre_activations():
    from tfconf.engine.ops.rnn import lstm_cell

    pre = np.array([[-200.0, 300.0, 150.0, -90.0]], np.float32)
    h, c = lstm_cell(tc.constant(pre), tc.constant(np.array([[2.0]], np.float32)))
    with tc.Session() as s:
        hv, cv = s.run([h, c])
    assert np.isfinite(hv).all() and np.isfinite(cv).all()
    np.testing.assert_allclose(cv, [[2.0 - 0.0]], atol=1e-6)   # i≈0, f≈1: c = c_prev
    np.testing.assert_allclose(hv, np.tanh(cv), rtol=1e-6)       # o≈1


def test_lstm_cell_shape_errors():
    from tfconf.engine.ops.rnn import lstm_cell

    with pytest.raises(ValueError, match=r"\[N, 4·H\]"):
        lstm_cell(tc.placeholder(tc.float32, [2, 6]))
    with pytest.raises(ValueError, match="c_prev must have shape"):
        lstm_cell(tc.placeholder(tc.float32, [2, 8]), tc.placeholder(tc.float32, [2, 3]))


# ----------------------------------------------------------------------------- LSTMSequence
def _seq_ref(gx, w_h, mask, h0=None, c0=None, reverse=False):
    T, N, G = gx.shape
    H = G // 4
    hs = np.zeros((T, N, H))
    h, c = h0, c0
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        if h is None:
            h, c = _lstm_ref(gx[t])
        else:
            h, c = _lstm_ref(gx[t] + (h * mask[t]) @ w_h.T, c * mask[t])
        hs[t] = h
    return hs, h, c


def _seq(reverse):
    from tfconf.engine.ops.rnn import lstm_sequence

    return lambda gx, w, m, *init: list(lstm_sequence(gx, w, m, *init, reverse=reverse))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_init", [True, False])
def test_lstm_sequence_forward_and_gradients(reverse, with_init):
    """hs, h_T and c_T against a numpy loop of cells; d gx, d W_h, d h0, d c0 by central
    differences, with a mask that resets one stream in the middle."""
    T, N, H = 4, 3, 2
    gx = RNG.standard_normal((T, N, 4 * H))
    w = RNG.standard_normal((4 * H, H)) * 0.7
    mask = np.ones((T, N, 1))
    mask[2, 1] = 0.0
    ins = [gx, w, mask] + ([RNG.standard_normal((N, H)), RNG.standard_normal((N, H))] if with_init else [])
    check_op(_seq(reverse), ins, lambda *a: list(_seq_ref(*a, reverse=reverse)),
             wrt=[0, 1] + ([3, 4] if with_init else []), dynamic=True)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_lstm_sequence_gradient_through_one_output(which):
    """Only the sequence (a top), only h_T or only c_T (the stored state) reaches the loss."""
    T, N, H = 3, 2, 3
    ins = [RNG.standard_normal((T, N, 4 * H)), RNG.standard_normal((4 * H, H)) * 0.5, np.ones((T, N, 1)),
           RNG.standard_normal((N, H)), RNG.standard_normal((N, H))]
    check_op(lambda *a: _seq(False)(*a)[which], ins, lambda *a: _seq_ref(*a)[which], wrt=[0, 1, 3, 4])


def test_lstm_sequence_equals_a_chain_of_cells():
    """The scan op and the per-step cells (what GRU/RNN-style unrolling builds) give the same
    values and gradients in float32."""
    from tfconf.engine.ops.rnn import lstm_cell, lstm_sequence

    T, N, H = 5, 4, 3
    gx = tc.constant(RNG.standard_normal((T, N, 4 * H)).astype(np.float32))
    w = tc.constant(RNG.standard_normal((4 * H, H)).astype(np.float32))
    mask = tc.constant(np.ones((T, N, 1), np.float32))
    hs, _, _ = lstm_sequence(gx, w, mask)
    h, c, outs = None, None, []
    for t in range(T):
        pre = gx[t] if h is None else gx[t] + tc.matmul(h, w, transpose_b=True)
        h, c = lstm_cell(pre, c)
        outs.append(h)
    chain = tc.stack(outs, axis=0)
    g1 = tc.gradients(tc.reduce_sum(tc.square(hs)), [gx, w])
    g2 = tc.gradients(tc.reduce_sum(tc.square(chain)), [gx, w])
    with tc.Session() as s:
        a, b, ga, gb = s.run([hs, chain, g1, g2])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for x, y in zip(ga, gb):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- LSTMLayer
def _layer_ref(x, w_x, b, w_h, mask, h0, c0):
    T, N, C = x.shape
    gx = (x.reshape(T * N, C) @ w_x.T + b).reshape(T, N, -1)
    return _seq_ref(gx, w_h, mask, h0, c0)


def _layer(*ins):
    from tfconf.engine.ops.rnn import lstm_layer

    return list(lstm_layer(*ins))


@pytest.mark.parametrize("reset", [False, True])
def test_lstm_layer_forward_and_gradients(reset):
    """hs, h_T and c_T against the projection and a loop of cells; every input's gradient (but
    the mask's) by central differences, with and without a reset inside the sequence."""
    T, N, C, H = 4, 3, 5, 2
    mask = np.ones((T, N, 1))
    if reset:
        mask[2, 1] = 0.0
    ins = [RNG.standard_normal((T, N, C)), RNG.standard_normal((4 * H, C)) * 0.5, RNG.standard_normal(4 * H) * 0.3,
           RNG.standard_normal((4 * H, H)) * 0.7, mask, RNG.standard_normal((N, H)), RNG.standard_normal((N, H))]
    check_op(_layer, ins, lambda *a: list(_layer_ref(*a)), wrt=[0, 1, 2, 3, 5, 6], dynamic=True)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_lstm_layer_gradient_through_one_output(which):
    T, N, C, H = 3, 2, 4, 3
    ins = [RNG.standard_normal((T, N, C)), RNG.standard_normal((4 * H, C)) * 0.5, RNG.standard_normal(4 * H) * 0.3,
           RNG.standard_normal((4 * H, H)) * 0.5, np.ones((T, N, 1)), RNG.standard_normal((N, H)),
           RNG.standard_normal((N, H))]
    check_op(lambda *a: _layer(*a)[which], ins, lambda *a: _layer_ref(*a)[which], wrt=[0, 1, 2, 3, 5, 6])


def test_lstm_layer_shape_errors():
    from tfconf.engine.ops.rnn import lstm_layer

    h = tc.placeholder(tc.float32, [2, 3])
    with pytest.raises(ValueError, match=r"\[T, N, C\]"):
        lstm_layer(tc.placeholder(tc.float32, [2, 4]), np.ones((12, 4)), np.ones(12), np.ones((12, 3)),
                   np.ones((2, 2, 1)), h, h)
    with pytest.raises(ValueError, match=r"\[4·H, H\]"):
        lstm_layer(tc.placeholder(tc.float32, [2, 2, 4]), np.ones((12, 4)), np.ones(12), np.ones((10, 3)),
                   np.ones((2, 2, 1)), h, h)


# ----------------------------------------------------------------------------- GRULayer
def _gru_ref(x, w_x, b_x, w_h, b_h, mask, h0):
    """PyTorch's GRU equations, step by step (hp = h·cont_t)."""
    T, N, C = x.shape
    H = w_h.shape[1]
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h, hs = h0, []
    for t in range(T):
        hp = h * mask[t]
        gx, gh = x[t] @ w_x.T + b_x, hp @ w_h.T + b_h
        r = sig(gx[:, :H] + gh[:, :H])
        z = sig(gx[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
        h = (1 - z) * n + z * hp
        hs.append(h)
    return np.stack(hs), h


def _gru(*ins):
    from tfconf.engine.ops.rnn import gru_layer

    return list(gru_layer(*ins))


@pytest.mark.parametrize("reset", [False, True])
def test_gru_layer_forward_and_gradients(reset):
    T, N, C, H = 4, 3, 5, 2
    mask = np.ones((T, N, 1))
    if reset:
        mask[2, 1] = 0.0
        mask[0, 0] = 0.0
    ins = [RNG.standard_normal((T, N, C)), RNG.standard_normal((3 * H, C)) * 0.5, RNG.standard_normal(3 * H) * 0.3,
           RNG.standard_normal((3 * H, H)) * 0.7, RNG.standard_normal(3 * H) * 0.3, mask, RNG.standard_normal((N, H))]
    check_op(_gru, ins, lambda *a: list(_gru_ref(*a)), wrt=[0, 1, 2, 3, 4, 6], dynamic=True)


@pytest.mark.parametrize("which", [0, 1])
def test_gru_layer_gradient_through_one_output(which):
    T, N, C, H = 3, 2, 4, 3
    ins = [RNG.standard_normal((T, N, C)), RNG.standard_normal((3 * H, C)) * 0.5, RNG.standard_normal(3 * H) * 0.3,
           RNG.standard_normal((3 * H, H)) * 0.5, RNG.standard_normal(3 * H) * 0.3, np.ones((T, N, 1)),
           RNG.standard_normal((N, H))]
    check_op(lambda *a: _gru(*a)[which], ins, lambda *a: _gru_ref(*a)[which], wrt=[0, 1, 2, 3, 4, 6])


def test_gru_layer_shape_errors():
    from tfconf.engine.ops.rnn import gru_layer

    h = tc.placeholder(tc.float32, [2, 3])
    with pytest.raises(ValueError, match=r"\[T, N, C\]"):
        gru_layer(tc.placeholder(tc.float32, [2, 4]), np.ones((9, 4)), np.ones(9), np.ones((9, 3)), np.ones(9),
                  np.ones((2, 2, 1)), h)
    with pytest.raises(ValueError, match=r"\[3·H, H\]"):
        gru_layer(tc.placeholder(tc.float32, [2, 2, 4]), np.ones((9, 4)), np.ones(9), np.ones((12, 3)), np.ones(9),
                  np.ones((2, 2, 1)), h)
