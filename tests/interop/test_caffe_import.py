"""``tfconf import-caffe``: Caffe's example nets and solvers convert, validate and build (through the
real CLI); every layer type tfconf has is mapped; the mapping of layers, solvers and data layers;
unsupported layers and fields are errors located at file:line with exit code 2."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from tfconf.frontend.errors import ConfigError
from tfconf.interop.caffe_import import convert
from tfconf.interop.prototxt import parse_file

from ..cli.util import LOCATED, REPO, invoke, run
from ..frontend.layers.cases import CASES

CAFFE = Path(__file__).parent / "caffe"
NETS = {  # net → its solver (None: a deploy net or a test net)
    "lenet_train_test": "lenet_solver",
    "cifar10_quick_train_test": "cifar10_quick_solver",
    "lenet": None,
    "lenet_v1_train_test": "lenet_solver",
    "layer_zoo_deploy": None,
    "layer_zoo_losses": None,
}
SHARED = ["lenet_train_test", "cifar10_quick_train_test", "lenet"]  # Caffe's own examples (shared/caffe)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def load(path):
    from tfconf.frontend.config import load as load_config

    return load_config(str(path))


def import_args(net, out):
    args = ["import-caffe", CAFFE / f"{net}.prototxt", "-o", out]
    if NETS[net]:
        args += ["--solver", CAFFE / f"{NETS[net]}.prototxt"]
    return args


# ------------------------------------------------------------------------------------ coverage
def _prototxt_value(entry, value):
    """``value`` of a spec field as the Caffe field that carries it (``entry``) writes it."""
    from tfconf.frontend.layers.caffe_map import FILLER, SHAPE, Choice

    if isinstance(entry.kind, Choice):
        return next(k for k, v in entry.kind.mapping.items() if v == value)
    if entry.kind == SHAPE:
        return "{ " + " ".join(f"dim: {d if d is not None else -1}" for d in value) + " }"
    if entry.kind == FILLER:
        return f'{{ type: "{value}" }}'
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else str(value)


def _as_prototxt(type_name, extra, shapes):
    """A net of the layer registry's minimal ``type_name`` layer, written in Caffe's prototxt
    through the layer's own ``caffe`` declaration (each spec field under the message that carries it)."""
    from tfconf.frontend.layers import LAYERS
    from tfconf.frontend.layers.caffe_map import Carry

    lines = ['name: "one"']
    for name, shape in shapes.items():
        dims = (2,) if shape == "labels" else shape
        lines.append(f'input: "{name}" input_shape {{ {" ".join(f"dim: {d}" for d in dims)} }}')
    body = ['name: "l"', f'type: "{type_name}"']
    body += [f'bottom: "{b}"' for b in extra.get("bottom", list(shapes)[:1])]
    body += [f'top: "{t}"' for t in extra.get("top", ["l"])]
    messages: dict = {}
    for key, value in extra.items():
        if key in ("bottom", "top"):
            continue
        carriers = [(m, f, e) for m, fields in LAYERS[type_name].caffe.params.items()
                    for f, e in fields.items() if isinstance(e, Carry) and e.key == key]
        assert carriers, f"{type_name}: no Caffe field carries {key!r}"
        message, field, entry = carriers[0]
        values = value if entry.card == "list" or (entry.card == "pair" and isinstance(value, list)) else [value]
        messages.setdefault(message, []).extend(f"{field}: {_prototxt_value(entry, v)}" for v in values)
    body += [f"{m} {{ {' '.join(fields)} }}" for m, fields in messages.items()]
    lines.append("layer { " + " ".join(body) + " }")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("type_name", sorted(CASES))
def test_every_layer_type_imports_from_the_prototxt_its_declaration_writes(type_name, tmp_path):
    # coverage follows from the layer registry: each layer's minimal spec, written as Caffe would
    # write it, imports back to the same spec (Caffe's constant weight_filler default aside)
    from tfconf.frontend.layers import LAYERS

    extra, shapes = CASES[type_name]
    path = tmp_path / "one.prototxt"
    path.write_text(_as_prototxt(type_name, extra, shapes))
    (spec,) = [s for s in convert(str(path)).layers if s["name"] == "l"]
    cls = LAYERS[type_name]
    drop = {"weight_filler", "top"}
    written = {"name": "l", "type": type_name, "bottom": list(shapes)[:1] or None, **extra}
    want = cls.model_validate(written).model_dump(exclude=drop)
    got = cls.model_validate(spec).model_dump(exclude=drop)
    assert got == want


def test_shared_files_are_copies_of_shared_caffe():
    shared = REPO.parent / "shared" / "caffe"
    if not shared.is_dir():
        pytest.skip("no ../shared/caffe next to this checkout")
    for p in shared.glob("*.prototxt"):
        assert (CAFFE / p.name).read_text() == p.read_text(), p.name


# ------------------------------------------------------------------------------------ every file converts
@pytest.mark.parametrize("net", list(NETS))
def test_converts_validates_and_builds(net, tmp_path):
    out = tmp_path / f"{net}.yaml"
    r = invoke(import_args(net, out))
    assert r.exit_code == 0, r.output
    assert f"{out}: ok: it validates and builds" in r.output
    r = invoke(["validate", out])
    assert r.exit_code == 0, r.output
    from tfconf.frontend.config import check_net

    cfg = load(out)
    nets, params = check_net(cfg)  # both phases build
    assert nets["train"].layers and nets["test"].layers
    if NETS[net]:
        assert cfg.net.solver is not None


def test_real_entry_point(tmp_path):
    out = tmp_path / "lenet.yaml"
    r = run(import_args("lenet_train_test", out), cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"wrote {out}"
    assert "Traceback" not in r.stderr
    r = run(["validate", out], cwd=REPO)
    assert r.returncode == 0 and "ok: LeNet, 9 layers, 431,080 parameters" in r.stdout, r.stdout + r.stderr


def test_prints_the_config_without_o():
    r = invoke(["import-caffe", CAFFE / "lenet.prototxt"])
    assert r.exit_code == 0, r.output
    data = yaml.safe_load(r.output)
    assert data["name"] == "LeNet" and data["layers"][0] == {"name": "data", "type": "Input",
                                                             "shape": [[64, 1, 28, 28]]}


# ------------------------------------------------------------------------------------ what the mapping says
def test_lenet_is_configs_lenet_mnist(tmp_path):
    """Caffe's LeNet converts to the net of configs/lenet_mnist.yaml (written by hand from the same file):
    layer for layer the same validated specs, apart from the explicit bottoms and tops."""
    out = tmp_path / "lenet.yaml"
    assert invoke(import_args("lenet_train_test", out)).exit_code == 0
    converted, reference = load(out).net, load(REPO / "configs" / "lenet_mnist.yaml").net
    assert [layer.name for layer in converted.layers] == [layer.name for layer in reference.layers]
    for a, b in zip(converted.layers, reference.layers):
        assert a.model_dump(exclude={"bottom", "top"}) == b.model_dump(exclude={"bottom", "top"}), a.name
    s = converted.solver
    assert (s.type, s.base_lr, s.momentum, s.weight_decay, s.max_iter) == ("SGD", 0.01, 0.9, 0.0005, 10000)
    p = s.policy()
    assert (p.type, p.gamma, p.power) == ("inv", 0.0001, 0.75)
    assert (s.test_iter, s.test_interval, s.display, s.snapshot, s.snapshot_prefix) == (100, 500, 100, 5000, "lenet")
    d = converted.data
    assert (d.train.source, d.train.batch_size, d.train.scale) == ("mnist", 64, 0.00390625)
    assert (d.test.source, d.test.batch_size, d.test.scale) == ("mnist", 100, 0.00390625)
    text = out.read_text()
    # nothing dropped silently: the solver's net, solver_mode and snapshot prefix are named in comments
    for said in ("# net: 'examples/mnist/lenet_train_test.prototxt' (ignored", "# solver_mode: GPU (ignored",
                 "snapshot_prefix: examples/mnist/lenet in Caffe", "examples/mnist/mnist_train_lmdb",
                 "examples/mnist/mnist_test_lmdb"):
        assert said in text, said


def test_v1_syntax_converts_to_the_same_net():
    new = convert(str(CAFFE / "lenet_train_test.prototxt"))
    old = convert(str(CAFFE / "lenet_v1_train_test.prototxt"))
    assert old.layers == new.layers
    assert yaml.safe_load(old.yaml)["data"] == yaml.safe_load(new.yaml)["data"]


def test_cifar_data_is_a_stand_in_and_says_so():
    r = convert(str(CAFFE / "cifar10_quick_train_test.prototxt"))
    data = yaml.safe_load(r.yaml)["data"]
    assert data == {"train": {"source": "patterns", "batch_size": 100},
                    "test": {"source": "patterns", "batch_size": 100}}
    assert "# mean_file: examples/cifar10/mean.binaryproto (left out" in r.yaml
    assert "accuracy says nothing about CIFAR-10" in r.yaml


def test_fields_and_defaults(tmp_path):
    net = write(tmp_path, "n.prototxt", """\
        name: "n"
        input: "data"
        input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                convolution_param { num_output: 4 kernel_size: 3 kernel_size: 1 pad: 1 pad: 0 engine: CUDNN
                                    weight_filler { type: "xavier" std: 0.1 } } }
        layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip" loss_weight: 0
                propagate_down: true
                inner_product_param { num_output: 2 bias_filler { type: "gaussian" std: 0.5 } } }
        layer { name: "sm" type: "Softmax" bottom: "ip" top: "sm" exclude { phase: TRAIN }
                convolution_param { num_output: 3 } }
        """)
    r = convert(net)
    conv, ip, sm = r.layers[1:]
    assert r.layers[0] == {"name": "data", "type": "Input", "shape": [[1, 3, 8, 8]]}
    assert conv["kernel_size"] == [3, 1] and conv["pad"] == [1, 0]
    assert conv["weight_filler"] == "xavier"  # std does not apply to xavier (Caffe ignores it too)...
    assert "weight_filler.std: 0.1 (ignored: a xavier filler does not use it" in r.yaml  # ...and says so
    assert "engine: CUDNN (ignored" in r.yaml
    # Caffe's default weight filler is constant 0, tfconf's xavier: the Caffe default is written out
    assert ip["weight_filler"] == "constant" and ip["bias_filler"] == {"type": "gaussian", "std": 0.5}
    assert ip["loss_weight"] == 0 and ip["propagate_down"] == [True]
    assert sm["exclude"] == {"phase": "train"}
    assert "convolution_param { ... } (ignored: it does not apply to a Softmax layer" in r.yaml
    cfg = load(write(tmp_path, "n.yaml", r.yaml))
    assert cfg.net.layers[1].kernel() == (3, 1) and cfg.net.layers[1].pads() == (1, 0)


def test_data_layers_become_the_data_section(tmp_path):
    net = write(tmp_path, "d.prototxt", """\
        layer { name: "train_images" type: "ImageData" top: "img" top: "lbl" include { phase: TRAIN }
          transform_param { mirror: true crop_size: 227 mean_value: 104 mean_value: 117 mean_value: 123 }
          image_data_param { source: "train.txt" batch_size: 32 shuffle: true new_height: 256 new_width: 256
                             root_folder: "/data/" } }
        layer { name: "test_h5" type: "HDF5Data" top: "img" top: "lbl" include { phase: TEST }
          hdf5_data_param { source: "test_h5_list.txt" batch_size: 10 } }
        layer { name: "ip" type: "InnerProduct" bottom: "img" top: "ip" inner_product_param { num_output: 2 } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "lbl" }
        """)
    r = convert(net)
    doc = yaml.safe_load(r.yaml)
    assert doc["data"] == {
        "train": {"source": "train.txt", "format": "imagelist", "new_height": 256, "new_width": 256,
                  "root_folder": "/data/", "shape": [3, 256, 256], "batch_size": 32, "shuffle": True,
                  "mean_value": [104, 117, 123], "crop_size": 227, "mirror": True},
        "test": {"source": "test_h5_list.txt", "format": "hdf5", "batch_size": 10}}
    # the data tops are tfconf's data and label
    assert r.layers[0]["bottom"] == "data" and r.layers[1]["bottom"] == ["ip", "label"]
    assert "img → data, lbl → label" in r.yaml
    assert any("the image list train.txt is not here" in n for n in r.notes)


def test_an_unreadable_source_is_a_placeholder_that_validation_locates(tmp_path):
    net = write(tmp_path, "u.prototxt", """\
        layer { name: "d" type: "Data" top: "data" top: "label"
                data_param { source: "my_lmdb" batch_size: 8 backend: LMDB } }
        layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" }
        """)
    out = tmp_path / "u.yaml"
    r = invoke(["import-caffe", net, "-o", out])
    assert r.exit_code == 0, r.output  # the conversion itself worked
    assert "note: TODO: the LMDB database my_lmdb is not here: make it with `tfconf convert-data`" in r.output
    assert f"note: {out} does not validate yet" in r.output
    text = out.read_text()
    assert "# TODO: the LMDB database my_lmdb" in text and "train: {source: my_lmdb, format: lmdb, batch_size: 8}" in text
    r = invoke(["validate", out])
    assert r.exit_code == 2
    assert re.match(rf"^{re.escape(str(out))}:\d+:\d+: data\.train\.source: ", r.output), r.output


def test_memory_data_and_a_data_layer_for_both_phases(tmp_path):
    net = write(tmp_path, "m.prototxt", """\
        layer { name: "mem" type: "MemoryData" top: "data" top: "label"
                memory_data_param { batch_size: 5 channels: 1 height: 4 width: 4 } }
        layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 } }
        """)
    doc = yaml.safe_load(convert(net).yaml)
    assert doc["data"]["train"] == doc["data"]["test"] == {"source": "mem.npz", "shape": [1, 4, 4], "batch_size": 5}


def test_same_name_in_two_phases_shares_parameters(tmp_path):
    net = write(tmp_path, "p.prototxt", """\
        input: "data" input_shape { dim: 2 dim: 6 }
        layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" include { phase: TRAIN }
                param { lr_mult: 1 } inner_product_param { num_output: 3 } }
        layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" include { phase: TEST }
                inner_product_param { num_output: 3 } }
        """)
    r = convert(net)
    # (names are unique within each net, as in Caffe: the two keep theirs and share by it)
    assert [layer["name"] for layer in r.layers] == ["data", "fc", "fc"]
    assert "param" not in r.layers[2]
    from tfconf.frontend.config import check_net

    _, params = check_net(load(write(tmp_path, "p.yaml", r.yaml)))
    assert sorted(params) == ["fc/bias", "fc/weights"]


def test_python_layer():
    r = convert_text("""\
        input: "data" input_shape { dim: 1 dim: 2 }
        layer { name: "py" type: "Python" bottom: "data" top: "py"
                python_param { module: "my_layers" layer: "Double" param_str: "{'k': 2}" share_in_parallel: true } }
        """)
    assert r.layers[1] == {"name": "py", "type": "Python", "bottom": "data", "module": "my_layers",
                           "layer": "Double", "param_str": "{'k': 2}"}
    assert "rewrite my_layers.Double" in r.yaml and "share_in_parallel: true (ignored" in r.yaml


def convert_text(text, tmp=None):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "net.prototxt"
        path.write_text(textwrap.dedent(text))
        return convert(str(path))


# ------------------------------------------------------------------------------------ solvers
def test_solver_mapping(tmp_path):
    net = str(CAFFE / "lenet.prototxt")
    solver = write(tmp_path, "s.prototxt", """\
        net: "whatever.prototxt"
        test_iter: 7 test_interval: 50 test_initialization: false
        base_lr: 0.001 lr_policy: "step" gamma: 0.5 stepsize: 100 power: 0.75
        solver_type: ADAM momentum: 0.95 momentum2: 0.99 delta: 1e-6
        weight_decay: 0.01 regularization_type: "L1" clip_gradients: -1 iter_size: 2
        max_iter: 300 display: 10 average_loss: 5 snapshot: 0 snapshot_after_train: false random_seed: 42
        solver_mode: CPU device_id: 1 debug_info: false snapshot_format: HDF5
        """)
    r = convert(net, solver)
    cfg = load(write(tmp_path, "out.yaml", r.yaml))
    s = cfg.net.solver
    assert (s.type, s.base_lr, s.momentum, s.momentum2, s.delta) == ("Adam", 0.001, 0.95, 0.99, 1e-6)
    assert (s.weight_decay, s.regularization_type, s.clip_gradients, s.iter_size) == (0.01, "L1", None, 2)
    assert (s.max_iter, s.display, s.average_loss, s.snapshot, s.snapshot_after_train) == (300, 10, 5, 0, False)
    assert (s.test_iter, s.test_interval, s.test_initialization, s.random_seed) == (7, 50, False, 42)
    p = s.policy()
    assert (p.type, p.gamma, p.stepsize) == ("step", 0.5, 100)
    for said in ("power: 0.75 (left out: lr_policy step does not use it)", "clip_gradients: -1 (Caffe's",
                 "solver_mode: CPU (ignored", "device_id: 1 (ignored", "snapshot_format: HDF5 (ignored"):
        assert said in r.yaml, said
    solver2 = write(tmp_path, "s2.prototxt", 'base_lr: 0.1 max_iter: 5 type: "RMSProp" rms_decay: 0.9 '
                                             'random_seed: -1')
    s2 = load(write(tmp_path, "out2.yaml", convert(net, solver2).yaml)).net.solver
    assert (s2.type, s2.rms_decay, s2.random_seed) == ("RMSProp", 0.9, None)


# ------------------------------------------------------------------------------------ errors
BAD_NET = """\
name: "bad"
input: "data"
input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  convolution_param {
    num_output: 8
    kernal_size: 3
    kernel_size: 3
    axis: 2
  }
}
layer {
  name: "pool1"
  type: "Pooling"
  bottom: "conv1"
  top: "pool1"
  pooling_param { pool: STOCHASTIC kernel_size: 2 }
}
layer {
  name: "spp"
  type: "SPP"
  bottom: "pool1"
  top: "spp"
}
layer {
  name: "conv2"
  type: "Convolution"
  bottom: "pool1"
  top: "conv2"
  convolution_param { num_output: 4 kernel_size: 0 }
}
layer { name: "d" type: "DummyData" top: "x" }
layer { name: "ip" type: "InnerProduct" bottom: "conv2" top: "ip" inner_product_param { num_output: 2.5 } }
layer { name: "r" type: "ReLU" bottom: "ip" top: "ip" relu_param { negative_slope: 0.1 negative_slope: 0.2 } }
layer { name: "x" type: "Sigmoid" bottom: "ip" top: "x" blobs { } colour: "red" }
layer { name: "g" type: "Convolution" bottom: "data" convolution_param { num_output: 4 kernel_size: 1 group: 3 } }
"""

EXPECTED = [  # (line, text in the message)
    (11, "layer[0] (conv1).convolution_param.kernal_size: unknown field 'kernal_size'. Did you mean 'kernel_size'?"),
    (13, "layer[0] (conv1).convolution_param.axis: only 1 is supported: tfconf convolves NCHW images over axis 1. "
         "Received: 2"),
    (21, "layer[1] (pool1).pooling_param.pool: STOCHASTIC pooling is not supported by tfconf"),
    (25, "layer[2] (spp).type: SPP (spatial pyramid pooling) is not supported"),
    (34, "layer[3] (conv2).convolution_param.kernel_size: must be > 0"),
    (36, "layer[4] (d): needs shape: one list of sizes per top"),
    (37, "layer[5] (ip).inner_product_param.num_output: expects an integer. Received: 2.5"),
    (38, "layer[6] (r).relu_param.negative_slope: is given 2 times"),
    (39, "layer[7] (x).blobs: blobs in a prototxt are not read; pass the weights as a .caffemodel"),
    (39, "layer[7] (x).colour: unknown layer field 'colour'"),
]


def test_unsupported_layers_and_fields_are_all_reported_with_their_lines(tmp_path):
    net = write(tmp_path, "bad.prototxt", BAD_NET)
    with pytest.raises(ConfigError) as e:
        convert(net)
    lines = e.value.lines
    for line, text in EXPECTED:
        assert any(ln.startswith(f"{net}:{line}:") and text in ln for ln in lines), (line, text, lines)
    # num_output 4 with group 3: tfconf's schema rejects it, located at the layer's block
    assert any(ln.startswith(f"{net}:40:1: layer[8] (g): num_output must be divisible by group") for ln in lines), lines
    assert len(lines) == len(EXPECTED) + 1
    assert lines == sorted(lines, key=lambda ln: [int(x) for x in ln.split(":")[1:3]])  # in file order


def test_errors_exit_2_through_the_cli_without_a_traceback(tmp_path):
    net = write(tmp_path, "bad.prototxt", BAD_NET)
    r = run(["import-caffe", net, "-o", tmp_path / "out.yaml"], cwd=REPO)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == len(EXPECTED) + 1 and all(LOCATED.match(ln) for ln in lines), r.stderr
    assert not (tmp_path / "out.yaml").exists()


@pytest.mark.parametrize("text, where, message", [
    ('layer { name: "a" type: "ReLU" bottom: "x" ', "1:7", "never closed"),
    ('layers { name: "c" type: CONVOLUTON }', "1:20", "unknown V1 layer type CONVOLUTON"),
    ('layer { name: "c" type: "Convolution" convolution_param { num_output: 1 kernel_size: 1 '
     'weight_filler { type: "glorot" } } }', "1:104", "unknown filler type 'glorot'"),
    ('layer { name: "c" type: "Pooling" pooling_param { pool: MAX kernel_size: 2 kernel_size: 2 '
     'kernel_size: 2 } }', "1:61", "tfconf supports 2-D images only"),
    ('state { phase: TEST } layer { name: "r" type: "ReLU" }', "1:1", "a net-level state"),
    ('input: "data" layer { name: "r" type: "ReLU" }', "1:1", "needs input_shape"),
])
def test_more_located_errors(tmp_path, text, where, message):
    net = write(tmp_path, "e.prototxt", text)
    r = invoke(["import-caffe", net])
    assert r.exit_code == 2
    assert any(ln.startswith(f"{net}:{where}: ") and message in ln for ln in r.output.splitlines()), r.output


def test_solver_errors_are_located(tmp_path):
    solver = write(tmp_path, "s.prototxt", """\
        base_lr: 0.01
        lr_policy: "bogus"
        test_iter: 10 test_iter: 20
        type: "Momentum"
        train_state { phase: TRAIN }
        max_iterations: 5
        """)
    with pytest.raises(ConfigError) as e:
        convert(str(CAFFE / "lenet.prototxt"), solver)
    text = str(e.value)
    for line, said in [(2, "unknown lr_policy"), (3, "2 values for one test net: several test nets are declared by test_state"),
                       (4, "unknown solver type"), (5, "train_state is not supported"),
                       (6, "unknown field 'max_iterations'. Did you mean 'max_iter'?"),
                       (1, "the solver needs max_iter")]:
        assert re.search(rf"^{re.escape(solver)}:{line}:\d+: .*{re.escape(said)}", text, re.M), (line, said, text)
