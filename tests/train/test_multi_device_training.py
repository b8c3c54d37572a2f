"""Issue 4's 'done when': a two-tower net placed with `device: auto` on 2 virtual CPUs trains to
the same weights as on one device, and both devices are used."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tfconf.frontend import config as cfgmod
from tfconf.train.solver import Solver

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "two_tower.yaml")


def _train(device_count, iters=4):
    cfg = cfgmod.load(CONFIG, [f"device_count={{CPU: {device_count}}}", "data.train.batch_size=16"], check=False)
    s = Solver(cfg.net, None, root=cfg.root, prefetch=0)
    try:
        for _ in range(iters):
            s.step()
        placement = s.sess.placement([s.train_op, s.train_net.loss],
                                     {s.inputs["data"]: np.zeros((16, 1, 28, 28), np.float32),
                                      s.inputs["label"]: np.zeros(16, np.int64), s.lr: 0.0, s.t: 1.0})
        return s.weights(), set(placement.values())
    finally:
        s.close()


def test_two_towers_on_two_cpus_train_to_the_weights_of_one():
    one, used_one = _train(1)
    two, used_two = _train(2)
    assert len(used_one) == 1
    assert len(used_two) == 2, "auto placement should use both virtual CPUs for two towers"
    assert one.keys() == two.keys()
    for k in one:
        np.testing.assert_allclose(one[k], two[k], rtol=1e-6, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("device", ["cpu", "cpu:1", "/job:localhost/replica:0/task:0/device:CPU:0"])
def test_explicit_layer_devices_are_honoured(device):
    cfg = cfgmod.load(CONFIG, [f"layers.a_conv.device={device}", "data.train.batch_size=8"], check=False)
    s = Solver(cfg.net, None, root=cfg.root, prefetch=0)
    try:
        s.step()
        conv = s.train_net.layer_tops["a_conv"][0].op
        want = "CPU:1" if device == "cpu:1" else "CPU:"
        placed = s.sess.placement(s.train_net.loss, {s.inputs["data"]: np.zeros((8, 1, 28, 28), np.float32),
                                                     s.inputs["label"]: np.zeros(8, np.int64)})
        assert want in placed[conv.name]
    finally:
        s.close()
