"""A 4-trial sweep on a local Ray instance gives the numbers the local backend gives."""

from __future__ import annotations

import pytest

from tfconf.sweep.expand import expand
from tfconf.sweep.run import run_sweep, start

from .util import status, sweep_config

SWEEP = "  grid:\n    solver.base_lr: [0.1, 0.02]\n    layers.ip1.num_output: [8, 16]\n"


@pytest.mark.slow
def test_ray_and_local_backends_agree(tmp_path):
    pytest.importorskip("ray")
    sweep = expand(sweep_config(tmp_path, SWEEP))
    results = {}
    for backend in ("ray", "local"):
        d = start(sweep, str(tmp_path / backend))
        outcome = run_sweep(d, workers=2, backend=backend, echo=lambda m: None)
        assert outcome.finished and outcome.counts["done"] == 4, status(d.path)
        results[backend] = {t: (r["metric"], r["train_loss"], r["test"]) for t, r in status(d.path).items()}
    assert results["ray"] == results["local"]
    import ray

    assert not ray.is_initialized()  # the local instance the sweep started is gone
