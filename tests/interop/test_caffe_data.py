"""Caffe users' train_val files with Caffe's own data formats: databases made by `convert-data`
are read where the prototxt names them, an absent database keeps its path (a built-in set stands
in only where it fits the net), and shapes the prototxt tells are declared so that
`validate --shapes` checks a net before its data exists."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tfconf.data import DataSpec, load_source
from tfconf.interop.caffe_import import convert

from tests.cli.util import run

pytest.importorskip("lmdb")
HERE = Path(__file__).parent / "caffe"


def _pairs(tmp_path, split, n):
    """MNIST digit pairs as Caffe's siamese example makes them: [N, 2, 28, 28], label 1 when alike."""
    x, y = load_source(DataSpec(source="mnist"), split)
    rng = np.random.default_rng(0 if split == "train" else 1)
    i, j = rng.integers(0, len(y), n), rng.integers(0, len(y), n)
    path = tmp_path / f"pairs_{split}.npz"
    np.savez(path, x=np.concatenate([x[i], x[j]], axis=1), y=(y[i] == y[j]).astype(np.int64))
    return path


def test_lenet_reads_the_lmdb_databases_its_prototxt_names(tmp_path):
    shutil.copy(HERE / "lenet_train_test.prototxt", tmp_path)
    shutil.copy(HERE / "lenet_solver.prototxt", tmp_path)
    (tmp_path / "examples" / "mnist").mkdir(parents=True)
    for split in ("train", "test"):
        r = run(["convert-data", "mnist", f"examples/mnist/mnist_{split}_lmdb", "--split", split], cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    (tmp_path / "out").mkdir()
    r = run(["import-caffe", "lenet_train_test.prototxt", "--solver", "lenet_solver.prototxt", "-o", "out/lenet.yaml"],
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load((tmp_path / "out" / "lenet.yaml").read_text())
    assert doc["data"]["train"]["source"] == "../examples/mnist/mnist_train_lmdb"  # relative to the config
    assert doc["data"]["train"]["format"] == doc["data"]["test"]["format"] == "lmdb"
    r = run(["train", "out/lenet.yaml", "--max-iter", "60", "--set", "solver.test_interval=60", "--json", "--out",
             "run"], cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["test"]["accuracy"] > 0.6  # 60 iterations of LeNet on the digits read from LMDB


def test_the_siamese_net_keeps_its_pair_database_and_trains_on_it(tmp_path):
    pytest.importorskip("plyvel")
    net = tmp_path / "mnist_siamese_train_test.prototxt"
    shutil.copy(HERE / net.name, net)
    # no database yet: the 1-channel MNIST stand-in does not fit the Slice of a 2-channel pair
    r = convert(str(net))
    doc = yaml.safe_load(r.yaml)
    assert doc["data"]["train"]["source"] == "examples/siamese/mnist_siamese_train_leveldb"
    assert doc["data"]["train"]["format"] == "leveldb"  # Caffe's default backend
    assert any("mnist_siamese_train_leveldb is not here" in n and "convert-data" in n for n in r.notes)
    # the databases, made by convert-data beside the prototxt, are read as they are
    for split, n in (("train", 600), ("test", 200)):
        r = run(["convert-data", _pairs(tmp_path, split, n), tmp_path / f"mnist_siamese_{split}_leveldb",
                 "--backend", "leveldb"])
        assert r.returncode == 0, r.stderr
    r = run(["import-caffe", net, "--solver", HERE / "mnist_siamese_solver.prototxt", "-o", tmp_path / "s.yaml"])
    assert r.returncode == 0 and "ok: it validates and builds" in r.stdout, r.stderr
    doc = yaml.safe_load((tmp_path / "s.yaml").read_text())
    assert doc["data"]["train"] == {"source": "mnist_siamese_train_leveldb", "format": "leveldb", "batch_size": 64,
                                    "scale": 0.00390625}
    r = run(["train", tmp_path / "s.yaml", "--max-iter", "40", "--json", "--out", tmp_path / "run"], timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert np.isfinite(result["train_loss"]) and "loss" in result["test"]


def test_absent_data_is_declared_by_the_shapes_the_prototxt_tells(tmp_path):
    from tfconf.io.caffemodel import _encode_blob

    (tmp_path / "mean.binaryproto").write_bytes(_encode_blob(np.full((1, 3, 12, 12), 100.0, np.float32)))
    net = tmp_path / "train_val.prototxt"
    net.write_text('''name: "tiny_caffenet"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { mirror: true crop_size: 10 mean_file: "mean.binaryproto" }
  data_param { source: "ilsvrc12_train_lmdb" batch_size: 4 backend: LMDB } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 10 mean_value: 104 mean_value: 117 mean_value: 123 }
  data_param { source: "ilsvrc12_val_lmdb" batch_size: 2 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
''')
    out = tmp_path / "tv.yaml"
    r = run(["import-caffe", net, "-o", out])
    assert r.returncode == 0, r.stderr
    assert "validates and builds (at the declared shape of data.train, data.test" in r.stdout
    doc = yaml.safe_load(out.read_text())
    assert doc["data"]["train"]["shape"] == [3, 12, 12]  # the mean file's
    assert doc["data"]["test"]["shape"] == [3, 10, 10]   # crop and three mean values
    r = run(["validate", out, "--shapes"])
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    r = run(["validate", out])  # without --shapes the data must be here
    assert r.returncode == 2 and "data.train.source: lmdb database not found" in r.stderr
    assert "Traceback" not in r.stderr
    # a net that does not fit the declared shape is located at its layer, data or not
    bad = out.read_text().replace("num_output: 4, kernel_size: 3", "num_output: 4, kernel_size: 13")
    (tmp_path / "bad.yaml").write_text(bad)
    r = run(["validate", tmp_path / "bad.yaml", "--shapes"])
    assert r.returncode == 2 and "layers[0]" in r.stderr and "conv1" in r.stderr or "kernel" in r.stderr, r.stderr
    # data that arrives must have the declared shape (compared after the crop)
    x = np.random.default_rng(0).integers(0, 256, (6, 3, 12, 12), dtype=np.uint8)
    np.savez(tmp_path / "val.npz", x=x, y=np.arange(6) % 5)
    r = run(["convert-data", tmp_path / "val.npz", tmp_path / "ilsvrc12_val_lmdb"])
    assert r.returncode == 0, r.stderr
    xs, _ = load_source(DataSpec(source=str(tmp_path / "ilsvrc12_val_lmdb"), shape=[3, 10, 10], crop_size=10), "test")
    assert xs.shape == (6, 3, 12, 12)
    with pytest.raises(Exception, match=r"samples are \[3, 12, 12\] but shape: says \[1, 10, 10\]"):
        load_source(DataSpec(source=str(tmp_path / "ilsvrc12_val_lmdb"), shape=[1, 10, 10], crop_size=10), "test")


def test_image_data_and_window_data_layers_import_and_train(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    lines = []
    for i in range(12):
        a = rng.integers(0, 256, (10 + i % 3, 9, 3), dtype=np.uint8)  # sizes differ: new_height/width resize
        Image.fromarray(a).save(tmp_path / "img" / f"{i}.png")
        lines.append(f"{i}.png {i % 3}")
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "win.txt").write_text("".join(f"# {i}\n{i}.png\n3\n{10 + i % 3}\n9\n2\n{i % 3 + 1} 0.8 1 1 6 7\n"
                                              f"0 0.1 0 0 8 9\n" for i in range(4)))
    net = tmp_path / "net.prototxt"
    net.write_text('''name: "lists"
layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TRAIN }
  transform_param { crop_size: 8 mirror: true mean_value: 100 }
  image_data_param { source: "train.txt" root_folder: "img/" batch_size: 4 shuffle: true new_height: 10 new_width: 10 } }
layer { name: "data" type: "WindowData" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 8 mean_value: 100 }
  window_data_param { source: "win.txt" root_folder: "img/" batch_size: 4 fg_fraction: 0.5 context_pad: 1
                      crop_mode: "square" } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 4 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
''')
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.001\nlr_policy: "fixed"\nmax_iter: 6\n'
                                              'test_iter: 2\ntest_interval: 3\ndisplay: 0\n')
    r = run(["import-caffe", net, "--solver", tmp_path / "solver.prototxt", "-o", tmp_path / "l.yaml"])
    assert r.returncode == 0 and "ok: it validates and builds" in r.stdout, r.stderr
    doc = yaml.safe_load((tmp_path / "l.yaml").read_text())
    assert doc["data"]["train"]["format"] == "imagelist" and doc["data"]["train"]["root_folder"] == "img/"
    assert doc["data"]["test"]["format"] == "windows" and doc["data"]["test"]["crop_mode"] == "square"
    r = run(["train", tmp_path / "l.yaml", "--json", "--out", tmp_path / "run"], timeout=300)
    assert r.returncode == 0, r.stderr
    assert np.isfinite(json.loads(r.stdout.strip().splitlines()[-1])["test"]["loss"])


def test_cifar10_quick_trains_on_databases_and_a_mean_file_made_by_convert_data(tmp_path):
    shutil.copy(HERE / "cifar10_quick_train_test.prototxt", tmp_path)
    folder = tmp_path / "examples" / "cifar10"
    folder.mkdir(parents=True)
    # CIFAR-10 itself is not on this machine: the synthetic 3x32x32 patterns, written as Caffe's files
    for split in ("train", "test"):
        args = ["convert-data", "patterns", folder / f"cifar10_{split}_lmdb", "--split", split]
        r = run(args + (["--mean", folder / "mean.binaryproto"] if split == "train" else []))
        assert r.returncode == 0, r.stderr
    from tfconf.data.transforms import read_mean_file

    x, _ = load_source(DataSpec(source="patterns"), "train")
    np.testing.assert_allclose(read_mean_file(str(folder / "mean.binaryproto"))[0], x.mean(0), rtol=1e-5)
    r = convert(str(tmp_path / "cifar10_quick_train_test.prototxt"), str(HERE / "cifar10_quick_solver.prototxt"),
                out_dir=str(tmp_path))
    doc = yaml.safe_load(r.yaml)
    assert doc["data"]["train"]["format"] == "lmdb"
    assert doc["data"]["train"]["mean_file"] == "examples/cifar10/mean.binaryproto"
    (tmp_path / "c.yaml").write_text(r.yaml)
    r = run(["train", tmp_path / "c.yaml", "--max-iter", "30", "--set", "solver.test_iter=2", "--set",
             "solver.test_interval=30", "--json", "--out", tmp_path / "run"], timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["test"]["accuracy"] > 0.15  # 10 classes: chance 0.1


def test_importing_a_net_with_a_python_layer_and_a_stand_in_never_runs_its_module(tmp_path, monkeypatch):
    # the stand-in check builds the net; a Python layer's module (code from elsewhere) must not be imported
    (tmp_path / "evil_layers.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('x')\n"
                                             "import tfconf\nclass L(tfconf.PythonLayer):\n"
                                             "    def build(self, bottoms):\n        return [bottoms[0]]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    net = tmp_path / "py.prototxt"
    net.write_text('layer { name: "d" type: "Data" top: "data" top: "label"\n'
                   '  data_param { source: "mnist_train_lmdb" batch_size: 4 backend: LMDB } }\n'
                   'layer { name: "py" type: "Python" bottom: "data" top: "py" python_param { module: "evil_layers" '
                   'layer: "L" } }\n'
                   'layer { name: "ip" type: "InnerProduct" bottom: "py" top: "ip" inner_product_param { num_output: 2 } }\n'
                   'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" }\n')
    r = convert(str(net))
    assert yaml.safe_load(r.yaml)["data"]["train"]["source"] == "mnist"
    r = run(["import-caffe", net, "-o", tmp_path / "py.yaml"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "ran").exists()


def test_a_dummy_data_net_trains_without_data_and_resumes_exactly(tmp_path):
    # pycaffe's examples feed nets from DummyData: its fillers make the inputs each iteration
    net = tmp_path / "dummy.prototxt"
    net.write_text('name: "dummy"\n'
                   'layer { name: "data" type: "DummyData" top: "data" top: "label"\n'
                   '  dummy_data_param { shape { dim: 8 dim: 1 dim: 6 dim: 6 } shape { dim: 8 }\n'
                   '    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }\n'
                   'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"\n'
                   '  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }\n'
                   'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n')
    (tmp_path / "solver.prototxt").write_text('net: "dummy.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\n'
                                              'max_iter: 20\nsnapshot: 10\ntest_iter: 2\ntest_interval: 10\n'
                                              'random_seed: 4\ndisplay: 0\n')
    r = run(["import-caffe", net, "--solver", tmp_path / "solver.prototxt", "-o", tmp_path / "d.yaml"])
    assert r.returncode == 0 and "ok: it validates and builds" in r.stdout, r.stderr
    assert "neither data layers nor inputs" not in r.stderr
    whole = run(["train", tmp_path / "d.yaml", "--json", "--out", tmp_path / "whole"])
    assert whole.returncode == 0, whole.stderr
    first = run(["train", tmp_path / "d.yaml", "--max-iter", "10", "--out", tmp_path / "cut", "-q"])
    assert first.returncode == 0, first.stderr
    rest = run(["train", tmp_path / "d.yaml", "--resume", tmp_path / "cut", "--json"])
    assert rest.returncode == 0, rest.stderr
    a, b = (json.loads(x.stdout.strip().splitlines()[-1]) for x in (whole, rest))
    assert a["train_loss"] == b["train_loss"] and a["test"] == b["test"] and a["iterations"] == 20
    assert np.isfinite(a["test"]["loss"])
