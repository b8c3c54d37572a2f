"""The layer harness, for anyone writing a layer (a registered spec or a ``type: Python`` layer):
:func:`check_layer` builds it through the config compiler in both phases, checks that its config
round-trips, that every top has the static shape the compiler inferred and is finite, compares the
first top with a numpy ``expected`` when given, and checks the gradients of its float inputs and
its trainable parameters against float64 central differences. :class:`LayerNet` is the net it
builds, for tests that need more (tfconf's own layer tests use it)::

    from tfconf.testing import check_layer
    check_layer({"name": "s", "type": "Python", "module": "mylayers", "layer": "Softsign"},
                {"data": np.random.randn(2, 3)}, expected=lambda data: data / (1 + np.abs(data)))
"""

from __future__ import annotations

import numpy as np

from tfconf.engine import api as tc
from tfconf.frontend.compiler import build_net
from tfconf.frontend.layers import NetState, get_layer_class

__all__ = ["LayerNet", "check_layer", "rng", "roundtrip", "spec"]

RNG_SEED = 20240501


def rng(seed=0):
    return np.random.default_rng(RNG_SEED + seed)


def spec(d):
    """Validate one layer dict into its spec."""
    return get_layer_class(d["type"]).model_validate(d)


def roundtrip(d):
    """spec → model_dump(exclude_defaults) → model_validate gives the same spec; also via JSON."""
    s = spec(d)
    cls = type(s)
    short = s.model_dump(exclude_defaults=True)
    assert short["type"] == s.type and short["name"] == s.name
    assert cls.model_validate(short) == s
    assert cls.model_validate(s.model_dump()) == s
    assert cls.model_validate_json(s.model_dump_json()) == s
    return s


def _input_dtype(arr, dtype):
    if np.issubdtype(arr.dtype, np.integer):
        return "int64" if arr.dtype == np.int64 else "int32"
    return "float64" if dtype == tc.float64 else "float32"


class LayerNet:
    """One graph holding the requested phases of a net built from layer dicts (Input layers for
    ``inputs`` are prepended), with a session whose variables are initialized."""

    def __init__(self, layers, inputs, phases=("train",), dtype=tc.float64, dynamic_batch=False,
                 params=None, stages=()):
        self.graph = tc.Graph()
        self.dtype = dtype
        self.inputs = {k: np.asarray(v) for k, v in inputs.items()}
        head = []
        for name, arr in self.inputs.items():
            shape = list(arr.shape)
            if dynamic_batch and shape:
                shape[0] = -1
            head.append({"name": name, "type": "Input", "shape": [shape], "dtype": _input_dtype(arr, dtype)})
        self.specs = [spec(d) for d in head + list(layers)]
        self.params, self.meta, self.placeholders = {}, {}, {}
        self.nets = {}
        for ph in phases:
            self.nets[ph] = build_net(self.specs, NetState(phase=ph, stages=list(stages)), self.graph,
                                      self.params, self.meta, self.placeholders, dtype=dtype)
        with self.graph.as_default():
            init = tc.global_variables_initializer()
        self.sess = tc.Session(graph=self.graph)
        self.sess.run(init)
        for key, value in (params or {}).items():
            self.load(key, value)

    def net(self, phase=None):
        return self.nets[phase or next(iter(self.nets))]

    def top(self, name, phase=None):
        return self.net(phase).tops[name]

    def feed(self, overrides=None):
        vals = dict(self.inputs, **(overrides or {}))
        return {self.placeholders[k]: v for k, v in vals.items()}

    def run(self, fetch, phase=None, feeds=None):
        """Run top names (str or list) or tensors/ops."""
        single = not isinstance(fetch, (list, tuple))
        items = [fetch] if single else list(fetch)
        tensors = [self.top(f, phase) if isinstance(f, str) else f for f in items]
        out = self.sess.run(tensors, feed_dict=self.feed(feeds))
        for t, v in zip(tensors, out):  # the static shape the compiler inferred must hold
            static = t.shape.as_list() if isinstance(t, tc.Tensor) and t.shape.ndims is not None else None
            if static is not None:
                assert len(static) == np.ndim(v) and all(d is None or d == a for d, a in zip(static, np.shape(v))), \
                    f"{t.name}: static shape {static} but the run gave {list(np.shape(v))}"
        return out[0] if single else out

    def load(self, key, value):
        var = self.params[key]
        var.load(np.asarray(value, dtype=var.dtype.np), self.sess)

    def value(self, key):
        return self.sess.run(self.params[key])

    # ------------------------------------------------------------------ gradient check
    def grad_check(self, out, wrt, phase=None, seed=0, eps=1e-6, rtol=1e-5, atol=1e-7, max_points=None):
        """Compare tc.gradients of L = Σ out·c (c a fixed random cotangent) with respect to input
        names / parameter keys in ``wrt`` with central differences of L."""
        y = self.top(out, phase) if isinstance(out, str) else out
        base_feeds = dict(self.inputs)
        y_val = self.run(y, phase)
        c = rng(100 + seed).standard_normal(np.shape(y_val))
        with self.graph.as_default():
            cot = tc.constant(c, dtype=y.dtype)
            loss = tc.reduce_sum(y * cot)
            xs = [self.placeholders[w] if w in self.placeholders else self.params[w] for w in wrt]
            grads = tc.gradients(loss, xs)
        live = [g for g in grads if g is not None]
        vals = iter(self.sess.run(live, feed_dict=self.feed()) if live else [])
        sym = [next(vals) if g is not None else None for g in grads]
        r = rng(200 + seed)
        for w, g in zip(wrt, sym):
            is_input = w in self.placeholders
            x0 = np.array(base_feeds[w] if is_input else self.value(w), dtype=np.float64)
            g = np.zeros_like(x0) if g is None else np.asarray(g)  # None: no path, so 0
            assert g.shape == x0.shape, (w, g.shape, x0.shape)
            num = np.zeros_like(x0)
            idx = list(np.ndindex(*x0.shape)) if x0.ndim else [()]
            if max_points is not None and len(idx) > max_points:
                idx = [idx[i] for i in sorted(r.choice(len(idx), max_points, replace=False))]
            for i in idx:
                vals = []
                for sgn in (1, -1):
                    x = x0.copy()
                    x[i] += sgn * eps
                    if is_input:
                        vals.append(self.sess.run(loss, feed_dict=self.feed({w: x})))
                    else:
                        self.load(w, x)
                        vals.append(self.sess.run(loss, feed_dict=self.feed()))
                num[i] = (vals[0] - vals[1]) / (2 * eps)
            if not is_input:
                self.load(w, x0)
            sel = tuple(np.array(idx).T) if x0.ndim else ()
            np.testing.assert_allclose(g[sel], num[sel], rtol=rtol, atol=atol, err_msg=f"gradient w.r.t. {w}")


def _differentiable_inputs(inputs):
    """The fed inputs a gradient check perturbs: floats holding other than whole numbers (labels,
    indices and 0/1 masks are whole numbers, and piecewise constant where they are read)."""
    return [k for k, v in inputs.items()
            if np.issubdtype(np.asarray(v).dtype, np.floating) and not np.all(np.asarray(v) == np.round(v))]


def check_layer(layer, inputs, expected=None, *, params=None, grad=True, grad_phase="test", rtol=1e-6,
                atol=1e-9, grad_rtol=1e-5, grad_atol=1e-7, max_points=24, seed=0):
    """Check one layer (a config dict) fed ``inputs`` (top name → array; the first is its default
    bottom): config round-trip; a build in the train and test phases whose tops all have their
    static shapes and finite values; the first top against ``expected(**inputs)`` (float64 numpy)
    in the test phase; with ``grad``, the gradients of the first top with respect to the
    differentiable inputs and the trainable parameters (float64 central differences at up to
    ``max_points`` points each, in ``grad_phase``). ``params``: parameter name → value to load.
    Returns the :class:`LayerNet`."""
    names = roundtrip(layer).output_names()
    net = LayerNet([layer], inputs, phases=("train", "test"), params=params)
    for phase in ("train", "test"):
        for n, y in zip(names, net.run(list(names), phase)):
            assert np.all(np.isfinite(y)), f"{layer['name']}: top {n!r} is not finite in the {phase} phase"
    if expected is not None:
        got = net.run(names[0], "test")
        np.testing.assert_allclose(got, expected(**net.inputs), rtol=rtol, atol=atol,
                                   err_msg=f"{layer['name']}: top {names[0]!r} against the reference")
    if grad:
        wrt = _differentiable_inputs(net.inputs) + [k for k, m in net.meta.items() if m["trainable"]]
        if wrt and net.top(names[0], grad_phase).dtype.is_floating:
            net.grad_check(names[0], wrt, phase=grad_phase, seed=seed, rtol=grad_rtol, atol=grad_atol,
                           max_points=max_points)
    return net
