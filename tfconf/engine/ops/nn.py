"""Neural-network ops in NCHW layout with Caffe's filter layout ``[out, in/groups, kh, kw]``:
convolution (and its two adjoints, which are each other's gradients), pooling, LRN, softmax
family, stable cross-entropies, dropout, bias_add, moments and l2_loss.

Kernels live in ``engine/kernels`` (written once against ``xp``); these declarations hold shape
inference and gradient rules."""

from __future__ import annotations

import numpy as np

from .. import shapes as S
from ..graph import Tensor
from ..kernels.providers import onednn
from ..registry import OpDef, register
from .array import expand_dims, one_hot, reshape
from .core import apply_op, constant, convert_to_tensor, graph_of, shape, stop_gradient, zeros_like
from .math import cast, exp, log, log1p, squared_difference, where
from .random import random_uniform
from .reduce import reduce_max, reduce_mean, reduce_sum


# ---------------------------------------------------------------------------- padding helpers
def _padding_attr(padding):
    """'SAME' | 'VALID' | int | (ph, pw) | (top, bottom, left, right) → 'SAME' or a 4-tuple."""
    if isinstance(padding, str):
        p = padding.upper()
        if p == "VALID":
            return (0, 0, 0, 0)
        if p == "SAME":
            return "SAME"
        raise ValueError(f"padding must be 'SAME', 'VALID', an int or pairs, received {padding!r}")
    if isinstance(padding, (int, np.integer)):
        return (int(padding),) * 4
    p = tuple(padding)
    if len(p) == 2 and all(isinstance(a, (int, np.integer)) for a in p):
        return (int(p[0]), int(p[0]), int(p[1]), int(p[1]))
    if len(p) == 2:  # ((top, bottom), (left, right))
        return (int(p[0][0]), int(p[0][1]), int(p[1][0]), int(p[1][1]))
    if len(p) == 4:
        return tuple(int(a) for a in p)
    raise ValueError(f"cannot interpret padding {padding!r}")


def _same_pads(in_size, k, stride, dilation):
    eff = (k - 1) * dilation + 1
    out = -(-in_size // stride)
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2, total - total // 2


def resolve_pads(padding, hw, khw, strides, dilations=(1, 1)):
    """Explicit (top, bottom, left, right) pads for an input of spatial size ``hw``."""
    if padding != "SAME":
        return padding
    t, b = _same_pads(hw[0], khw[0], strides[0], dilations[0])
    l_, r = _same_pads(hw[1], khw[1], strides[1], dilations[1])
    return (t, b, l_, r)


def _conv_out(in_size, k, s, pb, pa, d):
    if in_size is None:
        return None
    eff = (k - 1) * d + 1
    n = in_size + pb + pa - eff
    if n < 0:
        return -1
    return n // s + 1


def _conv_infer_shape(xs, ws, attrs, who):
    if xs is None:
        return None
    if len(xs) != 4:
        raise ValueError(f"{who} expects an NCHW input of rank 4, received {S.fmt(xs)}")
    n, c, h, w = xs
    o, cg, kh, kw = ws
    g = attrs["groups"]
    if c is not None and cg is not None and c != cg * g:
        raise ValueError(
            f"{who}: input has {c} channels but the filter {S.fmt(ws)} expects {cg} × groups={g} = {cg * g}"
        )
    if o is not None and o % g:
        raise ValueError(f"{who}: {o} output channels are not divisible by groups={g}")
    sh, sw = attrs["strides"]
    dh, dw = attrs["dilations"]
    if attrs["padding"] == "SAME":
        oh = None if h is None else -(-h // sh)
        ow = None if w is None else -(-w // sw)
    else:
        pt, pb, pl, pr = attrs["padding"]
        oh, ow = _conv_out(h, kh, sh, pt, pb, dh), _conv_out(w, kw, sw, pl, pr, dw)
        if (oh is not None and oh <= 0) or (ow is not None and ow <= 0):
            raise ValueError(
                f"{who}: a {kh}x{kw} filter (dilation {dh}x{dw}) does not fit an input of spatial size "
                f"{h}x{w} with padding {attrs['padding']}: input {S.fmt(xs)}, filter {S.fmt(ws)}"
            )
    return (n, o, oh, ow)


def _conv_kw(attrs, hw, khw):
    return dict(
        strides=attrs["strides"],
        pads=resolve_pads(attrs["padding"], hw, khw, attrs["strides"], attrs["dilations"]),
        dilations=attrs["dilations"],
        groups=attrs["groups"],
    )


# ---------------------------------------------------------------------------- convolution
@register
class Conv2D(OpDef):
    """y = x ⋆ w (cross-correlation).  dx = Conv2DBackpropInput(shape(x), w, dy),
    dw = Conv2DBackpropFilter(x, dy)."""

    kernels = {"onednn": onednn("conv2d", blocked_inputs=(0,), blocked_output=True)}

    def cost(op):
        return S.conv_flops(op.outputs[0]._shape, op.inputs[1]._shape)

    def infer(op):
        x, w = op.inputs
        if x.dtype != w.dtype:
            raise TypeError(f"conv2d: input {x.dtype.name} and filter {w.dtype.name} dtypes differ")
        ws = w._shape
        if ws is None or len(ws) != 4 or None in ws:
            raise ValueError(f"conv2d: the filter needs a fully known shape [out, in/groups, kh, kw], received {S.fmt(ws)}")
        return [(_conv_infer_shape(x._shape, ws, op.attrs, "conv2d"), x.dtype)]

    def make_kernel(op, ctx):
        from ..kernels.conv import conv2d as k

        xp, attrs = ctx.xp, op.attrs
        khw = op.inputs[1]._shape[2:]
        return lambda x, w: k(xp, x, w, **_conv_kw(attrs, x.shape[2:], khw))

    def grad(op, dy):
        x, w = op.inputs
        dx = apply_op("Conv2DBackpropInput", [shape(x), w, dy], op.attrs)
        dw = apply_op("Conv2DBackpropFilter", [x, dy], dict(op.attrs, filter_shape=w._shape))
        return [dx, dw]


@register
class Conv2DBackpropInput(OpDef):
    """dx = adjoint of conv2d w.r.t. its input (also conv2d_transpose).
    Gradients: d/dw = Conv2DBackpropFilter(ddx, dy), d/d(dy) = Conv2D(ddx, w)."""

    kernels = {"onednn": onednn("conv2d_backprop_input", blocked_inputs=(2,), blocked_output=True)}

    def cost(op):
        return S.conv_flops(op.inputs[2]._shape, op.inputs[1]._shape)

    host_inputs = (0,)

    def infer(op):
        sizes, w, dy = op.inputs
        from .core import _target_shape

        return [(_target_shape(op, 0), dy.dtype)]

    def make_kernel(op, ctx):
        from ..kernels.conv import conv2d_backprop_input as k

        xp, attrs = ctx.xp, op.attrs
        khw = op.inputs[1]._shape[2:]

        def run(sizes, w, dy):
            hw = (int(sizes[2]), int(sizes[3]))
            return k(xp, dy, w, hw, **_conv_kw(attrs, hw, khw))

        return run

    def grad(op, ddx):
        sizes, w, dy = op.inputs
        dw = apply_op("Conv2DBackpropFilter", [ddx, dy], dict(op.attrs, filter_shape=w._shape))
        ddy = apply_op("Conv2D", [ddx, w], {k: op.attrs[k] for k in ("strides", "padding", "dilations", "groups")})
        return [None, dw, ddy]


@register
class Conv2DBackpropFilter(OpDef):
    """dw = adjoint of conv2d w.r.t. its filter.
    Gradients: d/dx = Conv2DBackpropInput(shape(x), ddw, dy), d/d(dy) = Conv2D(x, ddw)."""

    kernels = {"onednn": onednn("conv2d_backprop_filter", blocked_inputs=(0, 1))}

    def cost(op):
        return S.conv_flops(op.inputs[1]._shape, op.attrs.get("filter_shape"))

    def infer(op):
        x, dy = op.inputs
        return [(tuple(op.attrs["filter_shape"]), x.dtype)]

    def make_kernel(op, ctx):
        from ..kernels.conv import conv2d_backprop_filter as k

        xp, attrs = ctx.xp, op.attrs
        khw = tuple(attrs["filter_shape"][2:])
        conv_attrs = {a: attrs[a] for a in ("strides", "padding", "dilations", "groups")}
        return lambda x, dy: k(xp, x, dy, khw, **_conv_kw(conv_attrs, x.shape[2:], khw))

    def grad(op, ddw):
        x, dy = op.inputs
        conv_attrs = {k: op.attrs[k] for k in ("strides", "padding", "dilations", "groups")}
        dx = apply_op("Conv2DBackpropInput", [shape(x), ddw, dy], conv_attrs)
        ddy = apply_op("Conv2D", [x, ddw], conv_attrs)
        return [dx, ddy]


def _conv_attrs(strides, padding, dilations, groups):
    return {"strides": S.pair(strides, "strides"), "padding": _padding_attr(padding),
            "dilations": S.pair(dilations, "dilations"), "groups": int(groups)}


def conv2d(input, filters, strides=1, padding="VALID", dilations=1, groups=1, data_format="NCHW", name=None):
    """2-D cross-correlation of NCHW ``input`` with ``filters`` of shape [out, in/groups, kh, kw].

    ``padding``: "VALID", "SAME", an int, (ph, pw), or (top, bottom, left, right)."""
    if data_format != "NCHW":
        raise ValueError(f"conv2d: only data_format='NCHW' is supported, received {data_format!r}")
    x = convert_to_tensor(input)
    w = convert_to_tensor(filters, dtype=x.dtype, graph=x.graph)
    return apply_op("Conv2D", [x, w], _conv_attrs(strides, padding, dilations, groups), name)


def conv2d_transpose(input, filters, output_shape, strides=1, padding="VALID", dilations=1, groups=1,
                     name=None):
    """The adjoint of conv2d ("deconvolution"). ``filters`` has conv2d's layout for the conv whose
    adjoint this is: [in_channels_of_output... ] i.e. [C_in(of input), C_out/groups, kh, kw]."""
    x = convert_to_tensor(input)
    w = convert_to_tensor(filters, dtype=x.dtype, graph=x.graph)
    if isinstance(output_shape, Tensor):
        sizes = output_shape
    else:
        sizes = constant(np.asarray(output_shape, dtype=np.int32), name="output_shape", graph=x.graph)
    return apply_op("Conv2DBackpropInput", [sizes, w, x], _conv_attrs(strides, padding, dilations, groups), name)


# ---------------------------------------------------------------------------- pooling
def _pool_infer(op):
    x = op.inputs[0]
    xs = x._shape
    if xs is None:
        return [(None, x.dtype)]
    if len(xs) != 4:
        raise ValueError(f"{op.type} expects an NCHW input of rank 4, received {S.fmt(xs)}")
    n, c, h, w = xs
    kh, kw = op.attrs["ksize"]
    sh, sw = op.attrs["strides"]
    from ..kernels.pool import pool_output_size

    def out(size, k, s, pb, pa):
        if size is None:
            return None
        if op.attrs["padding"] == "SAME":
            return -(-size // s)
        o = pool_output_size(size, k, s, pb, pa, op.attrs["ceil_mode"])
        if o <= 0:
            raise ValueError(f"{op.type}: a {kh}x{kw} window does not fit input {S.fmt(xs)}")
        return o

    p = op.attrs["padding"] if op.attrs["padding"] != "SAME" else (0, 0, 0, 0)
    return [((n, c, out(h, kh, sh, p[0], p[1]), out(w, kw, sw, p[2], p[3])), x.dtype)]


def _pool_kw(attrs, hw):
    return dict(ksize=attrs["ksize"], strides=attrs["strides"],
                pads=resolve_pads(attrs["padding"], hw, attrs["ksize"], attrs["strides"]),
                ceil_mode=attrs["ceil_mode"])


@register
class MaxPool(OpDef):
    """y = max over each window (padding counts as -inf).  dx = MaxPoolGrad(x, y, dy): each
    window's gradient goes to its first maximal element."""

    kernels = {"onednn": onednn("max_pool", blocked_inputs=(0,), blocked_output=True)}

    infer = _pool_infer

    def make_kernel(op, ctx):
        from ..kernels.pool import max_pool as k

        xp, attrs = ctx.xp, op.attrs
        return lambda x: k(xp, x, **_pool_kw(attrs, x.shape[2:]))

    def grad(op, dy):
        return [apply_op("MaxPoolGrad", [op.inputs[0], op.outputs[0], dy], op.attrs)]


@register
class MaxPoolGrad(OpDef):
    """Routes each window's dy to the window's first maximal input element."""

    kernels = {"onednn": onednn("max_pool_grad", blocked_inputs=(0, 1, 2), blocked_output=True)}

    def infer(op):
        return [(op.inputs[0]._shape, op.inputs[0].dtype)]

    def make_kernel(op, ctx):
        from ..kernels.pool import max_pool_grad as k

        xp, attrs = ctx.xp, op.attrs
        return lambda x, y, dy: k(xp, x, y, dy, **_pool_kw(attrs, x.shape[2:]))


@register
class AvgPool(OpDef):
    """y = mean over each window.  dx = AvgPoolGrad(shape(x), dy)."""

    kernels = {"onednn": onednn("avg_pool", blocked_inputs=(0,), blocked_output=True)}

    infer = _pool_infer

    def make_kernel(op, ctx):
        from ..kernels.pool import avg_pool as k

        xp, attrs = ctx.xp, op.attrs
        cip = attrs["count_include_pad"]
        return lambda x: k(xp, x, count_include_pad=cip, **_pool_kw(attrs, x.shape[2:]))

    def grad(op, dy):
        return [apply_op("AvgPoolGrad", [shape(op.inputs[0]), dy], op.attrs)]


@register
class AvgPoolGrad(OpDef):
    """The adjoint of avg_pool; linear in dy, so its gradient is AvgPool(ddx)."""

    kernels = {"onednn": onednn("avg_pool_grad", blocked_inputs=(1,), blocked_output=True)}

    host_inputs = (0,)

    def infer(op):
        from .core import _target_shape

        return [(_target_shape(op, 0), op.inputs[1].dtype)]

    def make_kernel(op, ctx):
        from ..kernels.pool import avg_pool_grad as k

        xp, attrs = ctx.xp, op.attrs
        cip = attrs["count_include_pad"]

        def run(sizes, dy):
            shp = tuple(int(d) for d in sizes)
            return k(xp, dy, shp, count_include_pad=cip, **_pool_kw(attrs, shp[2:]))

        return run

    def grad(op, ddx):
        return [None, apply_op("AvgPool", [ddx], op.attrs)]


def _pool_attrs(ksize, strides, padding, ceil_mode):
    return {"ksize": S.pair(ksize, "ksize"), "strides": S.pair(strides, "strides"),
            "padding": _padding_attr(padding), "ceil_mode": bool(ceil_mode)}


def max_pool(value, ksize, strides, padding="VALID", ceil_mode=False, data_format="NCHW", name=None):
    """Max pooling over NCHW windows. ``ceil_mode=True`` rounds the output size up (Caffe)."""
    x = convert_to_tensor(value)
    return apply_op("MaxPool", [x], _pool_attrs(ksize, strides, padding, ceil_mode), name)


def avg_pool(value, ksize, strides, padding="VALID", ceil_mode=False, count_include_pad=None,
             data_format="NCHW", name=None):
    """Average pooling. By default padding counts in the divisor for explicit pads (Caffe,
    PyTorch) and not for 'SAME' (TensorFlow)."""
    x = convert_to_tensor(value)
    attrs = _pool_attrs(ksize, strides, padding, ceil_mode)
    attrs["count_include_pad"] = (attrs["padding"] != "SAME") if count_include_pad is None else bool(count_include_pad)
    return apply_op("AvgPool", [x], attrs, name)


# ---------------------------------------------------------------------------- LRN
@register
class LRN(OpDef):
    """y = x / (bias + alpha·Σ_{|c'-c|≤r} x_c'²)^beta across channels (axis 1).  dx = LRNGrad."""

    kernels = {"onednn": onednn("lrn", blocked_inputs=(0,), blocked_output=True)}

    def infer(op):
        x = op.inputs[0]
        if x._shape is not None and len(x._shape) != 4:
            raise ValueError(f"local_response_normalization expects NCHW rank 4, received {S.fmt(x._shape)}")
        return [(x._shape, x.dtype)]

    def make_kernel(op, ctx):
        from ..kernels.lrn import lrn as k

        xp, a = ctx.xp, op.attrs
        return lambda x: k(xp, x, a["depth_radius"], a["bias"], a["alpha"], a["beta"])

    def grad(op, dy):
        return [apply_op("LRNGrad", [op.inputs[0], op.outputs[0], dy], op.attrs)]


@register
class LRNGrad(OpDef):
    """Exact gradient of LRN."""

    kernels = {"onednn": onednn("lrn_grad", blocked_inputs=(0, 1, 2), blocked_output=True)}

    def infer(op):
        return [(op.inputs[0]._shape, op.inputs[0].dtype)]

    def make_kernel(op, ctx):
        from ..kernels.lrn import lrn_grad as k

        xp, a = ctx.xp, op.attrs
        return lambda x, y, dy: k(xp, x, y, dy, a["depth_radius"], a["bias"], a["alpha"], a["beta"])


def local_response_normalization(input, depth_radius=5, bias=1.0, alpha=1.0, beta=0.5, name=None):
    """TensorFlow's LRN on NCHW. Caffe's (local_size n, alpha, k) is depth_radius=(n-1)//2,
    alpha=alpha/n, bias=k."""
    x = convert_to_tensor(input)
    return apply_op("LRN", [x], {"depth_radius": int(depth_radius), "bias": float(bias),
                             "alpha": float(alpha), "beta": float(beta)}, name)


lrn = local_response_normalization


# ---------------------------------------------------------------------------- softmax family
def _norm_axis(x, axis):
    r = x._shape
    if r is None:
        if axis < 0:
            raise ValueError("softmax with a negative axis needs a known rank")
        return axis
    if not -len(r) <= axis < len(r):
        raise ValueError(f"axis {axis} out of range for shape {S.fmt(r)}")
    return axis % len(r)


def _max_removed(x, axis):
    """x minus its maximum along ``axis`` (as a constant: the softmax family does not depend on it)."""
    return x - stop_gradient(reduce_max(x, axis, keepdims=True))


@register
class Softmax(OpDef):
    """y = exp(x - max) / Σ exp(x - max) along axis.  dx = (dy - Σ dy·y) · y"""

    kernels = {"onednn": onednn("softmax")}

    def infer(op):
        return [(op.inputs[0]._shape, op.inputs[0].dtype)]

    def forward(xp, x, axis=-1):
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        e /= e.sum(axis=axis, keepdims=True)
        return e

    def grad(op, dy):
        y = op.outputs[0]
        a = op.attrs["axis"]
        return [(dy - reduce_sum(dy * y, a, keepdims=True)) * y]

    def composite(x, axis=-1):  # stable (the max is taken out first), oneDNN's softmax
        e = exp(_max_removed(x, axis))
        return e / reduce_sum(e, axis, keepdims=True)


@register
class LogSoftmax(OpDef):
    """y = x - max - log Σ exp(x - max) along axis.  dx = dy - exp(y) · Σ dy"""

    def infer(op):
        return [(op.inputs[0]._shape, op.inputs[0].dtype)]

    def forward(xp, x, axis=-1):
        s = x - x.max(axis=axis, keepdims=True)
        return s - xp.log(xp.exp(s).sum(axis=axis, keepdims=True))

    def grad(op, dy):
        y = op.outputs[0]
        a = op.attrs["axis"]
        return [dy - exp(y) * reduce_sum(dy, a, keepdims=True)]

    def composite(x, axis=-1):  # stable, and one pass where the composite takes four
        s = _max_removed(x, axis)
        return s - log(reduce_sum(exp(s), axis, keepdims=True))


def softmax(logits, axis=-1, name=None):
    x = convert_to_tensor(logits)
    return apply_op("Softmax", [x], {"axis": _norm_axis(x, axis)}, name)


def log_softmax(logits, axis=-1, name=None):
    x = convert_to_tensor(logits)
    return apply_op("LogSoftmax", [x], {"axis": _norm_axis(x, axis)}, name)


@register
class SparseSoftmaxCrossEntropyWithLogits(OpDef):
    """loss = logsumexp(logits) - logits[label] along the last axis, computed stably; its second
    output is backprop = softmax(logits) - onehot(label).  dlogits = backprop · dloss (and, for
    second derivatives, the softmax Jacobian applied to the gradient of backprop)."""

    def infer(op):
        logits, labels = op.inputs
        if not labels.dtype.is_integer:
            raise TypeError(f"labels must be integers, received {labels.dtype.name}")
        ls, bs = logits._shape, labels._shape
        if ls is not None and bs is not None:
            if len(bs) != len(ls) - 1 or not S.compatible(ls[:-1], bs):
                raise ValueError(
                    f"labels of shape {S.fmt(bs)} do not match logits of shape {S.fmt(ls)} "
                    "(labels must have the logits' shape without the last axis)"
                )
        return [(None if ls is None else ls[:-1], logits.dtype), (ls, logits.dtype)]

    def forward(xp, logits, labels):
        c = logits.shape[-1]
        # NOTE: one reduction, so a GPU waits for one value, not two
        if labels.size and bool(((labels < 0) | (labels >= c)).any()):
            bad = labels[(labels < 0) | (labels >= c)].reshape(-1)[0]
            raise ValueError(f"label {int(bad)} is outside the valid range [0, {c})")
        s = logits - logits.max(axis=-1, keepdims=True)
        e = xp.exp(s)
        z = e.sum(axis=-1, keepdims=True)
        idx = labels[..., None].astype(np.intp, copy=False)
        loss = (xp.log(z) - xp.take_along_axis(s, idx, axis=-1))[..., 0]
        back = e / z
        xp.put_along_axis(back, idx, xp.take_along_axis(back, idx, axis=-1) - 1, axis=-1)
        return loss, back

    def grad(op, dloss, dback):
        logits = op.inputs[0]
        back = op.outputs[1]
        g = expand_dims(dloss, -1) * back
        if dback is not None and dback.op.type != "ZerosLike":
            p = softmax(logits)
            g = g + (dback - reduce_sum(dback * p, -1, keepdims=True)) * p
        return [g, None]

    def composite(logits, labels):  # stable; the loss and its gradient from one pass
        onehot = one_hot(labels, logits._shape[-1], dtype=logits.dtype)
        return [-reduce_sum(onehot * log_softmax(logits), -1), softmax(logits) - onehot]


def sparse_softmax_cross_entropy_with_logits(labels=None, logits=None, name=None):
    """Per-example cross-entropy of integer ``labels`` against unnormalised ``logits`` (stable)."""
    if labels is None or logits is None:
        raise ValueError("sparse_softmax_cross_entropy_with_logits needs labels= and logits=")
    x = convert_to_tensor(logits)
    y = convert_to_tensor(labels, graph=x.graph) if not isinstance(labels, Tensor) else labels
    op = graph_of(x).create_op("SparseSoftmaxCrossEntropyWithLogits", [x, y], None,
                               name or "SparseSoftmaxCrossEntropyWithLogits")
    return op.outputs[0]


def softmax_cross_entropy_with_logits(labels=None, logits=None, axis=-1, name=None):
    """Cross-entropy against a distribution ``labels`` (stable, via log_softmax)."""
    x = convert_to_tensor(logits)
    z = convert_to_tensor(labels, dtype=x.dtype, graph=x.graph)
    return -reduce_sum(z * log_softmax(x, axis), axis, name=name)


def sigmoid_cross_entropy_with_logits(labels=None, logits=None, name=None):
    """max(x, 0) - x·z + log(1 + exp(-|x|)): stable for any logits x and targets z.
    Gradient: sigmoid(x) - z w.r.t. x, -x w.r.t. z.

    NOTE: max(x, 0) and -|x| are built from one ``where(x >= 0, ...)`` so both pick the same side
    at x = 0; with relu (slope 0 at 0) and abs (slope sign(0) = 0) the gradient at x = 0 would be
    -z instead of 1/2 - z, and zero-initialised logits sit exactly there."""
    x = convert_to_tensor(logits)
    z = convert_to_tensor(labels, dtype=x.dtype, graph=x.graph)
    nonneg = x >= 0
    relu_x = where(nonneg, x, zeros_like(x))
    neg_abs = where(nonneg, -x, x)
    return relu_x - x * z + log1p(exp(neg_abs))


# ---------------------------------------------------------------------------- misc
def bias_add(value, bias, data_format="NCHW", name=None):
    """Add a per-channel bias: axis 1 for NCHW inputs of rank ≥ 3, the last axis otherwise."""
    x = convert_to_tensor(value)
    b = convert_to_tensor(bias, dtype=x.dtype, graph=x.graph)
    r = x._shape
    if r is not None and len(r) >= 3 and data_format == "NCHW":
        b = reshape(b, [-1] + [1] * (len(r) - 2))
    return x + b


def dropout(x, rate=None, keep_prob=None, noise_shape=None, seed=None, name=None):
    """Zero each element with probability ``rate`` and scale the rest by 1/(1-rate)."""
    x = convert_to_tensor(x)
    if rate is None:
        if keep_prob is None:
            raise ValueError("dropout needs rate= (or keep_prob=)")
        rate = 1 - keep_prob
    if isinstance(rate, (int, float)):
        if not 0 <= rate < 1:
            raise ValueError(f"dropout rate must be in [0, 1), received {rate}")
        if rate == 0:
            return x
    ns = noise_shape if noise_shape is not None else (
        x._shape if x._shape is not None and None not in x._shape else shape(x))
    u = random_uniform(ns, dtype=x.dtype, seed=seed)
    keep = cast(u >= rate, x.dtype)
    return x * keep * (1.0 / (1.0 - rate)) if isinstance(rate, (int, float)) else x * keep / (1.0 - rate)


def moments(x, axes, shift=None, keepdims=False, name=None):
    """Mean and variance over ``axes`` (batch-norm statistics)."""
    x = convert_to_tensor(x)
    mean = reduce_mean(x, axes, keepdims=True)
    # NOTE: no stop_gradient on the mean (TF puts one there): its first-order effect is zero
    # anyway, and keeping the path makes second derivatives exact.
    variance = reduce_mean(squared_difference(x, mean), axes, keepdims=True)
    if not keepdims:
        from .array import squeeze

        mean, variance = squeeze(mean, axes), squeeze(variance, axes)
    return mean, variance


# ---------------------------------------------------------------------------- batch normalisation
def _stat_axes(rank):
    return (0,) + tuple(range(2, rank))


def _per_channel(v, rank):
    """A [C] tensor shaped [1, C, 1, ...] to broadcast against a rank-``rank`` NCHW value."""
    return reshape(v, [1, -1] + [1] * (rank - 2))


def _composite_gradient(ys, xs, grad_ys):
    """Gradients of a composite built here from primitives (the fused ops' rarely needed
    derivatives: the statistics' own, and second order) by the same autodiff as everything else."""
    from ..autodiff import gradients

    return gradients(ys, xs, grad_ys=grad_ys, name="composite")


def _rank_of(x, what):
    if x._shape is None:
        raise ValueError(f"{what} needs an input of known rank")
    return len(x._shape)


@register
class FusedBatchNorm(OpDef):
    """Batch normalisation with the batch's own statistics, channels on axis 1 (N, C, ...):
    y = (x - mean) / sqrt(var + epsilon), where mean and the biased variance var (outputs 1 and
    2, shape [C]) are taken over every axis but 1. One op where the composite (moments, subtract,
    rsqrt, multiply) takes six and its gradient a dozen; oneDNN's batch normalisation runs it in
    the layout a convolution leaves its output in. dx = FusedBatchNormGrad; gradients reaching the
    statistics themselves follow from their composite (mean = Σx/m, var = Σ(x - mean)²/m)."""

    kernels = {"onednn": onednn("batch_norm", blocked_inputs=(0,), blocked_output=True)}
    grad_accepts_none = True

    def infer(op):
        x = op.inputs[0]
        s = x._shape
        if not x.dtype.is_floating:
            raise TypeError(f"batch normalisation needs a floating input, received {x.dtype.name}")
        if s is not None and len(s) < 2:
            raise ValueError(f"batch normalisation needs an N×C×... input of rank >= 2, received {S.fmt(s)}")
        c = None if s is None else s[1]
        return [(s, x.dtype), ((c,), x.dtype), ((c,), x.dtype)]

    def forward(xp, x, epsilon):
        axes = _stat_axes(x.ndim)
        mean = x.mean(axis=axes, keepdims=True)
        xc = x - mean
        var = xp.square(xc).mean(axis=axes, keepdims=True)
        y = xc
        y *= (1 / xp.sqrt(var + x.dtype.type(epsilon))).astype(x.dtype, copy=False)
        return y, mean.reshape(-1), var.reshape(-1)

    def grad(op, dy, dmean, dvar):
        x = op.inputs[0]
        mean, var = op.outputs[1], op.outputs[2]
        dx = None
        if dy is not None:
            dx = apply_op("FusedBatchNormGrad", [dy, x, mean, var], op.attrs)
        if dmean is not None or dvar is not None:
            axes = list(_stat_axes(_rank_of(x, "the gradient of batch statistics")))
            m = reduce_mean(x, axes)
            v = reduce_mean(squared_difference(x, reduce_mean(x, axes, keepdims=True)), axes)
            pairs = [(t, g) for t, g in ((m, dmean), (v, dvar)) if g is not None]
            (extra,) = _composite_gradient([t for t, _ in pairs], [x], [g for _, g in pairs])
            dx = extra if dx is None else dx + extra
        return [dx]

    def composite(x, epsilon):
        from .math import rsqrt

        axes = list(_stat_axes(_rank_of(x, "batch normalisation")))
        rank = len(x._shape)
        mean = reduce_mean(x, axes)
        var = reduce_mean(squared_difference(x, _per_channel(mean, rank)), axes)
        return [(x - _per_channel(mean, rank)) * _per_channel(rsqrt(var + epsilon), rank), mean, var]


def _batch_norm_grad_composite(dy, x, mean, var, epsilon):
    """FusedBatchNormGrad from primitives: dx = r·(dy - mean(dy) - (x - μ)·r²·mean(dy·(x - μ)))
    with r = 1/sqrt(var + ε), the means over every axis but 1."""
    from .math import rsqrt

    rank = _rank_of(x, "the second derivative of batch normalisation")
    axes = list(_stat_axes(rank))
    r = _per_channel(rsqrt(var + epsilon), rank)
    xc = x - _per_channel(mean, rank)
    return r * (dy - reduce_mean(dy, axes, keepdims=True)
                - xc * (r * r) * reduce_mean(dy * xc, axes, keepdims=True))


@register
class FusedBatchNormGrad(OpDef):
    """dx of FusedBatchNorm from (dy, x, mean, var): r·(dy - mean(dy) - x̂·mean(dy·x̂)) with
    r = 1/sqrt(var + ε) and x̂ = (x - mean)·r, the means over every axis but 1. Its own
    gradient (second order) is its composite's."""

    kernels = {"onednn": onednn("batch_norm_grad", blocked_inputs=(0, 1), blocked_output=True)}
    composite = _batch_norm_grad_composite

    def infer(op):
        dy, x = op.inputs[0], op.inputs[1]
        if not S.compatible(dy._shape, x._shape):
            raise ValueError(f"batch-norm gradient: dy {S.fmt(dy._shape)} and x {S.fmt(x._shape)} differ")
        return [(x._shape if x._shape is not None else dy._shape, x.dtype)]

    def forward(xp, dy, x, mean, var, epsilon):
        axes = _stat_axes(x.ndim)
        bshape = (1, -1) + (1,) * (x.ndim - 2)
        r = (1 / xp.sqrt(var + x.dtype.type(epsilon))).astype(x.dtype, copy=False).reshape(bshape)
        xc = x - mean.reshape(bshape)
        k = (dy * xc).mean(axis=axes, keepdims=True) * (r * r)
        xc *= k
        dx = dy - dy.mean(axis=axes, keepdims=True)
        dx -= xc
        dx *= r
        return dx

    def grad(op, ddx):
        # the composite reads copies of the inputs, so that its gradients are its own partial
        # derivatives (mean and var are functions of x: their paths are the outer gradient's)
        from .core import identity

        ins = [identity(t) for t in op.inputs]
        z = _batch_norm_grad_composite(*ins, op.attrs["epsilon"])
        return _composite_gradient([z], ins, [ddx])


def fused_batch_norm_training(x, epsilon=1e-5, name=None):
    """(y, mean, variance) of batch normalisation with the batch's statistics over every axis
    but 1 (the biased variance): the FusedBatchNorm op."""
    x = convert_to_tensor(x)
    return tuple(graph_of(x).create_op("FusedBatchNorm", [x], {"epsilon": float(epsilon)}, name).outputs)


# ---------------------------------------------------------------------------- channel affine
@register
class ChannelAffine(OpDef):
    """y = x·scale + offset per channel (axis 1 of N, C, ...; scale and offset of shape [C];
    without offset: y = x·scale): Caffe's Scale layer in its usual form. One op where the
    composite takes a reshape and two broadcasts forward and four ops backward, so that oneDNN
    runs both directions in the layout a convolution or batch norm leaves its output in.
    Gradients: ChannelAffineGrad (dx, dscale, doffset in one pass)."""

    kernels = {"onednn": onednn("channel_affine", blocked_inputs=(0,), blocked_output=True)}

    def infer(op):
        x, scale = op.inputs[0], op.inputs[1]
        s = x._shape
        if s is not None and len(s) < 2:
            raise ValueError(f"a channel affine needs an N×C×... input of rank >= 2, received {S.fmt(s)}")
        for t in op.inputs[1:]:
            if t.dtype != x.dtype:
                raise TypeError(f"channel affine operands differ in dtype: {x.dtype.name} and {t.dtype.name}")
            if t._shape is not None and (len(t._shape) != 1 or (s is not None and not S.compatible(t._shape, s[1:2]))):
                raise ValueError(f"a channel affine's scale and offset must be [C] for an input of shape {S.fmt(s)}; "
                                 f"received {S.fmt(t._shape)}")
        return [(s, x.dtype)]

    def forward(xp, x, scale, offset=None):
        bshape = (1, -1) + (1,) * (x.ndim - 2)
        y = x * scale.reshape(bshape)
        if offset is not None:
            y += offset.reshape(bshape)
        return y

    def grad(op, dy):
        x, scale = op.inputs[0], op.inputs[1]
        outs = graph_of(dy, x, scale).create_op("ChannelAffineGrad", [dy, x, scale],
                                                {"offset": len(op.inputs) == 3}).outputs
        return list(outs)

    def composite(x, scale, offset=None):
        rank = _rank_of(x, "a channel affine")
        y = x * _per_channel(scale, rank)
        return y if offset is None else y + _per_channel(offset, rank)


def _channel_affine_grad_composite(dy, x, scale, offset):
    rank = _rank_of(x, "the second derivative of a channel affine")
    axes = list(_stat_axes(rank))
    outs = [dy * _per_channel(scale, rank), reduce_sum(dy * x, axes)]
    return outs + [reduce_sum(dy, axes)] if offset else outs


@register
class ChannelAffineGrad(OpDef):
    """(dx, dscale[, doffset]) of ChannelAffine from (dy, x, scale): dy·scale, Σ dy·x and Σ dy
    over every axis but 1. Its own gradient (second order) is its composite's."""

    kernels = {"onednn": onednn("channel_affine_grad", blocked_inputs=(0, 1), blocked_output=True)}
    grad_accepts_none = True
    composite = _channel_affine_grad_composite

    def infer(op):
        dy, x, scale = op.inputs
        c = scale._shape
        outs = [(x._shape if x._shape is not None else dy._shape, x.dtype), (c, x.dtype)]
        return outs + [(c, x.dtype)] if op.attrs["offset"] else outs

    def forward(xp, dy, x, scale, offset):
        axes = _stat_axes(x.ndim)
        bshape = (1, -1) + (1,) * (x.ndim - 2)
        dx = dy * scale.reshape(bshape)
        dscale = (dy * x).sum(axis=axes)
        return (dx, dscale, dy.sum(axis=axes)) if offset else (dx, dscale)

    def grad(op, *gs):
        from .core import identity

        ins = [identity(t) for t in op.inputs]
        outs = _channel_affine_grad_composite(*ins, op.attrs["offset"])
        pairs = [(o, g) for o, g in zip(outs, gs) if g is not None]
        if not pairs:
            return [None, None, None]
        return _composite_gradient([o for o, _ in pairs], ins, [g for _, g in pairs])


def channel_affine(x, scale, offset=None, name=None):
    """y = x·scale (+ offset) per channel (axis 1), scale and offset of shape [C]."""
    x = convert_to_tensor(x)
    ins = [x, convert_to_tensor(scale, dtype=x.dtype)]
    if offset is not None:
        ins.append(convert_to_tensor(offset, dtype=x.dtype))
    return apply_op("ChannelAffine", ins, None, name)


def batch_normalization(x, mean, variance, offset, scale, variance_epsilon, name=None):
    """(x - mean) · scale / sqrt(variance + eps) + offset."""
    from .math import rsqrt

    inv = rsqrt(variance + variance_epsilon)
    if scale is not None:
        inv = inv * scale
    y = (x - mean) * inv
    return y + offset if offset is not None else y


def l2_loss(t, name=None):
    """Σ t² / 2."""
    from .math import square

    return reduce_sum(square(t), name=name) * 0.5

