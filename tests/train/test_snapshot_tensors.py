"""save_tensors / load_tensors keep every shape, 0-d included (BatchNorm's moving-average factor
is a scalar), and a BatchNorm net's weights load back into `tfconf test`."""

from __future__ import annotations

import numpy as np

from tfconf.train.snapshot import load_tensors, save_tensors
from tests.cli.util import invoke, write


def test_shapes_and_dtypes_round_trip(tmp_path):
    tensors = {"scalar": np.float32(3.5) * np.ones((), np.float32), "vec": np.arange(3, dtype=np.float64),
               "fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))}
    save_tensors(str(tmp_path / "t.safetensors"), tensors)
    back, _ = load_tensors(str(tmp_path / "t.safetensors"))
    for k, v in tensors.items():
        assert back[k].shape == v.shape and back[k].dtype == v.dtype
        np.testing.assert_array_equal(back[k], v)


BN_NET = """\
name: bn
data:
  train: {source: spirals, num_samples: 200, batch_size: 20}
  test: {source: spirals, num_samples: 60, batch_size: 30}
layers:
  - {name: ip1, type: InnerProduct, bottom: data, num_output: 8}
  - {name: bn1, type: BatchNorm}
  - {name: ip2, type: InnerProduct, num_output: 3}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], include: {phase: test}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label]}
solver: {base_lr: 0.05, max_iter: 4, snapshot: 4, random_seed: 1}
"""


def test_a_batchnorm_net_tests_from_its_snapshot(tmp_path):
    cfg = write(tmp_path, "bn.yaml", BN_NET)
    r = invoke(["train", cfg, "--out", tmp_path / "run", "-q"])
    assert r.exit_code == 0, r.output
    r = invoke(["test", cfg, "--weights", tmp_path / "run" / "snapshots" / "bn_iter_4.safetensors"])
    assert r.exit_code == 0, r.output
