"""Shared helpers for the layer tests: build a net from layer dicts through the compiler, run it,
compare with numpy, round-trip configs, and check gradients by central differences (float64)."""

from __future__ import annotations

import numpy as np

import tfconf as tc
from tfconf.frontend.compiler import build_net
from tfconf.frontend.layers import NetState, get_layer_class

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


class Net:
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


def build(layers, inputs, **kw):
    return Net(layers, inputs, **kw)


class Double(tc.PythonLayer):
    """A minimal ``type: Python`` layer used by the registry sweep: y = 2x."""

    def build(self, bottoms):
        return [bottoms[0] * 2.0]
