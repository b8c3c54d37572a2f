"""Helpers of the sweep tests: tiny configs (an MLP on the built-in spirals, ~1,000 iterations a
second), the CLI as a real process, and readers of a sweep folder."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.cli import util as cli
from tests.cli.util import REPO, write  # noqa: F401 - part of this module's interface

HERE = Path(__file__).resolve().parent
# trial processes import the test layers beside this file (sweep_crash_layer.py)
ENV = {**cli.ENV, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")])}

NET = """\
name: tiny
data:
  train: {source: spirals, num_samples: 300, batch_size: 16}
  test: {source: spirals, num_samples: 100, batch_size: 50}
layers:
  - {name: ip1, type: InnerProduct, bottom: data, num_output: 16, weight_filler: xavier}
  - {name: relu1, type: ReLU}
  - {name: ip2, type: InnerProduct, num_output: 3, weight_filler: xavier}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], include: {phase: test}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label]}
solver:
  base_lr: 0.1
  momentum: 0.9
  max_iter: 30
  test_interval: 10
  test_iter: 2
  display: 5
  snapshot: 10
  random_seed: 3
"""


def sweep_config(folder, sweep: str, net: str = NET, name: str = "sweep.yaml") -> str:
    """``net`` plus a ``sweep:`` section (YAML text, indented by the caller's two spaces)."""
    return write(folder, name, net + "sweep:\n" + sweep)


def run(args, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    """``tfconf ARGS`` as a real process."""
    return cli.run(args, cwd=cwd, timeout=timeout, env=ENV)


def popen(args, cwd=None) -> subprocess.Popen:
    return cli.popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)


def status(sweep_dir) -> dict:
    return json.loads((Path(sweep_dir) / "status.json").read_text())["trials"]


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False
    except OSError:  # pragma: no cover - no /proc
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
