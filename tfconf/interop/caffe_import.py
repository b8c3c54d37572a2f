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
  become the ``data:`` section with their ``transform_param`` (scale, mean, crop, mirror). A source
  that is here (where Caffe would look, or beside the prototxt) is read as it is: a database of
  Datum records (``format: lmdb``/``leveldb``), an image list (``format: imagelist``), HDF5 files.
  One that is not here keeps its path, with ``shape:`` when the prototxt tells it (a mean file, a
  resize, a crop with its mean values), so ``tfconf validate --shapes`` checks the net before the
  data is made with ``tfconf convert-data``. An absent database whose path names MNIST becomes the
  built-in ``mnist`` set (the same 1x28x28 digits) and one that names CIFAR the synthetic
  ``patterns`` set of CIFAR's shape, where the net builds on their samples (the siamese net's
  2-channel pairs do not: it keeps its database). The data layers' tops become ``data`` and ``label``.
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

from tfconf.frontend.errors import Location

from .caffe.data import _check_data, _data_section, DATA_TYPES  # noqa: F401 - DATA_TYPES is public
from .caffe.emit import _compact_layer, _emit
from .caffe.fields import _Issues
from .caffe.layers import _check_layers, _dedupe_names, _NetConverter, layer_tables, supported_types  # noqa: F401
from .caffe.solver import _check_solver, convert_solver, test_states
from .caffe.weights import check_weights, import_weights
from .prototxt import parse_file

__all__ = ["Conversion", "convert", "convert_net", "convert_solver", "import_weights", "check_weights",
           "layer_tables", "supported_types", "DATA_TYPES"]


@dataclasses.dataclass
class Conversion:
    """What :func:`convert` produced: the YAML text, the weights (or None) and notes for the user."""

    yaml: str
    name: str
    tensors: dict | None = None
    notes: list = dataclasses.field(default_factory=list)
    layers: list = dataclasses.field(default_factory=list)  # (tfconf spec dict) in order, for tools


# =============================================================================== entry points
def convert_net(net_path: str, display: str | None = None, states: list | None = None):
    """(name, layers, data, data comments, net comments, notes) of a net prototxt; raises ConfigError."""
    display = display or str(net_path)
    msg = parse_file(net_path, display)
    conv = _NetConverter(display)
    name, layers, net_comments = conv.convert(msg)
    issues = conv.issues
    # states: (name, NetState) of the nets the solver builds (caffe/solver.test_states), or None
    data, data_comments, hints, rename = _data_section(layers, issues, states)
    notes = [h for h in hints if h.startswith("TODO")]
    # the data layers' tops are tfconf's data and label
    if rename and any(k != v for k, v in rename.items()):
        pairs = ", ".join(f"{k} → {v}" for k, v in rename.items() if k != v)
        net_comments.append(f"The data layers' tops are renamed for tfconf's data section: {pairs}.")
        for layer in layers:
            for key in ("bottom", "top"):
                if key in layer.spec and not layer.data:
                    layer.spec[key] = [rename.get(n, n) for n in layer.spec[key]]
    _dedupe_names(layers, issues, states)
    _check_layers(layers, issues)
    if _pop_standins(data) and not issues.issues and not _fits(layers, data):
        # a built-in set stands in for an absent database only where the net takes its samples
        for layer in layers:
            layer.standin = False
        data, data_comments, hints, _ = _data_section(layers, _Issues())
        _pop_standins(data)
        notes = [h for h in hints if h.startswith("TODO")]
    return name, layers, data, (data_comments, hints), net_comments, notes, issues


def _relative_paths(section, out_dir: str) -> None:
    """The absolute data paths of ``section`` (files found here) made relative to ``out_dir``."""
    for value in (section.values() if isinstance(section, dict) else ()):
        if not isinstance(value, dict):
            continue
        for key in ("source", "mean_file", "root_folder"):
            v = value.get(key)
            if isinstance(v, str) and os.path.isabs(v):
                rel = os.path.relpath(v, out_dir)
                value[key] = rel + ("/" if key == "root_folder" and v.endswith("/") else "")
        _relative_paths(value, out_dir)


def _pop_standins(section) -> bool:
    """Whether a data spec of ``section`` is a built-in stand-in (removing the marker)."""
    found = False
    for value in (section.values() if isinstance(section, dict) else ()):
        if isinstance(value, dict):
            found = bool(value.pop("__standin__", False)) | _pop_standins(value) | found
    return found


def _fits(layers: list, data: dict) -> bool:
    """Whether both phases of the net build on the samples of their data specs (False when one does
    not: a stand-in that does not fit). A net that does not validate is not judged here (True): its
    errors are reported where they are."""
    from pydantic import ValidationError

    from tfconf.data import DataError, DataSpec, load_source, make_transform
    from tfconf.engine import api as tc
    from tfconf.frontend.compiler import NetBuildError, build_net
    from tfconf.frontend.layers.base import NetState
    from tfconf.frontend.net_schema import NetConfig

    specs = [layer.spec for layer in layers if not layer.data]
    if any(spec.get("type") == "Python" for spec in specs):
        return True  # building would import the layer's module: code from elsewhere is never run here
    try:
        net = NetConfig.model_validate({"layers": specs})
    except ValidationError:
        return True
    graph, params, meta = tc.Graph(), {}, {}
    for phase in ("train", "test"):
        spec = data.get(phase)
        if not isinstance(spec, dict) or "source" not in spec:
            continue
        try:
            spec = DataSpec.model_validate(spec)
            if spec.is_text:
                return True
            x, _ = load_source(spec, spec.split or phase, seed=0)
            shape = make_transform(spec, x.shape[1:], phase).output_shape
        except (ValidationError, DataError):
            return True
        with graph.as_default():
            inputs = {"data": tc.placeholder(tc.float32, [None, *shape], name="data"),
                      "label": tc.placeholder(tc.int64, [None], name="label")}
        try:
            build_net(net.layers, NetState(phase=phase), graph, params, meta, inputs)
        except (NetBuildError, ValueError, TypeError):
            return False
    return True


def convert(net_path: str, solver_path: str | None = None, weights_path: str | None = None, *,
            weights_name: str | None = None, out_dir: str | None = None) -> Conversion:
    """Convert a Caffe net (and solver, and weights). Raises ConfigError with every problem found.
    Data files found here are written relative to ``out_dir`` (the folder the config goes to; the
    paths stay absolute without one)."""
    net_display = str(net_path)
    smsg = parse_file(solver_path, str(solver_path)) if solver_path is not None else None
    name, layers, data, data_comments, net_comments, notes, issues = convert_net(net_path, net_display,
                                                                                 test_states(smsg))
    if out_dir is not None:
        _relative_paths(data, os.path.abspath(out_dir))
    solver = None
    solver_comments: list[str] = []
    if solver_path is not None:
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
    from tfconf.frontend.layers import LAYERS

    if not data and not any(layer.type == "Input" or getattr(LAYERS.get(layer.type), "makes_inputs", False)
                            for layer in layers):
        notes.append("the net has neither data layers nor inputs: add a data: section or an Input layer")
    return Conversion(text, name, tensors, notes, [layer.spec for layer in layers if not layer.data])
