"""Export a net's deploy graph as ONNX (``tfconf export CONFIG --weights W --format onnx -o net.onnx``).

The deploy graph is the test phase of the net without its losses and metrics:

- **Inputs**: every data top a kept layer reads (``data`` for a net with a ``data:`` section, the
  tops of its Input layers otherwise) becomes a graph input named after the top, with the shape
  the net is built with and a symbolic batch dimension ``N``.
- **Dropped**: loss layers (SoftmaxWithLoss, EuclideanLoss, ...) and Accuracy; with them the
  ``label`` input goes, unless a kept layer reads it. Dropout is the identity, as at test time.
- **Outputs**: every top of the kept layers that no later kept layer reads, i.e. what
  ``tfconf validate`` lists as the test outputs once losses are set aside: for a classifier the
  raw scores (``ip2`` of LeNet), exactly what tfconf's own test-phase forward computes. With
  ``softmax=True`` (``--softmax``) each dropped SoftmaxWithLoss is replaced by a Softmax whose
  top is ``prob``, as in Caffe's deploy.prototxt files; the scores are then not an output.

Each layer maps to ONNX operators from its config (the layer spec) and the weights file; the net
is built once with tfconf only to know the static shape of every top (pooling windows, reshape
targets). Parameters become initializers named as tfconf names them (``conv1/weights``). A layer
type with no mapping (recurrent layers, Python layers, ArgMax) is a located error naming the
layer; the table of mappings is ``EXPORTERS``.

Pooling: tfconf (like Caffe) rounds the output size up and drops a last window that would start in
the padding. ONNX's ``ceil_mode`` does not say the latter (its shape inference and some runtimes
disagree with Caffe there), so the export pads the end explicitly and uses floor mode, which every
runtime computes the same way; average pooling keeps Caffe's divisor (the padding counts, the
overhang past it does not).
"""

from __future__ import annotations

import math

import numpy as np

from tfconf.errors import UserError

__all__ = ["EXPORTERS", "OPSET", "ExportError", "ExportUnavailable", "export_onnx", "write_onnx"]

OPSET = 17          # ONNX opset of the exported graph (onnxruntime >= 1.13, TensorRT 8.6, OpenVINO 2022.3)
IR_VERSION = 8      # the IR version that goes with opset 17, for runtimes older than the onnx package

# Layers that a deploy net leaves out: they need labels and produce training signals or metrics.
DROPPED = {"Accuracy"}


class ExportError(UserError, ValueError):
    """A net that cannot be exported with these weights (missing parameters, wrong shapes)."""


class ExportUnavailable(UserError, RuntimeError):
    """The onnx package is not installed."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ExportUnavailable("ONNX export needs the onnx package: pip install 'tfconf[onnx]' "
                                "(or pip install onnx)") from None
    return onnx


# ---------------------------------------------------------------------------------------------------- builder
class _Builder:
    """Collects the nodes and initializers of the graph; names tensors and nodes uniquely."""

    def __init__(self, onnx, weights, params):
        self.onnx = onnx
        self.h = onnx.helper
        self.weights = weights
        self.params = params           # tfconf parameter name → Variable (their keys)
        self.nodes = []
        self.inits = {}                # name → TensorProto
        self.used = set()              # tensor names taken
        self.spec = None               # the layer being exported
        self.tops = []                 # the names its outputs must have
        self.dtypes = {}               # tensor name → numpy dtype, for the graph inputs
        self._node_names = set()

    def unique(self, name):
        base, k = name, 1
        while name in self.used:
            name = f"{base}_{k}"
            k += 1
        self.used.add(name)
        return name

    def y(self, i=0):
        """The name the layer's ``i``-th top must be written to."""
        return self.tops[i]

    def tmp(self, hint):
        return self.unique(f"{self.spec.name}/{hint}")

    def node(self, op_type, inputs, outputs=None, **attrs):
        """Add a node; returns its output name (or names, when ``outputs`` lists several)."""
        outs = list(outputs) if outputs is not None else [self.tmp(op_type)]
        name = f"{self.spec.name}/{op_type}"
        base, k = name, 1
        while name in self._node_names:
            name = f"{base}_{k}"
            k += 1
        self._node_names.add(name)
        self.nodes.append(self.h.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs[0] if len(outs) == 1 else outs

    def const(self, value, hint, dtype=np.float32):
        """An initializer holding ``value`` (named after the layer and ``hint``)."""
        name = self.tmp(hint)
        self.inits[name] = self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
        return name

    def param(self, index, suffix, reshape=None):
        """The layer's ``index``-th parameter as an initializer named like tfconf's (``conv1/weights``;
        a shared ``param[i].name`` is used as is), optionally reshaped for broadcasting."""
        spec = self.spec
        named = spec.param[index].name if index < len(spec.param) else None
        key = named or f"{spec.name}/{suffix}"
        value = np.asarray(self.weights[key], dtype=np.float32)
        name = key
        if reshape is not None and list(value.shape) != list(reshape):
            value = value.reshape(reshape)
            name = f"{key}:{'x'.join(map(str, reshape)) or 'scalar'}"
        if name not in self.inits:
            self.used.add(name)
            self.inits[name] = self.onnx.numpy_helper.from_array(value, name)
        return name

    def state(self, suffix):
        """A non-trainable state of the layer (BatchNorm's moving statistics) as an initializer."""
        key = f"{self.spec.name}/{suffix}"
        if key not in self.inits:
            self.used.add(key)
            self.inits[key] = self.onnx.numpy_helper.from_array(np.asarray(self.weights[key], np.float32), key)
        return key

    def value_info(self, name, shape, np_dtype):
        dims = [d if d is not None else ("N" if i == 0 else f"{name}_dim{i}") for i, d in enumerate(shape)]
        elem = self.h.np_dtype_to_tensor_dtype(np.dtype(np_dtype))
        return self.h.make_tensor_value_info(name, elem, dims)


EXPORTERS = {}


def _exports(*types):
    """Register ``fn(b, spec, xs, ins, outs)``: write layer ``spec`` whose bottoms are the tensors
    ``xs`` of static shapes ``ins`` (None: known at run time) into ``b``, its tops (of shapes
    ``outs``) into the names ``b.y(i)``."""

    def deco(fn):
        for t in types:
            EXPORTERS[t] = fn
        return fn

    return deco


def _ints(values):
    return [int(v) for v in values]


def _reshape(b, x, out_shape, copy_leading=0):
    """Reshape ``x`` to the static ``out_shape``: its first ``copy_leading`` axes are copied from
    ``x`` (ONNX's 0), at most one other unknown size is inferred (-1)."""
    target = [0 if i < copy_leading else (-1 if d is None else int(d)) for i, d in enumerate(out_shape)]
    if target.count(-1) > 1:
        raise ValueError(f"cannot reshape to {out_shape}: more than one size is known only at run time")
    b.node("Reshape", [x, b.const(target, "shape", np.int64)], [b.y(0)])


# ---------------------------------------------------------------------------------------------------- vision
@_exports("Convolution")
def _convolution(b, spec, xs, ins, outs):
    kh, kw = spec.kernel()
    (sh, sw), (ph, pw), (dh, dw) = spec.strides(), spec.pads(), spec.dilations()
    inputs = [xs[0], b.param(0, "weights")] + ([b.param(1, "bias")] if spec.bias_term else [])
    b.node("Conv", inputs, [b.y(0)], kernel_shape=_ints([kh, kw]), strides=_ints([sh, sw]),
           pads=_ints([ph, pw, ph, pw]), dilations=_ints([dh, dw]), group=int(spec.group))


@_exports("Deconvolution")
def _deconvolution(b, spec, xs, ins, outs):
    kh, kw = spec.kernel()
    (sh, sw), (ph, pw), (dh, dw) = spec.strides(), spec.pads(), spec.dilations()
    inputs = [xs[0], b.param(0, "weights")] + ([b.param(1, "bias")] if spec.bias_term else [])
    b.node("ConvTranspose", inputs, [b.y(0)], kernel_shape=_ints([kh, kw]), strides=_ints([sh, sw]),
           pads=_ints([ph, pw, ph, pw]), dilations=_ints([dh, dw]), group=int(spec.group))


@_exports("Pooling")
def _pooling(b, spec, xs, ins, outs):
    x = xs[0]
    is_max = spec.pool == "max"
    if spec.global_pooling:
        b.node("GlobalMaxPool" if is_max else "GlobalAveragePool", [x], [b.y(0)])
        return
    _, _, h, w = ins[0]
    oh, ow = outs[0][2], outs[0][3]
    (kh, kw), (sh, sw), (ph, pw) = spec.kernel(), spec.strides(), spec.pads()
    # NOTE: the end padding that makes floor mode give tfconf's (ceil-mode) output size; always
    # smaller than the kernel minus the padding, as the last window starts inside the input.
    eh = max(0, (oh - 1) * sh + kh - (h + 2 * ph))
    ew = max(0, (ow - 1) * sw + kw - (w + 2 * pw))
    common = dict(kernel_shape=_ints([kh, kw]), strides=_ints([sh, sw]))
    if is_max:  # padding never wins a max
        b.node("MaxPool", [x], [b.y(0)], pads=_ints([ph, pw, ph + eh, pw + ew]), **common)
    elif eh == 0 and ew == 0:
        b.node("AveragePool", [x], [b.y(0)], pads=_ints([ph, pw, ph, pw]), count_include_pad=1, **common)
    else:
        # Caffe's divisor counts the padding but not the overhang past it: pad with real zeros,
        # then let the overhang be ONNX padding that the divisor leaves out.
        if ph or pw:
            x = b.node("Pad", [x, b.const([0, 0, ph, pw, 0, 0, ph, pw], "pads", np.int64)])
        b.node("AveragePool", [x], [b.y(0)], pads=_ints([0, 0, eh, ew]), count_include_pad=0, **common)


# ---------------------------------------------------------------------------------------------------- core
@_exports("InnerProduct")
def _inner_product(b, spec, xs, ins, outs):
    shp = ins[0]
    rank = len(shp)
    axis = spec.axis % rank
    x = xs[0]
    if not (rank == 2 and axis == 1):
        x = b.node("Flatten", [x], axis=axis)   # [prod(shape[:axis]), prod(shape[axis:])]
    inputs = [x, b.param(0, "weights")] + ([b.param(1, "bias")] if spec.bias_term else [])
    trans_b = 0 if spec.transpose else 1
    if axis == 1 or (rank == 1 and axis == 0):
        b.node("Gemm", inputs, [b.y(0)], transB=trans_b)
    else:
        _reshape(b, b.node("Gemm", inputs, transB=trans_b), outs[0])


@_exports("Dropout")
def _dropout(b, spec, xs, ins, outs):
    b.node("Identity", [xs[0]], [b.y(0)])


@_exports("Split")
def _split(b, spec, xs, ins, outs):
    for i in range(len(outs)):
        b.node("Identity", [xs[0]], [b.y(i)])


# ---------------------------------------------------------------------------------------------------- activations
@_exports("ReLU")
def _relu(b, spec, xs, ins, outs):
    if spec.negative_slope == 0:
        b.node("Relu", [xs[0]], [b.y(0)])
    else:
        b.node("LeakyRelu", [xs[0]], [b.y(0)], alpha=float(spec.negative_slope))


def _unary(onnx_type):
    def export(b, spec, xs, ins, outs):
        b.node(onnx_type, [xs[0]], [b.y(0)])

    return export


for _t, _o in (("Sigmoid", "Sigmoid"), ("TanH", "Tanh"), ("AbsVal", "Abs"), ("BNLL", "Softplus")):
    _exports(_t)(_unary(_o))


@_exports("PReLU")
def _prelu(b, spec, xs, ins, outs):
    rank = len(ins[0])
    shape = [] if spec.channel_shared else [ins[0][1]] + [1] * (rank - 2)
    b.node("PRelu", [xs[0], b.param(0, "slope", reshape=shape)], [b.y(0)])


@_exports("ELU")
def _elu(b, spec, xs, ins, outs):
    b.node("Elu", [xs[0]], [b.y(0)], alpha=float(spec.alpha))


def _affine(b, x, scale, shift):
    if scale != 1:
        x = b.node("Mul", [x, b.const(scale, "scale")])
    if shift != 0:
        x = b.node("Add", [x, b.const(shift, "shift")])
    return x


@_exports("Power")
def _power(b, spec, xs, ins, outs):
    x = xs[0]
    if spec.scale == 0 or spec.power == 0:  # a constant of x's shape, as in Caffe
        value = 1.0 if spec.power == 0 else spec.shift ** spec.power
        b.node("ConstantOfShape", [b.node("Shape", [x])], [b.y(0)],
               value=b.onnx.numpy_helper.from_array(np.asarray([value], np.float32)))
        return
    base = _affine(b, x, spec.scale, spec.shift)
    if spec.power == 1:
        b.node("Identity", [base], [b.y(0)])
    else:
        b.node("Pow", [base, b.const(spec.power, "power")], [b.y(0)])


def _ln_base(base):
    return 1.0 if base == -1 else math.log(base)


@_exports("Exp")
def _exp(b, spec, xs, ins, outs):
    ln_b = _ln_base(spec.base)
    b.node("Exp", [_affine(b, xs[0], spec.scale * ln_b, spec.shift * ln_b)], [b.y(0)])


@_exports("Log")
def _log(b, spec, xs, ins, outs):
    ln_b = _ln_base(spec.base)
    y = b.node("Log", [_affine(b, xs[0], spec.scale, spec.shift)], None if ln_b != 1.0 else [b.y(0)])
    if ln_b != 1.0:
        b.node("Mul", [y, b.const(1.0 / ln_b, "inv_ln_base")], [b.y(0)])


@_exports("Threshold")
def _threshold(b, spec, xs, ins, outs):
    above = b.node("Greater", [xs[0], b.const(spec.threshold, "threshold")])
    b.node("Cast", [above], [b.y(0)], to=b.onnx.TensorProto.FLOAT)


@_exports("Clip")
def _clip(b, spec, xs, ins, outs):
    b.node("Clip", [xs[0], b.const(spec.min, "min"), b.const(spec.max, "max")], [b.y(0)])


@_exports("Swish")
def _swish(b, spec, xs, ins, outs):
    x = xs[0]
    s = b.node("Sigmoid", [_affine(b, x, spec.beta, 0.0)])
    b.node("Mul", [x, s], [b.y(0)])


# ---------------------------------------------------------------------------------------------------- normalization
@_exports("LRN")
def _lrn(b, spec, xs, ins, outs):
    n = spec.local_size
    if spec.norm_region == "across_channels":
        b.node("LRN", [xs[0]], [b.y(0)], size=int(n), alpha=float(spec.alpha), beta=float(spec.beta),
               bias=float(spec.k))
        return
    x = xs[0]
    pad = (n - 1) // 2
    mean_sq = b.node("AveragePool", [b.node("Mul", [x, x])], kernel_shape=[n, n], strides=[1, 1],
                     pads=[pad, pad, pad, pad], count_include_pad=1)
    denom = _affine(b, mean_sq, spec.alpha, 1.0)
    b.node("Mul", [x, b.node("Pow", [denom, b.const(-spec.beta, "neg_beta")])], [b.y(0)])


@_exports("Softmax")
def _softmax(b, spec, xs, ins, outs):
    b.node("Softmax", [xs[0]], [b.y(0)], axis=spec.axis % len(ins[0]))


def _moments(b, x, axes):
    """(x - mean, variance) over ``axes`` (biased, as tfconf's moments)."""
    mean = b.node("ReduceMean", [x], axes=_ints(axes), keepdims=1)
    d = b.node("Sub", [x, mean])
    return d, b.node("ReduceMean", [b.node("Mul", [d, d])], axes=_ints(axes), keepdims=1)


@_exports("BatchNorm")
def _batch_norm(b, spec, xs, ins, outs):
    x = xs[0]
    c, rank = ins[0][1], len(ins[0])
    if spec.use_global_stats is False:  # the batch's own statistics even at test time
        d, var = _moments(b, x, [0] + list(range(2, rank)))
        rstd = b.node("Reciprocal", [b.node("Sqrt", [b.node("Add", [var, b.const(spec.eps, "eps")])])])
        b.node("Mul", [d, rstd], [b.y(0)])
        return
    ones, zeros = b.const(np.ones([c]), "scale"), b.const(np.zeros([c]), "bias")
    b.node("BatchNormalization", [x, ones, zeros, b.state("moving_mean"), b.state("moving_variance")],
           [b.y(0)], epsilon=float(spec.eps))


def _operand(spec, shp):
    """(first axis, shape) of Scale's/Bias's learned operand over an input of shape ``shp``."""
    rank = len(shp)
    a = spec.axis % rank
    end = rank if spec.num_axes == -1 else a + spec.num_axes
    return a, [int(d) for d in shp[a:end]]


def _second_operand(b, v, vs, x_rank, axis):
    """A second bottom covering axes ``axis``.. of x, reshaped to broadcast against x."""
    trailing = x_rank - axis - len(vs)
    if trailing == 0:
        return v
    return b.node("Reshape", [v, b.const([0] * len(vs) + [1] * trailing, "shape", np.int64)])


@_exports("Scale", "Bias")
def _scale_bias(b, spec, xs, ins, outs):
    x, shp = xs[0], ins[0]
    rank = len(shp)
    op = "Mul" if spec.type == "Scale" else "Add"
    if len(xs) == 2:
        a = spec.axis % rank
        y = b.node(op, [x, _second_operand(b, xs[1], ins[1], rank, a)],
                   [b.y(0)] if not (op == "Mul" and spec.bias_term) else None)
        if op == "Mul" and spec.bias_term:
            shape = [int(d) for d in ins[1]]
            bias = b.param(0, "bias", reshape=shape + [1] * (rank - a - len(shape)))
            b.node("Add", [y, bias], [b.y(0)])
        return
    a, shape = _operand(spec, shp)
    bshape = shape + [1] * (rank - a - len(shape))
    if spec.type == "Bias":
        b.node("Add", [x, b.param(0, "bias", reshape=bshape)], [b.y(0)])
        return
    y = b.node("Mul", [x, b.param(0, "scale", reshape=bshape)], None if spec.bias_term else [b.y(0)])
    if spec.bias_term:
        b.node("Add", [y, b.param(1, "bias", reshape=bshape)], [b.y(0)])


@_exports("MVN")
def _mvn(b, spec, xs, ins, outs):
    rank = len(ins[0])
    d, var = _moments(b, xs[0], range(1 if spec.across_channels else 2, rank))
    if not spec.normalize_variance:
        b.node("Identity", [d], [b.y(0)])
        return
    std = b.node("Add", [b.node("Sqrt", [var]), b.const(spec.eps, "eps")])
    b.node("Div", [d, std], [b.y(0)])


# ---------------------------------------------------------------------------------------------------- shape
@_exports("Concat")
def _concat(b, spec, xs, ins, outs):
    if len(xs) == 1:
        b.node("Identity", xs, [b.y(0)])
    else:
        b.node("Concat", xs, [b.y(0)], axis=spec.axis % len(ins[0]))


@_exports("Slice")
def _slice(b, spec, xs, ins, outs):
    axis = spec.axis % len(ins[0])
    if len(outs) == 1:
        b.node("Identity", xs, [b.y(0)])
        return
    sizes = [int(o[axis]) for o in outs]
    b.node("Split", [xs[0], b.const(sizes, "split", np.int64)], [b.y(i) for i in range(len(outs))], axis=axis)


@_exports("Eltwise")
def _eltwise(b, spec, xs, ins, outs):
    if spec.operation == "sum":
        terms = [x if not spec.coeff or spec.coeff[i] == 1 else b.node("Mul", [x, b.const(spec.coeff[i], "coeff")])
                 for i, x in enumerate(xs)]
        b.node("Sum", terms, [b.y(0)])
    elif spec.operation == "max":
        b.node("Max", xs, [b.y(0)])
    else:
        y = xs[0]
        for i, x in enumerate(xs[1:], 1):
            y = b.node("Mul", [y, x], [b.y(0)] if i == len(xs) - 1 else None)


@_exports("Flatten")
def _flatten(b, spec, xs, ins, outs):
    _reshape(b, xs[0], outs[0], copy_leading=spec.axis % len(ins[0]))


@_exports("Reshape")
def _reshape_layer(b, spec, xs, ins, outs):
    if spec.axis == 0 and spec.num_axes == -1:  # Caffe's 0 (copy) and -1 (infer) are ONNX's
        b.node("Reshape", [xs[0], b.const(spec.shape, "shape", np.int64)], [b.y(0)])
    else:
        _reshape(b, xs[0], outs[0])


@_exports("Crop")
def _crop(b, spec, xs, ins, outs):
    xs_shape, ref = ins
    a = spec.axis % len(xs_shape)
    axes = list(range(a, len(xs_shape)))
    offs = [0 if not spec.offset else spec.offset[0 if len(spec.offset) == 1 else i - a] for i in axes]
    ends = [o + int(ref[i]) for o, i in zip(offs, axes)]
    b.node("Slice", [xs[0], b.const(offs, "starts", np.int64), b.const(ends, "ends", np.int64),
                     b.const(axes, "axes", np.int64)], [b.y(0)])


@_exports("Tile")
def _tile(b, spec, xs, ins, outs):
    rank = len(ins[0])
    a = spec.axis % rank
    reps = [spec.tiles if i == a else 1 for i in range(rank)]
    b.node("Tile", [xs[0], b.const(reps, "repeats", np.int64)], [b.y(0)])


@_exports("Reduction")
def _reduction(b, spec, xs, ins, outs):
    rank = len(ins[0])
    axes = list(range(spec.axis % rank, rank))
    op = {"sum": "ReduceSum", "mean": "ReduceMean", "asum": "ReduceL1", "sumsq": "ReduceSumSquare"}[spec.operation]
    last = [b.y(0)] if spec.coeff == 1 else None
    if op == "ReduceSum":  # axes is an input from opset 13 on, an attribute for the others until 18
        y = b.node(op, [xs[0], b.const(axes, "axes", np.int64)], last, keepdims=0)
    else:
        y = b.node(op, [xs[0]], last, axes=axes, keepdims=0)
    if spec.coeff != 1:
        b.node("Mul", [y, b.const(spec.coeff, "coeff")], [b.y(0)])


@_exports("Embed")
def _embed(b, spec, xs, ins, outs):
    x = xs[0]
    if b.dtypes.get(x, np.float32) not in (np.int32, np.int64):
        x = b.node("Cast", [x], to=b.onnx.TensorProto.INT64)
    y = b.node("Gather", [b.param(0, "weights"), x], None if spec.bias_term else [b.y(0)], axis=0)
    if spec.bias_term:
        b.node("Add", [y, b.param(1, "bias")], [b.y(0)])


# ---------------------------------------------------------------------------------------------------- the net
def _deploy_net(cfg):
    """The test phase built with tfconf (for static shapes and parameter names): (net, params,
    placeholders by top name, the names of those that came from the data section)."""
    from tfconf.engine import api as tc

    from ..frontend.config import build_phase, data_tops, input_shapes

    g = tc.Graph()
    inputs = {}
    declared = data_tops(cfg)
    if declared is not None:  # text data: its tops are declared
        with g.as_default():
            inputs = {n: tc.placeholder(tc.as_dtype(dt), shape, name=n) for n, (shape, dt) in declared.items()}
    elif cfg.net.data is not None:
        sample = input_shapes(cfg)
        with g.as_default():
            inputs = {"data": tc.placeholder(tc.float32, [None, *sample], name="data"),
                      "label": tc.placeholder(tc.int64, [None], name="label")}
    params = {}
    given = set(inputs)
    net = build_phase(cfg, "test", g, params, {}, inputs=inputs)  # (Input layers add theirs to inputs)
    return net, params, inputs, given


def _check_weights(params, weights, source):
    missing = [k for k in params if k not in weights]
    if missing:
        raise ExportError(f"{source} lacks parameters of the net: {', '.join(missing)}")
    for k, v in params.items():
        want = tuple(v.shape.as_list())
        if tuple(np.shape(weights[k])) != want:
            raise ExportError(f"{source}: parameter {k!r} of layer {k.split('/')[0]!r} has shape "
                              f"{list(np.shape(weights[k]))} but the net needs {list(want)}")


def _is_dropped(spec):
    return spec.is_loss or spec.type in DROPPED


def export_onnx(cfg, weights, *, softmax=False, source="the weights"):
    """The deploy graph of config ``cfg`` (a loaded Config) with ``weights`` (parameter name → array)
    as an ``onnx.ModelProto``; checked with ``onnx.checker`` (shapes inferred strictly).

    ``softmax``: replace each SoftmaxWithLoss by a Softmax output ``prob``. A layer that cannot
    be exported raises a ConfigError located at the layer; weights that do not fit, ExportError."""
    onnx = _onnx()
    net, params, placeholders, from_data = _deploy_net(cfg)
    b = _Builder(onnx, weights, params)
    index = {layer.name: i for i, layer in enumerate(cfg.net.layers)}

    # Pass 1: which layers are kept (and with which type), each layer's bottoms (the compiler's
    # defaults), the final binding of every top (graph outputs carry the top's own name; earlier
    # bindings of a top that a later layer rebinds in place get suffixed names).
    plan = []
    prev = "data" if "data" in from_data else None
    for spec in net.layers:
        lo, _ = spec.num_bottoms
        names = spec.bottom if spec.bottom is not None else ([prev] if lo > 0 and prev else [])
        tops = spec.output_names()
        kind = spec.type
        if kind == "Input":  # its tops are placeholders, declared as graph inputs where read
            kind = None
        elif _is_dropped(spec):
            kind = "SoftmaxOutput" if softmax and spec.type == "SoftmaxWithLoss" else None
            tops, names = (["prob"], names[:1]) if kind else ([], names)
        if kind is not None and kind != "SoftmaxOutput" and kind not in EXPORTERS:
            known = ", ".join(sorted([*EXPORTERS, "Input"]))
            raise cfg.loaded.error(("layers", index[spec.name]),
                                   f"layer {spec.name!r} (type {kind}) cannot be exported to ONNX. "
                                   f"Exportable types: {known}")
        plan.append((spec, kind, names, tops))
        if net.layer_tops[spec.name]:
            prev = spec.output_names()[0]
    final = {}
    for i, (spec, kind, names, tops) in enumerate(plan):
        if kind is not None:
            for t in tops:
                final[t] = i
    _check_weights(params, weights, source)
    b.used.update(placeholders)
    b.used.update(final)

    graph_inputs, values, shapes = [], {}, {}
    consumed, order = set(), []
    for i, (spec, kind, names, tops) in enumerate(plan):
        if kind is None:
            continue
        b.spec = spec
        xs, ins = [], []
        for n in names:
            if n not in values:  # a data top: a graph input
                ph = placeholders[n]
                shapes[n] = ph.shape.as_list()
                values[n] = n
                b.dtypes[n] = ph.dtype.np
                graph_inputs.append(b.value_info(n, shapes[n], ph.dtype.np))
            xs.append(values[n])
            ins.append(shapes[n])
            consumed.add(n)
        b.tops = [t if final.get(t) == i else b.unique(f"{t}@{spec.name}") for t in tops]
        if kind == "SoftmaxOutput":
            outs = [ins[0]]
            b.node("Softmax", [xs[0]], [b.y(0)], axis=spec.axis % len(ins[0]))
        else:
            outs = [t.shape.as_list() for t in net.layer_tops[spec.name]]
            try:
                EXPORTERS[kind](b, spec, xs, ins, outs)
            except ValueError as e:
                raise cfg.loaded.error(("layers", index[spec.name]),
                                       f"layer {spec.name!r} (type {kind}) cannot be exported to ONNX: {e}") from None
        for t, name, shp in zip(tops, b.tops, outs):
            values[t], shapes[t] = name, shp
            consumed.discard(t)
            if t in order:
                order.remove(t)
            order.append(t)

    outputs = [t for t in order if t not in consumed and t not in placeholders]
    if not outputs:
        raise ExportError(f"the deploy net of {cfg.net.name!r} has no output (every kept top is consumed)")
    graph_outputs = [b.value_info(values[t], shapes[t], _out_dtype(net, t)) for t in outputs]
    graph = onnx.helper.make_graph(b.nodes, cfg.net.name, graph_inputs, graph_outputs,
                                   initializer=list(b.inits.values()))
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="tfconf", producer_version=_version(),
                                   doc_string=f"{cfg.net.name}: the test-phase (deploy) net exported by tfconf")
    model.ir_version = IR_VERSION
    onnx.helper.set_model_props(model, {"tfconf.net": cfg.net.name,
                                        "tfconf.outputs": ",".join(values[t] for t in outputs)})
    onnx.checker.check_model(model, full_check=True)
    return model


def _out_dtype(net, top):
    t = net.tops.get(top)  # (None for the ``prob`` that --softmax adds)
    return t.dtype.np if t is not None else np.float32


def _version():
    try:
        from importlib.metadata import version

        return version("tfconf")
    except Exception:  # noqa: BLE001 - a source checkout that is not installed
        return "0"


def write_onnx(cfg, weights_path, out, *, softmax=False):
    """Export ``cfg`` with the weights file ``weights_path`` (.safetensors) to ``out``; returns
    (inputs, outputs) as lists of (name, shape) for a summary."""
    import os

    from ..io.atomic import atomic_write_bytes
    from ..train.snapshot import load_tensors

    weights, _ = load_tensors(weights_path)
    model = export_onnx(cfg, weights, softmax=softmax, source=f"--weights {weights_path}")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    atomic_write_bytes(out, model.SerializeToString())

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    return ([(v.name, dims(v)) for v in model.graph.input], [(v.name, dims(v)) for v in model.graph.output])
