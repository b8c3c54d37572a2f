"""``tfconf train --weights``: parameters copied by layer name; a shape mismatch is exit code 2
naming the layer and both shapes unless the layer is in --reinit."""

from __future__ import annotations

import numpy as np
import pytest

from .util import SPIRALS, assert_same_tensors, invoke, load, one_error_line, run, weights_path, write


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pretrained")
    cfg = write(tmp, "tiny.yaml", SPIRALS)
    r = invoke(["train", cfg, "--out", tmp / "run", "--max-iter", "20"])
    assert r.exit_code == 0, r.output
    return cfg, weights_path(tmp / "run", "tiny", 20)


# ip1 frozen (lr_mult 0) so that its copied values can be checked after training; the head renamed.
FROZEN = SPIRALS.replace("num_output: 16, weight_filler: xavier}",
                         "num_output: 16, weight_filler: xavier, param: [{lr_mult: 0}, {lr_mult: 0}]}")


def test_weights_are_copied_by_layer_name(pretrained, tmp_path):
    _, w = pretrained
    cfg = write(tmp_path, "ft.yaml", FROZEN.replace("ip2", "head").replace("num_output: 3,", "num_output: 3,"))
    r = invoke(["train", cfg, "--weights", w, "--out", tmp_path / "run", "--max-iter", "5"])
    assert r.exit_code == 0, r.output
    assert f"loaded 2 parameters from {w}" in r.stdout  # ip1's; 'head' is new
    after = load(weights_path(tmp_path / "run", "tiny", 5))
    before = load(w)
    assert_same_tensors({k: after[k] for k in ("ip1/weights", "ip1/bias")},
                        {k: before[k] for k in ("ip1/weights", "ip1/bias")})
    assert "head/weights" in after and "ip2/weights" not in after


def test_shape_mismatch_is_an_error_naming_layer_and_shapes(pretrained, tmp_path):
    cfg, w = pretrained
    r = run(["train", cfg, "--weights", w, "--out", tmp_path / "run", "--set", "layers.ip2.num_output=5"])
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert "'ip2'" in line and "[3, 16]" in line and "[5, 16]" in line and "--reinit" in line


def test_reinit_trains_a_new_head(pretrained, tmp_path):
    _, w = pretrained
    cfg = write(tmp_path, "ft.yaml", FROZEN)
    r = invoke(["train", cfg, "--weights", w, "--out", tmp_path / "run", "--set", "layers.ip2.num_output=5",
                "--reinit", "ip2", "--max-iter", "5", "--json"])
    assert r.exit_code == 0, r.output
    after = load(weights_path(tmp_path / "run", "tiny", 5))
    assert after["ip2/weights"].shape == (5, 16)
    np.testing.assert_array_equal(after["ip1/weights"], load(w)["ip1/weights"])


def test_weights_errors(pretrained, tmp_path):
    cfg, w = pretrained
    r = invoke(["train", cfg, "--weights", w, "--reinit", "ip9", "--out", tmp_path / "run"])
    assert r.exit_code == 2 and "--reinit ip9" in r.stderr and "did you mean 'ip2'" in r.stderr.lower()
    r = invoke(["train", cfg, "--weights", tmp_path / "none.safetensors", "--out", tmp_path / "run"])
    assert r.exit_code == 2 and "none.safetensors: no such file" in r.stderr
    r = invoke(["train", cfg, "--weights", cfg, "--out", tmp_path / "run"])
    assert r.exit_code == 2 and "not a readable .safetensors file" in r.stderr
    other = write(tmp_path, "other.yaml", SPIRALS.replace("ip1", "fc1").replace("ip2", "fc2"))
    r = invoke(["train", other, "--weights", w, "--out", tmp_path / "run"])
    assert r.exit_code == 2 and "none of its parameters" in r.stderr
