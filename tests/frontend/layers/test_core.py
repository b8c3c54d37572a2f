"""Core layers: Input, DummyData, Parameter, InnerProduct, ReLU, Dropout, SoftmaxWithLoss, Accuracy."""

import numpy as np
import pytest

import tfconf as tc
from tfconf.frontend.layers import NetState

from .helpers import LABEL, X4, Net, build, rng, roundtrip

# the layer types this module checks against numpy: minimal config, input shapes (conftest.py)
LAYER_CASES = {
    "Input": ({"shape": [[-1, 3]]}, {}),
    "Parameter": ({"shape": [2, 3]}, {}),
    "DummyData": ({"shape": [[2, 3]], "data_filler": ["gaussian"]}, {}),
    "InnerProduct": ({"num_output": 2}, {"data": X4}),
    "ReLU": ({}, {"data": X4}),
    "Dropout": ({}, {"data": X4}),
    "SoftmaxWithLoss": ({"bottom": ["data", LABEL]}, {"data": (2, 3), LABEL: "labels"}),
    "Accuracy": ({"bottom": ["data", LABEL]}, {"data": (2, 3), LABEL: "labels"}),
}


def _r(shape, seed=0):
    return rng(seed).standard_normal(shape)


# ---------------------------------------------------------------------------- Input
@pytest.mark.parametrize("shape_cfg,want", [
    ([-1, 1, 28, 28], [[None, 1, 28, 28]]),
    ([[2, 3], [2]], [[2, 3], [2]]),
    ({"dim": [4, 5]}, [[4, 5]]),
])
def test_input_shapes_and_placeholders(shape_cfg, want):
    names = ["a", "b"][:len(want)]
    layer = {"name": "in", "type": "Input", "shape": shape_cfg, "top": names}
    s = roundtrip(layer)
    g = tc.Graph()
    inputs = {}
    from tfconf.frontend.compiler import build_net

    net = build_net([s], NetState(phase="test"), g, {}, {}, inputs, dtype=tc.float64)
    assert [net.tops[n].shape.as_list() for n in names] == want
    assert set(inputs) == set(names)
    assert all(inputs[n].op.type == "Placeholder" for n in names)
    sess = tc.Session(graph=g)
    feed = np.ones([d or 3 for d in want[0]], dtype=np.float32)
    np.testing.assert_array_equal(sess.run(net.tops[names[0]], {inputs[names[0]]: feed}), feed)


def test_input_dtype_and_shared_across_phases():
    layer = {"name": "label", "type": "Input", "shape": [[-1]], "dtype": "int64"}
    roundtrip(layer)
    net = Net([layer], {}, phases=("train", "test"))
    assert net.top("label", "train") is net.top("label", "test")
    assert net.top("label", "train").dtype == tc.int64
    from tfconf.frontend.compiler import NetBuildError

    with pytest.raises(NetBuildError, match="1 tops but 2 shapes"):
        Net([{"name": "in", "type": "Input", "shape": [[1], [2]], "top": ["only"]}], {})


# ---------------------------------------------------------------------------- DummyData
def test_dummy_data_makes_its_tops_with_fillers_each_iteration():
    layer = {"name": "d", "type": "DummyData", "top": ["data", "label", "ones"],
             "shape": [[400, 2, 3, 3], [400], {"dim": [2, 2]}],
             "data_filler": [{"type": "gaussian", "mean": 1.0, "std": 2.0}, {"type": "uniform", "min": 0, "max": 4},
                             {"type": "constant", "value": 1.5}]}
    assert roundtrip(layer).shape == [[400, 2, 3, 3], [400], [2, 2]]
    net = build([layer], {})
    a, lab, ones = net.run(["data", "label", "ones"])
    assert a.shape == (400, 2, 3, 3) and lab.shape == (400,)
    assert abs(a.mean() - 1.0) < 0.1 and abs(a.std() - 2.0) < 0.1  # 7,200 draws of N(1, 2)
    assert lab.min() >= 0 and lab.max() <= 4
    np.testing.assert_array_equal(ones, np.full((2, 2), 1.5))
    again, = net.run(["data"])  # refilled each iteration, as Caffe's DummyData refills non-constant tops
    assert not np.array_equal(a, again)
    # no filler: constant 0 (Caffe's default); one filler: every top; legacy 4-D num/channels/height/width
    zeros = build([{"name": "z", "type": "DummyData", "shape": [[2, 3]]}], {})
    np.testing.assert_array_equal(zeros.run("z"), np.zeros((2, 3)))
    legacy = roundtrip({"name": "l", "type": "DummyData", "top": ["a", "b"], "num": [5], "channels": [1, 3],
                        "height": [4], "width": [4]})
    assert legacy.shape == [[5, 1, 4, 4], [5, 3, 4, 4]]
    both = build([{"name": "l", "type": "DummyData", "top": ["a", "b"], "shape": [[2], [3]],
                   "data_filler": {"type": "constant", "value": 7}}], {})
    assert both.run(["a", "b"])[1].tolist() == [7, 7, 7]
    for bad, why in [({"shape": []}, "needs shape"), ({"shape": [[2, 0]]}, "positive"),
                     ({"shape": [[2], [2]], "top": ["a", "b"], "data_filler": ["constant"] * 3}, "one per top"),
                     ({"shape": [[2]], "num": [2]}, "not both"),
                     ({"num": [1, 2, 3], "channels": [1, 2]}, "one value or one per top")]:
        with pytest.raises(ValueError, match=why):
            roundtrip(dict({"name": "x", "type": "DummyData"}, **bad))


def test_dummy_data_imports_from_caffe_and_trains_without_a_data_section(tmp_path):
    from tfconf.interop.caffe_import import convert

    net = tmp_path / "d.prototxt"
    net.write_text('layer { name: "data" type: "DummyData" top: "data" top: "label"\n'
                   '  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 }\n'
                   '    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }\n'
                   'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 } }\n')
    result = convert(str(net))
    assert result.layers[0] == {"name": "data", "type": "DummyData", "top": ["data", "label"], "shape": [[4, 3], [4]],
                                "data_filler": [{"type": "gaussian", "std": 1}, {"type": "constant", "value": 1}]}


# ---------------------------------------------------------------------------- Parameter
def test_parameter_is_a_learned_top_that_other_layers_read():
    layers = [{"name": "table", "type": "Parameter", "shape": {"dim": [2, 3]}},
              {"name": "sum", "type": "Eltwise", "bottom": ["data", "table"]}]
    assert roundtrip(layers[0]).shape == [2, 3]
    x, t = _r((2, 3)), _r((2, 3), 1)
    net = build(layers, {"data": x}, params={"table/param": t})
    np.testing.assert_array_equal(net.run("table"), t)
    np.testing.assert_allclose(net.run("sum"), x + t, rtol=1e-12)
    assert sorted(net.params) == ["table/param"]
    net.grad_check("sum", ["data", "table/param"])
    zeros = build(layers[:1], {})  # Caffe's blob has no filler: zeros until weights are loaded
    np.testing.assert_array_equal(zeros.run("table"), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="positive"):
        roundtrip({"name": "t", "type": "Parameter", "shape": [2, 0]})


def test_parameter_imports_from_caffe_with_its_blob_and_exports_to_onnx(tmp_path):
    from tfconf.frontend import config as cfgmod
    from tfconf.interop.caffe_import import convert

    net = tmp_path / "net.prototxt"
    net.write_text('name: "param"\ninput: "data"\ninput_shape { dim: 2 dim: 3 }\n'
                   'layer { name: "table" type: "Parameter" top: "table" '
                   'parameter_param { shape { dim: 2 dim: 3 } } }\n'
                   'layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "table" top: "sum" }\n')
    result = convert(str(net))
    assert {"name": "table", "type": "Parameter", "shape": [2, 3]} in result.layers
    (tmp_path / "net.yaml").write_text(result.yaml)
    cfg = cfgmod.load(str(tmp_path / "net.yaml"))
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from tfconf.interop.onnx_export import export_onnx

    t = _r((2, 3), 3).astype(np.float32)
    model = export_onnx(cfg, {"table/param": t})
    onnx.checker.check_model(model, full_check=True)
    x = _r((2, 3), 4).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(["sum"], {"data": x})[0], x + t, rtol=1e-6)


# ---------------------------------------------------------------------------- InnerProduct
@pytest.mark.parametrize("cfg,x_shape", [({}, (3, 2, 2, 2)), ({"axis": 2}, (2, 3, 4)), ({"transpose": True}, (3, 5)),
                                         ({"bias_term": False}, (2, 6)), ({"axis": -1}, (2, 2, 3))])
def test_inner_product(cfg, x_shape):
    layer = dict({"name": "ip", "type": "InnerProduct", "num_output": 4}, **cfg)
    s = roundtrip(layer)
    x = _r(x_shape)
    a = s.axis % len(x_shape)
    k = int(np.prod(x_shape[a:]))
    w = _r((k, 4) if s.transpose else (4, k), 1)
    params = {"ip/weights": w}
    if s.bias_term:
        params["ip/bias"] = _r((4,), 2)
    net = build([layer], {"data": x}, params=params)
    h = x.reshape(x_shape[:a] + (k,))
    want = h @ (w if s.transpose else w.T) + (params["ip/bias"] if s.bias_term else 0)
    y = net.run("ip")
    assert y.shape == x_shape[:a] + (4,)
    np.testing.assert_allclose(y, want, rtol=1e-12)
    assert sorted(net.params) == sorted(params)
    net.grad_check("ip", ["data"] + sorted(params), max_points=15)


def test_inner_product_fillers_and_shared_params():
    layers = [{"name": "ip1", "type": "InnerProduct", "num_output": 3, "bottom": "data",
               "weight_filler": {"type": "constant", "value": 0.5}, "bias_filler": {"type": "constant", "value": 1.0},
               "param": [{"name": "shared_w", "lr_mult": 1}, {"lr_mult": 2}]},
              {"name": "ip2", "type": "InnerProduct", "num_output": 3, "bottom": "data2",
               "param": [{"name": "shared_w"}], "bias_term": False}]
    roundtrip(layers[0])
    x, x2 = _r((2, 4)), _r((2, 4), 1)
    net = build(layers, {"data": x, "data2": x2})
    assert sorted(net.params) == ["ip1/bias", "shared_w"]
    assert net.meta["ip1/bias"]["lr_mult"] == 2
    np.testing.assert_allclose(net.run("ip1"), x @ np.full((4, 3), 0.5) + 1.0, rtol=1e-12)
    np.testing.assert_allclose(net.run("ip2"), x2 @ np.full((4, 3), 0.5), rtol=1e-12)


# ---------------------------------------------------------------------------- ReLU / Dropout
@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_relu(slope):
    layer = {"name": "relu", "type": "ReLU", "negative_slope": slope}
    roundtrip(layer)
    x = _r((2, 3, 4))
    x[np.abs(x) < 0.05] = 0.5
    net = build([layer], {"data": x})
    np.testing.assert_allclose(net.run("relu"), np.where(x > 0, x, slope * x), rtol=1e-12)
    net.grad_check("relu", ["data"])


def test_dropout_train_and_test():
    layer = {"name": "drop", "type": "Dropout", "dropout_ratio": 0.4}
    roundtrip(layer)
    x = np.abs(_r((200, 50))) + 0.1
    net = build([layer], {"data": x}, phases=("train", "test"))
    np.testing.assert_array_equal(net.run("drop", "test"), x)
    y = net.run("drop", "train")
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.6, rtol=1e-12)
    assert abs(1 - kept.mean() - 0.4) < 0.02
    y2 = net.run("drop", "train")
    assert (y2 != 0).sum() != kept.sum() or np.any((y2 != 0) != kept)  # a fresh mask each run


def test_dropout_ratio_must_be_below_one():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        roundtrip({"name": "d", "type": "Dropout", "dropout_ratio": 1.0})


# ---------------------------------------------------------------------------- SoftmaxWithLoss
def _log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("cfg,norm", [({}, "valid"), ({"normalization": "FULL"}, "full"),
                                      ({"normalization": "batch_size"}, "batch_size"),
                                      ({"normalization": "none"}, "none"), ({"normalize": False}, "batch_size")])
@pytest.mark.parametrize("ignore", [None, 2])
def test_softmax_with_loss_spatial(cfg, norm, ignore):
    layer = dict({"name": "loss", "type": "SoftmaxWithLoss", "bottom": ["x", "label"]}, **cfg)
    if ignore is not None:
        layer["ignore_label"] = ignore
    roundtrip(layer)
    x = _r((2, 3, 2, 2)) * 2
    label = rng(1).integers(0, 3, (2, 1, 2, 2)).astype(np.float64)
    label[0, 0, 0, 0] = 2
    lp = _log_softmax(x, 1)
    lab = label[:, 0].astype(int)
    nll = -np.take_along_axis(lp, lab[:, None], 1)[:, 0]
    valid = np.ones_like(nll, bool) if ignore is None else lab != ignore
    total = nll[valid].sum()
    denom = {"valid": valid.sum(), "full": nll.size, "batch_size": 2, "none": 1}[norm]
    net = build([layer], {"x": x, "label": label})
    np.testing.assert_allclose(net.run("loss"), total / denom, rtol=1e-12)
    net.grad_check("loss", ["x"], max_points=12)


def test_softmax_with_loss_axis_and_weight():
    x = _r((4, 3))
    label = np.array([0, 2, 1, 1], dtype=np.int64)
    net = build([{"name": "loss", "type": "SoftmaxWithLoss", "bottom": ["x", "label"], "loss_weight": 3.0}],
                {"x": x, "label": label})
    want = -_log_softmax(x, 1)[np.arange(4), label].mean()
    np.testing.assert_allclose(net.run("loss"), want, rtol=1e-12)
    np.testing.assert_allclose(net.run(net.net().loss), 3 * want, rtol=1e-12)
    xt = np.ascontiguousarray(x.T)  # classes on axis 0
    net2 = build([{"name": "loss", "type": "SoftmaxWithLoss", "bottom": ["x", "label"], "axis": 0}],
                 {"x": xt, "label": label})
    np.testing.assert_allclose(net2.run("loss"), want, rtol=1e-12)


# ---------------------------------------------------------------------------- Accuracy
def _caffe_accuracy(x, label, k, ignore=None):
    hits, count = 0, 0
    for row, lab in zip(x, label):
        if ignore is not None and lab == ignore:
            continue
        better = -1
        for v in row:  # Caffe: classes scoring >= the true class, except itself
            better += v >= row[int(lab)]
        hits += better < k
        count += 1
    return hits / max(count, 1)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("ignore", [None, 1])
def test_accuracy(k, ignore):
    layer = {"name": "acc", "type": "Accuracy", "bottom": ["x", "label"], "top_k": k}
    if ignore is not None:
        layer["ignore_label"] = ignore
    roundtrip(layer)
    x = np.round(_r((12, 4)), 0)  # rounding makes ties
    label = rng(1).integers(0, 4, 12).astype(np.float64)
    net = build([layer], {"x": x, "label": label}, phases=("test",))
    np.testing.assert_allclose(net.run("acc"), _caffe_accuracy(x, label, k, ignore), rtol=1e-12)


def test_accuracy_constant_scores_are_not_correct():
    x = np.zeros((4, 3))
    label = np.array([0, 1, 2, 0], dtype=np.float64)
    net = build([{"name": "acc", "type": "Accuracy", "bottom": ["x", "label"]}], {"x": x, "label": label})
    assert net.run("acc") == 0.0
    net3 = build([{"name": "acc", "type": "Accuracy", "bottom": ["x", "label"], "top_k": 3}], {"x": x, "label": label})
    assert net3.run("acc") == 1.0


def test_accuracy_is_excluded_from_train_phase_by_include_rule():
    layer = {"name": "acc", "type": "Accuracy", "bottom": ["x", "label"], "include": {"phase": "TEST"}}
    roundtrip(layer)
    net = build([layer], {"x": np.eye(3), "label": np.arange(3.0)}, phases=("train", "test"))
    assert "acc" not in net.net("train").tops
    assert net.run("acc", "test") == 1.0


def test_input_builds_in_both_phases_and_round_trips():
    extra, _ = LAYER_CASES["Input"]
    layer = dict({"name": "l", "type": "Input"}, **extra)
    roundtrip(layer)
    net = build([layer], {}, phases=("train", "test"))
    for phase in ("train", "test"):
        assert net.run("l", phase, feeds={"l": np.ones((2, 3))}).shape == (2, 3)
