"""The solver starts its data prefetch thread only when making batches costs a real share of a
step (on a machine whose cores the kernels already use, a thread that has nothing to hide only
contends with them), and the batches are the same either way."""

from __future__ import annotations

import time

import numpy as np

from tfconf.data.batcher import Batcher
from tfconf.train.solver import Solver

from .test_solver_rules import _config


def _train(prefetch, steps=14):
    s = Solver(_config({"base_lr": 0.1, "momentum": 0.9}), None, prefetch=prefetch)
    try:
        for _ in range(steps):
            s.step()
        return s.weights(), s.train_data.prefetch, s.train_data._worker is not None
    finally:
        s.close()


def test_prefetch_starts_only_when_batches_cost_a_share_of_the_step(monkeypatch):
    step = Solver._step

    def slow_step(self):
        time.sleep(0.02)  # a step far longer than making this net's batches
        return step(self)

    with monkeypatch.context() as m:
        m.setattr(Solver, "_step", slow_step)
        fast, fast_prefetch, fast_thread = _train(2)
    make = Batcher.batch_at

    def slow(self, i):
        time.sleep(0.02)  # far more than a step of this 3-weight net
        return make(self, i)

    monkeypatch.setattr(Batcher, "batch_at", slow)
    slow_w, slow_prefetch, slow_thread = _train(2)
    none, none_prefetch, none_thread = _train(0)
    assert (fast_prefetch, fast_thread) == (0, False)
    assert (slow_prefetch, slow_thread) == (2, True)
    assert (none_prefetch, none_thread) == (0, False)
    for k in fast:  # prefetched and synchronous batches are the same batches
        np.testing.assert_array_equal(fast[k], slow_w[k])
        np.testing.assert_array_equal(fast[k], none[k])
