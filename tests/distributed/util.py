"""Configs and helpers shared by the distributed tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# A small LeNet (conv, max pool, two inner products) on scikit-learn's 8x8 digits, shuffled, with
# momentum and weight decay: the per-worker batch is 16.
LENET = """\
name: lenet_small
data:
  train: {source: digits, batch_size: 16, scale: 0.0625, shuffle: true}
  test: {source: digits, batch_size: 50, scale: 0.0625}
layers:
  - {name: conv1, type: Convolution, bottom: data, num_output: 6, kernel_size: 3, weight_filler: xavier}
  - {name: pool1, type: Pooling, pool: max, kernel_size: 2, stride: 2}
  - {name: ip1, type: InnerProduct, num_output: 24, weight_filler: xavier}
  - {name: relu1, type: ReLU}
  - {name: ip2, type: InnerProduct, num_output: 10, weight_filler: xavier}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], include: {phase: test}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label]}
solver:
  base_lr: 0.05
  momentum: 0.9
  weight_decay: 0.0005
  max_iter: 8
  test_interval: 4
  test_iter: 2
  snapshot: 4
  random_seed: 5
distributed: {workers: 2, strategy: parameter_server}
"""


def write(folder, name: str, text: str) -> str:
    path = Path(folder) / name
    path.write_text(text)
    return str(path)


def load(path, *overrides):
    from tfconf.frontend import config as cfgmod

    return cfgmod.load(path, list(overrides))


def max_diff(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b)
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a)
