"""A callback ends a run early by returning a reason from ``on_metrics`` (how early stopping and a
sweep's pruner stop a trial inside its run): the run stops after that iteration with a snapshot of
it, ``stopped`` names the reason, and the run is not counted as interrupted."""

from __future__ import annotations

import os

from tfconf.frontend.config import load
from tfconf.train import runner
from tfconf.train import snapshot as snap

NET = """\
name: cb
data:
  train: {source: spirals, num_samples: 60, batch_size: 16}
  test: {source: spirals, num_samples: 30, batch_size: 10}
layers:
  - {name: ip1, type: InnerProduct, bottom: data, num_output: 8, weight_filler: xavier}
  - {name: relu1, type: ReLU}
  - {name: ip2, type: InnerProduct, num_output: 3, weight_filler: xavier}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], include: {phase: test}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label]}
solver: {base_lr: 0.1, max_iter: 40, test_interval: 5, test_iter: 1, snapshot: 20, display: 2, random_seed: 1}
"""


class StopAt(runner.Callback):
    def __init__(self, at):
        self.at, self.seen = at, []

    def on_metrics(self, iteration, phase, values):
        self.seen.append((iteration, phase))
        return f"enough at {iteration}" if phase == "test" and iteration >= self.at else None


def test_a_callback_reason_stops_the_run_with_a_snapshot(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(NET)
    cb = StopAt(15)
    r = runner.train(load(str(path)), out=str(tmp_path / "run"), quiet=True, callbacks=[cb])
    assert r["iterations"] == 15 and r["stopped"] == "enough at 15" and not r["interrupted"]
    assert r["snapshot"].endswith("_iter_15.solverstate.safetensors") and os.path.exists(r["snapshot"])
    assert max(i for i, _ in cb.seen) == 15  # nothing ran after the stop
    assert snap.latest_snapshot(str(tmp_path / "run" / "snapshots")) == r["snapshot"]


def test_a_callback_that_returns_nothing_changes_nothing(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(NET)
    r = runner.train(load(str(path)), out=str(tmp_path / "run"), quiet=True, callbacks=[StopAt(10**9)])
    assert r["iterations"] == 40 and r["stopped"] is None
