"""``ApplyUpdate``: the one parameter-update op, for Caffe's solvers and the TF1 optimizers alike.

Each rule reads the variable and its slot variables from the session, computes the new values in
one pass and stores them. Inputs: the handles (``variable.handle``) of the variable and of its
slot variables (as many as the rule keeps), then ``lr`` (the rate for this parameter, lr_mult applied), ``grad``
(weight decay already added), ``t`` (1-based step, for the rules that read it: Adam's bias
correction; every Caffe rule takes it) and the hyperparameters named in attr ``hyper_inputs`` (a TF1 optimizer's momentum may
be a tensor); the rest of the hyperparameters are constants in attr ``hyper``. The Caffe rules'
formulas are Caffe's (sgd_solvers.cpp), GradientDescent and Momentum are TensorFlow's
(training_ops.cc). The op outputs nothing: run it as a target.

An array another holder may still see (an earlier read in the same run, a fetch, a view) is never
mutated: the update stores new arrays. A rule with an in-place form (TF's GradientDescent and
Momentum) updates in place when the session's store holds the sole reference to every array it
writes (checked with ``sys.getrefcount``, as numpy's own temporary elision does), which saves two
allocations and a pass over every parameter per step."""

from __future__ import annotations

import sys
from typing import Callable, NamedTuple, Optional

from ..kernels.providers import onednn
from ..registry import OpDef, register
from .state import current, referenced


class Rule(NamedTuple):
    #: ``fn(xp, w, g, lr, t, slots, hp) -> (new w, new slots)``: the update on new arrays
    fn: Callable
    #: the number of slot variables (history arrays) it keeps per parameter
    slots: int
    #: True when the op takes the 1-based step ``t`` as its third input (every Caffe rule: the
    #: solver feeds its iteration; only Adam reads it); TF's GradientDescent and Momentum take none
    steps: bool = True
    #: ``inplace(xp, w, g, lr, slots, hp)``: the same update written into w and the slots
    inplace: Optional[Callable] = None


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
    # Caffe's and TensorFlow's Adam alike: lr_t = lr·√(1-β2ᵗ)/(1-β1ᵗ);  w -= lr_t·m/(√v + ε)
    b1, b2, eps = hp["momentum"], hp["momentum2"], hp["delta"]
    m = s[0] * b1 + (1 - b1) * g
    v = s[1] * b2 + (1 - b2) * g * g
    corr = (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
    new = w - (lr * corr) * m / (xp.sqrt(v) + eps)
    if hp.get("decoupled_decay"):  # AdamW: decay applied to the weights, not the gradient
        new = new - lr * hp["decoupled_decay"] * w
    return new, (m, v)


def _gradient_descent(xp, w, g, lr, t, s, hp):
    # TF: w -= lr·grad
    return w - lr * g, ()


def _gradient_descent_inplace(xp, w, g, lr, s, hp):
    w -= lr * g


def _momentum(xp, w, g, lr, t, s, hp):
    # TF: accum = momentum·accum + grad;  w -= lr·accum  (Nesterov: w -= lr·(grad + momentum·accum))
    m = hp["momentum"]
    a = s[0] * m
    a += g
    step = g + m * a if hp.get("use_nesterov") else a
    u = xp.multiply(step, -lr)
    u += w
    return u, (a,)


def _momentum_inplace(xp, w, g, lr, s, hp):
    m, a = hp["momentum"], s[0]
    a *= m
    a += g
    w -= xp.multiply(g + m * a if hp.get("use_nesterov") else a, lr)


RULES = {
    "SGD": Rule(_sgd, 1), "Nesterov": Rule(_nesterov, 1), "AdaGrad": Rule(_adagrad, 1),
    "RMSProp": Rule(_rmsprop, 1), "AdaDelta": Rule(_adadelta, 2), "Adam": Rule(_adam, 2), "AdamW": Rule(_adam, 2),
    "GradientDescent": Rule(_gradient_descent, 0, steps=False, inplace=_gradient_descent_inplace),
    "Momentum": Rule(_momentum, 1, steps=False, inplace=_momentum_inplace),
}

# references to an array held only by the store, seen from inside sole(): the dict entry, the
# caller's local name (or list entry), sole()'s parameter and getrefcount's own argument
_SOLE_REFS = 4


def sole(a):
    """True when ``a`` (held by the store and one local name or list entry) is referenced nowhere
    else: an update may then write it in place (the reference rules and the oneDNN kernels)."""
    # NOTE: cupy arrays have flags but no ``writeable`` (they always are)
    return sys.getrefcount(a) <= _SOLE_REFS and getattr(a, "flags", None) is not None \
        and getattr(a.flags, "writeable", True) and a.flags.owndata


@register
class ApplyUpdate(OpDef):
    """var, slots ← RULES[rule](var, grad, lr, t, slots, hyper). Inputs: var's handle, the slots'
    handles, lr, grad, [t], the hyper_inputs. Outputs nothing."""

    stateful = True
    nondifferentiable = True
    kernels = {"onednn": onednn("apply_update")}

    def infer(op):
        rule = RULES.get(op.attrs["rule"])
        if rule is None:
            raise ValueError(f"unknown update rule {op.attrs['rule']!r}; known: {', '.join(RULES)}")
        named = op.attrs.get("hyper_inputs", ())
        want = 1 + rule.slots + 2 + rule.steps + len(named)
        if len(op.inputs) != want:
            raise ValueError(
                f"rule {op.attrs['rule']} takes {want} inputs (the variable's handle, {rule.slots} slot "
                f"handles, lr, grad{', t' if rule.steps else ''}{''.join(', ' + h for h in named)}), "
                f"not {len(op.inputs)}")
        for t in op.inputs[:1 + rule.slots]:
            referenced(t)
        return []

    def make_kernel(op, ctx):
        store, xp = ctx.variables, ctx.xp
        hyper = op.attrs["hyper"]
        rule = RULES[op.attrs["rule"]]
        fn, inplace, steps, refs = rule.fn, rule.inplace, rule.steps, 1 + rule.slots
        named = tuple(op.attrs.get("hyper_inputs", ()))

        def apply(var, *rest):
            slots, (lr, grad, *rest) = rest[:refs - 1], rest[refs - 1:]
            t = rest[0] if steps else None
            hp = {**hyper, **dict(zip(named, rest[steps:]))} if named else hyper
            w = current(op, store, var)
            s = [current(op, store, n) for n in slots]
            if inplace is not None and w.dtype == grad.dtype and sole(w) and \
                    all(s[i].dtype == grad.dtype and sole(s[i]) for i in range(len(s))):
                inplace(xp, w, grad, lr, s, hp)
                return ()
            new, new_slots = fn(xp, w, grad, lr, t, s, hp)
            store[var] = new.astype(w.dtype, copy=False)
            for n, v in zip(slots, new_slots):
                store[n] = v.astype(w.dtype, copy=False)
            return ()

        return apply
