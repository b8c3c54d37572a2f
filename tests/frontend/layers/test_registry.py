"""The layer registry: every registered type has a case (conftest.py), passes the shipped layer
harness on it, declares its FLOPs, Caffe counterpart and ONNX export, and has a JSON schema (alone
and in the net's tagged union)."""

from typing import Annotated, Union

import numpy as np
import pytest
from pydantic import Field, TypeAdapter

from tfconf.frontend.layers import LAYERS, get_layer_class

from .cases import CASES
from .helpers import build, rng

def test_every_registered_layer_type_has_a_case():
    # (collecting this folder whole already fails on a missing case: conftest.py; this holds for
    # a run of this file alone)
    assert sorted(set(LAYERS) - set(CASES)) == [], "declare the case in its family's LAYER_CASES"
    assert sorted(set(CASES) - set(LAYERS)) == [], "LAYER_CASES names types that are not registered"


def test_unknown_type_lists_the_known_ones():
    with pytest.raises(KeyError, match="Did you mean 'Sigmoid'.*Known: .*TanH"):
        get_layer_class("Sigmoud")


@pytest.mark.parametrize("type_name", sorted(LAYERS))
def test_json_schema(type_name):
    cls = LAYERS[type_name]
    schema = cls.model_json_schema()
    assert schema["properties"]["type"].get("const", type_name) == type_name
    assert schema.get("additionalProperties") is False  # unknown keys are rejected


def test_union_schema_of_all_layers():
    union = Annotated[Union[tuple(LAYERS.values())], Field(discriminator="type")]
    adapter = TypeAdapter(list[union])
    schema = adapter.json_schema()
    assert len(schema["$defs"]) >= len(LAYERS)
    layers = adapter.validate_python([{"name": "a", "type": "ReLU"}, {"name": "b", "type": "Scale", "axis": 0}])
    assert [type(x).__name__ for x in layers] == ["ReLU", "Scale"]


def _inputs(shapes):
    out = {}
    for i, (name, shape) in enumerate(shapes.items()):
        r = rng(i)
        if shape == "labels":
            out[name] = r.integers(0, 3, (2,)).astype(np.float64)
        elif name == "cont":  # a recurrent layer's sequence-continuation mask: 0 or 1
            out[name] = np.ones(shape)
        else:
            out[name] = r.standard_normal(shape)
    return out


@pytest.mark.parametrize("type_name", sorted(set(CASES) - {"Input"}))
def test_every_layer_passes_the_layer_harness(type_name):
    # the shipped harness (tfconf/testing/layers.py) on every registered layer: config round-trip,
    # both phases built with their static shapes and finite values, and float64 gradients of the
    # differentiable inputs and the trainable parameters
    from tfconf.testing import check_layer

    extra, shapes = CASES[type_name]
    check_layer(dict({"name": "l", "type": type_name}, **extra), _inputs(shapes))


def test_every_layer_declares_its_flops():
    # tfconf/zoo/flops.py only sums what each layer declares: a new layer must say what it costs
    from tfconf.frontend.layers.base import LAYERS, LayerSpec

    undeclared = sorted(name for name, cls in LAYERS.items()
                        if not cls.is_loss and cls.flops_per_output is None and cls.flops is LayerSpec.flops)
    assert not undeclared, f"declare flops_per_output or flops() on: {undeclared}"
    conv = LAYERS["Convolution"](name="c", num_output=4, kernel_size=3)
    # [1, 2, 5, 5] -> [1, 4, 3, 3] with a 4x2x3x3 filter and a bias: 2·36·18 + 36
    assert conv.flops([[1, 2, 5, 5]], [[1, 4, 3, 3]], [[4, 2, 3, 3], [4]]) == 2 * 36 * 18 + 36
    assert LAYERS["Flatten"](name="f").flops([[1, 4, 3, 3]], [[1, 36]], []) == 0


def test_every_layer_declares_its_caffe_counterpart():
    # tfconf/interop/caffe_import.py reads prototxt and caffemodel files only through these
    from tfconf.frontend.layers.caffe_map import CaffeLayer, Carry, Fixed, Ignored

    undeclared = sorted(name for name, cls in LAYERS.items() if not isinstance(cls.caffe, CaffeLayer))
    assert not undeclared, f"declare caffe = CaffeLayer(...) on: {undeclared}"
    for name, cls in LAYERS.items():
        for message, fields in cls.caffe.params.items():
            assert message.endswith("_param"), (name, message)
            for field, entry in fields.items():
                assert isinstance(entry, (Carry, Ignored, Fixed)), (name, message, field)
                if isinstance(entry, Carry):  # a carried field lands on a field of the spec
                    assert entry.key in cls.model_fields, (name, message, field, entry.key)


def test_blob_names_are_the_names_the_layer_creates_its_parameters_with():
    # the caffemodel import stores blob i under "<layer>/<blobs[i]>": build each layer and
    # compare with the parameters it made, in creation order
    for type_name, cls in sorted(LAYERS.items()):
        extra, shapes = CASES[type_name]
        layer = dict({"name": "l", "type": type_name}, **extra)
        blobs = cls.caffe.blob_names(layer)
        net = build([layer], _inputs(shapes), phases=("train",))
        made = [k.split("/", 1)[1] for k, meta in net.meta.items() if meta["trainable"]]
        # (a layer may make fewer than Caffe's list: a Scale without bias_term has one blob there too)
        assert list(blobs[:len(made)]) == made and (made or not blobs), (type_name, blobs, made)


def test_every_layer_exports_to_onnx_or_says_why_not():
    missing = sorted(name for name, cls in LAYERS.items() if not cls.exports_onnx() and not cls.onnx_absent)
    assert not missing, f"define to_onnx() or state onnx_absent on: {missing}"
    both = sorted(name for name, cls in LAYERS.items() if cls.exports_onnx() and cls.onnx_absent)
    assert not both, f"a layer with to_onnx() states onnx_absent: {both}"
