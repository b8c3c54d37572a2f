"""Caffe's layers → tfconf layer specs, each type read by its own ``caffe`` declaration (the
layer registry); deploy inputs; V1 nets; names shared across phases."""

from __future__ import annotations

import re

from tfconf.frontend.errors import MISSING, Location

from ..prototxt import Field, Message
from .data import _DATA_TABLES, _TRANSFORM, DATA_TYPES
from tfconf.frontend.layers.caffe_map import BOOL, Carry, number

from .fields import (_PARAM_SPEC, _RULE, Origin, _Bad, _Bare, _did_you_mean, _int, _Issues, _Layer, _MessageReader,
                     _pydantic_issues, _shape, _show, _str)


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


_NOT_SUPPORTED = {
    "HDF5Output": "HDF5Output is not supported: tfconf writes outputs with `tfconf test --json`, not layers",
    "Silence": "Silence is not supported: tfconf needs no layer to consume an unused top; remove it",
    "SPP": "SPP (spatial pyramid pooling) is not supported",
    "Im2col": "Im2col is not supported",
}


def _caffe_params() -> set:
    """Parameter messages Caffe knows; on a layer of another type Caffe ignores them, and so do we
    (a comment)."""
    return {m for t in layer_tables().values() for m in t} | set(DATA_TYPES.values()) | {
        "transform_param", "loss_param", "dummy_data_param", "window_data_param", "hdf5_output_param",
        "spp_param", "parameter_param", "threshold_param", "recurrent_param", "input_param",
    }


# ------------------------------------------------------------------------------- one layer
_LAYER_COMMON = {"name", "type", "bottom", "top", "phase", "loss_weight", "param", "blobs", "propagate_down",
                 "include", "exclude"}
_V1_COMMON = {"name", "type", "bottom", "top", "loss_weight", "param", "blobs", "blobs_lr", "weight_decay",
              "include", "exclude", "blob_share_mode", "layer"}


def _v1_type(value) -> str | None:
    """A V1 enum name (CONVOLUTION) → today's type string (Convolution)."""
    from tfconf.io.caffemodel import V1_LAYER_TYPES

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
        rule_specs: dict = {}
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
                rule_specs[key] = rules  # (stage and level rules choose the test nets it feeds: data.py)
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
        spec = {"raw": raw, "transform": transform, "tops": tops, **rule_specs}
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


def _dedupe_names(layers: list[_Layer], issues: _Issues, states: list | None = None) -> None:
    """Names are unique within each net the solver builds (``states``: (name, NetState) of each,
    default train and test). Two layers of one name that their rules keep in different nets keep it:
    tfconf shares their parameters by name, as Caffe's test nets share the train net's (where the
    later one's ``param`` lacks a shared name the first one gives, it is copied). Caffe also allows
    two layers of one name in the same net (they do not share blobs there), which tfconf does not:
    the later one is renamed."""
    from .solver import default_states, included

    states = states or default_states()
    names = {layer.spec["name"] for layer in layers if not layer.data}
    first: dict = {}  # (net, name) → the first layer of that name in that net
    by_name: dict = {}  # name → the first layer of that name
    for layer in layers:
        if layer.data:
            continue
        name = layer.spec["name"]
        nets = [net for net, state in states if included(layer.spec, state)]
        clash = next(((net, first[(net, name)]) for net in nets if (net, name) in first), None)
        if clash is None:
            for net in nets:
                first[(net, name)] = layer
            other = by_name.setdefault(name, layer)
            if other is not layer:
                _share_params(other, layer)
            continue
        net, other = clash
        k = 2
        while f"{name}_{k}" in names:
            k += 1
        new = f"{name}_{k}"
        names.add(new)
        layer.spec["name"] = new
        for n in nets:
            first[(n, new)] = layer
        by_name[new] = layer
        where = "every net" if len(nets) == len(states) else f"the {net} net"
        layer.comments.append(f"also named {name} in Caffe, like {other.path}, which is in {where} with it: "
                              f"renamed {new} (tfconf's layer names are unique within each net; Caffe's two "
                              "layers did not share blobs either)")


def _share_params(first: _Layer, layer: _Layer) -> None:
    """A layer of ``first``'s name in another net shares its blobs: the shared names ``first``'s
    ``param`` gives are copied where ``layer``'s gives none."""
    first_params = first.spec.get("param") or []
    if first.type != layer.type or not any(p.get("name") for p in first_params):
        return
    params = layer.spec.setdefault("param", [])
    for i, p in enumerate(first_params):
        if p.get("name"):
            _at(params, i).setdefault("name", p["name"])
    layer.spec = _ordered(layer.spec)
