"""The per-op test harness: forward against a numpy reference, float64 central-difference checks
of first and second derivatives, and a record of which op types had their gradient checked.

An op test gives inputs, a graph builder and a numpy expectation::

    check_op(lambda x, y: tc.maximum(x, y), [a, b], np.maximum, kinks=distinct)

``check_op`` builds the graph in a fresh ``tc.Graph`` (float inputs become placeholders of the
dtype under test, integer/bool inputs placeholders of their own dtype), then

1. runs it in float32 (the default) and float64, checks the output dtype follows the input
   dtype and equals the static dtype, the static shape fits the run-time one, and compares with
   ``expected(*inputs)`` computed by numpy in float64; the symbolic gradients are also run in
   each dtype (they must keep it, and float32 ones must be close to float64 ones);
2. in float64, checks the symbolic gradient of ``L = Σ_i sum(out_i · c_i)`` (``c_i`` a random
   cotangent fed through ``grad_ys``) against central differences of ``L``, element by element;
3. with ``second_order=True``, checks the gradient of ``L2 = Σ_j sum(dL/dx_j · c2_j)`` with respect
   to the inputs *and* the cotangents against central differences of the first gradient graph, so
   the gradient rules of the gradient ops (ReluGrad, GatherGrad, Conv2DBackpropInput, ...) are
   checked as well.

Kinks: inputs are moved away from known non-differentiable points before any check
(``kinks=[0.0]`` keeps |x - 0| > ``kink_delta``; ``kinks=distinct`` spreads values apart so max/min
have no ties). A check that still lands on a kink shows one-sided differences that disagree; the
failure message prints both so the cause is visible.

``checked``, if given, is called with the ops on the differentiated path of every passing
gradient check (tfconf's own tests record their types and compare them with the op registry).

Usable by anyone writing an op or a Python layer's composite::

    from tfconf.testing import check_op
    check_op(lambda x: my_softsign(x), [np.random.randn(3, 4)], lambda x: x / (1 + abs(x)),
             second_order=True)
"""

from __future__ import annotations

import numpy as np

from tfconf.engine import api as tc
from tfconf.engine.autodiff import ops_between

# ---------------------------------------------------------------------------- kink avoidance
def away_from(x, points=(0.0,), delta=0.1):
    """Move every value closer than ``delta`` to one of ``points`` out to ``point ± delta``."""
    x = np.array(x, dtype=np.float64, copy=True)
    for p in points:
        d = x - p
        near = np.abs(d) < delta
        x[near] = p + np.where(d[near] >= 0, delta, -delta)
    return x


def distinct(x, gap=0.05, rng=None):
    """The same shape, with all values pairwise at least ``gap`` apart (a shuffled ramp around
    x's centre), so max/min/maximum/minimum have no ties."""
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(1234) if rng is None else rng
    n = x.size
    ramp = (np.arange(n) - (n - 1) / 2) * gap * 2
    return (rng.permutation(ramp) + float(np.mean(x)) if n else ramp).reshape(x.shape)


def _apply_kinks(arrays, kinks, delta, wrt):
    if kinks is None:
        return arrays
    out = list(arrays)
    for i in wrt:
        if callable(kinks):
            out[i] = kinks(out[i])
        else:
            out[i] = away_from(out[i], kinks, delta)
    return out


# ---------------------------------------------------------------------------- graph helpers
def _as_list(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _placeholders(arrays, float_dtype, dynamic):
    """``dynamic``: False, True (every input's dims unknown) or the indices of such inputs."""
    phs = []
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        if a.dtype.kind == "f":
            dt = float_dtype
        else:
            dt = tc.as_dtype(a.dtype)
        dyn = dynamic if isinstance(dynamic, bool) else i in dynamic
        shape = [None] * a.ndim if dyn else list(a.shape)
        phs.append(tc.placeholder(dt, shape, name=f"in{i}"))
    return phs


def _feed(phs, arrays, float_np):
    feed = {}
    for p, a in zip(phs, arrays):
        a = np.asarray(a)
        feed[p] = a.astype(float_np) if a.dtype.kind == "f" else a
    return feed


class _Inputs:
    """The graph handles of check_op's inputs: placeholders (fed on every run), or for the
    indices in ``variables`` tc.Variables (loaded before every run, so ops reading variables
    are checked like any other; gradients are taken w.r.t. the variable's tensor)."""

    def __init__(self, arrays, float_dtype, dynamic, variables=()):
        self.variables = set(variables)
        phs = _placeholders(arrays, float_dtype, dynamic)
        self.handles, self.tensors = [], []
        for i, (a, p) in enumerate(zip(arrays, phs)):
            if i in self.variables:
                v = tc.Variable(np.asarray(a).astype(p.dtype.np), name=f"var{i}")
                self.handles.append(v)
                self.tensors.append(v.value())
            else:
                self.handles.append(p)
                self.tensors.append(p)

    def feed(self, sess, arrays, float_np):
        feed = {}
        for i, (h, a) in enumerate(zip(self.handles, arrays)):
            a = np.asarray(a)
            a = a.astype(float_np) if a.dtype.kind == "f" else a
            if i in self.variables:
                h.load(a, sess)
            else:
                feed[h] = a
        return feed


# ---------------------------------------------------------------------------- numeric checks
def _numeric_grad(f, arrays, i, eps):
    """Central differences of the scalar ``f(arrays)`` w.r.t. ``arrays[i]``; also returns the
    one-sided differences for kink diagnosis."""
    x = arrays[i]
    num = np.zeros_like(x, dtype=np.float64)
    fwd = np.zeros_like(num)
    bwd = np.zeros_like(num)
    f0 = f(arrays)
    flat = x.reshape(-1)
    assert np.shares_memory(flat, x), "the harness perturbs inputs in place: they must be contiguous"
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        fp = f(arrays)
        flat[k] = old - eps
        fm = f(arrays)
        flat[k] = old
        num.reshape(-1)[k] = (fp - fm) / (2 * eps)
        fwd.reshape(-1)[k] = (fp - f0) / eps
        bwd.reshape(-1)[k] = (f0 - fm) / eps
    return num, fwd, bwd


def _compare_grad(analytic, numeric, fwd, bwd, rtol, atol, what):
    a = np.zeros_like(numeric) if analytic is None else np.asarray(analytic, dtype=np.float64)
    assert a.shape == numeric.shape, f"{what}: gradient shape {a.shape}, expected {numeric.shape}"
    bad = ~np.isclose(a, numeric, rtol=rtol, atol=atol)
    if bad.any():
        k = np.argwhere(bad)[0]
        k = tuple(int(v) for v in k)
        kink = abs(fwd[k] - bwd[k]) > 1e-3 * max(1.0, abs(numeric[k]))
        raise AssertionError(
            f"{what}: {int(bad.sum())}/{bad.size} gradient entries differ from central differences "
            f"(rtol={rtol}, atol={atol}); first at {k}: analytic {a[k]!r}, numeric {numeric[k]!r} "
            f"(one-sided: {fwd[k]!r} / {bwd[k]!r}{' -- the input sits on a kink' if kink else ''})"
            f"{' [the graph returned no gradient]' if analytic is None else ''}\n"
            f"analytic:\n{a}\nnumeric:\n{numeric}"
        )


# ---------------------------------------------------------------------------- the harness
def check_op(build, inputs, expected=None, *, wrt=None, grad=True, second_order=False,
             kinks=None, kink_delta=0.1, dynamic=False, dtypes=(tc.float32, tc.float64),
             rtol32=1e-5, atol32=1e-6, rtol64=1e-10, atol64=1e-12,
             eps=1e-6, grad_rtol=1e-5, grad_atol=1e-6, eps2=1e-5, grad2_rtol=1e-4, grad2_atol=1e-5,
             check_dtype=True, variables=(), grad32_rtol=1e-3, seed=0, checked=None):
    """Check one op (or a small composite) built by ``build(*input_tensors)``.

    ``inputs``: numpy arrays; float ones become placeholders of each dtype in ``dtypes`` (and of
    float64 for derivatives), the others placeholders of their own dtype. ``expected``: a numpy
    function of the (float64) inputs giving the output(s), or None to skip the forward check.
    ``wrt``: indices of the inputs to differentiate (default: every float input). ``dynamic``:
    also run every check with placeholders whose dims are all None (shapes only known at run
    time); True for every input, or a list of input indices. ``check_dtype``: the float outputs
    must have the dtype under test (turn off for casts). ``variables``: indices of the inputs to
    pass to ``build`` as tc.Variables instead of placeholders. ``checked``: called with the ops
    whose gradients a passing check verified. Returns the float64 outputs."""
    rng = np.random.default_rng(seed)
    arrays = [np.array(a, copy=True) for a in inputs]
    float_idx = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]
    arrays = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]
    wrt = float_idx if wrt is None else list(wrt)
    arrays = _apply_kinks(arrays, kinks, kink_delta, wrt)
    if isinstance(dynamic, (list, tuple)):
        dynamic = tuple(int(i) for i in dynamic)
    modes = (False, dynamic) if dynamic else (False,)

    # 1. forward in every dtype (and with run-time shapes when asked)
    want = None
    if expected is not None:
        want = [np.asarray(w) for w in _as_list(expected(*[a.copy() for a in arrays]))]
    out64 = g32 = None
    for dyn in modes:
        for dt in dtypes:
            dt = tc.as_dtype(dt)
            g = tc.Graph()
            with g.as_default():
                inp = _Inputs(arrays, dt, dyn, variables)
                outs = _as_list(build(*inp.handles))
                # gradients in this dtype too: same dtype and shape as the inputs, and (below)
                # float32 values close to float64 ones, so no rule or kernel leaks a dtype
                fouts = [o for o in outs if o.dtype.is_floating]
                gxs = [inp.tensors[i] for i in wrt]
                grads_dt = tc.gradients(fouts, gxs) if grad and fouts and gxs else []
                live = [gr for gr in grads_dt if gr is not None]
                with tc.Session(graph=g) as sess:
                    got, gvals = sess.run((outs, live), inp.feed(sess, arrays, dt.np))
            for gr, gv, x in zip(live, gvals, gxs):
                assert gr.dtype == x.dtype and np.asarray(gv).dtype == dt.np, (
                    f"gradient of {x.name} in {dt.name}: static {gr.dtype.name}, run-time {np.asarray(gv).dtype}")
            if dt == tc.float64:
                out64 = got
                if dtypes[0] != dt and g32 is not None:
                    for v32, v64 in zip(g32, gvals):
                        scale = float(np.max(np.abs(v64))) if np.size(v64) else 1.0
                        np.testing.assert_allclose(v32, v64, rtol=grad32_rtol, atol=grad32_rtol * max(scale, 1.0),
                                                   err_msg="float32 gradient vs float64 gradient")
            elif dt == tc.float32 and not dyn:
                g32 = gvals
            if want is None:
                continue
            assert len(got) == len(want), f"{len(got)} outputs, expected {len(want)}"
            for k, (o, w, t) in enumerate(zip(got, want, outs)):
                o = np.asarray(o)
                what = f"output {k} ({t.op.type}, {dt.name}{', dynamic shapes' if dyn else ''})"
                assert o.shape == w.shape, f"{what}: shape {o.shape}, expected {w.shape}"
                if w.dtype.kind == "f" and float_idx and check_dtype:
                    assert o.dtype == dt.np, f"{what}: dtype {o.dtype}, expected {dt.np}"
                elif w.dtype.kind in "biu":
                    assert o.dtype.kind == w.dtype.kind, f"{what}: dtype {o.dtype}, expected kind of {w.dtype}"
                assert o.dtype == t.dtype.np, f"{what}: run-time dtype {o.dtype} differs from static {t.dtype.name}"
                static = t._shape
                if static is not None:
                    assert len(static) == o.ndim and all(
                        s is None or s == d for s, d in zip(static, o.shape)
                    ), f"{what}: static shape {static} does not match run-time shape {o.shape}"
                if w.dtype.kind == "f":
                    r, a_ = (rtol32, atol32) if dt == tc.float32 else (rtol64, atol64)
                    if dt == tc.float16:
                        r, a_ = 1e-2, 1e-2
                    np.testing.assert_allclose(o, w, rtol=r, atol=a_, err_msg=what)
                else:
                    np.testing.assert_array_equal(o, w, err_msg=what)

    if not grad or not wrt:
        return out64

    # 2. first derivatives (float64)
    for dyn in modes:
        _check_grads(build, arrays, wrt, dyn, variables, rng, eps, grad_rtol, grad_atol,
                     second_order, eps2, grad2_rtol, grad2_atol, checked)
    return out64


def _check_grads(build, arrays, wrt, dyn, variables, rng, eps, rtol, atol, second_order, eps2,
                 rtol2, atol2, checked=None):
    tag = " (dynamic shapes)" if dyn else ""
    g = tc.Graph()
    with g.as_default():
        inp = _Inputs(arrays, tc.float64, dyn, variables)
        outs = _as_list(build(*inp.handles))
        sess = tc.Session(graph=g)
        feed = inp.feed(sess, arrays, np.float64)
        vals = sess.run(outs, feed)
        diff_outs = [(o, v) for o, v in zip(outs, vals) if o.dtype.is_floating]
        if not diff_outs:  # bool/int results (comparisons, argmax): nothing to differentiate
            sess.close()
            return
        cots = [rng.standard_normal(np.shape(v)).astype(o.dtype.np) for o, v in diff_outs]
        cot_phs = [tc.placeholder(o.dtype, [None] * np.ndim(c) if dyn else np.shape(c), name=f"cot{j}")
                   for j, ((o, _), c) in enumerate(zip(diff_outs, cots))]
        ys = [o for o, _ in diff_outs]
        xs = [inp.tensors[i] for i in wrt]
        grads = tc.gradients(ys, xs, grad_ys=cot_phs)
        for gr, x in zip(grads, xs):
            if gr is not None:
                assert gr.dtype == x.dtype, f"gradient of {x.name} has dtype {gr.dtype.name}"

        arrs = [np.array(a, copy=True) for a in arrays]

        def full_feed():  # (re)loads variables too: finite differences leave them perturbed
            fd = inp.feed(sess, arrays, np.float64)
            fd.update(zip(cot_phs, cots))
            return fd

        def loss(cur):
            vs = sess.run(ys, inp.feed(sess, cur, np.float64))
            return float(sum(np.sum(np.asarray(v, dtype=np.float64) * c) for v, c in zip(vs, cots)))

        live = [gr for gr in grads if gr is not None]
        got = sess.run(live, full_feed()) if live else []
        it = iter(got)
        analytic = [next(it) if gr is not None else None for gr in grads]
        for i, a in zip(wrt, analytic):
            if a is not None:
                assert np.shape(a) == arrays[i].shape, (
                    f"gradient of input {i}{tag} has shape {np.shape(a)}, expected {arrays[i].shape}")
            num, fwd, bwd = _numeric_grad(loss, arrs, i, eps)
            _compare_grad(a, num, fwd, bwd, rtol, atol, f"d/d input {i}{tag}")
        if checked is not None:
            checked(ops_between(xs, ys))

        if not second_order:
            sess.close()
            return

        # 3. second derivatives: L2 = Σ_j sum(dL/dx_j · c2_j), differentiated w.r.t. xs and cots
        live_idx = [j for j, gr in enumerate(grads) if gr is not None]
        assert live_idx, "second-order check: no first gradient to differentiate"
        g1 = [grads[j] for j in live_idx]
        c2 = [rng.standard_normal(arrays[wrt[j]].shape) for j in live_idx]
        c2_t = [tc.constant(c, dtype=tc.float64) for c in c2]
        xs2 = xs + cot_phs
        grads2 = tc.gradients(g1, xs2, grad_ys=c2_t)
        cur = {"x": [np.array(a, copy=True) for a in arrays], "c": [c.copy() for c in cots]}

        def loss2(_):
            fd = inp.feed(sess, cur["x"], np.float64)
            fd.update(zip(cot_phs, cur["c"]))
            vs = sess.run(g1, fd)
            return float(sum(np.sum(v * c) for v, c in zip(vs, c2)))

        live2 = [gr for gr in grads2 if gr is not None]
        got2 = iter(sess.run(live2, full_feed()) if live2 else [])
        analytic2 = [next(got2) if gr is not None else None for gr in grads2]
        targets = [("x", i) for i in wrt] + [("c", j) for j in range(len(cots))]
        for (kind, i), a in zip(targets, analytic2):
            num, fwd, bwd = _numeric_grad(loss2, cur[kind], i, eps2)
            name = f"input {i}" if kind == "x" else f"cotangent {i}"
            _compare_grad(a, num, fwd, bwd, rtol2, atol2, f"second derivative d/d {name}{tag}")
        if checked is not None:
            checked(ops_between(xs2, g1))
        sess.close()


def run(build, *arrays, dtype=tc.float32):
    """Build ``build(*placeholders)`` in a fresh graph and run it once; returns the value(s)."""
    g = tc.Graph()
    with g.as_default():
        phs = _placeholders(arrays, tc.as_dtype(dtype), False)
        outs = build(*phs)
        with tc.Session(graph=g) as sess:
            return sess.run(outs, _feed(phs, arrays, tc.as_dtype(dtype).np))
