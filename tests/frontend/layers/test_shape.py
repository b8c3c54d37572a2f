"""Shape and combination layers: Concat, Slice, Split, Eltwise, Flatten, Reshape, Crop, Tile,
Reduction, ArgMax, Embed."""

import numpy as np
import pytest
from pydantic import ValidationError

import tfconf as tc
from tfconf.frontend.compiler import NetBuildError

from .helpers import X4, build, rng, roundtrip

# the layer types this module checks against numpy: minimal config, input shapes (conftest.py)
LAYER_CASES = {
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
}


def _r(shape, seed=0):
    return rng(seed).standard_normal(shape)


# ---------------------------------------------------------------------------- Concat
@pytest.mark.parametrize("cfg,axis", [({}, 1), ({"axis": 0}, 0), ({"axis": -1}, 3), ({"concat_dim": 2}, 2)])
def test_concat(cfg, axis):
    layer = dict({"name": "cat", "type": "Concat", "bottom": ["a", "b", "c"]}, **cfg)
    roundtrip(layer)
    shapes = []
    for i in range(3):
        s = [2, 3, 2, 2]
        s[axis] = i + 1
        shapes.append(s)
    xs = {k: _r(s, i) for i, (k, s) in enumerate(zip("abc", shapes))}
    net = build([layer], xs)
    y = net.run("cat")
    np.testing.assert_array_equal(y, np.concatenate([xs["a"], xs["b"], xs["c"]], axis=axis))
    net.grad_check("cat", ["a", "c"])


def test_concat_axis_and_concat_dim_conflict():
    with pytest.raises(ValidationError, match="concat_dim"):
        roundtrip({"name": "cat", "type": "Concat", "axis": 1, "concat_dim": 1})


def test_concat_shape_mismatch_names_the_layer():
    with pytest.raises(NetBuildError, match="concat"):
        build([{"name": "cat", "type": "Concat", "bottom": ["a", "b"]}],
              {"a": np.zeros((2, 3, 4)), "b": np.zeros((2, 3, 5))})


# ---------------------------------------------------------------------------- Slice / Split
def test_slice_points():
    layer = {"name": "sl", "type": "Slice", "slice_point": [1, 4], "top": ["p", "q", "r"]}
    roundtrip(layer)
    x = _r((2, 6, 3))
    net = build([layer], {"data": x})
    p, q, r = net.run(["p", "q", "r"])
    np.testing.assert_array_equal(p, x[:, :1])
    np.testing.assert_array_equal(q, x[:, 1:4])
    np.testing.assert_array_equal(r, x[:, 4:])
    net.grad_check("q", ["data"])


def test_slice_equal_parts_axis_and_legacy_slice_dim():
    x = _r((4, 2, 6))
    for cfg in ({"axis": -1}, {"slice_dim": 2}):
        layer = dict({"name": "sl", "type": "Slice", "top": ["a", "b", "c"]}, **cfg)
        roundtrip(layer)
        a, b, c = build([layer], {"data": x}).run(["a", "b", "c"])
        for i, t in enumerate((a, b, c)):
            np.testing.assert_array_equal(t, x[:, :, 2 * i:2 * i + 2])


@pytest.mark.parametrize("layer,err", [
    ({"slice_point": [2, 1], "top": ["a", "b", "c"]}, ValidationError),
    ({"slice_point": [2], "top": ["a", "b", "c"]}, ValidationError),
    ({"slice_point": [6], "top": ["a", "b"]}, NetBuildError),
    ({"top": ["a", "b", "c", "d"]}, NetBuildError),
])
def test_slice_errors(layer, err):
    with pytest.raises(err):
        build([dict({"name": "sl", "type": "Slice"}, **layer)], {"data": np.zeros((2, 6))})


def test_split_copies_to_every_top():
    layer = {"name": "sp", "type": "Split", "top": ["u", "v"]}
    roundtrip(layer)
    x = _r((2, 3))
    net = build([layer, {"name": "sum", "type": "Eltwise", "bottom": ["u", "v"], "coeff": [1.0, 2.0]}], {"data": x})
    u, v, s = net.run(["u", "v", "sum"])
    np.testing.assert_array_equal(u, x)
    np.testing.assert_array_equal(v, x)
    np.testing.assert_allclose(s, 3 * x)
    net.grad_check("sum", ["data"])  # both branches' gradients accumulate


# ---------------------------------------------------------------------------- Eltwise
@pytest.mark.parametrize("cfg,ref", [
    ({}, lambda a, b, c: a + b + c),
    ({"operation": "SUM", "coeff": [1.0, -1.0, 0.5]}, lambda a, b, c: a - b + 0.5 * c),
    ({"operation": "prod"}, lambda a, b, c: a * b * c),
    ({"operation": "MAX"}, lambda a, b, c: np.maximum(np.maximum(a, b), c)),
])
def test_eltwise(cfg, ref):
    layer = dict({"name": "el", "type": "Eltwise", "bottom": ["a", "b", "c"]}, **cfg)
    roundtrip(layer)
    xs = {k: _r((2, 3, 2), i) for i, k in enumerate("abc")}
    net = build([layer], xs)
    np.testing.assert_allclose(net.run("el"), ref(xs["a"], xs["b"], xs["c"]), rtol=1e-12)
    net.grad_check("el", ["a", "b", "c"])


def test_eltwise_max_gradient_goes_to_first_maximal_bottom():
    a = np.array([[1.0, 2.0, 3.0]])
    b = np.array([[1.0, 5.0, 3.0]])
    net = build([{"name": "el", "type": "Eltwise", "operation": "max", "bottom": ["a", "b"]}], {"a": a, "b": b})
    with net.graph.as_default():
        ga, gb = tc.gradients(tc.reduce_sum(net.top("el")), [net.placeholders["a"], net.placeholders["b"]])
    ga, gb = net.sess.run([ga, gb], feed_dict=net.feed())
    np.testing.assert_array_equal(ga, [[1, 0, 1]])
    np.testing.assert_array_equal(gb, [[0, 1, 0]])


def test_eltwise_coeff_errors():
    with pytest.raises(ValidationError, match="coeff"):
        roundtrip({"name": "el", "type": "Eltwise", "operation": "prod", "coeff": [1.0, 2.0]})
    with pytest.raises(NetBuildError, match="coeff"):
        build([{"name": "el", "type": "Eltwise", "bottom": ["a", "b"], "coeff": [1.0]}],
              {"a": np.zeros(2), "b": np.zeros(2)})
    with pytest.raises(NetBuildError, match="bottoms"):
        build([{"name": "el", "type": "Eltwise"}], {"data": np.zeros(2)})


# ---------------------------------------------------------------------------- Flatten / Reshape
@pytest.mark.parametrize("cfg,shape", [({}, (2, 60)), ({"axis": 2}, (2, 3, 20)),
                                       ({"axis": 1, "end_axis": 2}, (2, 12, 5)), ({"axis": 0}, (120,)),
                                       ({"axis": -2, "end_axis": -1}, (2, 3, 20))])
@pytest.mark.parametrize("dynamic", [False, True])
def test_flatten(cfg, shape, dynamic):
    layer = dict({"name": "fl", "type": "Flatten"}, **cfg)
    roundtrip(layer)
    x = _r((2, 3, 4, 5))
    net = build([layer], {"data": x}, dynamic_batch=dynamic)
    static = net.top("fl").shape.as_list()
    assert static == [None if dynamic and i == 0 and len(shape) > 1 else d for i, d in enumerate(shape)] \
        or (dynamic and static == [None])
    np.testing.assert_array_equal(net.run("fl"), x.reshape(shape))


@pytest.mark.parametrize("cfg,out", [
    ({"shape": [0, -1]}, (2, 60)),
    ({"shape": {"dim": [0, 3, -1, 2]}}, (2, 3, 10, 2)),
    ({"shape": [-1]}, (120,)),
    ({"shape": [2, 2], "axis": 2, "num_axes": 1}, (2, 3, 2, 2, 5)),
    ({"shape": [1, 1], "axis": 0, "num_axes": 0}, (1, 1, 2, 3, 4, 5)),
    ({"shape": [1], "axis": -1, "num_axes": 0}, (2, 3, 4, 5, 1)),
    ({"shape": [0, 0, -1], "axis": 1}, (2, 3, 4, 5)),
    ({"shape": [-1, 10], "axis": 2}, (2, 3, 2, 10)),
])
def test_reshape_caffe_semantics(cfg, out):
    layer = dict({"name": "rs", "type": "Reshape"}, **cfg)
    s = roundtrip(layer)
    assert isinstance(s.shape, list)
    x = _r((2, 3, 4, 5))
    net = build([layer], {"data": x})
    assert net.top("rs").shape.as_list() == list(out)
    np.testing.assert_array_equal(net.run("rs"), x.reshape(out))


def test_reshape_unknown_batch_copies_axis_0():
    x = _r((3, 4, 6))
    net = build([{"name": "rs", "type": "Reshape", "shape": [0, -1, 3]}], {"data": x}, dynamic_batch=True)
    assert net.top("rs").shape.as_list() == [None, 8, 3]
    np.testing.assert_array_equal(net.run("rs"), x.reshape(3, 8, 3))
    net.grad_check("rs", ["data"], max_points=10)
    net2 = build([{"name": "rs", "type": "Reshape", "shape": [-1, 0, 2, 3]}], {"data": x}, dynamic_batch=True)
    np.testing.assert_array_equal(net2.run("rs"), x.reshape(3, 4, 2, 3))


@pytest.mark.parametrize("layer,err", [
    ({"shape": [-1, -1]}, ValidationError), ({"shape": [2, -2]}, ValidationError),
    ({"shape": [7, -1]}, NetBuildError), ({"shape": [5, 5]}, NetBuildError),
])
def test_reshape_errors(layer, err):
    with pytest.raises(err):
        build([dict({"name": "rs", "type": "Reshape"}, **layer)], {"data": np.zeros((2, 3, 4))})


# ---------------------------------------------------------------------------- Crop / Tile
@pytest.mark.parametrize("cfg,key", [
    ({}, (slice(None), slice(None), slice(0, 3), slice(0, 2))),
    ({"offset": 1}, (slice(None), slice(None), slice(1, 4), slice(1, 3))),
    ({"offset": [2, 1]}, (slice(None), slice(None), slice(2, 5), slice(1, 3))),
    ({"axis": 1, "offset": [1, 0, 2]}, (slice(None), slice(1, 3), slice(0, 3), slice(2, 4))),
])
def test_crop(cfg, key):
    layer = dict({"name": "cr", "type": "Crop", "bottom": ["data", "ref"]}, **cfg)
    roundtrip(layer)
    x = _r((2, 4, 5, 4))
    ref = np.zeros((2, 2, 3, 2)) if cfg.get("axis") == 1 else np.zeros((2, 4, 3, 2))
    net = build([layer], {"data": x, "ref": ref})
    y = net.run("cr")
    assert list(y.shape) == net.top("cr").shape.as_list() == list(x[key].shape)
    np.testing.assert_array_equal(y, x[key])
    net.grad_check("cr", ["data"], max_points=12)


def test_crop_out_of_range_is_an_error():
    with pytest.raises(NetBuildError, match="offset"):
        build([{"name": "cr", "type": "Crop", "bottom": ["data", "ref"], "offset": 3}],
              {"data": np.zeros((1, 1, 4, 4)), "ref": np.zeros((1, 1, 2, 2))})


@pytest.mark.parametrize("axis,reps", [(1, (1, 3, 1)), (-1, (1, 1, 3)), (0, (3, 1, 1))])
def test_tile(axis, reps):
    layer = {"name": "ti", "type": "Tile", "axis": axis, "tiles": 3}
    roundtrip(layer)
    x = _r((2, 3, 2))
    net = build([layer], {"data": x})
    np.testing.assert_array_equal(net.run("ti"), np.tile(x, reps))
    net.grad_check("ti", ["data"])


def test_tile_needs_tiles():
    with pytest.raises(ValidationError):
        roundtrip({"name": "ti", "type": "Tile"})


# ---------------------------------------------------------------------------- Reduction
@pytest.mark.parametrize("op,fn", [("sum", lambda v: v.sum(-1)), ("ASUM", lambda v: np.abs(v).sum(-1)),
                                   ("sumsq", lambda v: (v ** 2).sum(-1)), ("MEAN", lambda v: v.mean(-1))])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_reduction(op, fn, axis):
    layer = {"name": "red", "type": "Reduction", "operation": op, "axis": axis, "coeff": 0.5}
    roundtrip(layer)
    x = _r((2, 3, 4))
    net = build([layer], {"data": x})
    a = axis % 3
    lead = x.shape[:a]
    want = 0.5 * fn(x.reshape(lead + (-1,)))
    y = net.run("red")
    assert np.shape(y) == lead
    np.testing.assert_allclose(y, want, rtol=1e-12)
    if axis == 1:
        net.grad_check("red", ["data"])


def test_reduction_default_is_sum_to_scalar():
    s = roundtrip({"name": "red", "type": "Reduction"})
    assert (s.operation, s.axis, s.coeff) == ("sum", 0, 1.0)
    x = _r((2, 3))
    np.testing.assert_allclose(build([{"name": "red", "type": "Reduction"}], {"data": x}).run("red"), x.sum())


# ---------------------------------------------------------------------------- ArgMax
def _caffe_topk(row, k):
    """Caffe's order: sort (value, index) pairs descending, so ties put the higher index first."""
    pairs = sorted(((v, i) for i, v in enumerate(row)), reverse=True)[:k]
    return [i for _, i in pairs], [v for v, _ in pairs]


def test_argmax_default():
    layer = {"name": "am", "type": "ArgMax"}
    roundtrip(layer)
    x = _r((4, 5))
    y = build([layer], {"data": x}).run("am")
    assert y.shape == (4, 1, 1)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y[:, 0, 0], x.argmax(1))


def test_argmax_top_k_with_max_val_and_ties():
    x = np.array([[1.0, 3.0, 3.0, 0.0, 2.0, 3.0], [0.5, -1.0, 4.0, 4.0, 2.0, 1.0]])
    layer = {"name": "am", "type": "ArgMax", "top_k": 4, "out_max_val": True}
    roundtrip(layer)
    y = build([layer], {"data": x}).run("am")
    assert y.shape == (2, 2, 4)
    for n in range(2):
        idx, val = _caffe_topk(x[n], 4)
        np.testing.assert_array_equal(y[n, 0], idx)
        np.testing.assert_array_equal(y[n, 1], val)


def test_argmax_4d_bottom_flattens_and_pads_to_rank():
    x = _r((2, 3, 2, 2))
    y = build([{"name": "am", "type": "ArgMax", "top_k": 2}], {"data": x}).run("am")
    assert y.shape == (2, 1, 2, 1)
    for n in range(2):
        np.testing.assert_array_equal(y[n, 0, :, 0], _caffe_topk(x[n].ravel(), 2)[0])


@pytest.mark.parametrize("out_max_val", [False, True])
@pytest.mark.parametrize("dynamic", [False, True])
def test_argmax_along_axis(out_max_val, dynamic):
    layer = {"name": "am", "type": "ArgMax", "axis": 1, "top_k": 2, "out_max_val": out_max_val}
    roundtrip(layer)
    x = _r((3, 5, 2))
    y = build([layer], {"data": x}, dynamic_batch=dynamic).run("am")
    assert y.shape == (3, 2, 2)
    order = np.argsort(-x, axis=1, kind="stable")[:, :2]
    want = np.take_along_axis(x, order, axis=1) if out_max_val else order
    np.testing.assert_array_equal(y, want)


# ---------------------------------------------------------------------------- Embed
def test_embed():
    layer = {"name": "emb", "type": "Embed", "num_output": 3, "input_dim": 5}
    roundtrip(layer)
    idx = np.array([[0, 4, 2], [1, 1, 3]], dtype=np.float64)  # Caffe feeds indices as floats
    w = _r((5, 3), 1)
    b = _r((3,), 2)
    net = build([layer], {"data": idx}, params={"emb/weights": w, "emb/bias": b})
    assert net.value("emb/weights").shape == (5, 3)
    y = net.run("emb")
    assert y.shape == (2, 3, 3)
    np.testing.assert_allclose(y, w[idx.astype(int)] + b, rtol=1e-12)
    net.grad_check("emb", ["emb/weights", "emb/bias"])


def test_embed_int_indices_without_bias():
    layer = {"name": "emb", "type": "Embed", "num_output": 2, "input_dim": 4, "bias_term": False,
             "weight_filler": {"type": "constant", "value": 0.5}}
    roundtrip(layer)
    idx = np.array([3, 0, 3], dtype=np.int32)
    net = build([layer], {"data": idx})
    assert sorted(net.params) == ["emb/weights"]
    np.testing.assert_allclose(net.run("emb"), np.full((3, 2), 0.5))


# ---------------------------------------------------------------------------- BatchReindex
def test_batch_reindex():
    layer = {"name": "r", "type": "BatchReindex", "bottom": ["data", "perm"]}
    roundtrip(layer)
    x = _r((4, 2, 3), 1)
    perm = np.array([3.0, 0.0, 3.0, 1.9, 2.0])  # Caffe's float indices, truncated; 3 picked twice
    net = build([layer], {"data": x, "perm": perm})
    y = net.run("r")
    assert y.shape == (5, 2, 3)
    np.testing.assert_array_equal(y, x[[3, 0, 3, 1, 2]])
    net.grad_check("r", ["data"])  # the repeated pick's gradient is the sum of both
    for bad in (-1.0, 4.0):  # outside [0, N): an error naming the layer, not a wrapped pick
        with pytest.raises(tc.errors.OpError, match="r"):
            net.run("r", feeds={"perm": np.array([0.0, 1.0, bad, 2.0, 3.0])})


def test_batch_reindex_wants_a_vector_of_indices():
    with pytest.raises(NetBuildError, match="one index per output example"):
        build([{"name": "r", "type": "BatchReindex", "bottom": ["data", "perm"]}],
              {"data": _r((4, 2)), "perm": np.zeros((2, 1))})


def test_batch_reindex_imports_from_caffe_and_exports_to_onnx(tmp_path):
    from tfconf.frontend import config as cfgmod
    from tfconf.interop.caffe_import import convert

    net = tmp_path / "net.prototxt"
    net.write_text('name: "reindex"\ninput: "data"\ninput_shape { dim: 4 dim: 2 dim: 3 }\n'
                   'input: "perm"\ninput_shape { dim: 5 }\n'
                   'layer { name: "r" type: "BatchReindex" bottom: "data" bottom: "perm" top: "r" }\n')
    result = convert(str(net))
    assert {"name": "r", "type": "BatchReindex", "bottom": ["data", "perm"]} in result.layers  # (top r: its name)
    (tmp_path / "net.yaml").write_text(result.yaml)
    cfg = cfgmod.load(str(tmp_path / "net.yaml"))
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from tfconf.interop.onnx_export import export_onnx

    model = export_onnx(cfg, {})
    onnx.checker.check_model(model, full_check=True)
    x, perm = _r((4, 2, 3), 2).astype(np.float32), np.array([1, 3, 3, 0, 2], np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"data": x, "perm": perm})
    np.testing.assert_array_equal(y, x[[1, 3, 3, 0, 2]])
