"""Bad numbers: numeric options out of range (one line naming the option), sizes that cannot be
allocated (validate says how many bytes and which layer, before allocating), NaN or inf in the
data (the data file and its first bad sample, not a layer), a run that explodes without NaN
(diagnosed as divergence), and numpy's RuntimeWarnings never reaching the user."""

from __future__ import annotations

import re
import resource

import numpy as np
import pytest

from .util import spirals, user_error

BYTES = r"\d[\d.,]*\s*(bytes|[KMGTP]i?B)\b"


@pytest.fixture
def cfg(box):
    return box.write("net.yaml", spirals())


# ------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("value", ["0", "-3"])
def test_test_iterations_out_of_range(box, cfg, weights, value):
    user_error(box.run(["test", cfg, "--weights", weights, "--iterations", value]), r"--iterations")


@pytest.mark.parametrize("value", ["0", "-3"])
def test_time_iterations_out_of_range(box, cfg, value):
    user_error(box.run(["time", cfg, "--iterations", value]), r"--iterations")


def test_train_max_iter_negative(box, cfg):
    user_error(box.run(["train", cfg, "--max-iter", "-1", "--out", box.work / "run"]), r"--max-iter")


def test_train_max_iter_not_a_number(box, cfg):
    user_error(box.run(["train", cfg, "--max-iter", "lots", "--out", box.work / "run"]), r"--max-iter")


def test_sweep_workers_zero(box):
    cfg = box.write("sweep.yaml", spirals(max_iter=10) + "sweep:\n  grid:\n    solver.base_lr: [0.1]\n")
    user_error(box.run(["sweep", "run", cfg, "--workers", "0"]), r"--workers")


# ---------------------------------------------------------------------------------------- memory
def _limit_memory():
    # a check that allocates instead of estimating fails fast here instead of swapping the machine
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.parametrize("command", ["validate", "train"])
def test_num_output_1e12_is_a_bounds_error(box, command):
    cfg = box.write("net.yaml", spirals().replace("num_output: 16", "num_output: 1e12"))
    args = [command, cfg] + (["--out", box.work / "run", "-q"] if command == "train" else [])
    o = box.run(args, preexec_fn=_limit_memory, allowed=[box.work / "run"])
    user_error(o, r"num_output", located=cfg)


#: a hidden layer of 10^6 x 10^6 weights: 4 TB, more than any machine has, each size far below the bound
HUGE_LAYER = spirals().replace(
    "num_output: 16", "num_output: 1000000").replace(
    "  - {name: drop1,", "  - {name: huge, type: InnerProduct, num_output: 1000000}\n  - {name: drop1,")


@pytest.mark.parametrize("command", ["validate", "train"])
def test_layer_too_big_to_allocate_says_bytes_and_layer(box, command):
    cfg = box.write("net.yaml", HUGE_LAYER)
    args = [command, cfg] + (["--out", box.work / "run", "-q"] if command == "train" else [])
    o = box.run(args, preexec_fn=_limit_memory, allowed=[box.work / "run"], timeout=60)
    line = user_error(o, BYTES, located=cfg)
    assert "huge" in line, line


@pytest.mark.parametrize("command", ["validate", "train"])
def test_batch_too_big_to_allocate_says_bytes_and_layer(box, command):
    # 10^9 samples a batch through 10^3 outputs: 4 TB of activations
    cfg = box.write("net.yaml", spirals().replace("batch_size: 16", "batch_size: 1000000000")
                    .replace("num_output: 16", "num_output: 1000"))
    args = [command, cfg] + (["--out", box.work / "run", "-q"] if command == "train" else [])
    o = box.run(args, preexec_fn=_limit_memory, allowed=[box.work / "run"], timeout=60)
    line = user_error(o, BYTES, located=cfg)
    assert re.search(r"ip1|batch_size", line), line


def test_validate_does_not_allocate_the_parameters(box):
    """16 GB of ip1 weights may fit this machine or not; either way validate estimates (a located
    error with bytes and the layer, or ok) and never allocates them (here it may use 4 GiB)."""
    cfg = box.write("net.yaml", spirals().replace("num_output: 16", "num_output: 2000000000"))
    o = box.run(["validate", cfg], preexec_fn=_limit_memory, timeout=60)
    assert "Unable to allocate" not in o.err and "out of memory" not in o.err, str(o)
    if o.code != 0:
        line = user_error(o, BYTES, located=cfg)
        assert "ip1" in line, line


# ---------------------------------------------------------------------------------- NaN in data
BAD_SAMPLE = 7


def _xy(n=300):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 2)).astype(np.float32), rng.integers(0, 3, n)


def _data(source):
    return (f"data:\n  train: {{source: {source}, batch_size: 16}}\n"
            f"  test: {{source: {source}, batch_size: 50}}\n")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_npz_data_with_a_non_finite_sample(box, value):
    x, y = _xy()
    x[BAD_SAMPLE, 1] = value
    x[BAD_SAMPLE + 5, 0] = value
    np.savez(box.work / "d.npz", x=x, y=y)
    cfg = box.write("net.yaml", spirals(data=_data("d.npz")))
    o = box.run(["train", cfg, "--out", box.work / "run", "-q"], allowed=[box.work / "run"])
    line = user_error(o, r"d\.npz", not_in=("diverged",))
    assert f" {BAD_SAMPLE}" in line or f"[{BAD_SAMPLE}]" in line or f"#{BAD_SAMPLE}" in line, \
        f"the first bad sample ({BAD_SAMPLE}) is not named: {line}"


def test_csv_data_with_a_nan_sample(box):
    x, y = _xy()
    rows = [f"{a:.5f},{b:.5f},{c}" for (a, b), c in zip(x, y)]
    rows[BAD_SAMPLE] = f"nan,0.5,{y[BAD_SAMPLE]}"
    box.write("d.csv", "\n".join(rows) + "\n")
    cfg = box.write("net.yaml", spirals(data=_data("d.csv")))
    o = box.run(["train", cfg, "--out", box.work / "run", "-q"], allowed=[box.work / "run"])
    line = user_error(o, r"d\.csv", not_in=("diverged",))
    assert f" {BAD_SAMPLE}" in line or f"[{BAD_SAMPLE}]" in line or f"#{BAD_SAMPLE}" in line, line


def test_nan_mean_value(box):
    cfg = box.write("net.yaml", spirals(data=(
        "data:\n  train: {source: spirals, num_samples: 300, batch_size: 16, mean_value: .nan}\n")), )
    o = box.run(["train", cfg, "--out", box.work / "run", "-q"], allowed=[box.work / "run"])
    user_error(o, r"mean_value", not_in=("diverged",))


def test_nan_in_a_mean_file(box):
    np.save(box.work / "mean.npy", np.array([np.nan, 0.0], np.float32))
    cfg = box.write("net.yaml", spirals(data=(
        "data:\n  train: {source: spirals, num_samples: 300, batch_size: 16, mean_file: mean.npy}\n"), test=False))
    o = box.run(["train", cfg, "--out", box.work / "run", "-q"], allowed=[box.work / "run"])
    user_error(o, r"mean\.npy", not_in=("diverged",))


# ----------------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("lr", ["1e6", "1e9"])
def test_explosion_without_nan_is_divergence(box, cfg, lr):
    o = box.run(["train", cfg, "--out", box.work / "run", "-q", "--set", f"solver.base_lr={lr}",
                 "--max-iter", "200"], allowed=[box.work / "run"])
    user_error(o, r"diverged")


def test_nan_divergence_warnings_do_not_reach_the_user(box):
    cfg = box.write("dig.yaml", spirals().replace("type: ReLU", "type: Exp"))
    o = box.run(["train", cfg, "--out", box.work / "run", "-q", "--set", "solver.base_lr=100",
                 "--max-iter", "400"], allowed=[box.work / "run"])
    assert "RuntimeWarning" not in o.err and "warnings.warn" not in o.err, str(o)
    assert "Traceback" not in o.err, str(o)
    assert o.code in (0, 2), str(o)
    if o.code == 2:
        user_error(o, r"diverged")
