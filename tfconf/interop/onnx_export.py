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

Each layer writes itself (``LayerSpec.to_onnx``, next to its build) through the builder here,
from its config and the weights file; the net is built once with tfconf only to know the static
shape of every top (pooling windows, reshape targets). Parameters become initializers named as
tfconf names them (``conv1/weights``). A layer type with no export (recurrent layers, Python
layers, ArgMax: each says why in ``onnx_absent``) is a located error naming the layer.
"""

from __future__ import annotations

import numpy as np

from tfconf.errors import UserError

__all__ = ["OPSET", "exportable_types", "ExportError", "ExportUnavailable", "export_onnx", "write_onnx"]

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

    # -- helpers for the layers' to_onnx
    INT64 = np.int64  # the dtype of shape, axis and index constants

    @staticmethod
    def ints(values):
        return [int(v) for v in values]

    def tensor(self, value, dtype=np.float32):
        """A TensorProto attribute value (ConstantOfShape's ``value``)."""
        return self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype))

    def cast(self, x, dtype, outputs=None):
        return self.node("Cast", [x], outputs, to=self.h.np_dtype_to_tensor_dtype(np.dtype(dtype)))

    def indices(self, x):
        """``x`` as Gather's indices: as it is when a graph input of an integer dtype, else cast to
        int64 (Caffe feeds indices as floats; the cast truncates, as tfconf's does)."""
        return x if self.dtypes.get(x, "float32") in ("int32", "int64") else self.cast(x, "int64")

    def reshape_to(self, x, out_shape, copy_leading=0):
        """Reshape ``x`` into the layer's top to the static ``out_shape``: its first
        ``copy_leading`` axes are copied from ``x`` (ONNX's 0), at most one other unknown size is
        inferred (-1)."""
        target = [0 if i < copy_leading else (-1 if d is None else int(d)) for i, d in enumerate(out_shape)]
        if target.count(-1) > 1:
            raise ValueError(f"cannot reshape to {out_shape}: more than one size is known only at run time")
        self.node("Reshape", [x, self.const(target, "shape", np.int64)], [self.y(0)])

    def affine(self, x, scale, shift):
        """scale·x + shift, leaving out a 1 and a 0."""
        if scale != 1:
            x = self.node("Mul", [x, self.const(scale, "scale")])
        if shift != 0:
            x = self.node("Add", [x, self.const(shift, "shift")])
        return x

    def moments(self, x, axes):
        """(x - mean, variance) over ``axes`` (biased, as tfconf's moments)."""
        mean = self.node("ReduceMean", [x], axes=self.ints(axes), keepdims=1)
        d = self.node("Sub", [x, mean])
        return d, self.node("ReduceMean", [self.node("Mul", [d, d])], axes=self.ints(axes), keepdims=1)

    def value_info(self, name, shape, np_dtype):
        dims = [d if d is not None else ("N" if i == 0 else f"{name}_dim{i}") for i, d in enumerate(shape)]
        elem = self.h.np_dtype_to_tensor_dtype(np.dtype(np_dtype))
        return self.h.make_tensor_value_info(name, elem, dims)


# ---------------------------------------------------------------------------------------------------- the net
def exportable_types() -> list[str]:
    """The layer types a deploy net can hold: those with a ``to_onnx``, and Input."""
    from tfconf.frontend.layers import LAYERS

    return [name for name, cls in LAYERS.items() if cls.exports_onnx()] + ["Input"]


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
        if kind is not None and kind != "SoftmaxOutput" and not type(spec).exports_onnx():
            known = ", ".join(sorted(exportable_types()))
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
                spec.to_onnx(b, xs, ins, outs)
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
