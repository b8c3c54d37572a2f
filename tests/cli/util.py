"""Helpers of the CLI tests: run ``tfconf`` as a real process or in-process through typer's
CliRunner, tiny nets written into a temporary folder, and snapshot readers."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
TFCONF = [sys.executable, "-m", "tfconf.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
# One located line: "file:line:col: path: message" or "--set K=V: path: message".
LOCATED = re.compile(r"^(--set \S.*|[^\s:]+:\d+:\d+): \S.*$")

# A small MLP on the 2-D spirals: ~1,000 iterations a second.
SPIRALS = """\
name: tiny
data:
  train: {source: spirals, num_samples: 300, batch_size: 16}
  test: {source: spirals, num_samples: 100, batch_size: 50}
layers:
  - {name: ip1, type: InnerProduct, bottom: data, num_output: 16, weight_filler: xavier}
  - {name: relu1, type: ReLU}
  - {name: drop1, type: Dropout, dropout_ratio: 0.3}
  - {name: ip2, type: InnerProduct, num_output: 3, weight_filler: xavier}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], include: {phase: test}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label]}
solver:
  base_lr: 0.1
  momentum: 0.9
  max_iter: 40
  test_interval: 10
  test_iter: 2
  display: 5
  snapshot: 10
  random_seed: 3
"""

# A small conv net with Dropout on scikit-learn's 8x8 digits (shuffled each epoch): ~500 it/s.
DIGITS = """\
name: dig
data:
  train: {source: digits, batch_size: 32, scale: 0.0625, shuffle: true}
  test: {source: digits, batch_size: 60, scale: 0.0625}
layers:
  - {name: conv1, type: Convolution, bottom: data, num_output: 8, kernel_size: 3, weight_filler: xavier}
  - {name: relu1, type: ReLU}
  - {name: ip1, type: InnerProduct, num_output: 32, weight_filler: xavier}
  - {name: drop1, type: Dropout, dropout_ratio: 0.5}
  - {name: ip2, type: InnerProduct, num_output: 10, weight_filler: xavier}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], include: {phase: test}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label]}
solver:
  base_lr: 0.05
  momentum: 0.9
  max_iter: 600
  test_interval: 100
  test_iter: 2
  display: 50
  snapshot: 20
  random_seed: 7
"""

# One iteration takes about a second on a 2-core machine (a 3072 x 4096 InnerProduct, batch 8192:
# 0.9 s with oneDNN's gemm, which ran batch 256 in 37 ms): long enough to signal a process in the
# middle of an iteration.
SLOW = """\
name: slow
data:
  train: {source: patterns, num_samples: 16384, batch_size: 8192, scale: 0.01}
layers:
  - {name: ip1, type: InnerProduct, bottom: data, num_output: 4096}
  - {name: ip2, type: InnerProduct, num_output: 10}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label]}
solver:
  base_lr: 0.001
  max_iter: 100
  display: 1
  random_seed: 1
"""


def write(folder: Path, name: str, text: str) -> str:
    path = Path(folder) / name
    path.write_text(text)
    return str(path)


def run(args, cwd=None, timeout=120, env=None, **kw) -> subprocess.CompletedProcess:
    """``tfconf ARGS`` as a real process (with ``env`` instead of ENV if given)."""
    return subprocess.run([*TFCONF, *map(str, args)], cwd=cwd, env=env or ENV, capture_output=True, text=True,
                          timeout=timeout, **kw)


def popen(args, cwd=None, stdout=None, stderr=None, env=None) -> subprocess.Popen:
    return subprocess.Popen([*TFCONF, *map(str, args)], cwd=cwd, env=env or ENV, text=True,
                            stdout=stdout or subprocess.DEVNULL, stderr=stderr or subprocess.PIPE)


def invoke(args):
    """``tfconf ARGS`` in this process (typer's CliRunner on the real app)."""
    from tfconf.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def wait_for(predicate, timeout=60.0, interval=0.01, proc=None):
    """Poll until ``predicate()`` is true; fail if ``proc`` ends first or time runs out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (code {proc.returncode}) before the condition held")
        time.sleep(interval)
    raise AssertionError("timed out")


_ITER = re.compile(r"_iter_(\d+)\.solverstate\.safetensors$")


def complete_snapshots(run_dir) -> dict:
    """iteration → solver-state path of every snapshot whose two files exist."""
    out = {}
    for p in glob.glob(os.path.join(run_dir, "snapshots", "*.solverstate.safetensors")):
        m = _ITER.search(p)
        if m and os.path.exists(p[: -len(".solverstate.safetensors")] + ".safetensors"):
            out[int(m.group(1))] = p
    return out


def weights_path(run_dir, name, iteration) -> str:
    return os.path.join(run_dir, "snapshots", f"{name}_iter_{iteration}.safetensors")


def load(path) -> dict:
    from tfconf.train.snapshot import load_tensors

    return load_tensors(str(path))[0]


def assert_same_tensors(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert np.array_equal(a[k], b[k]), f"{k} differs"


def one_error_line(stderr: str) -> str:
    """The single located error line of ``stderr`` (anything else there fails the test)."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    return lines[0]
