"""Export a net's deploy graph to Caffe (``tfconf export CONFIG --weights W --format caffe -o net.prototxt``):
a deploy prototxt, and beside it the weights as a ``.caffemodel`` (``net.caffemodel``).

The deploy net is the one the ONNX export writes (:mod:`tfconf.interop.onnx_export`): the test phase
of the config without its losses and Accuracy; Dropout stays (Caffe's test phase makes it the
identity); ``softmax=True`` (``--softmax``) puts a Softmax whose top is ``prob`` where each
SoftmaxWithLoss was, as in Caffe's deploy.prototxt files.

- **Inputs**: each data top a kept layer reads is an ``Input`` layer at the top of the net (the
  data section's ``data``, or the config's own Input layers), named after it, with the shape the
  net is built with. Caffe has no free sizes: a size tfconf leaves free (the batch) is written as
  ``batch`` (default 1; Caffe's deploy nets are reshaped at run time). Caffe's blobs are float, so
  integer inputs (an Embed's ids) are fed as floats, which Caffe's layers, like tfconf's, truncate.
- **Layers** are written by inverting each layer's ``caffe`` declaration
  (frontend/layers/caffe_map.py), the table the importer reads by, so no layer is listed here:

  - a ``Carry(key, kind, card)`` writes the spec's ``key`` back as its Caffe field, in the message
    that declares it: numbers, flags, quoted strings, fillers (``weight_filler { type: "xavier" }``),
    shapes (``shape { dim: 2 }``); a repeated field once per value; a ``Choice`` by the Caffe name
    its mapping gives that value (``pool: MAX``);
  - a field is written when the config gave it or it differs from tfconf's default (both mean
    Caffe's default otherwise), and a filler also when it is not Caffe's default filler (constant 0,
    where tfconf's weight filler is xavier: the importer's rule, inverted);
  - a ``pair`` field (``kernel_size``, ``pad``, ``stride``) is one value when height and width
    agree, else the message's ``*_h``/``*_w`` fields where it has them (Caffe's Pooling takes
    ``kernel_size`` only once), else the value twice (``dilation``);
  - ``Fixed`` and ``Ignored`` fields are not written: tfconf computes what Caffe's default does;
  - bottoms and tops are written out (the compiler's defaults resolved), ``param`` entries keep
    their ``name`` (Caffe shares blobs by it, as tfconf shares parameters), ``lr_mult`` and
    ``decay_mult``; ``include``/``exclude``, ``loss_weight``, ``propagate_down`` and ``device`` are
    the test phase's business and are left out.

- **Refused**, each a located error naming the layer (exit code 2, no file written): a type Caffe
  does not have (GRU; a layer without a ``caffe`` declaration), a ``Python`` layer (its class builds
  tfconf ops, which Caffe cannot run), a spec field no Caffe field carries set to anything but its
  default (``bidirectional: true``), and a value a Caffe enum cannot name.
- **Weights**: each layer's blobs in Caffe's blob order (the declaration's ``blobs``/``blobs_for``),
  the parameters' arrays as they are (Caffe's layouts are tfconf's); BatchNorm's stored averages
  become Caffe's running sums and scale factor (``write_blobs``, checked against the declaration's
  ``read_blobs``). Every layer is in the ``.caffemodel`` under its name, with its blobs, which is all
  Caffe's ``CopyTrainedLayersFrom`` reads.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfconf.errors import UserError

__all__ = ["CAFFE_TYPES", "CaffeNet", "export_caffe", "exportable_types", "write_caffe"]

#: the layer types of BVLC Caffe's registry (layer_factory.cpp and REGISTER_LAYER_CLASS): a
#: declared tfconf type outside it (GRU) is tfconf's own, which a Caffe deployment cannot load
CAFFE_TYPES = frozenset({
    "AbsVal", "Accuracy", "ArgMax", "BatchNorm", "BatchReindex", "Bias", "BNLL", "Clip", "Concat",
    "ContrastiveLoss", "Convolution", "Crop", "Data", "Deconvolution", "Dropout", "DummyData", "Eltwise",
    "ELU", "Embed", "EuclideanLoss", "Exp", "Filter", "Flatten", "HDF5Data", "HDF5Output", "HingeLoss",
    "Im2col", "ImageData", "InfogainLoss", "InnerProduct", "Input", "Log", "LRN", "LSTM", "LSTMUnit",
    "MemoryData", "MultinomialLogisticLoss", "MVN", "Parameter", "Pooling", "Power", "PReLU", "Python",
    "Reduction", "ReLU", "Reshape", "RNN", "Scale", "Sigmoid", "SigmoidCrossEntropyLoss", "Silence",
    "Slice", "Softmax", "SoftmaxWithLoss", "Split", "SPP", "Swish", "TanH", "Threshold", "Tile",
    "WindowData",
})

#: why a type Caffe has cannot be exported all the same
_NOT_EXPORTED = {
    "Python": "its class builds tfconf ops, which Caffe cannot run (Caffe's Python layers compute on "
              "arrays): write the layer for Caffe and add it to the prototxt by hand",
}


class _Refused(UserError):
    """A layer that Caffe cannot express (the user's to fix; :func:`export_caffe` re-raises it as a
    ConfigError located at the layer); ``field``: the spec field it is about (None: the layer)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


# ---------------------------------------------------------------------------------------------------- blobs
def _batch_norm_blobs(name: str, tensors: dict) -> list:
    """tfconf's BatchNorm state → Caffe's three blobs: the running sums (the averages times the
    scale factor s) and s as a [1] blob; an s of 0 (never updated) as the averages with s = 1, which
    Caffe reads as the same statistics tfconf's test phase uses."""
    mean = np.asarray(tensors[f"{name}/moving_mean"], np.float32)
    var = np.asarray(tensors[f"{name}/moving_variance"], np.float32)
    s = float(np.ravel(tensors[f"{name}/scale_factor"])[0])
    if not s > 0:
        return [mean, var, np.ones([1], np.float32)]
    return [mean * np.float32(s), var * np.float32(s), np.full([1], s, np.float32)]


# NOTE: this belongs on the declaration, beside ``read_blobs`` (a ``write_blobs`` of CaffeLayer,
# which the exporter reads first): until BatchNorm declares it, its writer is here.
_WRITE_BLOBS = {"BatchNorm": _batch_norm_blobs}


def _blob_writer(cls):
    return getattr(cls.caffe, "write_blobs", None) or _WRITE_BLOBS.get(cls.model_fields["type"].default)


# ---------------------------------------------------------------------------------------------------- types
def _type_refusal(cls) -> str | None:
    """Why layers of this class cannot be exported, or None."""
    kind = cls.model_fields["type"].default
    if cls.caffe is None:
        return f"{kind} has no Caffe declaration (a layer of tfconf's own)"
    if kind not in CAFFE_TYPES:
        return f"Caffe has no {kind} layer"
    if kind in _NOT_EXPORTED:
        return _NOT_EXPORTED[kind]
    if cls.caffe.read_blobs is not None and _blob_writer(cls) is None:
        return f"its .caffemodel blobs are not its parameters as they are, and {kind} declares no write_blobs"
    return None


def exportable_types() -> list[str]:
    """The layer types a Caffe deploy net can hold (losses and Accuracy are dropped, not written)."""
    from tfconf.frontend.layers import LAYERS

    return sorted(name for name, cls in LAYERS.items() if _type_refusal(cls) is None)


# ---------------------------------------------------------------------------------------------------- values
#: a required spec field's default
_UNSET = object()


def _default(field):
    from pydantic_core import PydanticUndefined

    value = field.get_default(call_default_factory=True)
    return _UNSET if value is PydanticUndefined else value


def _choice_name(choice, value, key):
    for name, v in choice.mapping.items():
        if v == value:
            return name
    raise _Refused(f"{key}: {value!r} has no Caffe equivalent (Caffe's values: {', '.join(map(str, choice.mapping))})",
                   key)


def _filler(value) -> list:
    """A FillerSpec as a FillerParameter message: its type and the fields it was given or that
    differ from their defaults (variance_norm is an enum)."""
    from tfconf.interop.prototxt import Enum

    out = [("type", value.type)]
    for name, field in type(value).model_fields.items():
        if name == "type":
            continue
        v = getattr(value, name)
        if name in value.model_fields_set or v != _default(field):
            out.append((name, Enum(v) if name == "variance_norm" else v))
    return out


def _values(entry, value) -> list:
    """``value`` of a spec field as the list of values of the Caffe field ``entry`` carries it to."""
    from tfconf.frontend.layers.caffe_map import BOOL, FILLER, FLOAT, INT, SHAPE, STR, Choice
    from tfconf.interop.prototxt import Enum

    many = value if entry.card == "list" or (entry.card == "pair" and isinstance(value, (list, tuple))) else [value]
    out = []
    for v in many:
        if isinstance(entry.kind, Choice):
            out.append(Enum(_choice_name(entry.kind, v, entry.key)))
        elif entry.kind == FILLER:
            out.append(_filler(v))
        elif entry.kind == SHAPE:
            out.append([("dim", int(d)) for d in v])
        elif entry.kind == INT:
            out.append(int(v))
        elif entry.kind == FLOAT:
            out.append(float(v))
        elif entry.kind == BOOL:
            out.append(bool(v))
        elif entry.kind == STR:
            out.append(str(v))
        else:  # a kind caffe_map.py added that this writer does not know yet
            raise _Refused(f"{entry.key}: the exporter cannot write a Caffe field of kind {entry.kind!r}", entry.key)
    return out


def _pair(v):
    if v is None:
        return None
    if isinstance(v, int):
        return (v, v)
    v = list(v)
    return (v[0], v[0]) if len(v) == 1 else tuple(v)


# ---------------------------------------------------------------------------------------------------- one layer
def _params_messages(spec) -> list:
    """The layer's ``*_param`` messages, [(message, [(field, value)])], by its ``caffe`` declaration."""
    from tfconf.frontend.fillers import ConstantFiller, _Filler
    from tfconf.frontend.layers.base import LayerSpec
    from tfconf.frontend.layers.caffe_map import FILLER, Carry

    cls = type(spec)
    tables = cls.caffe.params
    carriers: dict = {}  # spec key → (message, Caffe field, Carry): the first that carries it
    for message, table in tables.items():
        for name, entry in table.items():
            if isinstance(entry, Carry):
                carriers.setdefault(entry.key, (message, name, entry))
    fields = cls.model_fields
    for key, field in fields.items():
        if key in LayerSpec.model_fields or key in carriers:
            continue
        value = getattr(spec, key)
        if isinstance(value, _Filler):  # initialization only: the .caffemodel's blobs replace it
            continue
        if _default(field) is _UNSET or value != _default(field):
            raise _Refused(f"{key}: {value!r} has no Caffe equivalent (no field of "
                           f"{', '.join(tables) or 'its Caffe layer'} carries it)", key)

    def given(key):
        value = getattr(spec, key)
        if value is None:
            return False
        entry = carriers[key][2]
        if key in spec.model_fields_set or value != _default(fields[key]):
            return True
        return entry.kind == FILLER and value != ConstantFiller()  # not Caffe's default filler

    # pair fields: one value, or the message's *_h / *_w fields (height and width apart)
    written: dict = {}  # (message, Caffe field) → values
    done: set = set()
    for key, (message, name, entry) in carriers.items():
        if entry.card != "pair":
            continue
        stem = key[:-len("_size")] if key.endswith("_size") else key
        hk, wk = f"{stem}_h", f"{stem}_w"
        split = hk in carriers and wk in carriers and carriers[hk][0] == carriers[wk][0] == message
        pair = _pair(getattr(spec, key))
        if split and (getattr(spec, hk) is not None or getattr(spec, wk) is not None):
            h = getattr(spec, hk) if getattr(spec, hk) is not None else (pair[0] if pair else None)
            w = getattr(spec, wk) if getattr(spec, wk) is not None else (pair[1] if pair else None)
            for k, v in ((hk, h), (wk, w)):
                if v is not None:
                    written[(message, carriers[k][1])] = [int(v)]
            done |= {key, hk, wk}
        elif pair is not None and given(key):
            if pair[0] == pair[1]:
                written[(message, name)] = [int(pair[0])]
            elif split:
                written[(message, carriers[hk][1])] = [int(pair[0])]
                written[(message, carriers[wk][1])] = [int(pair[1])]
                done |= {hk, wk}
            else:
                written[(message, name)] = [int(pair[0]), int(pair[1])]
            done.add(key)
        else:
            done.add(key)

    out = []
    for message, table in tables.items():
        body = []
        for name, entry in table.items():
            if not isinstance(entry, Carry) or carriers[entry.key][1] != name or carriers[entry.key][0] != message:
                continue
            if (message, name) in written:
                body += [(name, v) for v in written[(message, name)]]
            elif entry.key not in done and given(entry.key):
                body += [(name, v) for v in _values(entry, getattr(spec, entry.key))]
        if body:
            out.append((message, body))
    return out


def _param_specs(spec) -> list:
    """``param { name lr_mult decay_mult }`` per blob spec (names keep parameters shared)."""
    out = []
    for p in spec.param:
        body = []
        if p.name is not None:
            body.append(("name", p.name))
        for key in ("lr_mult", "decay_mult"):
            if key in p.model_fields_set or getattr(p, key) != 1.0:
                body.append((key, float(getattr(p, key))))
        out.append(("param", body))
    while out and not out[-1][1]:
        out.pop()
    return out


def _blobs(spec, bottoms, params, weights) -> tuple[list, set]:
    """(arrays in Caffe's blob order, the parameter keys they hold) of one layer."""
    cls = type(spec)
    caffe = cls.caffe
    writer = _blob_writer(cls)
    if writer is not None and caffe.read_blobs is not None:
        arrays = writer(spec.name, weights)
        keys = set(caffe.read_blobs(spec.name, [np.asarray(a) for a in arrays]))
        return arrays, keys & set(params)
    as_dict = spec.model_dump()
    as_dict["bottom"] = list(bottoms)
    arrays, keys = [], set()
    for j, suffix in enumerate(caffe.blob_names(as_dict)):
        named = spec.param[j].name if j < len(spec.param) else None
        key = named or f"{spec.name}/{suffix}"
        if key in params:
            arrays.append(np.asarray(weights[key], np.float32))
            keys.add(key)
    return arrays, keys


# ---------------------------------------------------------------------------------------------------- the net
@dataclasses.dataclass
class CaffeNet:
    """What :func:`export_caffe` made: the prototxt's text, the .caffemodel's layers ((name, type,
    [arrays]) for :func:`tfconf.io.caffemodel.encode_net`), and the deploy net's inputs and outputs
    as (name, shape)."""

    name: str
    prototxt: str
    layers: list
    inputs: list
    outputs: list

    def caffemodel(self) -> bytes:
        from tfconf.io.caffemodel import encode_net

        return encode_net(self.layers, self.name)


def _text(v) -> str:
    from tfconf.interop.prototxt import Enum

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, str):
        out = []
        for ch in v:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ch == "\n":
                out.append("\\n")
            elif ord(ch) < 32 or ord(ch) == 127:
                out.append(f"\\{ord(ch):03o}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return str(int(v)) if v == int(v) and abs(v) < 1e15 else repr(v)
    return str(int(v))


def _lines(fields, indent=0) -> list[str]:
    """Protobuf text format, one field a line (as Caffe writes its own files)."""
    pad = "  " * indent
    out = []
    for name, value in fields:
        if isinstance(value, list):
            out.append(f"{pad}{name} {{")
            out += _lines(value, indent + 1)
            out.append(f"{pad}}}")
        else:
            out.append(f"{pad}{name}: {_text(value)}")
    return out


def _is_dropped(spec):
    from .onnx_export import DROPPED

    return spec.is_loss or spec.type in DROPPED


def export_caffe(cfg, weights, *, softmax=False, batch=1, source="the weights", header=()) -> CaffeNet:
    """The deploy net of ``cfg`` (a loaded Config) with ``weights`` (parameter name → array) as a
    Caffe prototxt and .caffemodel layers. ``softmax``: a Softmax ``prob`` for each SoftmaxWithLoss;
    ``batch``: the size written for the inputs' free axes; ``header``: comment lines for the top of
    the prototxt. A layer Caffe cannot express raises a ConfigError located at the layer; weights
    that do not fit, ExportError."""
    from tfconf.frontend.layers import LAYERS
    from tfconf.frontend.layers.base import NetState

    from .onnx_export import ExportError, _check_weights, _deploy_net

    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UserError(f"the batch size must be a positive integer. Received: {batch!r}")
    index = {layer.name: i for i, layer in enumerate(cfg.net.layers)}

    def refuse(spec, why, field=None, types=False):
        path = ("layers", index[spec.name]) + ((field,) if field and field in _written(cfg, index[spec.name]) else ())
        known = f" Exportable types: {', '.join(exportable_types())}" if types else ""
        return cfg.loaded.error(path, f"layer {spec.name!r} (type {spec.type}) cannot be exported to Caffe: {why}."
                                      + known)

    # the types first: before building, which would import a Python layer's module for nothing
    state = NetState(phase="test")
    for spec in cfg.net.layers:
        if spec.included(state) and not _is_dropped(spec) and spec.type != "Input":
            why = _type_refusal(type(spec))
            if why is not None:
                raise refuse(spec, why, types=True)

    net, params, placeholders, from_data = _deploy_net(cfg)
    _check_weights(params, weights, source)

    # Pass 1 (as the ONNX export's): each included layer's bottoms (the compiler's defaults) and
    # whether it is kept, dropped, an input or the Softmax that --softmax puts for a loss.
    plan = []  # (spec as written, its bottoms, its tops, kind: "layer" | "input" | "prob")
    prev = "data" if "data" in from_data else None
    taken = {spec.name for spec in net.layers} | set(net.tops)
    for spec in net.layers:
        lo, _ = spec.num_bottoms
        names = spec.bottom if spec.bottom is not None else ([prev] if lo > 0 and prev else [])
        tops = spec.output_names()
        if net.layer_tops[spec.name]:
            prev = tops[0]
        if spec.type == "Input":
            plan.append((spec, [], tops, "input"))
        elif _is_dropped(spec):
            if softmax and spec.type == "SoftmaxWithLoss":
                prob = _unique("prob", taken)
                axis = {"axis": spec.axis} if spec.axis != 1 else {}
                sm = LAYERS["Softmax"].model_validate({"name": prob, "type": "Softmax", "bottom": names[:1],
                                                       "top": [prob], **axis})
                plan.append((sm, names[:1], [prob], "prob"))
        else:
            plan.append((spec, list(names), tops, "layer"))

    # which inputs are read (an input no kept layer reads is left out: Caffe would make it an output)
    read = {n for _, names, _, kind in plan if kind != "input" for n in names}
    produced = set()
    for spec, names, tops, kind in plan:
        if kind == "input":
            produced |= set(tops)
            continue
        for n in names:
            if n not in produced and n not in placeholders:
                raise refuse(spec, f"it reads {n!r}, the top of a layer a deploy net drops (a loss or Accuracy)",
                             "bottom")
        produced |= set(tops)

    def dims(t):
        shape = placeholders[t].shape.as_list() if t in placeholders else net.tops[t].shape.as_list()
        return [batch if d is None or d < 0 else int(d) for d in shape]

    layers_out, model_layers, inputs, consumed = [], [], [], set()
    for t in [t for t in placeholders if t in from_data and t in read]:  # the data section's tops
        layers_out.append(_input_layer(t, [t], [dims(t)]))
        model_layers.append((t, "Input", []))
        inputs.append((t, dims(t)))
    held: set = set()
    order: list = []
    for spec, names, tops, kind in plan:
        if kind == "input":
            kept = [t for t in tops if t in read]
            if kept:
                layers_out.append(_input_layer(spec.name, kept, [dims(t) for t in kept]))
                model_layers.append((spec.name, "Input", []))
                inputs += [(t, dims(t)) for t in kept]
            continue
        try:
            messages = _params_messages(spec)
        except _Refused as e:
            raise refuse(spec, str(e), e.field) from None
        body = [("name", spec.name), ("type", spec.type)]
        body += [("bottom", n) for n in names] + [("top", t) for t in tops]
        body += _param_specs(spec) + messages
        layers_out.append(body)
        arrays, keys = _blobs(spec, names, params, weights)
        held |= keys
        model_layers.append((spec.name, spec.type, arrays))
        for n in names:
            consumed.add(n)
        for t in tops:
            consumed.discard(t)
            if t in order:
                order.remove(t)
            order.append(t)
    left = sorted(set(params) - held)
    if left:
        raise ExportError(f"parameters of the net that no layer's Caffe blobs hold: {', '.join(left)}")
    outputs = []
    for t in order:
        if t not in consumed and t not in placeholders:
            shape = dims(t) if t in net.tops else None
            if shape is None:  # the Softmax --softmax added: its bottom's shape
                bottom = next(names[0] for _, names, tops, _ in plan if t in tops)
                shape = dims(bottom)
            outputs.append((t, shape))
    if not outputs:
        raise ExportError(f"the deploy net of {cfg.net.name!r} has no output (every kept top is consumed)")

    lines = [f"# {h}" for h in header]
    lines += _lines([("name", cfg.net.name)] + [("layer", body) for body in layers_out])
    return CaffeNet(cfg.net.name, "\n".join(lines) + "\n", model_layers, inputs, outputs)


def _input_layer(name, tops, shapes) -> list:
    return ([("name", name), ("type", "Input")] + [("top", t) for t in tops]
            + [("input_param", [("shape", [("dim", d) for d in s]) for s in shapes])])


def _unique(name, taken):
    base, k = name, 1
    while name in taken:
        name = f"{base}_{k}"
        k += 1
    taken.add(name)
    return name


def _written(cfg, i) -> set:
    """The keys layers[i] has in the config as written (to locate an error at its field)."""
    layers = cfg.loaded.data.get("layers") if isinstance(cfg.loaded.data, dict) else None
    try:
        entry = layers[i]
    except (TypeError, IndexError, KeyError):
        return set()
    return set(entry) if isinstance(entry, dict) else set()


def write_caffe(cfg, weights_path, out, *, softmax=False, batch=1, config_name=None):
    """Export ``cfg`` with the weights file ``weights_path`` (.safetensors) to the prototxt ``out``
    and the .caffemodel beside it (``out`` with its suffix replaced), each written atomically;
    returns (CaffeNet, caffemodel path)."""
    import os
    from pathlib import Path

    from ..io.atomic import atomic_write_bytes
    from ..train.snapshot import load_tensors

    out = Path(out)
    if out.suffix == ".caffemodel":
        raise UserError(f"-o {out}: name the prototxt to write (e.g. {out.with_suffix('.prototxt')}); the "
                        ".caffemodel goes beside it")
    model_path = out.with_suffix(".caffemodel")
    weights, _ = load_tensors(str(weights_path))
    header = [f"The deploy net of {cfg.net.name} ({config_name or cfg.path}), exported by tfconf export "
              f"--format caffe; its weights: {model_path.name}.",
              "The data section's transforms (scale, mean, crop) are not part of the net: apply them to "
              "the input."]
    result = export_caffe(cfg, weights, softmax=softmax, batch=batch, source=f"--weights {weights_path}",
                          header=header)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    atomic_write_bytes(str(model_path), result.caffemodel())
    atomic_write_bytes(str(out), result.prototxt.encode("utf-8"))
    return result, str(model_path)
