"""``tfconf train CONFIG --cluster ...`` through the real entry point (a process of its own, which
starts and stops its own local Ray instance)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.cli.util import load as load_tensors
from tests.cli.util import one_error_line, run

from .util import LENET, write


@pytest.mark.slow
def test_train_on_a_local_cluster_from_the_command_line(tmp_path):
    pytest.importorskip("ray")
    path = write(tmp_path, "net.yaml", LENET.replace("distributed: {workers: 2, strategy: parameter_server}",
                                                     "distributed: {workers: 2, strategy: allreduce}"))
    out = tmp_path / "run"
    p = run(["train", path, "--cluster", "local", "--max-restarts", "1", "--out", out, "--json"], timeout=240)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["iterations"] == 8 and result["run_dir"] == str(out)
    assert set(result["test"]) == {"accuracy", "loss"} and np.isfinite(result["train_loss"])
    weights = load_tensors(out / "snapshots" / "lenet_small_iter_8.safetensors")
    assert set(weights) == {"conv1/weights", "conv1/bias", "ip1/weights", "ip1/bias", "ip2/weights", "ip2/bias"}
    assert all(np.all(np.isfinite(w)) for w in weights.values())
    with open(out / "config.yaml") as f:
        assert "address: local" in f.read()  # --cluster landed in the config of the run


def test_an_unreachable_cluster_is_one_error_line(tmp_path):
    pytest.importorskip("ray")
    path = write(tmp_path, "net.yaml", LENET)
    p = run(["train", path, "--cluster", "127.0.0.1:1", "--out", tmp_path / "run"], timeout=120)
    assert p.returncode == 2
    line = one_error_line(p.stderr)
    assert line.startswith("error: could not join the Ray cluster at 127.0.0.1:1: nothing answers there")
    assert not os.path.exists(tmp_path / "run")
