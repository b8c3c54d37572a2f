"""The layer registry: every registered type has a test, builds from a minimal spec in both
phases, round-trips its config, and has a JSON schema (alone and in the net's tagged union)."""

import importlib
from typing import Annotated, Union

import numpy as np
import pytest
from pydantic import Field, TypeAdapter

from tfconf.frontend.layers import LAYERS, get_layer_class

from .helpers import build, rng, roundtrip

# type → the test (module::function in this folder) that checks it against numpy.
TESTED = {
    "Input": "test_core::test_input_shapes_and_placeholders",
    "InnerProduct": "test_core::test_inner_product",
    "ReLU": "test_core::test_relu",
    "Dropout": "test_core::test_dropout_train_and_test",
    "SoftmaxWithLoss": "test_core::test_softmax_with_loss_spatial",
    "Accuracy": "test_core::test_accuracy",
    "Convolution": "test_vision::test_convolution",
    "Deconvolution": "test_vision::test_deconvolution",
    "Pooling": "test_vision::test_pooling_caffe_semantics",
    "PReLU": "test_activation::test_prelu_default_filler_and_per_channel_slopes",
    "ELU": "test_activation::test_forward_matches_numpy",
    "Sigmoid": "test_activation::test_forward_matches_numpy",
    "TanH": "test_activation::test_forward_matches_numpy",
    "AbsVal": "test_activation::test_forward_matches_numpy",
    "Power": "test_activation::test_forward_matches_numpy",
    "Exp": "test_activation::test_forward_matches_numpy",
    "Log": "test_activation::test_forward_matches_numpy",
    "BNLL": "test_activation::test_forward_matches_numpy",
    "Threshold": "test_activation::test_forward_matches_numpy",
    "Clip": "test_activation::test_forward_matches_numpy",
    "Swish": "test_activation::test_forward_matches_numpy",
    "BatchNorm": "test_normalization::test_batchnorm_moving_averages_follow_caffe_and_feed_the_test_phase",
    "Scale": "test_normalization::test_scale_two_bottoms_with_bias_and_gradient",
    "Bias": "test_normalization::test_bias_one_and_two_bottoms",
    "LRN": "test_normalization::test_lrn_within_channel",
    "MVN": "test_normalization::test_mvn",
    "Softmax": "test_normalization::test_softmax",
    "Concat": "test_shape::test_concat",
    "Slice": "test_shape::test_slice_points",
    "Split": "test_shape::test_split_copies_to_every_top",
    "Eltwise": "test_shape::test_eltwise",
    "Flatten": "test_shape::test_flatten",
    "Reshape": "test_shape::test_reshape_caffe_semantics",
    "Crop": "test_shape::test_crop",
    "Tile": "test_shape::test_tile",
    "Reduction": "test_shape::test_reduction",
    "ArgMax": "test_shape::test_argmax_top_k_with_max_val_and_ties",
    "Embed": "test_shape::test_embed",
    "BatchReindex": "test_shape::test_batch_reindex",
    "SigmoidCrossEntropyLoss": "test_loss::test_sigmoid_cross_entropy",
    "EuclideanLoss": "test_loss::test_euclidean",
    "HingeLoss": "test_loss::test_hinge",
    "ContrastiveLoss": "test_loss::test_contrastive",
    "MultinomialLogisticLoss": "test_loss::test_multinomial_logistic",
    "InfogainLoss": "test_loss::test_infogain_with_matrix_bottom_and_prob_top",
    "Python": "test_python_layer::test_build_with_keyword_params_and_autodiff",
    "RNN": "test_recurrent::test_forward_matches_numpy_with_cont_resets",
    "LSTM": "test_recurrent::test_forward_matches_numpy_with_cont_resets",
    "GRU": "test_recurrent::test_forward_matches_numpy_with_cont_resets",
}

X4 = (2, 3, 4, 4)
LABEL = "label"
# type → (minimal extra config, input shapes; the first input is the default bottom)
MINIMAL = {
    "Input": ({"shape": [[-1, 3]]}, {}),
    "InnerProduct": ({"num_output": 2}, {"data": X4}),
    "ReLU": ({}, {"data": X4}),
    "Dropout": ({}, {"data": X4}),
    "SoftmaxWithLoss": ({"bottom": ["data", LABEL]}, {"data": (2, 3), LABEL: "labels"}),
    "Accuracy": ({"bottom": ["data", LABEL]}, {"data": (2, 3), LABEL: "labels"}),
    "Convolution": ({"num_output": 2, "kernel_size": 3}, {"data": X4}),
    "Deconvolution": ({"num_output": 2, "kernel_size": 3}, {"data": X4}),
    "Pooling": ({"kernel_size": 2}, {"data": X4}),
    "PReLU": ({}, {"data": X4}),
    "ELU": ({}, {"data": X4}),
    "Sigmoid": ({}, {"data": X4}),
    "TanH": ({}, {"data": X4}),
    "AbsVal": ({}, {"data": X4}),
    "Power": ({}, {"data": X4}),
    "Exp": ({}, {"data": X4}),
    "Log": ({"shift": 10.0}, {"data": X4}),
    "BNLL": ({}, {"data": X4}),
    "Threshold": ({}, {"data": X4}),
    "Clip": ({"min": -1.0, "max": 1.0}, {"data": X4}),
    "Swish": ({}, {"data": X4}),
    "BatchNorm": ({}, {"data": X4}),
    "Scale": ({}, {"data": X4}),
    "Bias": ({}, {"data": X4}),
    "LRN": ({}, {"data": X4}),
    "MVN": ({}, {"data": X4}),
    "Softmax": ({}, {"data": X4}),
    "Concat": ({"bottom": ["data", "data"]}, {"data": X4}),
    "Slice": ({"top": ["s0", "s1", "s2"]}, {"data": X4}),
    "Split": ({"top": ["s0", "s1"]}, {"data": X4}),
    "Eltwise": ({"bottom": ["data", "data"]}, {"data": X4}),
    "Flatten": ({}, {"data": X4}),
    "Reshape": ({"shape": [0, -1]}, {"data": X4}),
    "Crop": ({"bottom": ["data", "ref"]}, {"data": X4, "ref": (2, 3, 2, 2)}),
    "Tile": ({"tiles": 2}, {"data": X4}),
    "Reduction": ({}, {"data": X4}),
    "ArgMax": ({}, {"data": X4}),
    "Embed": ({"num_output": 2, "input_dim": 3}, {"data": "labels"}),
    "BatchReindex": ({"bottom": ["data", "p"]}, {"data": (3, 2, 2), "p": "labels"}),
    "SigmoidCrossEntropyLoss": ({"bottom": ["data", "t"]}, {"data": X4, "t": X4}),
    "EuclideanLoss": ({"bottom": ["data", "t"]}, {"data": X4, "t": X4}),
    "HingeLoss": ({"bottom": ["data", LABEL]}, {"data": (2, 3), LABEL: "labels"}),
    "ContrastiveLoss": ({"bottom": ["data", "t", LABEL]}, {"data": (2, 3), "t": (2, 3), LABEL: "labels"}),
    "MultinomialLogisticLoss": ({"bottom": ["data", LABEL]}, {"data": (2, 3), LABEL: "labels"}),
    "InfogainLoss": ({"bottom": ["data", LABEL, "H"]}, {"data": (2, 3), LABEL: "labels", "H": (3, 3)}),
    "Python": ({"module": "tests.frontend.layers.helpers", "layer": "Double"}, {"data": X4}),
    "RNN": ({"bottom": ["data", "cont"], "num_output": 2}, {"data": (3, 2, 4), "cont": (3, 2)}),
    "LSTM": ({"bottom": ["data", "cont"], "num_output": 2}, {"data": (3, 2, 4), "cont": (3, 2)}),
    "GRU": ({"bottom": ["data", "cont"], "num_output": 2}, {"data": (3, 2, 4), "cont": (3, 2)}),
}


def test_every_registered_layer_type_has_a_test():
    missing = sorted(set(LAYERS) - set(TESTED))
    assert not missing, f"registered layer types without a test in TESTED: {missing}"
    stale = sorted(set(TESTED) - set(LAYERS))
    assert not stale, f"TESTED names types that are not registered: {stale}"
    for type_name, where in TESTED.items():
        module, func = where.split("::")
        mod = importlib.import_module(f"{__package__}.{module}")
        assert callable(getattr(mod, func, None)), f"{type_name}: {where} does not exist"
    assert set(MINIMAL) == set(LAYERS)


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


@pytest.mark.parametrize("type_name", sorted(set(LAYERS) - {"Input"}))
def test_every_layer_passes_the_layer_harness(type_name):
    # the shipped harness (tfconf/testing/layers.py) on every registered layer: config round-trip,
    # both phases built with their static shapes and finite values, and float64 gradients of the
    # differentiable inputs and the trainable parameters
    from tfconf.testing import check_layer

    extra, shapes = MINIMAL[type_name]
    check_layer(dict({"name": "l", "type": type_name}, **extra), _inputs(shapes))


def test_input_builds_in_both_phases_and_round_trips():
    extra, _ = MINIMAL["Input"]
    layer = dict({"name": "l", "type": "Input"}, **extra)
    roundtrip(layer)
    net = build([layer], {}, phases=("train", "test"))
    for phase in ("train", "test"):
        assert net.run("l", phase, feeds={"l": np.ones((2, 3))}).shape == (2, 3)


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
        extra, shapes = MINIMAL[type_name]
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
