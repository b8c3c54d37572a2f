"""Caffe export (``tfconf export --format caffe``): the written prototxt and .caffemodel, re-imported by
tfconf's own importer, give the same layers and the same test-phase outputs as the original net, for
every layer type the registry declares (driven by the layer cases), LeNet (trained weights),
CIFAR-10 quick and the shipped configs; the .caffemodel holds Caffe's blobs in Caffe's order;
Caffe's own deploy LeNet survives import and export; refused layers are located errors, exit code 2
through the real CLI, with no file written."""

from __future__ import annotations

import json
from pathlib import Path
import textwrap

import numpy as np
import pytest

import tfconf as tc
from tests.cli.util import REPO, invoke, one_error_line, run
from tfconf.frontend import config as cfgmod
from tfconf.frontend.errors import ConfigError
from tfconf.interop.caffe_export import CAFFE_TYPES, export_caffe, exportable_types
from tfconf.interop.caffe_import import convert
from tfconf.interop.onnx_export import ExportError, _deploy_net
from tfconf.interop.prototxt import Enum, Message, parse, parse_file
from tfconf.io.caffemodel import read_caffemodel
from tfconf.train.snapshot import load_tensors, save_tensors

from ..frontend.layers.cases import CASES

ZOO = REPO / "model_zoo"
SHARED_CAFFE = Path(__file__).parent / "caffe"  # copies of Caffe's own files (../shared/caffe), in the repository
#: the fields a deploy net leaves to the test phase (and bottom/top, compared resolved)
NOT_WRITTEN = {"bottom", "top", "include", "exclude", "loss_weight", "propagate_down", "device"}


# ---------------------------------------------------------------------------------------------------- helpers
def load(tmp_path, text, name="net.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return cfgmod.load(str(path))


def random_weights(cfg, seed=0):
    """Every parameter drawn at random (BatchNorm variances positive, its scale factor a positive
    non-1 value, so that Caffe's running sums are not the averages)."""
    _, params, _, _ = _deploy_net(cfg)
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in params.items():
        a = rng.standard_normal(v.shape.as_list()).astype(np.float32) * 0.5
        if k.endswith("moving_variance"):
            a = np.abs(a) + 0.5
        if k.endswith("scale_factor"):
            a = np.full(v.shape.as_list(), 3.75, np.float32)
        out[k] = a
    return out


def fresh_weights(cfg):
    """The parameters as the config's fillers initialize them."""
    net, params, _, _ = _deploy_net(cfg)
    g = next(iter(params.values())).graph
    with g.as_default():
        init = tc.global_variables_initializer()
        sess = tc.Session(graph=g)
    sess.run(init)
    values = sess.run({k: v.value() for k, v in params.items()})
    sess.close()
    return {k: np.asarray(a) for k, a in values.items()}


def forward(cfg, weights, feeds, outputs):
    """The named tops of tfconf's test-phase forward of ``cfg`` for ``feeds`` (top name → array)."""
    net, params, inputs, _ = _deploy_net(cfg)
    g = next(iter(net.tops.values())).graph
    with g.as_default():
        init = tc.global_variables_initializer()
        sess = tc.Session(graph=g)
    sess.run(init)  # (recurrent state, which is not a parameter)
    assert set(params) <= set(weights), sorted(set(params) - set(weights))
    for k, v in params.items():
        v.load(weights[k], sess)
    feed = {inputs[n]: np.asarray(a).astype(inputs[n].dtype.np) for n, a in feeds.items()}  # (int ids as floats)
    out = sess.run({n: net.tops[n] for n in outputs}, feed)
    sess.close()
    return out


def reimport(tmp_path, result, stem="deploy"):
    """The exported net written to files, converted back by tfconf's importer and loaded: (config,
    weights, the Conversion)."""
    proto, model = tmp_path / f"{stem}.prototxt", tmp_path / f"{stem}.caffemodel"
    proto.write_text(result.prototxt)
    model.write_bytes(result.caffemodel())
    has_blobs = any(arrays for _, _, arrays in result.layers)  # (the importer refuses a model without any)
    conv = convert(str(proto), None, str(model) if has_blobs else None)
    yaml_path = tmp_path / f"{stem}.yaml"
    yaml_path.write_text(conv.yaml)
    return cfgmod.load(str(yaml_path)), conv.tensors or {}, conv


def feeds_for(result, seed=1, ids=None):
    """Random inputs of the exported shapes (``ids``: input names that take integer ids < 2)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in result.inputs:
        if ids and name in ids:
            out[name] = rng.integers(0, 2, size=shape).astype(np.float32)
        elif name == "cont":
            out[name] = (rng.random(shape) > 0.3).astype(np.float32)
        else:
            out[name] = rng.standard_normal(shape).astype(np.float32)
    return out


def assert_round_trip(tmp_path, cfg, weights, *, batch=1, softmax=False, ids=None, feeds=None, atol=1e-5):
    """Export, re-import, and compare the layers and the outputs; returns (result, got, want)."""
    result = export_caffe(cfg, weights, batch=batch, softmax=softmax)
    cfg2, weights2, conv = reimport(tmp_path, result)
    net, _, _, _ = _deploy_net(cfg)
    net2, _, _, _ = _deploy_net(cfg2)
    # the same layers: every kept layer of the original, equal but for what a deploy net leaves out
    kept = [s for s in net.layers if s.type != "Input" and not (s.is_loss or s.type == "Accuracy")]
    back = {s.name: s for s in net2.layers}
    for spec in kept:
        other = back[spec.name]
        assert other.type == spec.type
        assert comparable(other) == comparable(spec), spec.name
        assert other.output_names() == spec.output_names()
    assert {s.name for s in net2.layers if s.type != "Input"} == {s.name for s in kept} | (
        {"prob"} if softmax and any(s.type == "SoftmaxWithLoss" for s in net.layers) else set())
    names = [n for n, _ in result.outputs]
    feeds = feeds if feeds is not None else feeds_for(result, ids=ids)
    want = forward(cfg, weights, feeds, [n for n in names if n in net.tops])
    got = forward(cfg2, weights2, feeds, names)
    again = None
    for name in want:
        assert got[name].shape == want[name].shape, name
        if not np.allclose(got[name], want[name], rtol=1e-5, atol=atol):
            # a top drawn anew each run (DummyData's fillers) only has to agree with itself in shape
            again = again or forward(cfg, weights, feeds, list(want))
            if np.array_equal(again[name], want[name]):
                np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=atol, err_msg=name)
    return result, got, want


def comparable(spec) -> dict:
    """A spec's fields as a deploy net keeps them, a pair field and its ``*_h``/``*_w`` fields as the
    (height, width) they mean together (Caffe writes ``kernel_size: [3, 2]`` as kernel_h, kernel_w)."""
    from tfconf.frontend.layers.caffe_map import Carry

    out = spec.model_dump(exclude=NOT_WRITTEN)
    carried = {e.key: e for table in type(spec).caffe.params.values() for e in table.values() if isinstance(e, Carry)}
    for key, entry in carried.items():
        stem = key[:-len("_size")] if key.endswith("_size") else key
        hk, wk = f"{stem}_h", f"{stem}_w"
        if entry.card != "pair" or hk not in carried or wk not in carried:
            continue
        v = out.pop(key)
        pair = None if v is None else (v, v) if isinstance(v, int) else (v[0], v[-1])
        h, w = out.pop(hk), out.pop(wk)
        out[key] = (h if h is not None else pair and pair[0], w if w is not None else pair and pair[1])
    return out


def input_net(tmp_path, layers, shape=(-1, 4, 9, 9)):
    body = "\n".join(f"  - {layer}" for layer in layers)
    return load(tmp_path, f"name: t\nlayers:\n  - {{name: data, type: Input, shape: {list(shape)}}}\n{body}\n")


def fields(msg):
    """A parsed prototxt message (or a message field) as plain data: {field: [values]}, messages
    recursively."""
    if not isinstance(msg, Message):
        msg = msg.value
    out: dict = {}
    for f in msg:
        v = f.value
        v = fields(v) if isinstance(v, Message) else (str(v) if isinstance(v, Enum) else v)
        out.setdefault(f.name, []).append(v)
    return out


# ---------------------------------------------------------------------------------------------------- every layer type
def _case_net(tmp_path, type_name):
    """The registry's minimal ``type_name`` layer behind an Input layer per input it reads."""
    extra, shapes = CASES[type_name]
    lines = ["name: one", "layers:"]
    for name, shape in shapes.items():
        dims = [2] if shape == "labels" else list(shape)
        lines.append(f"  - {{name: {name}, type: Input, shape: {dims}}}")
    bottoms = extra.get("bottom", list(shapes)[:1])
    layer = {"name": "l", "type": type_name, **extra}
    if bottoms:
        layer["bottom"] = bottoms
    lines.append(f"  - {json.dumps(layer)}")
    if type_name == "Input" or _is_dropped_type(type_name):  # something kept must read their tops
        first = (extra.get("top") or ["l"])[0] if type_name == "Input" else bottoms[0]
        lines.append(f"  - {{name: keep, type: AbsVal, bottom: {first}}}")
    return load(tmp_path, "\n".join(lines) + "\n"), {n for n, s in shapes.items() if s == "labels"}


def _is_dropped_type(type_name):
    from tfconf.frontend.layers import LAYERS

    return LAYERS[type_name].is_loss or type_name == "Accuracy"


@pytest.mark.parametrize("type_name", sorted(CASES))
def test_every_layer_type_round_trips_or_is_refused(type_name, tmp_path):
    """Driven by the registry's layer cases: a new layer with a caffe declaration is exported (and
    must come back the same), or refused with a located error, or dropped (losses, Accuracy)."""
    from tfconf.frontend.layers import LAYERS

    cfg, ids = _case_net(tmp_path, type_name)
    weights = random_weights(cfg)
    if type_name not in exportable_types() and type_name != "Input" and not _is_dropped_type(type_name):
        with pytest.raises(ConfigError) as e:
            export_caffe(cfg, weights)
        msg = str(e.value)
        assert "net.yaml:" in msg and f"layer 'l' (type {type_name}) cannot be exported to Caffe" in msg
        assert type_name not in CAFFE_TYPES or type_name == "Python" or LAYERS[type_name].caffe is None
        return
    result, got, want = assert_round_trip(tmp_path, cfg, weights, ids=ids)
    types = [fields(layer)["type"][0] for layer in parse(result.prototxt).all("layer")]
    if _is_dropped_type(type_name):
        assert type_name not in types and types[-1] == "AbsVal"
    else:
        assert type_name in types
        if type_name not in ("Parameter",):  # (its top is its blob: constant by construction)
            assert any(np.std(v) > 1e-4 or (np.size(v) == 1 and abs(float(v)) > 1e-4) for v in want.values()), \
                f"{type_name}: the outputs prove nothing"


def test_what_is_refused_is_what_caffe_lacks():
    """Every declared type Caffe has is exportable but Python (its class builds tfconf ops); the
    others (GRU) are tfconf's own."""
    from tfconf.frontend.layers import LAYERS

    dropped = {n for n in LAYERS if _is_dropped_type(n)}
    refused = set(LAYERS) - set(exportable_types()) - dropped
    assert refused == {n for n in LAYERS if n not in CAFFE_TYPES} | {"Python"}
    assert "GRU" in refused and {"Convolution", "LRN", "BatchNorm", "LSTM", "Input"} <= set(exportable_types())


# ---------------------------------------------------------------------------------------------------- variants
VARIANTS = {
    "conv group pad stride dilation": ["{name: c, type: Convolution, num_output: 6, kernel_size: 3, group: 2, "
                                       "pad: 2, stride: 2, dilation: 2}"],
    "conv rectangular no bias": ["{name: c, type: Convolution, num_output: 3, kernel_h: 3, kernel_w: 2, stride_h: 2, "
                                 "stride_w: 1, pad_h: 1, pad_w: 0, bias_term: false}"],
    "conv pair lists": ["{name: c, type: Convolution, num_output: 3, kernel_size: [3, 2], pad: [1, 0], "
                        "stride: [2, 1], weight_filler: {type: gaussian, std: 0.1}}"],
    "deconv": ["{name: d, type: Deconvolution, num_output: 4, kernel_size: 3, stride: 2, pad: 1, group: 2}"],
    "max pool pad": ["{name: p, type: Pooling, pool: max, kernel_size: 3, stride: 2, pad: 1}"],
    "ave pool rect": ["{name: p, type: Pooling, pool: ave, kernel_size: [4, 3], stride: 2, pad: [2, 1]}"],
    "pool floor": ["{name: p, type: Pooling, pool: ave, kernel_size: 2, stride: 2, round_mode: floor}"],
    "global pool": ["{name: p, type: Pooling, pool: max, global_pooling: true}"],
    "ip axis 2 transpose": ["{name: ip, type: InnerProduct, num_output: 5, axis: 2, transpose: true}"],
    "lrn across": ["{name: n, type: LRN, local_size: 3, alpha: 0.5, beta: 0.75, k: 2}"],
    "lrn within": ["{name: n, type: LRN, local_size: 3, alpha: 0.5, beta: 0.6, norm_region: WITHIN_CHANNEL}"],
    "leaky relu, dropout": ["{name: r, type: ReLU, negative_slope: 0.1}",
                            "{name: d, type: Dropout, dropout_ratio: 0.4}"],
    "prelu shared": ["{name: r, type: PReLU, channel_shared: true}"],
    "batchnorm scale": ["{name: bn, type: BatchNorm, eps: 0.001}", "{name: sc, type: Scale, bias_term: true}"],
    "scale by bottom": ["{name: s, type: Reduction, operation: mean, axis: 2, bottom: data}",
                        "{name: sc, type: Scale, bottom: [data, s], axis: 0}"],
    "eltwise coeff, concat": ["{name: a, type: Convolution, num_output: 3, kernel_size: 1, bottom: data}",
                              "{name: b, type: Convolution, num_output: 3, kernel_size: 1, bottom: data}",
                              "{name: e, type: Eltwise, bottom: [a, b], coeff: [0.5, -2]}",
                              "{name: c, type: Concat, bottom: [e, data, a], axis: 1}"],
    "eltwise max": ["{name: a, type: Power, scale: -1, shift: 0.5, power: 2, bottom: data}",
                    "{name: e, type: Eltwise, bottom: [a, data], operation: MAX}"],
    "slice, split": ["{name: s, type: Slice, top: [s1, s2], slice_point: [1]}", "{name: sp, type: Split, bottom: s2, "
                     "top: [x1, x2]}", "{name: t, type: Concat, bottom: [x2, s1, x1], axis: 1}"],
    "reshape partial": ["{name: r, type: Reshape, shape: [2, 2], axis: 1, num_axes: 1}"],
    "exp log": ["{name: e, type: Exp, base: 2, scale: 0.5}", "{name: g, type: Log, base: 10, shift: 1}"],
    "in-place chain": ["{name: c, type: Convolution, num_output: 3, kernel_size: 3, top: c}",
                       "{name: r, type: ReLU, bottom: c, top: c}", "{name: s, type: Scale, bottom: c, top: c}"],
    "shared parameters": ["{name: a, type: InnerProduct, num_output: 4, param: [{name: w, lr_mult: 2}, {name: b}]}",
                          "{name: a2, type: InnerProduct, bottom: data, num_output: 4, param: [{name: w}, {name: b}]}",
                          "{name: s, type: Eltwise, bottom: [a, a2], coeff: [1, -0.5]}"],
}


@pytest.mark.parametrize("case", sorted(VARIANTS))
def test_variant_round_trips_with_a_free_batch(tmp_path, case):
    cfg = input_net(tmp_path, VARIANTS[case])
    result, _, want = assert_round_trip(tmp_path, cfg, random_weights(cfg), batch=3)
    assert result.inputs == [("data", [3, 4, 9, 9])]
    assert any(np.std(v) > 1e-3 for v in want.values())


def test_pair_fields_are_written_as_caffe_takes_them(tmp_path):
    pool = VARIANTS["ave pool rect"][0].replace("name: p", "name: p, bottom: data")
    cfg = input_net(tmp_path, [VARIANTS["conv pair lists"][0], pool])
    text = export_caffe(cfg, random_weights(cfg)).prototxt
    layers = {fields(m)["name"][0]: fields(m) for m in parse(text).all("layer")}
    conv = layers["c"]["convolution_param"][0]
    assert conv["kernel_h"] == [3] and conv["kernel_w"] == [2] and "kernel_size" not in conv
    assert conv["pad_h"] == [1] and conv["pad_w"] == [0] and conv["stride_h"] == [2] and conv["stride_w"] == [1]
    assert conv["weight_filler"] == [{"type": ["gaussian"], "std": [0.1]}]
    pool = layers["p"]["pooling_param"][0]  # Caffe's pooling_param takes kernel_size once
    assert pool == {"pool": ["AVE"], "kernel_h": [4], "kernel_w": [3], "stride": [2], "pad_h": [2], "pad_w": [1]}


def test_a_shared_prelu_slope_is_caffe_scalar_blob(tmp_path):
    cfg = input_net(tmp_path, VARIANTS["prelu shared"])
    result = export_caffe(cfg, random_weights(cfg))
    (path := tmp_path / "p.caffemodel").write_bytes(result.caffemodel())
    (layer,) = [c for c in read_caffemodel(str(path)) if c.name == "r"]
    assert [b.data.shape for b in layer.blobs] == [()]  # Caffe's channel_shared blob has no axes


def test_shared_parameters_keep_their_names_and_every_layer_its_blobs(tmp_path):
    cfg = input_net(tmp_path, VARIANTS["shared parameters"])
    weights = random_weights(cfg)
    result = export_caffe(cfg, weights)
    layers = {fields(m)["name"][0]: fields(m) for m in parse(result.prototxt).all("layer")}
    assert layers["a"]["param"] == [{"name": ["w"], "lr_mult": [2]}, {"name": ["b"]}]
    assert layers["a2"]["param"] == [{"name": ["w"]}, {"name": ["b"]}]
    blobs = {name: arrays for name, _, arrays in result.layers}
    for name in ("a", "a2"):  # Caffe copies each layer's blobs by its name, shared or not
        np.testing.assert_array_equal(blobs[name][0], weights["w"])
        np.testing.assert_array_equal(blobs[name][1], weights["b"])
    _, weights2, _ = reimport(tmp_path, result)
    assert sorted(weights2) == ["b", "w"]


# ---------------------------------------------------------------------------------------------------- nets
def test_lenet_mnist_round_trips_through_the_caffemodel(tmp_path):
    cfg = cfgmod.load(str(REPO / "configs" / "lenet_mnist.yaml"))
    weights = random_weights(cfg)
    result, got, _ = assert_round_trip(tmp_path, cfg, weights, batch=4)
    assert result.inputs == [("data", [4, 1, 24, 24])] and result.outputs == [("ip2", [4, 10])]
    # the .caffemodel, read back: every layer by name, blobs in Caffe's order and shapes
    model = read_caffemodel(str(tmp_path / "deploy.caffemodel"))
    assert [(c.name, c.type) for c in model] == [
        ("data", "Input"), ("conv1", "Convolution"), ("pool1", "Pooling"), ("conv2", "Convolution"),
        ("pool2", "Pooling"), ("ip1", "InnerProduct"), ("relu1", "ReLU"), ("ip2", "InnerProduct")]
    shapes = {c.name: [b.data.shape for b in c.blobs] for c in model}
    assert shapes["conv1"] == [(20, 1, 5, 5), (20,)] and shapes["conv2"] == [(50, 20, 5, 5), (50,)]
    assert shapes["ip1"] == [(500, 450), (500,)] and shapes["ip2"] == [(10, 500), (10,)]
    assert shapes["pool1"] == shapes["relu1"] == shapes["data"] == []
    by_name = {c.name: c for c in model}
    for layer, suffixes in (("conv1", ("weights", "bias")), ("ip2", ("weights", "bias"))):
        for blob, sfx in zip(by_name[layer].blobs, suffixes):
            assert not blob.legacy
            np.testing.assert_array_equal(blob.data, weights[f"{layer}/{sfx}"])
    # the deploy net: no loss, no Accuracy, no label
    types = [fields(m)["type"][0] for m in parse(result.prototxt).all("layer")]
    assert "SoftmaxWithLoss" not in types and "Accuracy" not in types and "label" not in result.prototxt


def test_zoo_lenet_trained_weights_classify_alike_with_softmax(tmp_path):
    cfg = cfgmod.load(str(ZOO / "lenet" / "model.yaml"))
    weights, _ = load_tensors(str(ZOO / "lenet" / "weights.safetensors"))
    from tfconf.data import make_dataset

    ds = make_dataset(cfg.net.data.test, "test", root=cfg.root, seed=0)
    try:
        x, y = next(ds)
    finally:
        ds.close()
    x = x[:16]
    result = export_caffe(cfg, weights, softmax=True, batch=16)
    assert result.outputs == [("prob", [16, 10])]
    cfg2, weights2, _ = reimport(tmp_path, result)
    prob = forward(cfg2, weights2, {"data": x}, ["prob"])["prob"]
    scores = forward(cfg, weights, {"data": x}, ["ip2"])["ip2"]
    e = np.exp(scores - scores.max(1, keepdims=True))
    np.testing.assert_allclose(prob, e / e.sum(1, keepdims=True), atol=1e-6)
    assert (prob.argmax(1) == y[:16]).mean() > 0.8


CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").glob("*.yaml")) + [
    "model_zoo/cifar10_quick/model.yaml", "model_zoo/resnet20_cifar/model.yaml",
    "model_zoo/mnist_autoencoder/model.yaml"]


@pytest.mark.parametrize("path", CONFIGS)
def test_shipped_configs_round_trip(tmp_path, path):
    """CIFAR-10 quick, the two towers, the character LSTM (Embed ids, cont), ResNet-20 (BatchNorm,
    Scale, Eltwise): exported with fresh weights, they come back computing the same."""
    cfg = cfgmod.load(str(REPO / path))
    if cfg.net.data is not None and getattr(cfg.net.data.train or cfg.net.data.test, "is_text", False):
        ids = {"data"}
    else:
        ids = None
    weights = fresh_weights(cfg)
    if "resnet20" in path:
        weights = random_weights(cfg)  # statistics that are not zeros and ones
    result, _, want = assert_round_trip(tmp_path, cfg, weights, batch=2, ids=ids, atol=1e-4)
    assert all(np.std(v) > 0 for v in want.values())


def test_caffe_deploy_lenet_survives_import_and_export(tmp_path):
    """Caffe's own examples/mnist/lenet.prototxt: imported, exported, parsed: the same layers with
    the same fields and values."""
    original = parse_file(str(SHARED_CAFFE / "lenet.prototxt"))
    conv = convert(str(SHARED_CAFFE / "lenet.prototxt"))
    (tmp_path / "lenet.yaml").write_text(conv.yaml)
    cfg = cfgmod.load(str(tmp_path / "lenet.yaml"))
    result = export_caffe(cfg, random_weights(cfg))
    exported = parse(result.prototxt)
    assert fields(exported)["name"] == fields(original)["name"] == ["LeNet"]
    a, b = fields(original)["layer"], fields(exported)["layer"]
    assert [layer["name"] for layer in b] == [layer["name"] for layer in a]
    for want, got in zip(a, b):
        assert got == want, want["name"]
    assert result.inputs == [("data", [64, 1, 28, 28])] and result.outputs == [("prob", [64, 10])]


# ---------------------------------------------------------------------------------------------------- weights
def test_batch_norm_blobs_are_caffe_running_sums_that_read_back():
    from tfconf.frontend.layers import LAYERS
    from tfconf.interop.caffe_export import _blob_writer

    cls = LAYERS["BatchNorm"]
    write, read = _blob_writer(cls), cls.caffe.read_blobs
    mean, var = np.array([0.5, -1.0], np.float32), np.array([2.0, 0.25], np.float32)
    state = {"bn/moving_mean": mean, "bn/moving_variance": var, "bn/scale_factor": np.float32(7.5)}
    blobs = write("bn", state)
    assert [b.shape for b in blobs] == [(2,), (2,), (1,)]  # Caffe's shapes
    np.testing.assert_allclose(blobs[0], mean * 7.5)
    back = read("bn", blobs)
    for k in state:
        np.testing.assert_allclose(back[k], state[k], rtol=1e-6)
    # never updated (s = 0): Caffe would read zero statistics; written with s = 1, it reads tfconf's
    blobs = write("bn", {**state, "bn/scale_factor": np.float32(0)})
    np.testing.assert_array_equal(read("bn", blobs)["bn/moving_variance"], var)


def test_weights_that_do_not_fit(tmp_path):
    cfg = input_net(tmp_path, ["{name: c, type: Convolution, num_output: 3, kernel_size: 3}"])
    w = random_weights(cfg)
    with pytest.raises(ExportError, match="lacks parameters of the net: c/bias"):
        export_caffe(cfg, {"c/weights": w["c/weights"]})


# ---------------------------------------------------------------------------------------------------- refused
def test_refused_field_value_is_located_at_the_field(tmp_path):
    cfg = load(tmp_path, """\
        name: r
        layers:
          - {name: x, type: Input, shape: [3, 2, 4]}
          - {name: cont, type: Input, shape: [3, 2]}
          - {name: lstm, type: LSTM, bottom: [x, cont], num_output: 2,
             bidirectional: true}
        """)
    with pytest.raises(ConfigError) as e:
        export_caffe(cfg, random_weights(cfg))
    msg = str(e.value)
    assert "net.yaml:6:6: layers[2] (lstm).bidirectional: layer 'lstm' (type LSTM) cannot be exported to Caffe: " \
           "bidirectional: True has no Caffe equivalent" in msg, msg


def test_a_layer_reading_a_dropped_top_is_refused(tmp_path):
    cfg = input_net(tmp_path, ["{name: ip, type: InnerProduct, num_output: 2, bottom: data}",
                               "{name: loss, type: EuclideanLoss, bottom: [ip, ip]}",
                               "{name: twice, type: Power, scale: 2, bottom: loss}"])
    with pytest.raises(ConfigError, match="layer 'twice' .* it reads 'loss', the top of a layer a deploy net drops"):
        export_caffe(cfg, random_weights(cfg))


def test_unread_inputs_are_left_out(tmp_path):
    cfg = load(tmp_path, """\
        name: two
        layers:
          - {name: in, type: Input, top: [a, b], shape: [[-1, 3], [-1, 5]]}
          - {name: t, type: TanH, bottom: a}
        """)
    result = export_caffe(cfg, {}, batch=2)
    assert result.inputs == [("a", [2, 3])]
    (inp,) = [m for m in parse(result.prototxt).all("layer") if fields(m)["type"] == ["Input"]]
    assert fields(inp) == {"name": ["in"], "type": ["Input"], "top": ["a"],
                           "input_param": [{"shape": [{"dim": [2, 3]}]}]}


GRU_NET = """\
name: gru_net
layers:
  - {name: x, type: Input, shape: [3, 2, 4]}
  - {name: cont, type: Input, shape: [3, 2]}
  - {name: g, type: GRU, bottom: [x, cont], num_output: 2}
"""


def test_cli_writes_both_files(tmp_path):
    """The real entry point: CIFAR-10 quick with fresh weights and --batch-size."""
    cfg = cfgmod.load(str(ZOO / "cifar10_quick" / "model.yaml"))
    weights = fresh_weights(cfg)
    save_tensors(str(tmp_path / "w.safetensors"), weights)
    out = tmp_path / "out" / "cifar.prototxt"
    r = run(["export", ZOO / "cifar10_quick" / "model.yaml", "--weights", tmp_path / "w.safetensors",
             "--format", "caffe", "--batch-size", "2", "-o", out], timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}: inputs data [2, 3, 32, 32]; outputs ip2 [2, 10]" in r.stdout
    assert f"wrote {out.with_suffix('.caffemodel')}: 10 blobs of 5 layers" in r.stdout
    assert out.read_text().startswith("# The deploy net of cifar10_quick")
    conv = convert(str(out), None, str(out.with_suffix(".caffemodel")))
    assert sorted(conv.tensors) == sorted(weights)
    for k, v in weights.items():
        np.testing.assert_array_equal(conv.tensors[k], v)


def test_cli_refuses_a_tfconf_only_layer(tmp_path):
    (tmp_path / "net.yaml").write_text(GRU_NET)
    cfg = cfgmod.load(str(tmp_path / "net.yaml"))
    save_tensors(str(tmp_path / "w.safetensors"), random_weights(cfg))
    out = tmp_path / "gru.prototxt"
    r = run(["export", tmp_path / "net.yaml", "--weights", tmp_path / "w.safetensors", "--format", "caffe", "-o", out])
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert line.startswith(f"{tmp_path / 'net.yaml'}:5:5: layers[2] (g): layer 'g' (type GRU) cannot be exported "
                           "to Caffe: Caffe has no GRU layer. Exportable types: "), line
    assert not out.exists() and not out.with_suffix(".caffemodel").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_cli_user_errors(tmp_path):
    r = invoke(["export", "zoo:mlp", "--format", "tflite", "-o", tmp_path / "x"])
    assert r.exit_code == 2 and "--format tflite: export writes onnx or caffe" in r.output
    r = invoke(["export", "zoo:mlp", "--format", "caffe", "-o", tmp_path / "x.caffemodel"])
    assert r.exit_code == 2 and "name the prototxt to write" in r.output
    r = invoke(["export", "zoo:mlp", "--format", "caffe", "--batch-size", "0", "-o", tmp_path / "x.prototxt"])
    assert r.exit_code == 2 and "the batch size must be a positive integer" in r.output
    r = invoke(["export", "zoo:mlp", "--batch-size", "2", "-o", tmp_path / "x.onnx"])
    assert r.exit_code == 2 and "--batch-size applies to --format caffe" in r.output
    assert not list(tmp_path.iterdir())
