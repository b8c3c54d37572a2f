"""Files that cannot be decoded are one line naming the file, exit 2, never a traceback, and nothing
in them is unpickled: --weights that are a folder, truncated, random bytes, a pickled .npz; npz data
truncated or pickled (object arrays), a binary file as CSV, a truncated IDX file, garbage mean files,
a truncated or damaged sweep status.json, a garbage metrics.jsonl for plot."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from .util import Box, spirals, success, user_error


class _Evil:
    """Unpickling this runs ``touch MARKER``: a pickle that is loaded leaves the marker behind."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickled_npz(path, marker, **arrays):
    evil = np.empty(2, dtype=object)
    evil[0], evil[1] = _Evil(marker), _Evil(marker)
    np.savez(path, **{k: (evil if v is None else v) for k, v in arrays.items()})
    return path


def _bad_weights(box: Box, kind: str, good) -> tuple:
    """(path, marker) of a --weights file of the given damage."""
    marker = box.root / "unpickled"
    if kind == "directory":
        path = box.work / "w.safetensors"
        path.mkdir()
    elif kind == "truncated":
        path = box.write("w.safetensors", good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "random-bytes":
        path = box.write("w.safetensors", os.urandom(4096))
    elif kind == "empty":
        path = box.write("w.safetensors", b"")
    elif kind == "pickled-npz":
        path = _pickled_npz(box.work / "w.npz", marker, **{"ip1/weights": None})
    elif kind == "huge-header":
        path = box.write("w.safetensors", (2 ** 62).to_bytes(8, "little") + b"{}")
    else:
        raise AssertionError(kind)
    return path, marker


WEIGHT_DAMAGE = ["directory", "truncated", "random-bytes", "empty", "pickled-npz", "huge-header"]


@pytest.mark.parametrize("kind", WEIGHT_DAMAGE)
def test_train_with_bad_weights(box, weights, kind):
    cfg = box.write("net.yaml", spirals())
    path, marker = _bad_weights(box, kind, weights)
    o = box.run(["train", cfg, "--weights", path, "--out", box.work / "run", "-q"], allowed=[box.work / "run"])
    assert not marker.exists(), f"a pickle in --weights was loaded\n{o}"
    user_error(o, r"w\.(safetensors|npz)")


@pytest.mark.parametrize("kind", WEIGHT_DAMAGE)
def test_test_with_bad_weights(box, weights, kind):
    cfg = box.write("net.yaml", spirals())
    path, marker = _bad_weights(box, kind, weights)
    o = box.run(["test", cfg, "--weights", path])
    assert not marker.exists(), f"a pickle in --weights was loaded\n{o}"
    user_error(o, r"w\.(safetensors|npz)")


def test_test_with_weights_of_another_net(box, weights):
    cfg = box.write("net.yaml", spirals().replace("num_output: 16", "num_output: 8"))
    user_error(box.run(["test", cfg, "--weights", weights]), r"ip1")


# -------------------------------------------------------------------------------------------- data
def _data(source, **extra):
    more = "".join(f", {k}: {v}" for k, v in extra.items())
    return (f"data:\n  train: {{source: {source}, batch_size: 16{more}}}\n"
            f"  test: {{source: {source}, batch_size: 50{more}}}\n")


def _xy(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)).astype(np.float32), rng.integers(0, 3, n)


def test_npz_data_truncated(box):
    x, y = _xy()
    np.savez(box.work / "full.npz", x=x, y=y)
    data = (box.work / "full.npz").read_bytes()
    box.write("d.npz", data[: len(data) // 2])
    (box.work / "full.npz").unlink()
    cfg = box.write("net.yaml", spirals(data=_data("d.npz")))
    user_error(box.run(["train", cfg, "--out", box.work / "run", "-q"], allowed=[box.work / "run"]), r"d\.npz")


def test_npz_data_with_pickled_object_arrays(box):
    marker = box.root / "unpickled"
    _pickled_npz(box.work / "d.npz", marker, x=None, y=np.zeros(2, dtype=np.int64))
    cfg = box.write("net.yaml", spirals(data=_data("d.npz")))
    o = box.run(["train", cfg, "--out", box.work / "run", "-q"], allowed=[box.work / "run"])
    assert not marker.exists(), f"a pickle in the data was loaded\n{o}"
    user_error(o, r"d\.npz")


def test_npz_data_of_random_bytes(box):
    box.write("d.npz", os.urandom(5000))
    cfg = box.write("net.yaml", spirals(data=_data("d.npz")))
    user_error(box.run(["validate", cfg]), r"d\.npz")


def test_npy_data_with_pickled_objects(box):
    marker = box.root / "unpickled"
    evil = np.empty(2, dtype=object)
    evil[0] = evil[1] = _Evil(marker)
    np.save(box.work / "d.npy", evil, allow_pickle=True)
    np.save(box.work / "labels.npy", np.zeros(2, dtype=np.int64))
    cfg = box.write("net.yaml", spirals(data=_data("d.npy", labels="labels.npy")))
    o = box.run(["validate", cfg])
    assert not marker.exists(), f"a pickle in the data was loaded\n{o}"
    user_error(o, r"d\.npy")


def test_binary_file_as_csv(box):
    box.write("d.csv", os.urandom(5000))
    cfg = box.write("net.yaml", spirals(data=_data("d.csv")))
    user_error(box.run(["validate", cfg]), r"d\.csv")


def test_truncated_idx_file(box):
    header = bytes([0, 0, 8, 3]) + (1000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    box.write("train-images-idx3-ubyte", header + os.urandom(100))
    box.write("train-labels-idx1-ubyte", bytes([0, 0, 8, 1]) + (1000).to_bytes(4, "big") + bytes(1000))
    cfg = box.write("net.yaml", spirals(data=_data("train-images-idx3-ubyte"), test=False))
    user_error(box.run(["validate", cfg]), r"train-images-idx3-ubyte")


def test_labels_file_of_garbage(box):
    x, _ = _xy()
    np.save(box.work / "d.npy", x)
    box.write("labels.txt", os.urandom(3000))
    cfg = box.write("net.yaml", spirals(data=_data("d.npy", labels="labels.txt")))
    user_error(box.run(["validate", cfg]), r"labels\.txt")


# --------------------------------------------------------------------------------------- mean files
def _mean_config(box, name):
    return box.write("net.yaml", spirals(data=(
        f"data:\n  train: {{source: spirals, num_samples: 300, batch_size: 16, mean_file: {name}}}\n"
        f"  test: {{source: spirals, num_samples: 100, batch_size: 50, mean_file: {name}}}\n")))


def test_garbage_mean_npy(box):
    box.write("mean.npy", os.urandom(2000))
    user_error(box.run(["validate", _mean_config(box, "mean.npy")]), r"mean\.npy")


def test_pickled_mean_npy(box):
    marker = box.root / "unpickled"
    evil = np.empty(2, dtype=object)
    evil[0] = evil[1] = _Evil(marker)
    np.save(box.work / "mean.npy", evil, allow_pickle=True)
    o = box.run(["validate", _mean_config(box, "mean.npy")])
    assert not marker.exists(), f"a pickled mean file was loaded\n{o}"
    user_error(o, r"mean\.npy")


def test_garbage_mean_binaryproto(box):
    box.write("mean.binaryproto", os.urandom(2000))
    user_error(box.run(["validate", _mean_config(box, "mean.binaryproto")]), r"mean\.binaryproto")


def test_mean_npy_of_the_wrong_shape(box):
    np.save(box.work / "mean.npy", np.zeros((3, 5, 5), np.float32))
    user_error(box.run(["validate", _mean_config(box, "mean.npy")]), r"mean")


# ------------------------------------------------------------------------------------------ sweeps
@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    box = Box(tmp_path_factory.mktemp("sweep"))
    cfg = box.write("sweep.yaml", spirals(max_iter=10, snapshot=5) + "sweep:\n  grid:\n    solver.base_lr: [0.1]\n")
    success(box.run(["sweep", "run", cfg, "--workers", "1", "--out", box.work / "sw"], allowed=[box.work / "sw"]))
    assert (box.work / "sw" / "status.json").exists()
    return box.work / "sw"


@pytest.fixture
def sweep_dir(box, finished_sweep):
    return shutil.copytree(finished_sweep, box.work / "sw")


def _damage_status(sweep_dir, how):
    path = sweep_dir / "status.json"
    text = path.read_text()
    path.write_text({"truncated": text[: len(text) // 2], "a-list": "[]",
                     "bad-record": json.dumps({"trials": {"t000": 5}}), "empty": "",
                     "nested-deep": '{"trials": ' + "[" * 100000 + "]" * 100000 + "}"}[how])


@pytest.mark.parametrize("how", ["truncated", "a-list", "bad-record", "empty", "nested-deep"])
def test_sweep_status_with_a_damaged_status_json(box, sweep_dir, how):
    _damage_status(sweep_dir, how)
    user_error(box.run(["sweep", "status", sweep_dir]), r"status\.json")


def test_sweep_resume_with_a_truncated_status_json(box, sweep_dir):
    _damage_status(sweep_dir, "truncated")
    o = box.run(["sweep", "run", "--resume", sweep_dir, "--workers", "1"], allowed=[sweep_dir])
    user_error(o, r"status\.json")


def test_sweep_status_with_a_truncated_sweep_json(box, sweep_dir):
    path = sweep_dir / "sweep.json"
    path.write_text(path.read_text()[:40])
    user_error(box.run(["sweep", "status", sweep_dir]), r"sweep\.json")


# -------------------------------------------------------------------------------------------- plot
def test_plot_of_a_garbage_metrics_file(box):
    pytest.importorskip("matplotlib")
    run_dir = box.work / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_bytes(os.urandom(3000))
    # (matplotlib keeps its font cache under $HOME)
    o = box.run(["plot", run_dir, "-o", box.work / "curves.png"], allowed=[box.home / ".cache", box.home / ".config"])
    user_error(o, r"metrics\.jsonl")
    assert not (box.work / "curves.png").exists()
