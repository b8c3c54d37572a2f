"""``ApplyUpdate``: one fused parameter update per variable for Caffe's solvers.

Each rule reads the variable and its slot variables from the session, computes the new values in
one pass and stores them (replacing, never mutating in place). Inputs: ``lr`` (the rate for this
parameter, lr_mult applied), ``grad`` (weight decay already added) and ``t`` (1-based iteration,
used by Adam's bias correction). The formulas are Caffe's (sgd_solvers.cpp)."""

from __future__ import annotations

from .. import errors
from ..kernels.providers import onednn
from ..registry import OpDef, register


def _sgd(xp, w, g, lr, t, s, hp):
    # Caffe: history = momentum·history + lr·grad;  w -= history
    h = s[0] * hp["momentum"]
    h += lr * g
    return w - h, (h,)


def _nesterov(xp, w, g, lr, t, s, hp):
    # Caffe: h_prev = h;  h = m·h + lr·g;  w -= (1+m)·h - m·h_prev
    m = hp["momentum"]
    h = s[0] * m + lr * g
    return w - ((1 + m) * h - m * s[0]), (h,)


def _adagrad(xp, w, g, lr, t, s, hp):
    h = s[0] + g * g
    return w - lr * g / (xp.sqrt(h) + hp["delta"]), (h,)


def _rmsprop(xp, w, g, lr, t, s, hp):
    d = hp["rms_decay"]
    h = s[0] * d + (1 - d) * g * g
    return w - lr * g / (xp.sqrt(h) + hp["delta"]), (h,)


def _adadelta(xp, w, g, lr, t, s, hp):
    m, eps = hp["momentum"], hp["delta"]
    h = s[0] * m + (1 - m) * g * g
    upd = g * xp.sqrt((s[1] + eps) / (h + eps))
    h2 = s[1] * m + (1 - m) * upd * upd
    return w - lr * upd, (h, h2)


def _adam(xp, w, g, lr, t, s, hp):
    b1, b2, eps = hp["momentum"], hp["momentum2"], hp["delta"]
    m = s[0] * b1 + (1 - b1) * g
    v = s[1] * b2 + (1 - b2) * g * g
    corr = (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
    new = w - (lr * corr) * m / (xp.sqrt(v) + eps)
    if hp.get("decoupled_decay"):  # AdamW: decay applied to the weights, not the gradient
        new = new - lr * hp["decoupled_decay"] * w
    return new, (m, v)


RULES = {
    "SGD": (_sgd, 1), "Nesterov": (_nesterov, 1), "AdaGrad": (_adagrad, 1), "RMSProp": (_rmsprop, 1),
    "AdaDelta": (_adadelta, 2), "Adam": (_adam, 2), "AdamW": (_adam, 2),
}


@register
class ApplyUpdate(OpDef):
    """var, slots ← RULES[rule](var, grad, lr, t, slots, hyper). Outputs nothing."""

    stateful = True
    nondifferentiable = True
    kernels = {"onednn": onednn("apply_update")}

    def variables(op):
        return (op.attrs["var"], *op.attrs["slots"])

    def infer(op):
        rule = op.attrs["rule"]
        if rule not in RULES:
            raise ValueError(f"unknown update rule {rule!r}; known: {', '.join(RULES)}")
        if len(op.attrs["slots"]) != RULES[rule][1]:
            raise ValueError(f"rule {rule} needs {RULES[rule][1]} slot variables")
        return []

    def make_kernel(op, ctx):
        store, xp = ctx.variables, ctx.xp
        var, slots, hp = op.attrs["var"], op.attrs["slots"], op.attrs["hyper"]
        fn = RULES[op.attrs["rule"]][0]

        def read(name):
            try:
                return store[name]
            except KeyError:
                raise errors.FailedPreconditionError(
                    f"Attempting to use uninitialized value {name} ({op.describe()}).", op) from None

        def apply(lr, grad, t):
            w = read(var)
            new, new_slots = fn(xp, w, grad, lr, t, [read(s) for s in slots], hp)
            store[var] = new.astype(w.dtype, copy=False)
            for s, v in zip(slots, new_slots):
                store[s] = v.astype(w.dtype, copy=False)
            return ()

        return apply
