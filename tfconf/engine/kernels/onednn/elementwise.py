"""Elementwise ops on oneDNN: AddN as the sum primitive (any layout: a ResNet's shortcut sum and
its gradient accumulation stay channel-blocked), and Add, Sub, Mul, RealDiv and the rewriter's
FusedElementwise programs that are a chain of those with ReLU and negation as one binary
primitive on 4-D float32 values, in plain or NHWC layout (oneDNN 3.2 has only its reference
binary implementation for channel-blocked layouts: there the chain is declined and numpy runs
it; Caffe's Scale after a batch norm is the ChannelAffine op instead, norm.py).

A chain is one primitive: its first step (a binary, or an eltwise op on one operand) and every
later step as a post-op reading the previous result and at most one operand of the op. The main
operand has the output's shape and sets the layout of the destination; the others are either
of that shape too (read in the same layout, reordered into it if they come in another) or
broadcast against it the way oneDNN's binary ops broadcast (every dimension 1 or the output's,
numpy's right alignment: a per-channel [C, 1, 1] or a scalar), given plain.

Every step rounds to float32 as numpy's does, so the results agree with the reference kernel
(a chain that needs anything else, a step reading two earlier results or an operand oneDNN
cannot broadcast, runs the reference).
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import lib as L
from .binary import ARG_DST, ARG_SRC_0, ARG_SRC_1, BINARY_ADD, BINARY_MUL, BINARY_SUB, _bind
from .kernels import _PerShape, _layout_of, _plain_args
from .tensors import Blocked, Input, Output

BINARY_DIV = 0x1FFF4
ELTWISE_LINEAR = 0x26  # alpha·x + beta
BINARY = {"Add": BINARY_ADD, "Sub": BINARY_SUB, "Mul": BINARY_MUL, "RealDiv": BINARY_DIV}
COMMUTATIVE = frozenset({"Add", "Mul"})
UNARY = {"Relu": (L.ELTWISE_RELU, 0.0, 0.0), "Neg": (ELTWISE_LINEAR, -1.0, 0.0)}
_POST_OP_BASE = 32768  # DNNL_ARG_ATTR_MULTIPLE_POST_OP_BASE


def _post_src1(k):
    return _POST_OP_BASE * (k + 1) | ARG_SRC_1


def _steps(program):
    """The chain as [(type, main, other)] with ``main`` ("x", i) or ("t", j) and ``other`` ("x", i)
    or None, or a string saying why the program is no chain oneDNN runs in one primitive."""
    out = []
    for j, ins in enumerate(program):
        typ, args = ins[0], tuple(ins[2])
        if ins[3].name != "float32":
            return f"a {ins[3].name} step"
        if typ in UNARY:
            (a,) = args
            if j and a != ("t", j - 1):
                return "a step that does not read the previous one"
            out.append((typ, a, None))
            continue
        if typ not in BINARY:
            return f"a {typ} step"
        a, b = args
        if j == 0:
            if a[0] != "x" or b[0] != "x":  # pragma: no cover - a program's first step reads inputs
                return "a first step reading results"
            out.append((typ, a, b))
            continue
        prev = ("t", j - 1)
        if a == prev and b[0] == "x":
            out.append((typ, a, b))
        elif b == prev and a[0] == "x" and typ in COMMUTATIVE:
            out.append((typ, b, a))
        else:
            return "a step that does not read the previous result and one input"
    return out


def chain_reason(program, in_shapes, out_shape):
    """None when ``program`` over inputs of ``in_shapes`` (static, None for unknown) runs as one
    oneDNN chain producing ``out_shape`` (rank 4), else why not."""
    if out_shape is None or len(out_shape) != 4:
        return "not a 4-D output"
    steps = _steps(program)
    if isinstance(steps, str):
        return steps
    for k, (_, main, other) in enumerate(steps):
        for i in ([main[1]] if k == 0 else []) + ([other[1]] if other else []):
            s = in_shapes[i]
            if s is None or len(s) > 4:
                return "an operand of unknown or higher rank"
    return None


def _bcast_dims(shape, out):
    """``shape`` as 4 dims oneDNN broadcasts against ``out`` (right-aligned), or None."""
    dims = (1,) * (4 - len(shape)) + tuple(shape)
    if len(dims) != 4 or any(d != 1 and d != o for d, o in zip(dims, out)):
        return None
    return dims


class ElementwiseChain(_PerShape):
    """A FusedElementwise program (or a single Add/Sub/Mul/RealDiv/AddN) as one oneDNN primitive
    in the main operand's layout."""

    def __init__(self, fallback, program, blocked_out=False):
        super().__init__(fallback, blocked_out)
        steps = _steps(program)
        if isinstance(steps, str):  # pragma: no cover - accepts_* checked it
            raise ValueError(steps)
        self.steps = steps

    def _make(self, shapes, out, md0):
        lib = L.library()
        _bind(lib)
        first, main, other = self.steps[0]
        # the first step's main operand sets the layout; a commutative first step whose other
        # operand is the full-size one swaps them (oneDNN broadcasts only its second source)
        if shapes[main[1]] != out and first in COMMUTATIVE and other is not None and shapes[other[1]] == out:
            main, other = other, main
        if shapes[main[1]] != out:
            return None
        mds = md0[main[1]] or L.MemoryDesc.plain(out)
        operands = []  # (exec arg, input index, md)

        def operand_md(i):
            if shapes[i] == out:
                return mds
            dims = _bcast_dims(shapes[i], out)
            return None if dims is None else L.MemoryDesc.plain(dims)

        attr = L.Attr()
        po = ctypes.c_void_p()
        lib.check("post_ops_create", lib.post_ops_create(ctypes.byref(po)))
        try:
            for k, (typ, _, oth) in enumerate(self.steps[1:]):
                if typ in UNARY:
                    alg, a, b = UNARY[typ]
                    lib.check("post_ops_append_eltwise", lib.post_ops_append_eltwise(po, alg, a, b))
                    continue
                omd = operand_md(oth[1])
                if omd is None:
                    return None
                lib.check("post_ops_append_binary", lib.dll.dnnl_post_ops_append_binary(po, BINARY[typ], omd.handle))
                operands.append((_post_src1(k), oth[1], omd))
            if len(self.steps) > 1:
                lib.check("set_post_ops", lib.primitive_attr_set_post_ops(attr.handle, po))
        finally:
            lib.post_ops_destroy(po)
        pd = ctypes.c_void_p()
        if first in UNARY:
            alg, a, b = UNARY[first]
            lib.check("eltwise forward", lib.eltwise_forward_primitive_desc_create(
                ctypes.byref(pd), lib.engine, L.FORWARD_INFERENCE, alg, mds.handle, mds.handle, a, b, attr.handle))
            args = [(L.ARG_SRC, main[1], mds)]
        else:
            smd = operand_md(other[1])
            if smd is None:
                return None
            lib.check("binary", lib.dll.dnnl_binary_primitive_desc_create(
                ctypes.byref(pd), lib.engine, BINARY[first], mds.handle, smd.handle, mds.handle, attr.handle))
            args = [(ARG_SRC_0, main[1], mds), (ARG_SRC_1, other[1], smd)]
        from .norm import _checked_optimised

        pd = _checked_optimised(pd, "elementwise chain")
        args += operands
        prim = L.Primitive(pd, [a for a, _, _ in args] + [ARG_DST], "elementwise chain",
                           mds={a: md for a, _, md in operands})
        binds = [(a, i, Input(md, shapes[i] if shapes[i] == out else _bcast_dims(shapes[i], out)))
                 for a, i, md in args]
        return prim, binds, Output(prim.mds[ARG_DST], out, self.blocked_out)

    def __call__(self, *xs, donate=-1):
        built = None
        if all(isinstance(x, Blocked) or (x.__class__ is np.ndarray and x.dtype == np.float32) for x in xs):
            shapes = tuple(tuple(x.shape) for x in xs)
            out = np.broadcast_shapes(*shapes) if len(shapes) > 1 else shapes[0]
            if len(out) == 4 and 0 not in out:
                layouts = [_layout_of(x) for x in xs]
                key = (shapes, tuple(k for _, k in layouts))
                built = self.built(key, lambda: self._make(shapes, out, [m for m, _ in layouts]))
        if built is None:
            return self.fallback(*_plain_args(xs))
        prim, binds, yout = built
        keep = []
        y, py = yout.new()
        ptrs = {a: inp.pointer(_shaped(xs[i], inp.shape), keep) for a, i, inp in binds}
        ptrs[ARG_DST] = py
        prim(ptrs)
        return yout.finish(y)


def _shaped(x, dims):
    """A broadcast operand as the 4-D array its descriptor describes (same bytes)."""
    if isinstance(x, Blocked) or x.shape == dims:
        return x
    return np.ascontiguousarray(x).reshape(dims)


ARG_MULTIPLE_SRC = 1024  # DNNL_ARG_MULTIPLE_SRC: the i-th source of a sum
_sum_bound = False


def _sum_pd(md, n):
    global _sum_bound
    lib = L.library()
    f = lib.dll.dnnl_sum_primitive_desc_create
    if not _sum_bound:
        vp = ctypes.c_void_p
        f.argtypes = [ctypes.POINTER(vp), vp, vp, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(vp), vp]
        f.restype = ctypes.c_int
        _sum_bound = True
    pd = ctypes.c_void_p()
    attr = L.Attr()
    scales = (ctypes.c_float * n)(*([1.0] * n))
    srcs = (ctypes.c_void_p * n)(*([md.handle] * n))
    lib.check("sum", f(ctypes.byref(pd), lib.engine, md.handle, n, scales, srcs, attr.handle))
    return pd


class SumN(_PerShape):
    """AddN of same-shaped float32 values as oneDNN's sum primitive, in the first blocked input's
    layout (the others are reordered into it): a ResNet's shortcut sum and its gradient
    accumulation stay blocked, which the binary primitive cannot do in oneDNN 3.2."""

    def _make(self, shape, md, n):
        from .norm import _checked_optimised

        pd = _checked_optimised(_sum_pd(md, n), "sum")
        args = [ARG_MULTIPLE_SRC + i for i in range(n)]
        prim = L.Primitive(pd, args + [ARG_DST], "sum")
        return prim, [Input(prim.mds[a], shape) for a in args], Output(prim.mds[ARG_DST], shape, self.blocked_out)

    def __call__(self, *xs):
        built = None
        shape = tuple(xs[0].shape)
        if len(xs) >= 2 and 0 not in shape and all(
                (isinstance(x, Blocked) or (x.__class__ is np.ndarray and x.dtype == np.float32))
                and tuple(x.shape) == shape for x in xs):
            md, key = next((_layout_of(x) for x in xs if isinstance(x, Blocked)), (None, None))
            built = self.built((shape, key, len(xs)),
                               lambda: self._make(shape, md or L.MemoryDesc.plain(shape), len(xs)))
        if built is None:
            return self.fallback(*_plain_args(xs))
        prim, ins, yout = built
        keep = []
        y, py = yout.new()
        ptrs = {ARG_MULTIPLE_SRC + i: inp.pointer(x, keep) for i, (inp, x) in enumerate(zip(ins, xs))}
        ptrs[ARG_DST] = py
        prim(ptrs)
        return yout.finish(y)


def single_step_program(op_type, n_inputs):
    """The program of a standalone Add/Sub/Mul/RealDiv (one step) or AddN (a chain of adds)."""
    from ...ops.fused import Instr
    from ...dtypes import float32

    if op_type == "AddN":
        prog = [Instr("Add", {}, [("x", 0), ("x", 1)], float32, None)]
        prog += [Instr("Add", {}, [("t", k - 2), ("x", k)], float32, None) for k in range(2, n_inputs)]
        return tuple(prog)
    return (Instr(op_type, {}, [("x", 0), ("x", 1)], float32, None),)
