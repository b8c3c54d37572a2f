"""The oneDNN provider's hooks: for each op type it serves, ``accepts_<name>(op)`` (None, or why
the reference kernel runs the op instead) and ``make_<name>(op, ctx, plan)`` (the kernel).

The op declarations name these through ``kernels = {"onednn": onednn("<name>", ...)}``. A kernel
made here keeps the op's reference kernel as its fallback for shapes oneDNN cannot take.
"""

from __future__ import annotations

import numpy as np

from ...ops.updates import RULES
from . import kernels as K


def _float32(op):
    """None when every data input (not a host-memory shape input) and output is float32."""
    host = set(op.op_def.host_inputs)
    data = [t for i, t in enumerate(op.inputs) if i not in host] + list(op.outputs)
    for t in data:
        if t.dtype.np != np.float32:
            return f"{t.dtype.name} (oneDNN serves float32)"
    return None


def _rank4(t, what):
    if t._shape is not None and len(t._shape) != 4:
        return f"{what} of rank {len(t._shape)}"
    return None


def _reference(op, ctx):
    return op.op_def.make_kernel(op, ctx)


# ---------------------------------------------------------------------------- convolution
def _conv_pads(attrs):
    from ...ops.nn import resolve_pads

    padding, strides, dilations = attrs["padding"], attrs["strides"], attrs["dilations"]
    if padding != "SAME":
        pads = tuple(padding)
        return lambda hw, khw: pads
    return lambda hw, khw: tuple(resolve_pads(padding, hw, khw, strides, dilations))


def _conv_accepts(op, x):
    return _float32(op) or _rank4(x, "input")


def accepts_conv2d(op):
    return _conv_accepts(op, op.inputs[0])


def make_conv2d(op, ctx, plan):
    a = op.attrs
    return K.ConvForward(_reference(op, ctx), a["strides"], _conv_pads(a), a["dilations"], a["groups"],
                         bias=False, relu=False, blocked_out=plan.blocked(op.outputs[0]))


def accepts_fused_conv2d(op):
    return _conv_accepts(op, op.inputs[0])


def make_fused_conv2d(op, ctx, plan):
    a = op.attrs
    return K.ConvForward(_reference(op, ctx), a["strides"], _conv_pads(a), a["dilations"], a["groups"],
                         bias=True, relu=a.get("activation") == "Relu", blocked_out=plan.blocked(op.outputs[0]))


def accepts_conv2d_backprop_input(op):
    return _conv_accepts(op, op.inputs[2])


def make_conv2d_backprop_input(op, ctx, plan):
    a = op.attrs
    return K.ConvBackwardData(_reference(op, ctx), a["strides"], _conv_pads(a), a["dilations"], a["groups"],
                              blocked_out=plan.blocked(op.outputs[0]))


def accepts_conv2d_backprop_filter(op):
    return _conv_accepts(op, op.inputs[0])


def make_conv2d_backprop_filter(op, ctx, plan):
    a = op.attrs
    return K.ConvBackwardWeights(_reference(op, ctx), a["filter_shape"], a["strides"], _conv_pads(a),
                                 a["dilations"], a["groups"])


def accepts_conv2d_backprop_filter_bias(op):
    return _conv_accepts(op, op.inputs[0])


def make_conv2d_backprop_filter_bias(op, ctx, plan):
    a = op.attrs
    return K.ConvBackwardWeights(_reference(op, ctx), a["filter_shape"], a["strides"], _conv_pads(a),
                                 a["dilations"], a["groups"], bias_shape=a["bias_shape"])


# ---------------------------------------------------------------------------- pooling
def _pool_pads(attrs):
    from ...ops.nn import resolve_pads

    padding, ksize, strides = attrs["padding"], attrs["ksize"], attrs["strides"]
    if padding != "SAME":
        pads = tuple(padding)
        return lambda hw: pads
    return lambda hw: tuple(resolve_pads(padding, hw, ksize, strides))


def _pool_args(op):
    a = op.attrs
    return a["ksize"], a["strides"], _pool_pads(a), a["ceil_mode"]


def accepts_max_pool(op):
    return _float32(op) or _rank4(op.inputs[0], "input")


def make_max_pool(op, ctx, plan):
    # training: keep the workspace only when the plan also runs this pool's gradient
    training = any(c.type == "MaxPoolGrad" and c.inputs[1] is op.outputs[0] for c in plan.consumers(op.outputs[0]))
    return K.PoolForward(_reference(op, ctx), "max", *_pool_args(op), training=training,
                         blocked_out=plan.blocked(op.outputs[0]))


def accepts_max_pool_grad(op):
    return _float32(op) or _rank4(op.inputs[0], "input")


def make_max_pool_grad(op, ctx, plan):
    fwd = plan.kernel_of(op.inputs[1].op)
    fwd = fwd if isinstance(fwd, K.PoolForward) else None
    return K.PoolBackward(_reference(op, ctx), "max", *_pool_args(op), forward=fwd,
                          blocked_out=plan.blocked(op.outputs[0]))


def _avg_exact(op, xs):
    """With a fully known input shape, whether a oneDNN average computes tfconf's numbers."""
    if xs is None or None in xs or len(xs) != 4:
        return None  # known at run time: the kernel decides per shape
    a = op.attrs
    pads = tuple(_pool_pads(a)(xs[2:]))
    _, far = K.pool_geometry(xs, a["ksize"], a["strides"], pads, a["ceil_mode"])
    if K.pool_algorithm("avg", pads, far, a["count_include_pad"]) is None:
        return ("Caffe's clipped average (pads with ceil rounding past them) has no oneDNN algorithm "
                "with the same divisors")
    return None


def accepts_avg_pool(op):
    return _float32(op) or _rank4(op.inputs[0], "input") or _avg_exact(op, op.inputs[0]._shape)


def make_avg_pool(op, ctx, plan):
    return K.PoolForward(_reference(op, ctx), "avg", *_pool_args(op), op.attrs["count_include_pad"],
                         training=False, blocked_out=plan.blocked(op.outputs[0]))


def accepts_avg_pool_grad(op):
    return _float32(op) or _rank4(op.inputs[1], "gradient") or _avg_exact(op, op.outputs[0]._shape)


def make_avg_pool_grad(op, ctx, plan):
    # dx in the layout its forward pooled in: the AvgPool of the same input, when the plan has it
    fwd = None
    sizes = op.inputs[0]
    if sizes.op.type == "Shape":
        for c in plan.consumers(sizes.op.inputs[0]):
            k = plan.kernel_of(c) if c.type == "AvgPool" and c.attrs == op.attrs else None
            if isinstance(k, K.PoolForward):
                fwd = k
                break
    return K.PoolBackward(_reference(op, ctx), "avg", *_pool_args(op), op.attrs["count_include_pad"],
                          forward=fwd, blocked_out=plan.blocked(op.outputs[0]))


# ---------------------------------------------------------------------------- ReLU, bias gradient
def accepts_relu(op):
    """Any known rank: 4-D values may come and go in a blocked layout, others are plain."""
    shape = op.inputs[0]._shape
    if shape is None or not 1 <= len(shape) <= 6:
        return "input of unknown rank" if shape is None else f"input of rank {len(shape)}"
    return _float32(op)


def make_relu(op, ctx, plan):
    return K.ReluForward(_reference(op, ctx), blocked_out=plan.blocked(op.outputs[0]))


def accepts_relu_grad(op):
    return accepts_relu(op)


def make_relu_grad(op, ctx, plan):
    return K.ReluBackward(_reference(op, ctx), blocked_out=plan.blocked(op.outputs[0]))


def accepts_sum_to_shape(op):
    """Only the bias gradient of an NCHW tensor ([N, C, H, W] summed to [C, 1, 1] or
    [1, C, 1, 1]), which the convolution gradients reading the same tensor take blocked."""
    from ...rewrite.fusion import bias_gradient_axes

    if _float32(op) or not bias_gradient_axes(op.inputs[0]._shape, op.outputs[0]._shape):
        return "not the bias gradient of a known NCHW shape"
    return None


def make_sum_to_shape(op, ctx, plan):
    return K.channel_sum(_reference(op, ctx))


# ---------------------------------------------------------------------------- elementwise chains
def _chain_accepts(op, program):
    from .elementwise import chain_reason

    return _float32(op) or chain_reason(program, [t._shape for t in op.inputs], op.outputs[0]._shape)


def _chain(op, ctx, plan, program):
    from .elementwise import ElementwiseChain

    return ElementwiseChain(_reference(op, ctx), program, blocked_out=plan.blocked(op.outputs[0]))


def _single(op):
    from .elementwise import single_step_program

    return single_step_program(op.type, len(op.inputs))


def accepts_elementwise(op):
    """Add, Sub, Mul, RealDiv and AddN (of two or more) on 4-D float32 values."""
    if op.type == "AddN" and len(op.inputs) < 2:
        return "a single input"
    return _chain_accepts(op, _single(op))


def make_elementwise(op, ctx, plan):
    if op.type == "AddN":
        from .elementwise import SumN

        return SumN(_reference(op, ctx), blocked_out=plan.blocked(op.outputs[0]))
    return _chain(op, ctx, plan, _single(op))


def accepts_fused_elementwise(op):
    return _chain_accepts(op, op.attrs["program"])


def make_fused_elementwise(op, ctx, plan):
    return _chain(op, ctx, plan, op.attrs["program"])


# ---------------------------------------------------------------------------- matrix products
def accepts_matmul(op):
    """2-D float32 products, on oneDNN's GEMM (gemm.py): in a oneDNN plan the same thread team
    runs every kernel. Measured on this project's 2-core Intel machine, single products: MLP's
    [128, 784] x [784, 512] 341 µs against OpenBLAS's 417, LeNet's ip1 [64, 800] x [800, 500] 158
    against 211, an LSTM step's [32, 256] x [256, 1024] 58 against 92."""
    a, b = op.inputs
    if _float32(op) or a._shape is None or b._shape is None or len(a._shape) != 2 or len(b._shape) != 2:
        return "not a 2-D float32 product"
    return None


def make_matmul(op, ctx, plan):
    from .gemm import sgemm

    reference = _reference(op, ctx)
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]

    def run(a, b):
        if a.ndim != 2 or b.ndim != 2 or a.dtype != np.float32 or b.dtype != np.float32:
            return reference(a, b)
        return sgemm(a, b, ta, tb)

    return run


def accepts_fused_matmul(op):
    return _float32(op)


def make_fused_matmul(op, ctx, plan):
    from .gemm import sgemm

    reference = _reference(op, ctx)
    relu = op.attrs.get("activation") == "Relu"
    tb = op.attrs.get("transpose_b", False)
    n_axis = 0 if tb else 1

    def run(a, b, bias):
        n = b.shape[n_axis] if b.ndim == 2 else None
        if (a.ndim != 2 or b.ndim != 2 or a.dtype != np.float32 or b.dtype != np.float32
                or bias.dtype != np.float32 or bias.shape not in ((n,), (1, n)) or not bias.flags.c_contiguous):
            return reference(a, b, bias)
        return sgemm(a, b, trans_b=tb, bias=bias, relu=relu)

    return run


def _scan(op):
    """The op's own numpy scan with its products on oneDNN's GEMM (the same code as the reference)."""
    from .gemm import ARRAY_MODULE

    fwd, attrs = op.op_def.forward, op.attrs
    return lambda *a: fwd(ARRAY_MODULE, *a, **attrs)


def accepts_lstm_sequence(op):
    return _float32(op)


def make_lstm_sequence(op, ctx, plan):
    return _scan(op)


def accepts_lstm_sequence_grad(op):
    return _float32(op)


def make_lstm_sequence_grad(op, ctx, plan):
    return _scan(op)


# ---------------------------------------------------------------------------- parameter updates
def _update_accepts(op, grad):
    if grad.dtype.np != np.float32:
        return f"{grad.dtype.name} (oneDNN serves float32)"
    return None


def accepts_apply_update(op):
    a = op.attrs
    if a["rule"] not in ("SGD", "GradientDescent", "Momentum"):
        return f"the {a['rule']} rule (the reference kernel)"
    if a["rule"] == "Momentum" and (a["hyper"].get("use_nesterov") or a.get("hyper_inputs") != ("momentum",)):
        return "Nesterov momentum (the reference kernel)" if a["hyper"].get("use_nesterov") else \
            "a constant momentum (the reference kernel)"
    return _update_accepts(op, op.inputs[2 + RULES[a["rule"]].slots])  # after the handles and lr


def make_apply_update(op, ctx, plan):
    from . import updates

    a = op.attrs
    if a["rule"] == "GradientDescent":
        return updates.ApplyGradientDescent(_reference(op, ctx), ctx.variables)
    if a["rule"] == "Momentum":
        return updates.ApplyMomentum(_reference(op, ctx), ctx.variables)
    return updates.CaffeSGD(_reference(op, ctx), ctx.variables, a["hyper"]["momentum"])


# ---------------------------------------------------------------------------- LRN, softmax (norm.py)
def _lrn_args(op):
    a = op.attrs
    return a["depth_radius"], a["bias"], a["alpha"], a["beta"]


def _lrn_accepts(op, x):
    """float32 NCHW, local_size 3 or 5 (depth_radius 1 or 2) and a beta oneDNN has optimised
    kernels for (0.75). Beyond that oneDNN 3.2 measured wrong or slow here: its NHWC LRN gradient
    for local_size 7 and up, on channel counts above 16 that are not a multiple of 16, is off by
    the gradient's own size; building an LRN backward of local_size 1 crashes the process; and its
    reference implementation (every other beta) is several times slower than numpy ([8, 64, 16, 16]
    beta 0.5: 0.98 ms forward and 5.1 backward against numpy's 0.18 and 0.38)."""
    why = _float32(op) or _rank4(x, "input")
    if why:
        return why
    from .norm import lrn_parameters, lrn_supported

    r, bias, alpha, beta = _lrn_args(op)
    if int(r) not in (1, 2):
        return (f"depth_radius {r} (local_size {2 * int(r) + 1}): oneDNN 3.2's LRN is exact only for local_size "
                "3 and 5")
    if not lrn_supported(x._shape, lrn_parameters(r, bias, alpha, beta)):
        return f"beta {beta}: oneDNN has only its reference LRN (slower than numpy)"
    return None


def accepts_lrn(op):
    """See _lrn_accepts. Measured on this project's 2-core machine, one call, batch 8, beta 0.75,
    oneDNN against numpy (forward; backward from the forward's workspace): CaffeNet's norm1
    [8, 96, 27, 27] from a blocked pool 0.32 ms against 1.73, 0.21 against 3.3; norm2
    [8, 256, 13, 13] 0.20 against 0.87, 0.12 against 1.74; norm1 from a plain array (NHWC and two
    reorders) 0.56 and 0.75; [8, 64, 16, 16] local_size 3, 0.10 against 0.17, 0.13 against 0.35."""
    return _lrn_accepts(op, op.inputs[0])


def make_lrn(op, ctx, plan):
    from .norm import LRNForward

    # training: keep the workspace only when the plan also runs this LRN's gradient
    training = any(c.type == "LRNGrad" and c.inputs[1] is op.outputs[0] for c in plan.consumers(op.outputs[0]))
    return LRNForward(_reference(op, ctx), *_lrn_args(op), training=training, blocked_out=plan.blocked(op.outputs[0]))


def accepts_lrn_grad(op):
    return _lrn_accepts(op, op.inputs[0])


def make_lrn_grad(op, ctx, plan):
    from .norm import LRNBackward, LRNForward

    fwd = plan.kernel_of(op.inputs[1].op)
    fwd = fwd if isinstance(fwd, LRNForward) else None
    return LRNBackward(_reference(op, ctx), *_lrn_args(op), forward=fwd, blocked_out=plan.blocked(op.outputs[0]))


# ---------------------------------------------------------------------------- batch normalisation
def _bn_accepts(op, x):
    shape = x._shape
    if shape is None or not 2 <= len(shape) <= 5:
        return "input of unknown rank" if shape is None else f"input of rank {len(shape)}"
    return _float32(op)


def accepts_batch_norm(op):
    return _bn_accepts(op, op.inputs[0])


def make_batch_norm(op, ctx, plan):
    from .norm import BatchNormForward

    return BatchNormForward(_reference(op, ctx), op.attrs["epsilon"], blocked_out=plan.blocked(op.outputs[0]))


def accepts_batch_norm_grad(op):
    return _bn_accepts(op, op.inputs[1])


def make_batch_norm_grad(op, ctx, plan):
    from .norm import BatchNormBackward

    return BatchNormBackward(_reference(op, ctx), op.attrs["epsilon"], blocked_out=plan.blocked(op.outputs[0]))


def accepts_channel_affine(op):
    return _bn_accepts(op, op.inputs[0])


def make_channel_affine(op, ctx, plan):
    from .norm import ChannelAffineForward

    return ChannelAffineForward(_reference(op, ctx), len(op.inputs) == 3, blocked_out=plan.blocked(op.outputs[0]))


def accepts_channel_affine_grad(op):
    return _bn_accepts(op, op.inputs[1])


def make_channel_affine_grad(op, ctx, plan):
    from .norm import ChannelAffineBackward

    return ChannelAffineBackward(_reference(op, ctx), op.attrs["offset"], blocked_out=plan.blocked(op.outputs[0]))


def accepts_softmax(op):
    """float32 of known rank along the innermost axis (dims after it may be 1), where oneDNN's
    softmax is vectorised. Measured on this project's 2-core machine, one call, oneDNN against
    numpy: [64, 10] 6.4 µs against 8.6, [100, 10] 6.8 against 11.5, [1600, 98] 50 against 270,
    [32, 1000] 14 against 41. Along an outer axis oneDNN has only its reference kernel ([64, 10]
    axis 0: 45 µs against numpy's 6.3), so numpy runs it. (A plan of one [64, 10] softmax gains
    nothing, 11.2 µs a run against 11.1: handing the cores to oneDNN costs what the kernel saves.)
    LogSoftmax stays on numpy: oneDNN's is less accurate in float32 (norm.SoftmaxForward)."""
    why = _float32(op)
    if why:
        return why
    shape = op.inputs[0]._shape
    if shape is None or len(shape) == 0:
        return "input of unknown rank" if shape is None else "a scalar"
    a = op.attrs["axis"] % len(shape)
    from .norm import softmax_inner

    if not softmax_inner(shape, a):
        return f"axis {a} of a rank-{len(shape)} input: oneDNN's softmax along an outer axis is its reference one"
    return None


def make_softmax(op, ctx, plan):
    from .norm import SoftmaxForward

    return SoftmaxForward(_reference(op, ctx), op.attrs["axis"])


# ---------------------------------------------------------------------------- LSTM layers
def accepts_lstm_layer(op):
    """float32 with every shape known but the batch: oneDNN's LSTM primitive runs the whole layer
    (input projection and recurrence) in one call; measured on the LSTM benchmark's second layer
    ([50, 32, 256] -> 256), forward + backward 27 ms against 41 for the numpy scan
    (benchmarks/rnn_layers_bench.py)."""
    why = _float32(op)
    if why:
        return why
    x, w_x, _, w_h = op.inputs[:4]
    if x._shape is None or x._shape[0] is None or x._shape[2] is None or w_h._shape is None or None in w_h._shape:
        return "sequence length, features or hidden size unknown when the plan compiles"
    return None


def make_lstm_layer(op, ctx, plan):
    from .rnn import LSTMLayerForward

    training = any(c.type == "LSTMLayerGrad" for t in op.outputs for c in plan.consumers(t))
    return LSTMLayerForward(_scan(op), training)  # the fallback: the scan, its products on oneDNN


def accepts_lstm_layer_grad(op):
    return accepts_lstm_layer(op)  # the same x, w_x, b, w_h inputs come first


def make_lstm_layer_grad(op, ctx, plan):
    from .rnn import LSTMLayerBackward, LSTMLayerForward

    a = op.attrs
    fwd = plan.kernel_of(op.inputs[10].op)  # the LSTMLayer whose saved output this reads
    return LSTMLayerBackward(_scan(op), a["dhs"], a["dh_last"], a["dc_last"],
                             fwd if isinstance(fwd, LSTMLayerForward) else None)


def accepts_gru_layer(op):
    """float32 with every shape known but the batch: oneDNN's linear-before-reset GRU primitive
    runs the whole layer (projection and recurrence) in one call each way."""
    return accepts_lstm_layer(op)  # the same x, w_x, b_x, w_h inputs come first


def make_gru_layer(op, ctx, plan):
    from .rnn import GRULayerForward

    training = any(c.type == "GRULayerGrad" for t in op.outputs for c in plan.consumers(t))
    return GRULayerForward(_scan(op), training)  # the fallback: the scan, its products on oneDNN


def accepts_gru_layer_grad(op):
    return accepts_lstm_layer(op)


def make_gru_layer_grad(op, ctx, plan):
    from .rnn import GRULayerBackward, GRULayerForward

    a = op.attrs
    fwd = plan.kernel_of(op.inputs[9].op)  # the GRULayer whose saved output this reads
    return GRULayerBackward(_scan(op), a["dhs"], a["dh_last"],
                            fwd if isinstance(fwd, GRULayerForward) else None)
