"""RNN, LSTM, GRU against independent numpy recurrences (float64), cont resets, state carried between
Session.run calls, bidirectional, finite-difference gradients, torch.nn.LSTM/GRU, sequence heads."""

import numpy as np
import pytest

import tfconf as tc
from tfconf.frontend.compiler import NetBuildError

from .helpers import build, rng, roundtrip

# the layer types this module checks against numpy: minimal config, input shapes (conftest.py)
LAYER_CASES = {
    "RNN": ({"bottom": ["data", "cont"], "num_output": 2}, {"data": (3, 2, 4), "cont": (3, 2)}),
    "LSTM": ({"bottom": ["data", "cont"], "num_output": 2}, {"data": (3, 2, 4), "cont": (3, 2)}),
    "GRU": ({"bottom": ["data", "cont"], "num_output": 2}, {"data": (3, 2, 4), "cont": (3, 2)}),
}

T, N, D, H = 5, 3, 4, 6
GAUSS = {"type": "gaussian", "std": 0.5}


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _layer(type_, bidirectional=False, static=False, **kw):
    d = {"name": "l", "type": type_, "bottom": ["x", "cont"] + (["s"] if static else []), "num_output": H,
         "weight_filler": GAUSS, "bias_filler": GAUSS}
    if bidirectional:
        d["bidirectional"] = True
    return dict(d, **kw)


def _inputs(seed=0, steps=T, static=False):
    r = rng(seed)
    cont = np.ones((steps, N))
    cont[0] = 0
    cont[min(3, steps - 1), 1] = 0  # stream 1 starts a new sequence mid-batch
    out = {"x": r.standard_normal((steps, N, D)), "cont": cont}
    if static:
        out["s"] = r.standard_normal((N, 2))
    return out


# ------------------------------------------------------------------------ numpy references
def _np_lstm_step(p, gx, h, c):
    g = gx + h @ p["weights_h"].T
    i, f, o, gg = np.split(g, 4, axis=1)  # Caffe's gate order
    c = _sig(f) * c + _sig(i) * np.tanh(gg)
    return _sig(o) * np.tanh(c), c


def _np_gru_step(p, gx, h):
    xr, xz, xn = np.split(gx, 3, axis=1)
    hr, hz, hn = np.split(h @ p["weights_h"].T + p["bias_h"], 3, axis=1)
    r, z = _sig(xr + hr), _sig(xz + hz)
    n = np.tanh(xn + r * hn)
    return (1 - z) * n + z * h


def np_recurrent(type_, p, x, cont, s=None, reverse=False, h0=None, c0=None):
    """The layer's recurrence written directly in numpy; ``p`` maps suffixes (weights_x, ...) to arrays."""
    steps, n = cont.shape
    h = np.zeros((n, H)) if h0 is None else h0
    c = np.zeros((n, H)) if c0 is None else c0
    out = [None] * steps
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        if reverse:
            keep = cont[t + 1][:, None] if t + 1 < steps else np.zeros((n, 1))
        else:
            keep = cont[t][:, None]
        h, c = h * keep, c * keep
        gx = x[t] @ p["weights_x"].T + p["bias"]
        if s is not None:
            gx = gx + s @ p["weights_static"].T
        if type_ == "LSTM":
            h, c = _np_lstm_step(p, gx, h, c)
        elif type_ == "GRU":
            h = _np_gru_step(p, gx, h)
        else:
            h = np.tanh(gx + h @ p["weights_h"].T)
        out[t] = h
    y = np.stack(out)
    if type_ == "RNN":
        y = np.tanh(y @ p["weights_o"].T + p["bias_o"])
    return y, h, c


def _params(net, suffix=""):
    """The layer's parameters by suffix (weights_x, bias, ...): the forward set, or the ``_reverse`` one."""
    out = {}
    for key in net.params:
        name = key.split("/", 1)[1]
        if suffix and name.endswith(suffix):
            out[name[: -len(suffix)]] = net.value(key)
        elif not suffix and not name.endswith("_reverse"):
            out[name] = net.value(key)
    return out


# ------------------------------------------------------------------------ forward values
@pytest.mark.parametrize("type_", ["LSTM", "RNN", "GRU"])
def test_forward_matches_numpy_with_cont_resets(type_):
    inp = _inputs()
    net = build([_layer(type_)], inp)
    y = net.run("l")
    want, _, _ = np_recurrent(type_, _params(net), inp["x"], inp["cont"])
    assert y.shape == (T, N, H)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)


def test_parameter_shapes_follow_caffe_blob_order():
    net = build([_layer("LSTM", static=True)], _inputs(static=True))
    shapes = {k: tuple(v.shape.as_list()) for k, v in net.params.items()}
    assert shapes == {"l/weights_x": (4 * H, D), "l/bias": (4 * H,), "l/weights_static": (4 * H, 2),
                      "l/weights_h": (4 * H, H)}
    assert [k for k in net.params] == ["l/weights_x", "l/bias", "l/weights_static", "l/weights_h"]
    rnn = build([_layer("RNN")], _inputs())
    assert list(rnn.params) == ["l/weights_x", "l/bias", "l/weights_h", "l/weights_o", "l/bias_o"]


@pytest.mark.parametrize("type_", ["LSTM", "GRU"])
def test_static_input_is_added_to_every_step(type_):
    inp = _inputs(static=True)
    net = build([_layer(type_, static=True)], inp)
    want, _, _ = np_recurrent(type_, _params(net), inp["x"], inp["cont"], s=inp["s"])
    np.testing.assert_allclose(net.run("l"), want, rtol=1e-10, atol=1e-12)


def test_cont_zero_everywhere_makes_every_step_independent():
    """With cont = 0 at every step, the output at t depends on x[t] only."""
    inp = _inputs()
    inp["cont"] = np.zeros((T, N))
    net = build([_layer("LSTM")], inp)
    y = net.run("l")
    x2 = inp["x"].copy()
    x2[2] += 1.0
    y2 = net.run("l", feeds={"x": x2})
    changed = np.abs(y2 - y).max(axis=(1, 2))
    assert changed[2] > 1e-3 and np.all(changed[[0, 1, 3, 4]] == 0)


# ------------------------------------------------------------------------ carried state
@pytest.mark.parametrize("type_", ["LSTM", "RNN", "GRU"])
def test_state_carried_across_runs_equals_one_run_over_the_whole_sequence(type_):
    whole = _inputs(seed=1, steps=2 * T)
    long_net = build([_layer(type_)], whole)
    short_net = build([_layer(type_)], {"x": whole["x"][:T], "cont": whole["cont"][:T]},
                      params={k: long_net.value(k) for k in long_net.params})
    want = long_net.run("l")
    updates = short_net.net().updates
    assert len(updates) == (2 if type_ == "LSTM" else 1)
    first = short_net.run(["l"] + updates)[0]
    second = short_net.run(["l"] + updates, feeds={"x": whole["x"][T:], "cont": whole["cont"][T:]})[0]
    np.testing.assert_allclose(np.concatenate([first, second]), want, rtol=1e-10, atol=1e-12)
    # the stored state is the last step's, in a non-trainable variable of this phase
    states = {v.op.name: v for v in short_net.graph.get_collection("recurrent_state")}
    h = short_net.sess.run(states["train/l/forward/h_state"])
    ref = np_recurrent(type_, _params(long_net), whole["x"], whole["cont"])[1]
    np.testing.assert_allclose(h, ref, rtol=1e-10, atol=1e-12)
    assert not any(v.trainable for v in states.values())
    assert not any("state" in k for k in short_net.params)  # never saved as weights


def test_without_the_updates_nothing_is_carried_and_cont_zero_resets():
    inp = _inputs(seed=2)
    inp["cont"][0] = 1  # continue from the stored state
    net = build([_layer("LSTM")], inp)
    p = _params(net)
    a = net.run("l")  # state still zero: no update ran
    np.testing.assert_allclose(a, np_recurrent("LSTM", p, inp["x"], inp["cont"])[0], rtol=1e-10)
    net.run(["l"] + net.net().updates)
    _, h1, c1 = np_recurrent("LSTM", p, inp["x"], inp["cont"])
    b = net.run("l")
    np.testing.assert_allclose(b, np_recurrent("LSTM", p, inp["x"], inp["cont"], h0=h1, c0=c1)[0], rtol=1e-10)
    reset = dict(inp, cont=np.concatenate([np.zeros((1, N)), inp["cont"][1:]]))
    np.testing.assert_allclose(net.run("l", feeds={"cont": reset["cont"]}),
                               np_recurrent("LSTM", p, inp["x"], reset["cont"])[0], rtol=1e-10)


def test_each_phase_has_its_own_state_and_the_batch_size_may_change():
    inp = _inputs(seed=3)
    inp["cont"][:] = 1
    heads = [{"name": "x", "type": "Input", "shape": [[T, -1, D]], "dtype": "float64"},
             {"name": "cont", "type": "Input", "shape": [[T, -1]], "dtype": "float64"}]
    net = build(heads + [_layer("LSTM")], {}, phases=("train", "test"))
    before = net.run("l", "test", feeds=inp)
    net.run(["l"] + net.net("train").updates, "train", feeds=inp)
    np.testing.assert_allclose(net.run("l", "test", feeds=inp), before)  # the train phase's state is not the test's
    net.run(["l"] + net.net("test").updates, "test", feeds=inp)
    assert np.abs(net.run("l", "test", feeds=inp) - before).max() > 1e-3  # ... but the test phase has one
    small = {"x": inp["x"][:, :1], "cont": np.zeros((T, 1))}
    y = net.run(["l"] + net.net("test").updates, "test", feeds=small)[0]  # N 3 -> 1: cont 0 restarts
    assert y.shape == (T, 1, H)


# ------------------------------------------------------------------------ bidirectional
@pytest.mark.parametrize("type_", ["LSTM", "RNN", "GRU"])
def test_bidirectional_concatenates_a_reverse_pass(type_):
    inp = _inputs(seed=4)
    net = build([_layer(type_, bidirectional=True)], inp)
    y = net.run("l")
    assert y.shape == (T, N, 2 * H)
    fwd, _, _ = np_recurrent(type_, _params(net), inp["x"], inp["cont"])
    bwd, _, _ = np_recurrent(type_, _params(net, "_reverse"), inp["x"], inp["cont"], reverse=True)
    np.testing.assert_allclose(y[..., :H], fwd, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y[..., H:], bwd, rtol=1e-10, atol=1e-12)
    # stream 1's reverse pass at t=2 does not see t=3, where a new sequence starts
    x2 = inp["x"].copy()
    x2[3:, 1] += 1.0
    y2 = net.run("l", feeds={"x": x2})
    np.testing.assert_allclose(y2[:3, 1], y[:3, 1], rtol=1e-12)


# ------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("type_", ["LSTM", "RNN", "GRU"])
def test_gradients_by_finite_differences(type_):
    inp = _inputs(seed=5)
    net = build([_layer(type_)], inp)
    wrt = ["x"] + list(net.params)
    net.grad_check("l", wrt, max_points=12, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("type_", ["LSTM", "GRU"])
def test_gradients_bidirectional_with_static_input(type_):
    inp = _inputs(seed=6, steps=4, static=True)
    net = build([_layer(type_, bidirectional=True, static=True)], inp)
    net.grad_check("l", ["x", "s"] + list(net.params), max_points=8, rtol=1e-5, atol=1e-8)


def test_gradient_does_not_flow_into_the_previous_batch():
    """Truncated BPTT: the carried state is a Variable read, not a function of the weights."""
    inp = _inputs(seed=7)
    inp["cont"][:] = 1
    net = build([_layer("LSTM")], inp)
    net.run(["l"] + net.net().updates)  # now the state is non-zero
    net.grad_check("l", ["x", "l/weights_h"], max_points=10)


# ------------------------------------------------------------------------ torch
def _torch_weights_from_caffe(p):
    """Caffe's LSTM gate blocks (i, f, o, g) in torch's order (i, f, g, o)."""
    def reorder(w):
        i, f, o, g = np.split(w, 4, axis=0)
        return np.concatenate([i, f, g, o], axis=0)

    return reorder(p["weights_x"]), reorder(p["weights_h"]), reorder(p["bias"])


@pytest.mark.torch
def test_lstm_matches_torch_outputs_and_gradients():
    torch = pytest.importorskip("torch")
    inp = _inputs(seed=8)
    inp["cont"] = np.ones((T, N))
    inp["cont"][0] = 0  # one sequence per stream: torch.nn.LSTM has no resets
    net = build([_layer("LSTM")], inp)
    p = _params(net)
    w_ih, w_hh, b = _torch_weights_from_caffe(p)
    lstm = torch.nn.LSTM(D, H, dtype=torch.float64)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(w_ih))
        lstm.weight_hh_l0.copy_(torch.from_numpy(w_hh))
        lstm.bias_ih_l0.copy_(torch.from_numpy(b))
        lstm.bias_hh_l0.zero_()
    x_t = torch.from_numpy(inp["x"]).requires_grad_(True)
    y_t, _ = lstm(x_t)
    np.testing.assert_allclose(net.run("l"), y_t.detach().numpy(), rtol=1e-10, atol=1e-12)

    cot = rng(9).standard_normal((T, N, H))
    (y_t * torch.from_numpy(cot)).sum().backward()
    with net.graph.as_default():
        loss = tc.reduce_sum(net.top("l") * tc.constant(cot))
        keys = ["l/weights_x", "l/weights_h", "l/bias"]
        grads = tc.gradients(loss, [net.placeholders["x"]] + [net.params[k] for k in keys])
    gx, gwx, gwh, gb = net.sess.run(grads, feed_dict=net.feed())
    np.testing.assert_allclose(gx, x_t.grad.numpy(), rtol=1e-9, atol=1e-12)
    want = _torch_weights_from_caffe({"weights_x": gwx, "weights_h": gwh, "bias": gb})
    for ours, theirs in zip(want, (lstm.weight_ih_l0.grad, lstm.weight_hh_l0.grad, lstm.bias_ih_l0.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.torch
def test_gru_matches_torch():
    torch = pytest.importorskip("torch")
    inp = _inputs(seed=10)
    inp["cont"] = np.ones((T, N))
    net = build([_layer("GRU", bidirectional=True)], inp)
    gru = torch.nn.GRU(D, H, dtype=torch.float64, bidirectional=True)
    with torch.no_grad():
        for sfx, tsfx in (("", ""), ("_reverse", "_reverse")):
            for ours, theirs in (("weights_x", "weight_ih_l0"), ("weights_h", "weight_hh_l0"),
                                 ("bias", "bias_ih_l0"), ("bias_h", "bias_hh_l0")):
                getattr(gru, theirs + tsfx).copy_(torch.from_numpy(net.value(f"l/{ours}{sfx}")))
    y_t, _ = gru(torch.from_numpy(inp["x"]))
    np.testing.assert_allclose(net.run("l"), y_t.detach().numpy(), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------ config and errors
@pytest.mark.parametrize("type_", ["LSTM", "RNN", "GRU"])
def test_config_round_trip(type_):
    s = roundtrip(_layer(type_, bidirectional=True, weight_filler="xavier",
                         param=[{"lr_mult": 1}, {"lr_mult": 2}]))
    assert s.num_output == H and s.bidirectional and s.weight_filler.type == "xavier"
    assert roundtrip({"name": "l", "type": type_, "num_output": 3, "bottom": ["x", "cont"]}).bidirectional is False


@pytest.mark.parametrize("inputs, match", [
    ({"x": np.zeros((T, N)), "cont": np.zeros((T, N))}, r"\[T, N, \.\.\.\]"),
    ({"x": np.zeros((T, N, D)), "cont": np.zeros((T + 1, N))}, r"cont must have shape \[T, N\]"),
    ({"x": np.zeros((T, N, D), np.int64), "cont": np.zeros((T, N))}, "floating point"),
])
def test_bad_bottoms_are_reported(inputs, match):
    with pytest.raises(NetBuildError, match=match):
        build([_layer("LSTM")], inputs)


def test_unknown_sequence_length_is_reported():
    g = tc.Graph()
    from tfconf.frontend.compiler import build_net
    from tfconf.frontend.layers import NetState

    from .helpers import spec

    with g.as_default():
        inputs = {"x": tc.placeholder(tc.float32, [None, 2, 3], name="x"),
                  "cont": tc.placeholder(tc.float32, [None, 2], name="cont")}
    with pytest.raises(NetBuildError, match="sequence length T"):
        build_net([spec(_layer("LSTM"))], NetState(), g, {}, {}, inputs)


def test_one_bottom_is_refused():
    with pytest.raises(NetBuildError, match="takes 2 to 3 bottoms"):
        build([{"name": "l", "type": "LSTM", "num_output": 2}], {"data": np.zeros((T, N, D))})


# ------------------------------------------------------------------------ a sequence model end to end
def test_char_model_head_inner_product_axis_2_and_softmax_loss_over_sequences():
    """Embed → LSTM → InnerProduct(axis 2) → SoftmaxWithLoss(axis 2, ignore_label): numpy gives the
    same mean loss over the [T, N] positions that are not ignored."""
    r = rng(11)
    V = 7
    ids = r.integers(0, V, (T, N))
    label = r.integers(0, V, (T, N))
    label[1, 2] = -1
    cont = np.ones((T, N))
    cont[0] = 0
    layers = [
        {"name": "embed", "type": "Embed", "bottom": "data", "input_dim": V, "num_output": D},
        {"name": "lstm", "type": "LSTM", "bottom": ["embed", "cont"], "num_output": H, "weight_filler": GAUSS},
        {"name": "ip", "type": "InnerProduct", "num_output": V, "axis": 2},
        {"name": "loss", "type": "SoftmaxWithLoss", "bottom": ["ip", "label"], "axis": 2, "ignore_label": -1},
    ]
    net = build(layers, {"data": ids, "cont": cont, "label": label})
    loss, ip, h = net.run(["loss", "ip", "lstm"])
    assert ip.shape == (T, N, V)
    np.testing.assert_allclose(ip, h @ net.value("ip/weights").T + net.value("ip/bias"), rtol=1e-10)
    logp = ip - np.log(np.exp(ip).sum(-1, keepdims=True))
    valid = label >= 0
    want = -np.take_along_axis(logp, np.where(valid, label, 0)[..., None], -1)[..., 0][valid].mean()
    np.testing.assert_allclose(loss, want, rtol=1e-10)
    net.grad_check("loss", ["lstm/weights_h", "embed/weights"], max_points=10)
