"""``.caffemodel`` weights: the wire-format reader against protobuf's own encoder, round trips through
``tfconf import-caffe --weights``, and test-phase outputs of the imported weights against a numpy
implementation of Caffe's layers (an independent check of the layouts: filter order, InnerProduct
orientation, flattening, BatchNorm's stored sums)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from tfconf.io.caffemodel import CaffemodelError, encode_net, read_caffemodel, write_caffemodel

from ..cli.util import REPO, invoke, load, run

CAFFE = Path(__file__).parent / "caffe"


# ------------------------------------------------------------------------------- protobuf as the oracle
def _caffe_classes():
    """NetParameter and friends, declared with protobuf's descriptors (the fields of caffe.proto
    that carry weights, plus a few others the reader must skip)."""
    pb = pytest.importorskip("google.protobuf")
    del pb
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe_subset", syntax="proto2")

    def message(name, *fields):
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name, packed in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".caffe_subset.{type_name}"
            if packed:
                f.options.packed = True

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BlobShape", ("dim", 1, F.TYPE_INT64, rep, None, True))
    message("BlobProto", ("shape", 7, F.TYPE_MESSAGE, opt, "BlobShape", False),
            ("data", 5, F.TYPE_FLOAT, rep, None, True), ("diff", 6, F.TYPE_FLOAT, rep, None, True),
            ("double_data", 8, F.TYPE_DOUBLE, rep, None, True),
            ("num", 1, F.TYPE_INT64, opt, None, False), ("channels", 2, F.TYPE_INT64, opt, None, False),
            ("height", 3, F.TYPE_INT64, opt, None, False), ("width", 4, F.TYPE_INT64, opt, None, False))
    message("ParamSpec", ("name", 1, F.TYPE_STRING, opt, None, False),
            ("lr_mult", 3, F.TYPE_FLOAT, opt, None, False))
    message("LayerParameter", ("name", 1, F.TYPE_STRING, opt, None, False),
            ("type", 2, F.TYPE_STRING, opt, None, False), ("bottom", 3, F.TYPE_STRING, rep, None, False),
            ("top", 4, F.TYPE_STRING, rep, None, False), ("param", 6, F.TYPE_MESSAGE, rep, "ParamSpec", False),
            ("blobs", 7, F.TYPE_MESSAGE, rep, "BlobProto", False), ("loss_weight", 5, F.TYPE_FLOAT, rep, None, False))
    message("V1LayerParameter", ("bottom", 2, F.TYPE_STRING, rep, None, False),
            ("name", 4, F.TYPE_STRING, opt, None, False), ("type", 5, F.TYPE_INT32, opt, None, False),
            ("blobs", 6, F.TYPE_MESSAGE, rep, "BlobProto", False), ("blobs_lr", 7, F.TYPE_FLOAT, rep, None, False))
    message("NetParameter", ("name", 1, F.TYPE_STRING, opt, None, False),
            ("input", 3, F.TYPE_STRING, rep, None, False), ("input_dim", 4, F.TYPE_INT64, rep, None, False),
            ("layers", 2, F.TYPE_MESSAGE, rep, "V1LayerParameter", False),
            ("layer", 100, F.TYPE_MESSAGE, rep, "LayerParameter", False))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe_subset.{name}"))
            for name in ("NetParameter", "BlobProto")}


def test_reader_decodes_what_protobuf_encodes(tmp_path):
    C = _caffe_classes()
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 2, 2, 2)).astype(np.float32)
    b = rng.normal(size=3).astype(np.float32)
    d = rng.normal(size=(4, 5))
    net = C["NetParameter"](name="n", input=["data"], input_dim=[1, 2, 5, 5])
    conv = net.layer.add(name="conv", type="Convolution", bottom=["data"], top=["conv"], loss_weight=[0.0])
    conv.param.add(name="shared_w", lr_mult=1.0)
    conv.blobs.add(shape={"dim": list(w.shape)}, data=w.ravel().tolist(), diff=[9.0] * w.size)
    conv.blobs.add(shape={"dim": [3]}, data=b.tolist())
    net.layer.add(name="relu", type="ReLU")
    net.layer.add(name="ip", type="InnerProduct").blobs.add(shape={"dim": [4, 5]}, double_data=d.ravel().tolist())
    legacy = net.layers.add(name="old_ip", type=14, bottom=["x"], blobs_lr=[1, 2])
    legacy.blobs.add(num=1, channels=1, height=4, width=5, data=d.ravel().tolist())
    path = tmp_path / "p.caffemodel"
    path.write_bytes(net.SerializeToString())

    layers = read_caffemodel(str(path))
    # protobuf writes fields by number: the V1 layers (2) come before the layer entries (100)
    assert [(x.name, x.type, x.v1) for x in layers] == [
        ("old_ip", "InnerProduct", True), ("conv", "Convolution", False), ("relu", "ReLU", False),
        ("ip", "InnerProduct", False)]
    old = layers.pop(0).blobs[0]
    conv_w, conv_b = layers[0].blobs
    np.testing.assert_array_equal(conv_w.data, w)
    np.testing.assert_array_equal(conv_b.data, b)
    assert not conv_w.legacy and layers[1].blobs == []
    np.testing.assert_array_equal(layers[2].blobs[0].data, d.astype(np.float32))  # doubles, as float32
    assert old.legacy and old.data.shape == (1, 1, 4, 5)
    np.testing.assert_array_equal(old.data[0, 0], d.astype(np.float32))


@pytest.mark.parametrize("legacy, double, packed", [(False, False, True), (True, False, True),
                                                    (False, True, True), (True, True, False)])
def test_protobuf_decodes_what_the_writer_encodes(legacy, double, packed):
    C = _caffe_classes()
    rng = np.random.default_rng(1)
    arrays = [rng.normal(size=(2, 3, 3, 3)), rng.normal(size=2)]
    net = C["NetParameter"].FromString(encode_net([("conv", "Convolution", arrays), ("relu", "ReLU", [])],
                                                  "n", legacy=legacy, double=double, packed=packed))
    assert net.name == "n"
    entries = list(net.layers if legacy else net.layer)
    assert [e.name for e in entries] == ["conv", "relu"]
    assert entries[0].type == (4 if legacy else "Convolution")
    for blob, a in zip(entries[0].blobs, arrays):
        values = np.array(blob.double_data if double else blob.data)
        np.testing.assert_array_equal(values, a.ravel().astype(np.float64 if double else np.float32))
        if legacy:
            assert [blob.num, blob.channels, blob.height, blob.width] == [1] * (4 - a.ndim) + list(a.shape)
        else:
            assert list(blob.shape.dim) == list(a.shape)


def test_the_data_loaders_blobproto_reader_agrees(tmp_path):
    """tfconf.data reads Caffe's mean .binaryproto (one BlobProto) with its own decoder."""
    from tfconf.data.transforms import parse_blob_proto
    from tfconf.io.caffemodel import _encode_blob

    mean = np.random.default_rng(2).normal(size=(3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(parse_blob_proto(_encode_blob(mean)), mean)


@pytest.mark.parametrize("cut", [1, 7, 100, -3])
def test_truncated_or_foreign_files_are_errors(tmp_path, cut):
    good = encode_net([("conv", "Convolution", [np.ones((2, 1, 3, 3)), np.ones(2)])])
    path = tmp_path / "t.caffemodel"
    path.write_bytes(good[:cut])
    with pytest.raises(CaffemodelError, match=r"t\.caffemodel: (byte \d+|holds no layers)"):
        read_caffemodel(str(path))


# ------------------------------------------------------------------------------- LeNet round trips
def lenet_blobs(seed=0, scale=0.1):
    """Random LeNet weights in Caffe's layouts (and tfconf's names)."""
    rng = np.random.default_rng(seed)
    shapes = {"conv1": ((20, 1, 5, 5), 20), "conv2": ((50, 20, 5, 5), 50), "ip1": ((500, 800), 500),
              "ip2": ((10, 500), 10)}
    return {name: [rng.normal(0, scale, w).astype(np.float32), rng.normal(0, scale, b).astype(np.float32)]
            for name, (w, b) in shapes.items()}


def lenet_caffemodel(path, blobs, **kw):
    types = {"conv1": "Convolution", "conv2": "Convolution", "ip1": "InnerProduct", "ip2": "InnerProduct"}
    layers = [("mnist", "Data", []), ("pool1", "Pooling", [])]  # blob-less layers, as Caffe writes them
    layers += [(name, types[name], arrays) for name, arrays in blobs.items()]
    layers += [("unused_head", "InnerProduct", [np.ones((2, 2), np.float32)])]  # not in the net: ignored
    write_caffemodel(str(path), layers, "LeNet", **kw)


def caffe_lenet_forward(blobs, x):
    """Caffe's deploy LeNet in numpy (float64): conv, max-pool, conv, max-pool, ip, relu, ip, softmax."""
    def conv(x, w, b):
        win = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=(2, 3))
        return np.einsum("nchwij,ocij->nohw", win, w) + b[None, :, None, None]

    def pool(x):
        n, c, h, w = x.shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    f = {k: [a.astype(np.float64) for a in v] for k, v in blobs.items()}
    h = pool(conv(x.astype(np.float64), *f["conv1"]))
    h = pool(conv(h, *f["conv2"]))
    h = np.maximum(h.reshape(len(h), -1) @ f["ip1"][0].T + f["ip1"][1], 0)
    z = h @ f["ip2"][0].T + f["ip2"][1]
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def tfconf_forward(config, weights, feeds):
    """The test-phase outputs of a config with weights from a safetensors file."""
    import tfconf as tc
    from tfconf.frontend import config as cfgmod

    cfg = cfgmod.load(str(config))
    g = tc.Graph()
    params = {}
    net = cfgmod.build_phase(cfg, "test", g, params, {}, inputs={})
    w = load(weights)
    with g.as_default():
        sess = tc.Session(graph=g)
    for k, v in params.items():
        v.load(w[k], sess)
    with g.as_default():
        sess.run(tc.variables_initializer(g.get_collection("recurrent_state")))
    return sess.run(dict(net.outputs), {net.tops[n]: a for n, a in feeds.items()})


@pytest.mark.parametrize("legacy", [False, True], ids=["layer", "v1-layers"])
def test_lenet_weights_round_trip_and_match_caffes_forward(tmp_path, legacy):
    blobs = lenet_blobs()
    model = tmp_path / "lenet.caffemodel"
    lenet_caffemodel(model, blobs, legacy=legacy)
    out = tmp_path / "lenet.yaml"
    r = invoke(["import-caffe", CAFFE / "lenet.prototxt", "--weights", model, "-o", out])
    assert r.exit_code == 0, r.output
    assert f"wrote {tmp_path / 'lenet.safetensors'} (8 parameters)" in r.output
    assert "ok: it validates and builds; the weights fit the net" in r.output
    assert "ignored layers that are not in the net (as Caffe ignores them): unused_head" in r.output
    w = load(tmp_path / "lenet.safetensors")
    assert sorted(w) == sorted(f"{n}/{s}" for n in blobs for s in ("weights", "bias"))
    for name, (weight, bias) in blobs.items():  # the same numbers under tfconf's names and layouts
        np.testing.assert_array_equal(w[f"{name}/weights"], weight)
        np.testing.assert_array_equal(w[f"{name}/bias"], bias)
    x = np.random.default_rng(3).random((64, 1, 28, 28)).astype(np.float32)
    prob = tfconf_forward(out, tmp_path / "lenet.safetensors", {"data": x})["prob"]
    expected = caffe_lenet_forward(blobs, x)
    np.testing.assert_allclose(prob, expected, rtol=1e-4, atol=1e-6)
    assert (prob.argmax(1) == expected.argmax(1)).all() and len(set(expected.argmax(1))) > 1


def test_batchnorm_scale_prelu_deconvolution_bias_and_transposed_innerproduct(tmp_path):
    net = tmp_path / "bn.prototxt"
    net.write_text(textwrap.dedent("""\
        name: "bn"
        input: "data"
        input_shape { dim: 2 dim: 3 dim: 5 dim: 5 }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
        layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" batch_norm_param { eps: 0.001 } }
        layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
        layer { name: "prelu" type: "PReLU" bottom: "conv" top: "conv" }
        layer { name: "up" type: "Deconvolution" bottom: "conv" top: "up"
                convolution_param { num_output: 2 kernel_size: 2 stride: 2 } }
        layer { name: "shift" type: "Bias" bottom: "up" top: "up" }
        layer { name: "fc" type: "InnerProduct" bottom: "up" top: "fc"
                inner_product_param { num_output: 3 transpose: true } }
        """))
    rng = np.random.default_rng(4)

    def r(*shape):
        return rng.normal(size=shape).astype(np.float32)

    sf = 4.0  # Caffe stores the running sums times the scale factor
    mean, var = r(4), np.abs(r(4)) + 0.5
    blobs = {"conv": [r(4, 3, 3, 3), r(4)], "bn": [mean * sf, var * sf, np.array([sf], np.float32)],
             "scale": [r(4), r(4)], "prelu": [np.abs(r(4)) * 0.3], "up": [r(4, 2, 2, 2), r(2)],
             "shift": [r(2)], "fc": [r(200, 3), r(3)]}
    types = {"conv": "Convolution", "bn": "BatchNorm", "scale": "Scale", "prelu": "PReLU", "up": "Deconvolution",
             "shift": "Bias", "fc": "InnerProduct"}
    model = tmp_path / "bn.caffemodel"
    write_caffemodel(str(model), [(k, types[k], v) for k, v in blobs.items()])
    out = tmp_path / "bn.yaml"
    res = invoke(["import-caffe", net, "--weights", model, "-o", out])
    assert res.exit_code == 0, res.output
    w = load(tmp_path / "bn.safetensors")
    np.testing.assert_allclose(w["bn/moving_mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(w["bn/moving_variance"], var, rtol=1e-6)
    assert w["bn/scale_factor"].shape == () and w["bn/scale_factor"] == sf
    assert w["fc/weights"].shape == (200, 3)  # transpose: true keeps Caffe's [K, N]

    x = r(2, 3, 5, 5)
    got = tfconf_forward(out, tmp_path / "bn.safetensors", {"data": x})["fc"]
    f = {k: [a.astype(np.float64) for a in v] for k, v in blobs.items()}
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))
    h = np.einsum("nchwij,ocij->nohw", win, f["conv"][0]) + f["conv"][1][:, None, None]
    c = lambda v: v[None, :, None, None]  # noqa: E731
    h = (h - c(f["bn"][0] / sf)) / np.sqrt(c(f["bn"][1] / sf) + 0.001)
    h = h * c(f["scale"][0]) + c(f["scale"][1])
    h = np.where(h > 0, h, h * c(f["prelu"][0]))
    up = np.zeros((2, 2, 10, 10))  # Deconvolution: each input pixel adds a weighted 2x2 patch
    for a in range(2):
        for b in range(2):
            up[:, :, a::2, b::2] += np.einsum("nchw,co->nohw", h, f["up"][0][:, :, a, b])
    up += c(f["up"][1]) + c(f["shift"][0])
    expected = up.reshape(2, -1) @ f["fc"][0] + f["fc"][1]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_recurrent_layers_use_caffes_blob_and_gate_order(tmp_path):
    net = tmp_path / "lstm.prototxt"
    net.write_text(textwrap.dedent("""\
        layer { name: "in" type: "Input" top: "x" top: "cont"
                input_param { shape { dim: 3 dim: 2 dim: 4 } shape { dim: 3 dim: 2 } } }
        layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h" recurrent_param { num_output: 5 } }
        layer { name: "rnn" type: "RNN" bottom: "h" bottom: "cont" top: "o" recurrent_param { num_output: 3 } }
        """))
    rng = np.random.default_rng(5)

    def r(*shape):
        return rng.normal(0, 0.5, shape).astype(np.float32)

    lstm = [r(20, 4), r(20), r(20, 5)]                 # Caffe's LSTM: W_xc, b_c, W_hc (gates i, f, o, g)
    rnn = [r(3, 5), r(3), r(3, 3), r(3, 3), r(3)]     # Caffe's RNN: W_xh, b_h, W_hh, W_ho, b_o
    model = tmp_path / "lstm.caffemodel"
    write_caffemodel(str(model), [("lstm", "LSTM", lstm), ("rnn", "RNN", rnn)])
    out = tmp_path / "lstm.yaml"
    res = invoke(["import-caffe", net, "--weights", model, "-o", out])
    assert res.exit_code == 0 and "the weights fit the net" in res.output, res.output
    assert "note: parameters" not in res.output  # every parameter came from the caffemodel

    x = r(3, 2, 4)
    cont = np.array([[0, 0], [1, 1], [1, 0]], np.float32)  # stream 1 starts again at t = 2
    got = tfconf_forward(out, tmp_path / "lstm.safetensors", {"x": x, "cont": cont})["o"]

    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    w = [[a.astype(np.float64) for a in blobs] for blobs in (lstm, rnn)]
    h, c, hr = np.zeros((2, 5)), np.zeros((2, 5)), np.zeros((2, 3))
    outs = []
    for t in range(3):
        k = cont[t][:, None]
        g = x[t] @ w[0][0].T + w[0][1] + (k * h) @ w[0][2].T
        i, f, o, gg = sig(g[:, :5]), sig(g[:, 5:10]), sig(g[:, 10:15]), np.tanh(g[:, 15:])
        c = f * (k * c) + i * gg
        h = o * np.tanh(c)
        hr = np.tanh(h @ w[1][0].T + w[1][1] + (k * hr) @ w[1][2].T)
        outs.append(np.tanh(hr @ w[1][3].T + w[1][4]))
    np.testing.assert_allclose(got, np.stack(outs), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------- errors
def test_weights_that_do_not_fit_are_errors(tmp_path):
    blobs = lenet_blobs()
    blobs["ip1"][0] = blobs["ip1"][0][:, :450]  # a net trained on 24x24 crops
    model = tmp_path / "m.caffemodel"
    lenet_caffemodel(model, blobs)
    r = run(["import-caffe", CAFFE / "lenet.prototxt", "--weights", model, "-o", tmp_path / "o.yaml"], cwd=REPO)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "weights 'ip1/weights': shape [500, 450] but the net's parameter is [500, 800]" in r.stderr


def test_more_blobs_than_the_layer_has_is_an_error(tmp_path):
    model = tmp_path / "m.caffemodel"
    write_caffemodel(str(model), [("conv1", "Convolution", [np.ones((20, 1, 5, 5)), np.ones(20), np.ones(3)])])
    r = invoke(["import-caffe", CAFFE / "lenet.prototxt", "--weights", model, "-o", tmp_path / "o.yaml"])
    assert r.exit_code == 2
    assert r.output.strip() == (f"{model}: layer[0] (conv1): has 3 blobs but the net's Convolution layer 'conv1' "
                                "has 2 (weights, bias)")


@pytest.mark.parametrize("content, message", [
    (b"", "holds no layers"),
    (b"\x0a\x05LeNet\xa2\x06\x05\x0a\x03ab", "byte 7: field 100 claims 5 bytes"),
    (None, "no such file"),
])
def test_unreadable_caffemodels_exit_2(tmp_path, content, message):
    model = tmp_path / "m.caffemodel"
    if content is not None:
        model.write_bytes(content)
    r = invoke(["import-caffe", CAFFE / "lenet.prototxt", "--weights", model, "-o", tmp_path / "o.yaml"])
    assert r.exit_code == 2 and message in r.output, r.output
    assert r.output.startswith(f"error: {model}: ")


def test_weights_need_an_output_file(tmp_path):
    model = tmp_path / "m.caffemodel"
    lenet_caffemodel(model, lenet_blobs())
    r = invoke(["import-caffe", CAFFE / "lenet.prototxt", "--weights", model])
    assert r.exit_code == 2 and "--weights needs -o OUT.yaml" in r.output
