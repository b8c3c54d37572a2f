"""The solver's update rules against Caffe's formulas written out in numpy, step by step; weight
decay (L2/L1) with decay_mult, lr_mult, gradient clipping, and iter_size accumulation."""

from __future__ import annotations

import numpy as np
import pytest

from tfconf.frontend.layers import LAYERS
from tfconf.frontend.net_schema import NetConfig
from tfconf.train.solver import Solver

X = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
Y = np.array([0, 1, 2, 1, 0, 2, 1, 0])


def _config(solver, layers=None, batch=4):
    np.savez("/tmp/_tfconf_rules.npz", x=X, y=Y)
    return NetConfig.model_validate({
        "name": "rules",
        "data": {"train": {"source": "/tmp/_tfconf_rules.npz", "batch_size": batch, "shuffle": False},
                 "test": {"source": "/tmp/_tfconf_rules.npz", "batch_size": batch}},
        "layers": layers or [
            {"name": "ip", "type": "InnerProduct", "num_output": 3, "weight_filler": {"type": "gaussian", "std": 0.5},
             "bias_filler": {"type": "constant", "value": 0.1}, "param": [{"lr_mult": 1}, {"lr_mult": 2, "decay_mult": 0}]},
            {"name": "loss", "type": "SoftmaxWithLoss", "bottom": ["ip", "label"]},
        ],
        "solver": {"max_iter": 10, "random_seed": 3, **solver},
    })


def _grads(w, b, x, y):
    """Gradient of the mean softmax cross-entropy of x·wᵀ + b (numpy, float64)."""
    z = x @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    p /= len(y)
    return p.T @ x, p.sum(0)


def _reference(rule, steps, hp, lr_of, w, b, batch=4, wd=0.0, reg="L2", clip=None, iter_size=1):
    """Caffe's sgd_solvers.cpp, per parameter (weights lr_mult 1 decay_mult 1; bias 2 and 0)."""
    params = {"w": w.astype(np.float64), "b": b.astype(np.float64)}
    mult = {"w": (1.0, 1.0), "b": (2.0, 0.0)}
    hist = {k: [np.zeros_like(v), np.zeros_like(v)] for k, v in params.items()}
    pos = 0
    for it in range(steps):
        acc = {k: np.zeros_like(v) for k, v in params.items()}
        for _ in range(iter_size):
            idx = np.arange(pos, pos + batch) % len(Y)
            pos += batch
            gw, gb = _grads(params["w"], params["b"], X[idx].astype(np.float64), Y[idx])
            acc["w"] += gw
            acc["b"] += gb
        if clip:
            norm = np.sqrt(sum((g * g).sum() for g in acc.values()))
            if norm > clip:
                acc = {k: g * clip / norm for k, g in acc.items()}
        lr = lr_of(it)
        for k in params:
            g = acc[k] / iter_size
            lm, dm = mult[k]
            if rule != "AdamW" and wd * dm:
                g = g + wd * dm * (params[k] if reg == "L2" else np.sign(params[k]))
            rate = lr * lm
            h, h2 = hist[k]
            m = hp.get("momentum", 0.0)
            if rule == "SGD":
                h[:] = m * h + rate * g
                params[k] = params[k] - h
            elif rule == "Nesterov":
                prev = h.copy()
                h[:] = m * h + rate * g
                params[k] = params[k] - ((1 + m) * h - m * prev)
            elif rule == "AdaGrad":
                h += g * g
                params[k] = params[k] - rate * g / (np.sqrt(h) + hp["delta"])
            elif rule == "RMSProp":
                h[:] = hp["rms_decay"] * h + (1 - hp["rms_decay"]) * g * g
                params[k] = params[k] - rate * g / (np.sqrt(h) + hp["delta"])
            elif rule == "AdaDelta":
                h[:] = m * h + (1 - m) * g * g
                upd = g * np.sqrt((h2 + hp["delta"]) / (h + hp["delta"]))
                h2[:] = m * h2 + (1 - m) * upd * upd
                params[k] = params[k] - rate * upd
            elif rule in ("Adam", "AdamW"):
                b1, b2, t = m, hp["momentum2"], it + 1
                h[:] = b1 * h + (1 - b1) * g
                h2[:] = b2 * h2 + (1 - b2) * g * g
                corr = np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                new = params[k] - rate * corr * h / (np.sqrt(h2) + hp["delta"])
                if rule == "AdamW":
                    new = new - rate * wd * dm * params[k]
                params[k] = new
    return params["w"], params["b"]


CASES = [
    ("SGD", {"momentum": 0.9}),
    ("Nesterov", {"momentum": 0.9}),
    ("AdaGrad", {"delta": 1e-6}),
    ("RMSProp", {"rms_decay": 0.95, "delta": 1e-6}),
    ("AdaDelta", {"momentum": 0.95, "delta": 1e-6}),
    ("Adam", {"momentum": 0.9, "momentum2": 0.999, "delta": 1e-8}),
    ("AdamW", {"momentum": 0.9, "momentum2": 0.999, "delta": 1e-8}),
]


def _run(solver_cfg, steps, **kw):
    s = Solver(_config(solver_cfg, **kw), None, prefetch=0)
    try:
        w0 = {k: v.copy() for k, v in s.weights().items()}
        lrs = []
        for _ in range(steps):
            _, lr = s.step()
            lrs.append(lr)
        return w0, s.weights(), lrs
    finally:
        s.close()


@pytest.mark.parametrize("rule,hp", CASES, ids=[c[0] for c in CASES])
def test_update_rule_matches_caffe(rule, hp):
    cfg = {"type": rule, "base_lr": 0.05, "weight_decay": 0.01, "lr_policy": "step", "gamma": 0.5, "stepsize": 2, **hp}
    w0, w, lrs = _run(cfg, 5)
    assert lrs == pytest.approx([0.05, 0.05, 0.025, 0.025, 0.0125])
    rw, rb = _reference(rule, 5, hp, lambda it: lrs[it], w0["ip/weights"], w0["ip/bias"], wd=0.01)
    np.testing.assert_allclose(w["ip/weights"], rw, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(w["ip/bias"], rb, rtol=2e-5, atol=2e-6)
    assert not np.allclose(w["ip/weights"], w0["ip/weights"])


def test_l1_decay_and_clipping_match_caffe():
    cfg = {"type": "SGD", "base_lr": 0.5, "momentum": 0.5, "weight_decay": 0.02, "regularization_type": "L1",
           "clip_gradients": 0.1}
    w0, w, lrs = _run(cfg, 4)
    rw, rb = _reference("SGD", 4, {"momentum": 0.5}, lambda it: 0.5, w0["ip/weights"], w0["ip/bias"],
                        wd=0.02, reg="L1", clip=0.1)
    np.testing.assert_allclose(w["ip/weights"], rw, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(w["ip/bias"], rb, rtol=2e-5, atol=2e-6)


def test_iter_size_accumulates_like_caffe():
    cfg = {"type": "SGD", "base_lr": 0.1, "momentum": 0.9, "iter_size": 2, "clip_gradients": 0.05}
    w0, w, _ = _run(cfg, 3, batch=2)
    rw, rb = _reference("SGD", 3, {"momentum": 0.9}, lambda it: 0.1, w0["ip/weights"], w0["ip/bias"],
                        batch=2, clip=0.05, iter_size=2)
    np.testing.assert_allclose(w["ip/weights"], rw, rtol=2e-5, atol=2e-6)


def test_iter_size_two_equals_double_batch_without_clipping():
    a = _run({"type": "SGD", "base_lr": 0.1, "momentum": 0.9, "iter_size": 2}, 3, batch=2)[1]
    b = _run({"type": "SGD", "base_lr": 0.1, "momentum": 0.9}, 3, batch=4)[1]
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_lr_mult_zero_freezes_a_parameter():
    layers = [
        {"name": "ip", "type": "InnerProduct", "num_output": 3, "param": [{"lr_mult": 0}, {"lr_mult": 1}]},
        {"name": "loss", "type": "SoftmaxWithLoss", "bottom": ["ip", "label"]},
    ]
    w0, w, _ = _run({"type": "SGD", "base_lr": 0.1, "momentum": 0.9}, 3, layers=layers)
    np.testing.assert_array_equal(w0["ip/weights"], w["ip/weights"])
    assert not np.allclose(w0["ip/bias"], w["ip/bias"])


def test_shared_param_names_share_one_blob():
    layers = [
        {"name": "a", "type": "InnerProduct", "bottom": "data", "top": "a", "num_output": 3, "param": [{"name": "shared_w"}]},
        {"name": "b", "type": "InnerProduct", "bottom": "data", "top": "b", "num_output": 3, "param": [{"name": "shared_w"}]},
        {"name": "sum", "type": "Eltwise", "bottom": ["a", "b"]},
        {"name": "loss", "type": "SoftmaxWithLoss", "bottom": ["sum", "label"]},
    ]
    assert "Eltwise" in LAYERS
    w0, w, _ = _run({"type": "SGD", "base_lr": 0.1}, 2, layers=layers)
    assert "shared_w" in w and "a/weights" not in w and "b/weights" not in w
    assert not np.allclose(w0["shared_w"], w["shared_w"])
