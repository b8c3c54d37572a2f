"""The converted Caffe LeNet trains on tfconf's MNIST sample exactly as configs/lenet_mnist.yaml does,
and its trained weights survive the trip through a .caffemodel back into ``tfconf test``.

What this shows, and what it does not: configs/lenet_mnist.yaml is Caffe's LeNet written by hand,
plus random 24x24 crops, a 10-batch test and seed 1. Given those same settings (``--set``), the net
imported from Caffe's own prototxt and solver must train to the same numbers bit for bit (it is the
same net, layer for layer, with the same initialisation and updates). The runs are 300 iterations
(a few seconds each), not the 3,000 of the full config; the accuracy floor (measured: 0.949 at 300
iterations) only shows that the run learns. The unmodified conversion (Caffe's settings: no crops)
is trained too, to show that it learns as it stands; its weights, written as a .caffemodel and
imported with the prototxt, give the same test metrics in ``tfconf test``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfconf.io.caffemodel import write_caffemodel

from ..cli.util import REPO, assert_same_tensors, invoke, load

CAFFE = Path(__file__).parent / "caffe"
ITERS = 300
COMMON = ["--max-iter", str(ITERS), "--set", f"solver.test_interval={ITERS}", "--set", "solver.snapshot=0",
          "--json", "-q"]
AS_IN_LENET_MNIST = ["--set", "data.train.crop_size=24", "--set", "data.test.crop_size=24",
                     "--set", "solver.test_iter=10", "--set", "solver.random_seed=1"]


def train(config, out, *extra):
    r = invoke(["train", config, "--out", out, *COMMON, *extra])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output.strip().splitlines()[-1])
    weights = result["snapshot"].replace(".solverstate.safetensors", ".safetensors")
    return result, load(weights)


@pytest.mark.slow
def test_converted_lenet_trains_like_configs_lenet_mnist(tmp_path):
    converted = tmp_path / "lenet.yaml"
    r = invoke(["import-caffe", CAFFE / "lenet_train_test.prototxt", "--solver", CAFFE / "lenet_solver.prototxt",
                "-o", converted])
    assert r.exit_code == 0, r.output

    ours, w_ours = train(converted, tmp_path / "converted", *AS_IN_LENET_MNIST)
    ref, w_ref = train(REPO / "configs" / "lenet_mnist.yaml", tmp_path / "reference")
    assert ours["iterations"] == ref["iterations"] == ITERS
    assert ours["train_loss"] == ref["train_loss"]
    assert ours["test"] == ref["test"]
    assert_same_tensors(w_ours, w_ref)
    assert ours["test"]["accuracy"] >= 0.93, ours



@pytest.mark.slow
def test_the_unmodified_conversion_learns(tmp_path):
    converted = tmp_path / "lenet.yaml"
    r = invoke(["import-caffe", CAFFE / "lenet_train_test.prototxt", "--solver", CAFFE / "lenet_solver.prototxt",
                "-o", converted])
    assert r.exit_code == 0, r.output
    # Caffe's settings as converted (no crops, inv policy, momentum 0.9); test_iter 10 covers the
    # 1,000 test digits once (Caffe's 100 assumed MNIST's 10,000)
    result, weights = train(converted, tmp_path / "run", "--set", "solver.test_iter=10",
                            "--set", "solver.random_seed=1")
    assert result["test"]["accuracy"] >= 0.93, result
    assert np.isfinite(result["train_loss"]) and result["train_loss"] < 0.5

    # the trained weights as a .caffemodel (Caffe's layouts), imported with the net, test the same
    layers = [(name, "Convolution" if name.startswith("conv") else "InnerProduct",
               [weights[f"{name}/weights"], weights[f"{name}/bias"]]) for name in ("conv1", "conv2", "ip1", "ip2")]
    write_caffemodel(str(tmp_path / "trained.caffemodel"), [("mnist", "Data", [])] + layers, "LeNet")
    again = tmp_path / "again.yaml"
    r = invoke(["import-caffe", CAFFE / "lenet_train_test.prototxt", "--solver", CAFFE / "lenet_solver.prototxt",
                "--weights", tmp_path / "trained.caffemodel", "-o", again])
    assert r.exit_code == 0, r.output
    assert_same_tensors(load(tmp_path / "again.safetensors"), weights)
    r = invoke(["test", again, "--weights", tmp_path / "again.safetensors", "--json", "--set", "solver.test_iter=10"])
    assert r.exit_code == 0, r.output
    tested = json.loads(r.output.strip().splitlines()[-1])
    assert tested["accuracy"] == pytest.approx(result["test"]["accuracy"], abs=1e-9)
    assert tested["loss"] == pytest.approx(result["test"]["loss"], rel=1e-5)
