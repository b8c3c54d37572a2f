"""Random ops. Each op owns a generator in the session, seeded from (graph seed, op seed) when
either is set (``tc.set_random_seed`` / ``seed=``), so runs are reproducible across sessions, and
advanced by every run, so successive runs draw new numbers (TensorFlow 1 semantics)."""

from __future__ import annotations

from .. import shapes as S
from ..dtypes import as_dtype, float32
from ..graph import Tensor, get_default_graph
from ..registry import OpDef, register
from .core import _shape_tensor, _target_shape, apply_op

#: the public functions (``tc.<name>``) this module declares: engine/api.py exports them
__all__ = [
    "random_normal", "random_uniform", "set_random_seed", "truncated_normal",
]


def _infer_random(op):
    return [(_target_shape(op, 0), op.attrs["dtype"])]


def _dims(shape):
    return tuple(int(d) for d in shape)


class _RandomOp(OpDef):
    """A seeded sampler of the shape its input holds: each op keeps its own generator in the
    session (``ctx.rng(op)``); ``sample(xp, gen, shape, dtype)`` draws one array."""

    host_inputs = (0,)
    stateful = True
    nondifferentiable = True
    infer = _infer_random

    def sample(xp, gen, shape, dtype):  # pragma: no cover - every sampler overrides
        raise NotImplementedError

    def make_kernel(op, ctx):
        dt, gen, xp, sample = op.attrs["dtype"].np, ctx.rng(op), ctx.xp, op.op_def.sample
        return lambda shape: sample(xp, gen, _dims(shape), dt)


@register
class RandomStandardNormal(_RandomOp):
    """Samples from N(0, 1)."""

    def sample(xp, gen, shape, dtype):
        return gen.standard_normal(shape, dtype=dtype)


@register
class RandomUniform(_RandomOp):
    """Samples from U[0, 1)."""

    def sample(xp, gen, shape, dtype):
        return gen.random(shape, dtype=dtype)


@register
class TruncatedNormal(_RandomOp):
    """Samples from N(0, 1) re-drawn until within two standard deviations."""

    def sample(xp, gen, shape, dtype):
        out = gen.standard_normal(shape, dtype=dtype)
        bad = xp.abs(out) > 2
        while bad.any():
            out[bad] = gen.standard_normal(int(bad.sum()), dtype=dtype)
            bad = xp.abs(out) > 2
        return out


def _random(type_name, shape, dtype, seed, name):
    dt = as_dtype(dtype)
    if not dt.is_floating:
        raise TypeError(f"{type_name}: dtype must be floating, received {dt.name}")
    g = shape.graph if isinstance(shape, Tensor) else get_default_graph()
    if not isinstance(shape, Tensor):
        S.as_shape(shape)
    return apply_op(type_name, [_shape_tensor(shape, g)], {"dtype": dt, "seed": seed}, name)


def random_normal(shape, mean=0.0, stddev=1.0, dtype=float32, seed=None, name=None):
    """``mean + stddev * N(0, 1)`` of the given shape."""
    z = _random("RandomStandardNormal", shape, dtype, seed, name or "random_normal")
    return _affine(z, mean, stddev)


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=float32, seed=None, name=None):
    z = _random("TruncatedNormal", shape, dtype, seed, name or "truncated_normal")
    return _affine(z, mean, stddev)


def random_uniform(shape, minval=0.0, maxval=1.0, dtype=float32, seed=None, name=None):
    """Uniform on [minval, maxval)."""
    u = _random("RandomUniform", shape, dtype, seed, name or "random_uniform")
    if isinstance(minval, (int, float)) and isinstance(maxval, (int, float)) and (minval, maxval) == (0.0, 1.0):
        return u
    return u * (maxval - minval) + minval


def _affine(z, mean, stddev):
    if not (isinstance(stddev, (int, float)) and stddev == 1.0):
        z = z * stddev
    if not (isinstance(mean, (int, float)) and mean == 0.0):
        z = z + mean
    return z


def set_random_seed(seed):
    """The graph-level seed (``tf.set_random_seed``)."""
    get_default_graph().seed = None if seed is None else int(seed)
