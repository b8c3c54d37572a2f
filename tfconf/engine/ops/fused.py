"""Fused ops: one kernel where the composite takes several, made mostly by the plan rewriter
(``engine/rewrite``) when a Session compiles a plan, and checked against their composites.

- ``SoftmaxCrossEntropyWithLogits``: the stable dense cross-entropy in one pass (TensorFlow's op),
  what ``-reduce_sum(labels * log_softmax(logits), -1)`` computes.
- ``FusedConv2D``: convolution, bias and (optionally) ReLU; the bias is added and the ReLU
  applied in place on the convolution's output, so the composite's two extra full-size
  temporaries are never allocated.
- ``FusedMatMul``: a 2-D matrix product, bias and (optionally) ReLU, the same way.
- ``FusedElementwise``: a chain (a tree) of elementwise ops as one op. On the CPU its kernel
  replays the chain with numpy, writing each step into a temporary of the chain that is dead
  after it (one buffer for a whole chain when shapes and dtypes agree); on a GPU it is one
  ``cupy.ElementwiseKernel`` compiled from the chain (cached by the chain's signature).
"""

from __future__ import annotations

import types

import numpy as np

from .. import shapes as S
from ..kernels.providers import ALL, onednn
from ..memory import out_kernel
from ..registry import OpDef, get_op_def, register
from .core import apply_op, convert_to_tensor, reduce_to_like, shape


# ---------------------------------------------------------------------------- softmax cross-entropy
@register
class SoftmaxCrossEntropyWithLogits(OpDef):
    """loss = -Σ labels · log_softmax(logits) along the last axis (computed stably, in one pass);
    backprop = softmax(logits) · Σ labels - labels (TensorFlow's second output; for labels that
    sum to 1 it is softmax - labels).

    Gradients: dlogits = dloss · backprop, dlabels = -dloss · log_softmax(logits); a gradient
    flowing into backprop (second derivatives) goes through the softmax Jacobian (times Σ labels)
    to the logits and as Σ(dback · softmax) - dback to the labels."""

    def infer(op):
        logits, labels = op.inputs
        if logits.dtype != labels.dtype:
            raise TypeError(f"logits ({logits.dtype.name}) and labels ({labels.dtype.name}) dtypes differ")
        if not logits.dtype.is_floating:
            raise TypeError(f"softmax cross-entropy needs floating logits, received {logits.dtype.name}")
        ls, zs = logits._shape, labels._shape
        if not S.compatible(ls, zs):
            raise ValueError(f"labels of shape {S.fmt(zs)} do not match logits of shape {S.fmt(ls)}")
        shp = ls if ls is not None else zs
        if shp is not None and len(shp) == 0:
            raise ValueError("softmax cross-entropy needs logits of rank >= 1")
        return [(None if shp is None else shp[:-1], logits.dtype), (shp, logits.dtype)]

    def forward(xp, logits, labels, need_backprop=True):
        s = logits - logits.max(axis=-1, keepdims=True)
        e = xp.exp(s)
        z = e.sum(axis=-1, keepdims=True)
        s -= xp.log(z)  # s is now log_softmax(logits)
        loss = -(labels * s).sum(axis=-1)
        if not need_backprop:  # (set by the rewriter when nothing reads the second output)
            return loss, None
        e /= z  # softmax
        back = e * labels.sum(axis=-1, keepdims=True)
        back -= labels
        return loss, back

    def grad(op, dloss, dback):
        from .array import expand_dims
        from .nn import log_softmax, softmax
        from .reduce import reduce_sum

        logits, labels = op.inputs
        d = expand_dims(dloss, -1)
        dx = d * op.outputs[1]
        dz = -(d * log_softmax(logits))
        if dback is not None and dback.op.type != "ZerosLike":
            p = softmax(logits)
            proj = reduce_sum(dback * p, -1, keepdims=True)
            dx = dx + (dback - proj) * p * reduce_sum(labels, -1, keepdims=True)
            dz = dz + (proj - dback)
        return [dx, dz]

    def composite(logits, labels, need_backprop=True):  # stable, one pass for loss and backprop
        from .nn import log_softmax, softmax
        from .reduce import reduce_sum

        return [-reduce_sum(labels * log_softmax(logits), -1),
                softmax(logits) * reduce_sum(labels, -1, keepdims=True) - labels]


# ---------------------------------------------------------------------------- conv + bias + relu
CONV_ATTRS = ("strides", "padding", "dilations", "groups")


def _conv_kw(attrs, hw, khw):
    from .nn import _conv_kw as kw

    return kw(attrs, hw, khw)


def _owned(y, *inputs):
    """True when ``y`` may be written in place: a writable array that owns its memory and is
    none of ``inputs`` (a kernel's fresh output)."""
    flags = getattr(y, "flags", None)
    if flags is None or not flags.owndata or not getattr(flags, "writeable", True):
        return False
    return all(y is not x for x in inputs)


def _bias_activation(xp, relu):
    """``epilogue(z, inputs, bias)``: act(z + bias), in place on a product's fresh output z
    (unless it aliases one of ``inputs`` or the bias), else into a new array."""
    add, maximum = xp.add, xp.maximum

    def epilogue(z, inputs, bias):
        if _owned(z, *inputs, bias):
            add(z, bias, out=z)
            if relu:
                maximum(z, z.dtype.type(0), out=z)
            return z
        z = z + bias
        return maximum(z, z.dtype.type(0)) if relu else z

    return epilogue


@register
class FusedConv2D(OpDef):
    """y = act(conv2d(x, w) + b): ``b`` broadcasts against the [N, O, OH, OW] output without
    changing its shape (e.g. [O, 1, 1]); ``activation`` is "Relu" or None. The bias is added and
    the ReLU applied in place on the convolution's fresh output.

    Gradients: dz = ReluGrad(dy, y) (or dy), dx = Conv2DBackpropInput(shape(x), w, dz),
    dw = Conv2DBackpropFilter(x, dz), db = dz summed to b's shape."""

    kernels = {"onednn": onednn("fused_conv2d", blocked_inputs=(0,), blocked_output=True)}

    def infer(op):
        from .nn import _conv_infer_shape

        x, w, b = op.inputs
        if not x.dtype == w.dtype == b.dtype:
            raise TypeError(f"fused conv2d: dtypes differ: x {x.dtype.name}, w {w.dtype.name}, b {b.dtype.name}")
        ws = w._shape
        if ws is None or len(ws) != 4 or None in ws:
            raise ValueError(f"fused conv2d: the filter needs a fully known shape, received {S.fmt(ws)}")
        act = op.attrs.get("activation")
        if act not in (None, "Relu"):
            raise ValueError(f"fused conv2d: activation must be 'Relu' or None, received {act!r}")
        ys = _conv_infer_shape(x._shape, ws, op.attrs, "fused conv2d")
        if ys is not None and b._shape is not None and S.broadcast(ys, b._shape, "fused conv2d bias: ") != ys:
            raise ValueError(f"fused conv2d: bias of shape {S.fmt(b._shape)} would broadcast the output {S.fmt(ys)}")
        return [(ys, x.dtype)]

    def cost(op):
        return S.conv_flops(op.outputs[0]._shape, op.inputs[1]._shape)

    def make_kernel(op, ctx):
        from ..kernels.conv import conv2d as k

        xp, attrs = ctx.xp, op.attrs
        conv = {a: attrs[a] for a in CONV_ATTRS}
        khw = op.inputs[1]._shape[2:]
        epilogue = _bias_activation(xp, attrs.get("activation") == "Relu")

        def run(x, w, b):
            return epilogue(k(xp, x, w, **_conv_kw(conv, x.shape[2:], khw)), (x, w), b)

        return run

    def grad(op, dy):
        x, w, b = op.inputs
        dz = apply_op("ReluGrad", [dy, op.outputs[0]]) if op.attrs.get("activation") == "Relu" else dy
        conv = {a: op.attrs[a] for a in CONV_ATTRS}
        dx = apply_op("Conv2DBackpropInput", [shape(x), w, dz], conv)
        dw = apply_op("Conv2DBackpropFilter", [x, dz], dict(conv, filter_shape=w._shape))
        return [dx, dw, reduce_to_like(dz, b)]

    def composite(x, w, b, activation=None, **conv):  # the bias and ReLU on the fresh output
        z = apply_op("Conv2D", [x, w], {a: conv[a] for a in CONV_ATTRS}) + b
        return apply_op("Relu", [z]) if activation == "Relu" else z


@register
class FusedMatMul(OpDef):
    """z = act(a @ op(b) + bias) for 2-D ``a`` [M, K], ``b`` [K, N] (or [N, K] with
    ``transpose_b``, a Caffe InnerProduct's weights) and a bias that broadcasts against [M, N]
    without changing it ([N] or [1, N]); ``activation`` is "Relu" or None (TF grappler's
    _FusedMatMul). Made by the conv_fusion rewrite from MatMul → Add (→ Relu); the bias is added
    and the ReLU applied in place on the product's fresh output.

    Gradients: dz = ReluGrad(dy, z) (or dy), da = dz @ op(b)ᵀ, db = aᵀ @ dz (dzᵀ @ a with
    ``transpose_b``), dbias = dz summed to the bias's shape."""

    kernels = {"onednn": onednn("fused_matmul")}

    def infer(op):
        a, b, bias = op.inputs
        if not a.dtype == b.dtype == bias.dtype:
            raise TypeError(f"fused matmul: dtypes differ: {a.dtype.name}, {b.dtype.name}, {bias.dtype.name}")
        act = op.attrs.get("activation")
        if act not in (None, "Relu"):
            raise ValueError(f"fused matmul: activation must be 'Relu' or None, received {act!r}")
        for t, what in ((a, "a"), (b, "b")):
            if t._shape is not None and len(t._shape) != 2:
                raise ValueError(f"fused matmul: {what} must be 2-D, received {S.fmt(t._shape)}")
        from .math import _mm_shape

        zs = _mm_shape(a._shape, b._shape, False, op.attrs.get("transpose_b", False))
        bs = bias._shape
        if bs is not None and (len(bs) not in (1, 2) or (len(bs) == 2 and bs[0] not in (1, None))):
            raise ValueError(f"fused matmul: the bias must have shape [N] or [1, N] (one value per output "
                             f"column), received {S.fmt(bs)}")
        if zs is not None and bs is not None and S.broadcast(zs, bs, "fused matmul bias: ") != zs:
            raise ValueError(f"fused matmul: bias of shape {S.fmt(bs)} would broadcast the output {S.fmt(zs)}")
        return [(zs, a.dtype)]

    def cost(op):
        a = S.estimate_dims(op.inputs[0]._shape)
        return 2 * S.estimate_numel(op.outputs[0]._shape) * (a[-1] if a is not None else S.UNKNOWN_DIM)

    def make_kernel(op, ctx):
        xp = ctx.xp
        tb = op.attrs.get("transpose_b", False)
        matmul = xp.matmul
        epilogue = _bias_activation(xp, op.attrs.get("activation") == "Relu")

        def run(a, b, bias):
            return epilogue(matmul(a, b.T if tb else b), (a, b), bias)

        return run

    def grad(op, dy):
        from .math import matmul

        a, b, bias = op.inputs
        dz = apply_op("ReluGrad", [dy, op.outputs[0]]) if op.attrs.get("activation") == "Relu" else dy
        if op.attrs.get("transpose_b", False):
            return [matmul(dz, b), matmul(dz, a, transpose_a=True), reduce_to_like(dz, bias)]
        return [matmul(dz, b, transpose_b=True), matmul(a, dz, transpose_a=True), reduce_to_like(dz, bias)]

    def composite(a, b, bias, activation=None, transpose_b=False):  # the bias and ReLU on the product
        from .math import matmul

        z = matmul(a, b, transpose_b=transpose_b) + bias
        return apply_op("Relu", [z]) if activation == "Relu" else z


@register
class Conv2DBackpropFilterBias(OpDef):
    """(dw, db) = (Conv2DBackpropFilter(x, dy), dy summed over N, H, W to ``bias_shape``): a
    convolution's filter and bias gradients from one pass over dy. Made only by the conv_fusion
    rewrite, inside compiled plans (after autodiff), from the two ops it replaces; it has no
    gradient of its own (a second derivative differentiates the user graph's ops)."""

    kernels = {"onednn": onednn("conv2d_backprop_filter_bias", blocked_inputs=(0, 1))}

    def cost(op):
        return S.conv_flops(op.inputs[1]._shape, op.attrs.get("filter_shape"))

    def infer(op):
        x, dy = op.inputs
        return [(tuple(op.attrs["filter_shape"]), x.dtype), (tuple(op.attrs["bias_shape"]), dy.dtype)]

    def make_kernel(op, ctx):
        from ..kernels.conv import conv2d_backprop_filter as k
        from .core import _sum_to

        xp, attrs = ctx.xp, op.attrs
        khw = tuple(attrs["filter_shape"][2:])
        conv = {a: attrs[a] for a in CONV_ATTRS}
        bias_shape = tuple(attrs["bias_shape"])

        def run(x, dy):
            dw = k(xp, x, dy, khw, **_conv_kw(conv, x.shape[2:], khw))
            return dw, _sum_to(xp, dy, bias_shape)  # SumToShape's own kernel: the same numbers

        return run

    def composite(x, dy, bias_shape, **filter_attrs):  # one pass over dy for both
        from .core import sum_to_shape

        return [apply_op("Conv2DBackpropFilter", [x, dy], filter_attrs), sum_to_shape(dy, tuple(bias_shape))]


def fused_matmul(a, b, bias, activation="Relu", transpose_b=False, name=None):
    """``act(a @ op(b) + bias)`` as one op for 2-D ``a`` [M, K], ``b`` [K, N] ([N, K] with
    ``transpose_b``) and ``bias`` [N] or [1, N]; ``activation`` is "Relu" or None."""
    a = convert_to_tensor(a)
    b = convert_to_tensor(b, dtype=a.dtype, graph=a.graph)
    bias = convert_to_tensor(bias, dtype=a.dtype, graph=a.graph)
    return apply_op("FusedMatMul", [a, b, bias], {"activation": activation, "transpose_b": bool(transpose_b)}, name)


def fused_conv2d(input, filters, bias, strides=1, padding="VALID", dilations=1, groups=1,
                 activation="Relu", name=None):
    """``act(conv2d(input, filters) + bias)`` as one op; ``bias`` of shape [O] is reshaped to
    [O, 1, 1] (NCHW); ``activation`` is "Relu" or None."""
    from .array import reshape
    from .nn import _conv_attrs

    x = convert_to_tensor(input)
    w = convert_to_tensor(filters, dtype=x.dtype, graph=x.graph)
    b = convert_to_tensor(bias, dtype=x.dtype, graph=x.graph)
    if b._shape is not None and len(b._shape) == 1:
        b = reshape(b, [-1, 1, 1])
    attrs = dict(_conv_attrs(strides, padding, dilations, groups), activation=activation)
    return apply_op("FusedConv2D", [x, w, b], attrs, name)


# ---------------------------------------------------------------------------- elementwise chains
class Instr(tuple):
    """One step of a FusedElementwise program: (type, attrs, args, dtype, shape). ``attrs`` is a
    tuple of (name, value) pairs; each arg is ("x", i) for the fused op's i-th input or ("t", j)
    for the result of step j."""

    __slots__ = ()

    def __new__(cls, type_name, attrs, args, dtype, shape_):
        return tuple.__new__(cls, (type_name, tuple(sorted(attrs.items())) if isinstance(attrs, dict) else attrs,
                                   tuple(args), dtype, shape_))

    type = property(lambda self: self[0])
    attrs = property(lambda self: dict(self[1]))
    args = property(lambda self: self[2])
    dtype = property(lambda self: self[3])
    shape = property(lambda self: self[4])


class _Spec:
    """A stand-in Tensor (static shape and dtype) for building a sub-kernel."""

    __slots__ = ("dtype", "_shape")

    def __init__(self, dtype, shape_):
        self.dtype, self._shape = dtype, shape_


class _SubOp:
    """A stand-in Operation for one program step: what ``make_kernel`` of an elementwise op reads."""

    __slots__ = ("type", "op_def", "attrs", "inputs", "outputs", "name")

    def __init__(self, ins, name):
        self.type = ins.type
        self.op_def = get_op_def(ins.type)
        self.attrs = ins.attrs
        self.inputs = ()
        self.outputs = (_Spec(ins.dtype, ins.shape),)
        self.name = name


def _program_kernel(op, ctx):
    """The program as one Python function calling each step's own kernel (any xp). With numpy,
    a step whose kernel takes ``out=`` (a ufunc, ReLU) writes into a buffer of the chain that is
    dead after it: an earlier step's result, or the input the executor donates (``donate=i``
    when it has checked that nothing else holds input i). If the result does not fit that
    buffer (broadcasting made it larger, or numpy returned a scalar) the step allocates.

    NOTE: the function is generated as source and ``exec``-ed (names are x0.., t0.., k0..; no
    user text goes in), which costs the same per step as a hand-written numpy chain."""
    program = op.attrs["program"]
    n_in = len(op.inputs)
    numpy = ctx.xp is np
    dtypes = [t.dtype for t in op.inputs]
    shapes = [t._shape for t in op.inputs]
    last_use = {}
    for j, ins in enumerate(program):
        for a in ins.args:
            last_use[a] = j
    ns = {}
    owned = set()  # temps that are fresh arrays of this chain (results of out=-capable kernels)
    lines = [f"def run({''.join(f'x{i}, ' for i in range(n_in))}donate=-1):"]
    for j, ins in enumerate(program):
        sub = _SubOp(ins, f"{op.name}/{j}")
        sub.inputs = tuple(_Spec(dtypes[i], shapes[i]) if kind == "x" else _Spec(program[i].dtype, program[i].shape)
                           for kind, i in ins.args)
        k = ns[f"k{j}"] = sub.op_def.make_kernel(sub, ctx)
        outk = out_kernel(sub.op_def, k) if numpy else None
        names = [f"x{i}" if kind == "x" else f"t{i}" for kind, i in ins.args]
        call = f"k{j}({', '.join(names)})"
        temps, inputs = [], []
        # (a 0-d result is a numpy scalar, never a buffer to write into: no in-place attempt)
        if outk is not None and ins.shape:
            ns[f"o{j}"] = outk
            for a, name in zip(ins.args, names):
                kind, i = a
                if last_use[a] != j or ins.args.count(a) != 1:
                    continue
                if (dtypes[i] if kind == "x" else program[i].dtype) != ins.dtype:
                    continue
                if kind == "t" and i in owned:
                    temps.append(name)
                elif kind == "x" and shapes[i] is not None and shapes[i] == ins.shape:
                    inputs.append((i, name))  # (the executor donates only inputs of the output's shape)
            owned.add(j)

        def into(buf, indent):
            pad = " " * indent
            return [f"{pad}try:", f"{pad}    t{j} = o{j}({', '.join(names)}, out={buf})",
                    f"{pad}except (ValueError, TypeError):", f"{pad}    t{j} = {call}"]

        if temps:
            lines += into(temps[0], 4)
        elif inputs:
            for n, (i, name) in enumerate(inputs):
                lines.append(f"    {'if' if n == 0 else 'elif'} donate == {i}:")
                lines += into(name, 8)
            lines += ["    else:", f"        t{j} = {call}"]
        else:
            lines.append(f"    t{j} = {call}")
    lines.append(f"    return t{len(program) - 1}")
    source = "\n".join(lines)
    code = _CODE.get(source)
    if code is None:  # one compilation per distinct chain; each op binds its own kernels
        scope = {}
        exec(source, scope)  # noqa: S102 - generated from op types and indices only
        code = _CODE[source] = scope["run"].__code__
    run = types.FunctionType(code, ns, "run", (-1,))
    run.source = source
    return run


_CODE: dict = {}


def _expression(op_type: str):
    """The op type's elementwise expression (OpDef.elementwise), None for other ops."""
    try:
        return get_op_def(op_type).elementwise
    except KeyError:
        return None


def fusable(op_type: str) -> bool:
    """Whether the fusion rewrite may put an op of this type into a FusedElementwise: the op
    declares its elementwise expression."""
    return _expression(op_type) is not None


_CTYPES = {"float32": "float", "float64": "double", "int32": "int", "int64": "long long",
           "int16": "short", "int8": "signed char", "uint8": "unsigned char", "bool": "bool"}
_CUDA_KERNELS: dict = {}


def cuda_source(program, in_dtypes):
    """(in_params, out_params, operation) of the ElementwiseKernel for ``program``, or None when
    a step has no C++ form or a dtype has no C type here (float16)."""
    names, types = [], []
    for i, dt in enumerate(in_dtypes):
        if dt.name not in _CTYPES:
            return None
        names.append(f"in{i}")
        types.append(dt)
    lines = []
    for j, ins in enumerate(program):
        tmpl = _expression(ins.type)
        if tmpl is None or ins.dtype.name not in _CTYPES:
            return None
        args = [names[i] if kind == "x" else f"t{i}" for kind, i in ins.args]
        first = types[ins.args[0][1]] if ins.args[0][0] == "x" else program[ins.args[0][1]].dtype
        ct0 = _CTYPES.get(first.name)
        if ct0 is None:
            return None
        attrs = ins.attrs
        expr = tmpl.format(*args, T=_CTYPES[ins.dtype.name], zero=f"(({ct0})0)", one=f"(({ct0})1)",
                           alpha=repr(float(attrs.get("alpha", 0.0))))
        lines.append(f"{_CTYPES[ins.dtype.name]} t{j} = {expr};")
    out = program[-1]
    lines.append(f"out0 = t{len(program) - 1};")
    in_params = ", ".join(f"{dt.name} {n}" for dt, n in zip(types, names))
    return in_params, f"{out.dtype.name} out0", " ".join(lines)


def cuda_kernel(cupy, program, in_dtypes):
    """The cached ``cupy.ElementwiseKernel`` of a program (one per chain signature), or None."""
    src = cuda_source(program, in_dtypes)
    if src is None:
        return None
    k = _CUDA_KERNELS.get(src)
    if k is None:
        import hashlib

        name = "tfconf_fused_" + hashlib.sha1(repr(src).encode()).hexdigest()[:12]
        k = _CUDA_KERNELS[src] = cupy.ElementwiseKernel(src[0], src[1], src[2], name)
    return k


@register
class FusedElementwise(OpDef):
    """out = the last step of ``program`` (a tuple of Instr) over the op's inputs. Made by the
    plan rewriter after gradients exist, so it is never differentiated. On 4-D float32 values a
    chain of binary steps with ReLU runs as one oneDNN primitive in its inputs' layout."""

    kernel_takes_donate = True

    kernels = {"onednn": onednn("fused_elementwise", blocked_inputs=ALL, blocked_output=True)}

    def infer(op):
        last = op.attrs["program"][-1]
        return [(last.shape, last.dtype)]

    def make_kernel(op, ctx):
        xp = ctx.xp
        if xp is not np and hasattr(xp, "ElementwiseKernel"):
            k = cuda_kernel(xp, op.attrs["program"], [t.dtype for t in op.inputs])
            if k is not None:
                return lambda *xs, donate=-1: k(*xs)
        return _program_kernel(op, ctx)
