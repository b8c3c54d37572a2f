"""ONNX export: every exportable layer and the zoo's LeNet, MLP and CIFAR-10 quick run in onnxruntime
and agree with tfconf's own test-phase forward; the checker passes; the CLI writes the file and
refuses a layer it cannot export (exit code 2, the layer named)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import tfconf as tc
from tests.cli.util import REPO, invoke, one_error_line, run

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from tfconf.frontend import config as cfgmod  # noqa: E402
from tfconf.frontend.errors import ConfigError  # noqa: E402
from tfconf.interop.onnx_export import ExportError, export_onnx  # noqa: E402
from tfconf.train.snapshot import load_tensors, save_tensors  # noqa: E402

ZOO = REPO / "model_zoo"


# ---------------------------------------------------------------------------------------------------- helpers
def _net(cfg):
    """tfconf's test phase of ``cfg`` (the reference the ONNX outputs are compared with): (graph,
    net, params, placeholders by name)."""
    from tfconf.interop.onnx_export import _deploy_net

    net, params, inputs, _ = _deploy_net(cfg)
    return next(iter(net.tops.values())).graph, net, params, inputs


def tfconf_forward(cfg, weights, feeds, outputs):
    """The named tops of tfconf's test-phase forward for ``feeds`` (top name → array)."""
    g, net, params, inputs = _net(cfg)
    with g.as_default():
        sess = tc.Session(graph=g)
    for k, v in params.items():
        v.load(weights[k], sess)
    out = sess.run({n: net.tops[n] for n in outputs}, {inputs[n]: a for n, a in feeds.items()})
    sess.close()
    return out


def random_weights(cfg, seed=0):
    """Every parameter drawn at random (biases, BatchNorm statistics and slopes included, so that no
    mapping is tested on zeros and ones only)."""
    _, _, params, _ = _net(cfg)
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in params.items():
        a = rng.standard_normal(v.shape.as_list()).astype(np.float32) * 0.5
        if k.endswith("moving_variance"):
            a = np.abs(a) + 0.5
        out[k] = a
    return out


def fresh_weights(cfg):
    """The parameters as the config's fillers initialize them."""
    g, _, params, _ = _net(cfg)
    with g.as_default():
        init = tc.global_variables_initializer()
        sess = tc.Session(graph=g)
    sess.run(init)
    values = sess.run({k: v.value() for k, v in params.items()})
    sess.close()
    return {k: np.asarray(a) for k, a in values.items()}


def ort_run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def max_difference(cfg, weights, feeds, model=None, **kw):
    """Export, run in onnxruntime, compare every output with tfconf's forward: the largest
    difference, absolute for outputs of magnitude 1 or more, relative to the largest |output| for
    smaller ones (so that small outputs are not compared to a tolerance larger than themselves)."""
    model = model if model is not None else export_onnx(cfg, weights, **kw)
    onnx.checker.check_model(model, full_check=True)
    got = ort_run(model, feeds)
    want = tfconf_forward(cfg, weights, feeds, list(got))
    worst = 0.0
    for name, ref in want.items():
        y = got[name]
        assert y.shape == np.shape(ref), (name, y.shape, np.shape(ref))
        assert np.all(np.isfinite(ref)), name
        scale = min(1.0, max(float(np.max(np.abs(ref), initial=0.0)), 1e-12))
        worst = max(worst, float(np.max(np.abs(y - ref), initial=0.0)) / scale)
    return worst, got, want


def load(tmp_path, text, name="net.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return cfgmod.load(str(path))


def input_net(tmp_path, layers, shape=(-1, 4, 9, 9), dtype="float32"):
    """A deploy-style config: an Input layer of ``shape`` then ``layers`` (YAML flow mappings)."""
    body = "\n".join(f"  - {layer}" for layer in layers)
    return load(tmp_path, f"name: t\nlayers:\n  - {{name: data, type: Input, shape: {list(shape)}, dtype: {dtype}}}\n{body}\n")


def batch(shape, seed=1, n=3):
    return np.random.default_rng(seed).standard_normal((n, *shape[1:])).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- layers
LAYER_CASES = {
    "conv group pad stride dilation": ["{name: c, type: Convolution, num_output: 6, kernel_size: 3, group: 2, "
                                       "pad: 2, stride: 2, dilation: 2}"],
    "conv rectangular no bias": ["{name: c, type: Convolution, num_output: 3, kernel_h: 3, kernel_w: 2, stride_h: 2, "
                                 "stride_w: 1, pad_h: 1, pad_w: 0, bias_term: false}"],
    "deconv": ["{name: d, type: Deconvolution, num_output: 4, kernel_size: 3, stride: 2, pad: 1, group: 2}"],
    "max pool 3/2": ["{name: p, type: Pooling, pool: max, kernel_size: 3, stride: 2}"],
    "max pool 3/2 pad 1": ["{name: p, type: Pooling, pool: max, kernel_size: 3, stride: 2, pad: 1}"],
    "max pool 2/2 pad 1": ["{name: p, type: Pooling, pool: max, kernel_size: 2, stride: 2, pad: 1}"],
    "max pool 2/2 overhang": ["{name: p, type: Pooling, pool: max, kernel_size: 2, stride: 2}"],
    "max pool 3/3 pad 1": ["{name: p, type: Pooling, pool: max, kernel_size: 3, stride: 3, pad: 1}"],
    "max pool floor": ["{name: p, type: Pooling, pool: max, kernel_size: 2, stride: 2, round_mode: floor}"],
    "ave pool 3/2": ["{name: p, type: Pooling, pool: ave, kernel_size: 3, stride: 2}"],
    "ave pool 2/2 overhang": ["{name: p, type: Pooling, pool: ave, kernel_size: 2, stride: 2}"],
    "ave pool floor": ["{name: p, type: Pooling, pool: ave, kernel_size: 2, stride: 2, round_mode: floor}"],
    "ave pool 3/2 pad 1": ["{name: p, type: Pooling, pool: ave, kernel_size: 3, stride: 2, pad: 1}"],
    "ave pool 2/2 pad 1": ["{name: p, type: Pooling, pool: ave, kernel_size: 2, stride: 2, pad: 1}"],
    "ave pool 3/3 pad 1": ["{name: p, type: Pooling, pool: ave, kernel_size: 3, stride: 3, pad: 1}"],
    "ave pool 4/2 pad 2 rect": ["{name: p, type: Pooling, pool: ave, kernel_h: 4, kernel_w: 3, stride: 2, pad_h: 2, pad_w: 1}"],
    "global max pool": ["{name: p, type: Pooling, pool: max, global_pooling: true}"],
    "global ave pool": ["{name: p, type: Pooling, pool: ave, global_pooling: true}"],
    "ip flatten": ["{name: ip, type: InnerProduct, num_output: 5}"],
    "ip axis 2 transpose": ["{name: ip, type: InnerProduct, num_output: 5, axis: 2, transpose: true}"],
    "ip no bias after ip": ["{name: ip1, type: InnerProduct, num_output: 7, bias_term: false}",
                            "{name: ip2, type: InnerProduct, num_output: 3}"],
    "relu": ["{name: r, type: ReLU}"],
    "leaky relu": ["{name: r, type: ReLU, negative_slope: 0.1}"],
    "prelu": ["{name: r, type: PReLU}"],
    "prelu shared": ["{name: r, type: PReLU, channel_shared: true}"],
    "elu": ["{name: r, type: ELU}"],
    "elu alpha": ["{name: r, type: ELU, alpha: 0.5}"],
    "sigmoid": ["{name: r, type: Sigmoid}"],
    "tanh": ["{name: r, type: TanH}"],
    "absval": ["{name: r, type: AbsVal}"],
    "power square": ["{name: r, type: Power, power: 2, scale: 0.5, shift: 1}"],
    "power cube": ["{name: r, type: Power, power: 3, scale: -1}"],
    "power shift": ["{name: r, type: Power, shift: 2}"],
    "power constant": ["{name: r, type: Power, power: 0}", "{name: e, type: Eltwise, bottom: [r, data], coeff: [3, 1]}"],
    "power scale 0": ["{name: r, type: Power, scale: 0, shift: 2, power: 3}", "{name: e, type: Eltwise, bottom: [r, data]}"],
    "exp base 2": ["{name: r, type: Exp, base: 2, scale: 0.5, shift: 0.1}"],
    "exp": ["{name: r, type: Exp}"],
    "log base 10": ["{name: a, type: AbsVal}", "{name: r, type: Log, base: 10, shift: 1, scale: 2}"],
    "bnll": ["{name: r, type: BNLL}"],
    "threshold": ["{name: r, type: Threshold, threshold: 0.2}"],
    "clip": ["{name: r, type: Clip, min: -0.5, max: 0.3}"],
    "swish": ["{name: r, type: Swish}"],
    "swish beta": ["{name: r, type: Swish, beta: 1.5}"],
    "dropout": ["{name: d, type: Dropout, dropout_ratio: 0.4}"],
    "lrn across": ["{name: n, type: LRN, local_size: 3, alpha: 0.5, beta: 0.75, k: 2}"],
    "lrn within": ["{name: n, type: LRN, local_size: 3, alpha: 0.5, beta: 0.6, norm_region: WITHIN_CHANNEL}"],
    "softmax": ["{name: s, type: Softmax}"],
    "softmax axis 3": ["{name: s, type: Softmax, axis: -1}"],
    "batchnorm scale": ["{name: bn, type: BatchNorm}", "{name: sc, type: Scale, bias_term: true}"],
    "batchnorm batch stats": ["{name: bn, type: BatchNorm, use_global_stats: false}"],
    "scale 2 axes": ["{name: sc, type: Scale, axis: 1, num_axes: 2}"],
    "bias": ["{name: b, type: Bias}"],
    "scale by bottom": ["{name: s, type: Reduction, operation: mean, axis: 2, bottom: data}",
                        "{name: sc, type: Scale, bottom: [data, s], axis: 0}"],
    "bias by bottom": ["{name: s, type: Reduction, operation: sum, axis: 2, bottom: data}",
                       "{name: b, type: Bias, bottom: [data, s], axis: 0}"],
    "mvn": ["{name: m, type: MVN}"],
    "mvn across no variance": ["{name: m, type: MVN, across_channels: true, normalize_variance: false}"],
    "eltwise sum coeff": ["{name: a, type: Convolution, num_output: 3, kernel_size: 1, bottom: data}",
                          "{name: b, type: Convolution, num_output: 3, kernel_size: 1, bottom: data}",
                          "{name: e, type: Eltwise, bottom: [a, b], coeff: [0.5, -2]}"],
    "eltwise prod of three": ["{name: a, type: TanH, bottom: data}", "{name: b, type: Sigmoid, bottom: data}",
                              "{name: e, type: Eltwise, bottom: [a, b, data], operation: PROD}"],
    "eltwise max": ["{name: a, type: Power, scale: -1, bottom: data}",
                    "{name: e, type: Eltwise, bottom: [a, data], operation: max}"],
    "concat": ["{name: a, type: Convolution, num_output: 2, kernel_size: 1, bottom: data}",
               "{name: c, type: Concat, bottom: [a, data]}"],
    "concat axis 3": ["{name: c, type: Concat, bottom: [data, data], axis: 3}"],
    "slice": ["{name: s, type: Slice, top: [s1, s2, s3], slice_point: [1, 3]}"],
    "slice equal": ["{name: s, type: Slice, top: [s1, s2]}", "{name: t, type: Concat, bottom: [s2, s1], axis: 3}"],
    "split": ["{name: s, type: Split, top: [s1, s2]}", "{name: a, type: TanH, bottom: s1}",
              "{name: b, type: Sigmoid, bottom: s2}"],
    "flatten": ["{name: f, type: Flatten}"],
    "flatten 2..3": ["{name: f, type: Flatten, axis: 2, end_axis: 3}"],
    "reshape 0 -1": ["{name: r, type: Reshape, shape: [0, -1, 9]}"],
    "reshape partial": ["{name: r, type: Reshape, shape: [2, 2], axis: 1, num_axes: 1}"],
    "crop": ["{name: p, type: Pooling, pool: max, kernel_size: 2, stride: 2}",
             "{name: c, type: Crop, bottom: [data, p], axis: 2, offset: [1, 3]}"],
    "tile": ["{name: t, type: Tile, axis: 1, tiles: 2}"],
    "reduction sum": ["{name: r, type: Reduction, axis: 1}"],
    "reduction mean coeff": ["{name: r, type: Reduction, operation: mean, axis: 2, coeff: 0.5}"],
    "reduction asum": ["{name: r, type: Reduction, operation: asum, axis: 1}"],
    "reduction sumsq": ["{name: r, type: Reduction, operation: sumsq, axis: -1}"],
    "in-place chain": ["{name: c, type: Convolution, num_output: 3, kernel_size: 3, top: c}",
                       "{name: r, type: ReLU, bottom: c, top: c}", "{name: s, type: Scale, bottom: c, top: c}"],
}


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_matches_tfconf(tmp_path, case):
    cfg = input_net(tmp_path, LAYER_CASES[case])
    weights = random_weights(cfg)
    worst, got, want = max_difference(cfg, weights, {"data": batch([None, 4, 9, 9])})
    assert worst <= 1e-4, f"{case}: max difference {worst}"
    assert any(np.std(v) > 1e-3 for v in want.values()), f"{case}: outputs are constant, the test proves nothing"


def test_embed(tmp_path):
    cfg = input_net(tmp_path, ["{name: e, type: Embed, input_dim: 10, num_output: 3}"], shape=(-1, 5), dtype="int64")
    ids = np.random.default_rng(0).integers(0, 10, size=(4, 5))
    worst, got, _ = max_difference(cfg, random_weights(cfg), {"data": ids})
    assert worst <= 1e-4 and got["e"].shape == (4, 5, 3)


def test_batch_size_is_free_and_input_output_named_after_tops(tmp_path):
    cfg = input_net(tmp_path, ["{name: c, type: Convolution, num_output: 3, kernel_size: 3}",
                               "{name: loss, type: EuclideanLoss, bottom: [c, c]}"])
    model = export_onnx(cfg, random_weights(cfg))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "data" and out.name == "c"
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["N", 4, 9, 9]
    for n in (1, 5):
        assert ort_run(model, {"data": batch([None, 4, 9, 9], n=n)})["c"].shape == (n, 3, 7, 7)


def test_shared_parameters_become_one_initializer(tmp_path):
    cfg = input_net(tmp_path, ["{name: a, type: InnerProduct, num_output: 4, param: [{name: w}, {name: b}]}",
                               "{name: b2, type: InnerProduct, bottom: data, num_output: 4, param: [{name: w}, {name: b}]}",
                               "{name: s, type: Eltwise, bottom: [a, b2], coeff: [1, -0.5]}"])
    weights = random_weights(cfg)
    model = export_onnx(cfg, weights)
    names = [i.name for i in model.graph.initializer]
    assert "w" in names and "b" in names and not any(n.startswith(("a/", "b2/")) for n in names)
    worst, _, _ = max_difference(cfg, weights, {"data": batch([None, 4, 9, 9])}, model=model)
    assert worst <= 1e-4


def test_unsupported_layer_is_a_located_error_naming_it(tmp_path):
    cfg = input_net(tmp_path, ["{name: c, type: Convolution, num_output: 3, kernel_size: 3}",
                               "{name: top3, type: ArgMax, top_k: 3}"])
    with pytest.raises(ConfigError) as e:
        export_onnx(cfg, random_weights(cfg))
    msg = str(e.value)
    assert "net.yaml:5:5" in msg and "'top3' (type ArgMax) cannot be exported to ONNX" in msg
    assert "Exportable types: " in msg and "Convolution" in msg


def test_weights_that_do_not_fit(tmp_path):
    cfg = input_net(tmp_path, ["{name: c, type: Convolution, num_output: 3, kernel_size: 3}"])
    w = random_weights(cfg)
    with pytest.raises(ExportError, match="lacks parameters of the net: c/bias"):
        export_onnx(cfg, {"c/weights": w["c/weights"]})
    with pytest.raises(ExportError, match=r"'c/weights' of layer 'c' has shape \[3, 4, 2, 2\] "
                                          r"but the net needs \[3, 4, 3, 3\]"):
        export_onnx(cfg, {**w, "c/weights": np.zeros([3, 4, 2, 2], np.float32)})


# ---------------------------------------------------------------------------------------------------- zoo models
def _test_batch(cfg, n=None):
    from tfconf.data import make_dataset

    ds = make_dataset(cfg.net.data.test, "test", root=cfg.root, seed=0)
    try:
        x, y = next(ds)
    finally:
        ds.close()
    return x[:n] if n else x, y[:n] if n else y


@pytest.mark.parametrize("name", ["lenet", "mlp"])
def test_zoo_model_with_shipped_weights(name):
    cfg = cfgmod.load(str(ZOO / name / "model.yaml"))
    weights, _ = load_tensors(str(ZOO / name / "weights.safetensors"))
    x, y = _test_batch(cfg)
    worst, got, want = max_difference(cfg, weights, {"data": x})
    assert list(got) == ["ip2"]
    assert worst <= 1e-4, worst
    # the shipped weights are trained: the exported net classifies the digits as tfconf does
    assert np.array_equal(got["ip2"].argmax(1), want["ip2"].argmax(1))
    assert (got["ip2"].argmax(1) == y).mean() > 0.8


def test_cifar10_quick_with_fresh_weights_through_the_cli(tmp_path):
    """The real entry point, a weights file written from the fillers, the ceil-mode MAX and AVE pools."""
    cfg = cfgmod.load(str(ZOO / "cifar10_quick" / "model.yaml"))
    weights = fresh_weights(cfg)
    wpath = tmp_path / "fresh.safetensors"
    save_tensors(str(wpath), weights)
    out = tmp_path / "cifar.onnx"
    r = run(["export", ZOO / "cifar10_quick" / "model.yaml", "--weights", wpath, "--format", "onnx", "-o", out],
            timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}: inputs data [N, 3, 32, 32]; outputs ip2 [N, 10]" in r.stdout
    model = onnx.load(str(out))
    x, _ = _test_batch(cfg, n=20)
    worst, got, want = max_difference(cfg, weights, {"data": x}, model=model)
    assert worst <= 1e-4, worst
    assert np.std(want["ip2"]) > 1e-3
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MaxPool") == 1 and ops.count("AveragePool") == 2 and ops.count("Conv") == 3


CONFIGS = sorted(str(p.relative_to(REPO)) for p in [*ZOO.glob("*/model.yaml"), *(REPO / "configs").glob("*.yaml")])


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if "caffenet" in p else p for p in CONFIGS])
def test_every_zoo_entry_and_config_exports(path):
    """Every layer the shipped nets use has a mapping (the recurrent ones excepted: a located error)."""
    cfg = cfgmod.load(str(REPO / path))
    weights = fresh_weights(cfg)
    if any(layer.type in ("LSTM", "RNN", "GRU") for layer in cfg.net.layers):
        with pytest.raises(ConfigError, match=r"\(type (LSTM|RNN|GRU)\) cannot be exported to ONNX"):
            export_onnx(cfg, weights)
        return
    _, _, _, inputs = _net(cfg)
    x = batch(inputs["data"].shape.as_list(), n=2)
    worst, got, want = max_difference(cfg, weights, {"data": x})
    assert worst <= 1e-4, worst
    assert all(np.std(v) > 0 for v in want.values())


def test_softmax_output(tmp_path):
    r = invoke(["export", "zoo:mlp", "-o", tmp_path / "mlp.onnx", "--softmax"])
    assert r.exit_code == 0, r.output
    model = onnx.load(str(tmp_path / "mlp.onnx"))
    assert [o.name for o in model.graph.output] == ["prob"]
    cfg = cfgmod.load(str(ZOO / "mlp" / "model.yaml"))
    weights, _ = load_tensors(str(ZOO / "mlp" / "weights.safetensors"))
    x, _ = _test_batch(cfg, n=16)
    prob = ort_run(model, {"data": x})["prob"]
    scores = tfconf_forward(cfg, weights, {"data": x}, ["ip2"])["ip2"]
    e = np.exp(scores - scores.max(1, keepdims=True))
    np.testing.assert_allclose(prob, e / e.sum(1, keepdims=True), atol=1e-6)


def test_cli_unsupported_layer_exit_2(tmp_path):
    (tmp_path / "net.yaml").write_text(textwrap.dedent("""\
        name: argmax_net
        layers:
          - {name: data, type: Input, shape: [-1, 6]}
          - {name: ip, type: InnerProduct, num_output: 4}
          - {name: best, type: ArgMax}
        """))
    save_tensors(str(tmp_path / "w.safetensors"), {"ip/weights": np.ones([4, 6], np.float32),
                                                   "ip/bias": np.zeros([4], np.float32)})
    r = run(["export", tmp_path / "net.yaml", "--weights", tmp_path / "w.safetensors", "-o", tmp_path / "x.onnx"])
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert line.startswith(f"{tmp_path / 'net.yaml'}:5:5: layers[2] (best): layer 'best' (type ArgMax) cannot be exported")
    assert not (tmp_path / "x.onnx").exists()


def test_cli_user_errors(tmp_path):
    r = invoke(["export", "zoo:mlp", "--format", "tflite", "-o", tmp_path / "x"])
    assert r.exit_code == 2 and "--format tflite: export writes onnx or caffe" in r.output
    r = invoke(["export", str(ZOO / "lenet" / "model.yaml"), "--weights", str(ZOO / "mlp" / "weights.safetensors"),
                "-o", tmp_path / "x.onnx"])
    assert r.exit_code == 2 and "lacks parameters of the net: conv1/weights" in r.output
    r = invoke(["export", str(ZOO / "lenet" / "model.yaml"), "-o", tmp_path / "x.onnx"])
    assert r.exit_code == 2 and "export needs --weights" in r.output
