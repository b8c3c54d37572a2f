"""A .caffemodel's blobs → tfconf's parameters, matched by layer name, each layer's blob order
from its ``caffe`` declaration."""

from __future__ import annotations

from tfconf.frontend.errors import ConfigError, ConfigIssue, Location

from .fields import _Issues, _Layer
from .layers import _layers


# =============================================================================== weights
def import_weights(weights_path: str, layers: list[_Layer]):
    """(tensors by tfconf parameter name, notes) from a ``.caffemodel``, matched by layer name."""
    import numpy as np

    from tfconf.io.caffemodel import read_caffemodel

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
            tensors[key] = np.array(a, dtype=np.float32, order="C")  # (ascontiguousarray makes a 0-axis blob 1-D)
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
