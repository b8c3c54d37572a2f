"""Synchronous data-parallel training from a config on a local cluster: two workers with batch B
train the weights one process trains with batch 2B; a worker killed mid-training costs a restart
from the last snapshot and nothing else."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from tfconf.train.restarts import restarting
from tfconf.train.distributed import DistributedSolver
from tfconf.train import runner
from tfconf.train.solver import Solver

from .util import LENET, load, max_diff, write

ITERS = 8


def _single_process(path, *overrides):
    cfg = load(path, "distributed=null", "data.train.batch_size=32", *overrides)
    s = Solver(cfg.net, None, root=cfg.root)
    try:
        init = s.weights()
        losses = [s.step()[0] for _ in range(ITERS)]
        return init, losses, s.weights()
    finally:
        s.close()


@pytest.mark.parametrize("strategy", ["parameter_server", "allreduce"])
def test_two_synchronous_workers_train_the_weights_of_one_process_with_twice_the_batch(ray_local, tmp_path,
                                                                                       strategy):
    path = write(tmp_path, "net.yaml", LENET)
    init, losses, want = _single_process(path)
    cfg = load(path, f"distributed.strategy={strategy}")
    d = DistributedSolver(cfg.net, str(tmp_path), root=cfg.root)
    try:
        assert max_diff(d.weights(), init) == 0.0  # the same initialization, bit for bit
        got_losses = [d.step()[0] for _ in range(ITERS)]
        got = d.weights()
        diff = max_diff(got, want)
        print(f"{strategy}: max |w_2workers - w_1process| after {ITERS} iterations = {diff:.3g}")
        assert diff < 1e-6
        np.testing.assert_allclose(got_losses, losses, rtol=1e-6)
        assert abs(got_losses[-1] - got_losses[0]) > 1e-3  # it did train
        if strategy == "allreduce":  # every replica holds the same bits
            names = [[r[k].op.name for k in d.params] for r in d._replicas]
            values = d.sess.variable_values([n for replica in names for n in replica])
            for replica in names[1:]:
                for a, b in zip(names[0], replica):
                    np.testing.assert_array_equal(values[a], values[b])
            assert {_placement(d)[n] for n in names[1]} == {"/job:worker/replica:0/task:1/device:CPU:0"}
        else:
            where = _placement(d)
            assert {where[v.op.name] for v in d.params.values()} == {"/job:ps/replica:0/task:0/device:CPU:0"}
        # the snapshot is the one-process format: it resumes in one process with twice the batch
        _, spath = d.save(os.path.join(tmp_path, "snap"))
        test = d.test()
        assert set(test) == {"accuracy", "loss"}
    finally:
        d.close()
    single = load(path, "distributed=null", "data.train.batch_size=32")
    s = Solver(single.net, None, root=single.root)
    try:
        s.restore(spath)
        assert s.iteration == ITERS and s.train_data.iteration == ITERS
        assert max_diff(s.weights(), got) == 0.0
    finally:
        s.close()


def _placement(d):
    """Where the training step's ops run (the plan of its feed signature: shards, lr, t)."""
    feeds = {ph: None for inputs in d._tower_inputs for ph in inputs.values()}
    feeds.update({d.lr: None, d.t: None})
    return d.sess.placement([d.train_op, d._losses], feeds)


def _complete_snapshot(run_dir, iteration):
    base = os.path.join(run_dir, "snapshots", f"lenet_small_iter_{iteration}")
    return os.path.exists(base + ".solverstate.safetensors") and os.path.exists(base + ".safetensors")


def _kill_when_snapshot(ray, run_dir, iteration, task, killed):
    """Kill ``task``'s actor once the run has a complete snapshot at ``iteration``."""
    end = time.monotonic() + 120
    while time.monotonic() < end and not _complete_snapshot(run_dir, iteration):
        time.sleep(0.002)
    names = [n for n in ray.util.list_named_actors() if n.startswith("tfconf-") and n.endswith(task)]
    for name in names:
        ray.kill(ray.get_actor(name), no_restart=True)
        killed.append(name)


@pytest.mark.slow
def test_a_worker_killed_mid_training_costs_a_restart_from_the_snapshot(ray_local, tmp_path):
    path = write(tmp_path, "net.yaml", LENET)
    cfg = load(path, "solver.max_iter=40", "solver.snapshot=10", "solver.test_interval=20")
    reference = runner.train(cfg, out=str(tmp_path / "reference"), quiet=True)
    run_dir = str(tmp_path / "run")
    killed, said = [], []
    killer = threading.Thread(target=_kill_when_snapshot, args=(ray_local, run_dir, 10, "/job:worker/task:1", killed))
    killer.start()
    try:
        result = restarting(runner.train, max_restarts=2, echo=said.append)(cfg, out=run_dir, quiet=True)
    finally:
        killer.join()
    assert len(killed) == 1, killed
    restarts = [m for m in said if "restarting" in m]
    assert len(restarts) == 1, said
    assert "task /job:worker/task:1" in restarts[0] and "restarting (1 of 2) from" in restarts[0]
    assert "lenet_small_iter_" in restarts[0]  # from a snapshot, not from the beginning
    assert result["iterations"] == 40 and result["run_dir"] == run_dir
    # resumed bit-exactly: the weights an uninterrupted run ends with
    from tfconf.train.snapshot import load_tensors

    got = load_tensors(os.path.join(run_dir, "snapshots", "lenet_small_iter_40.safetensors"))[0]
    want = load_tensors(os.path.join(reference["run_dir"], "snapshots", "lenet_small_iter_40.safetensors"))[0]
    assert max_diff(got, want) == 0.0
    import json

    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        events = [(e["iteration"], e["phase"]) for e in map(json.loads, f)]
    assert len(events) == len(set(events))  # what the failed attempt logged after its snapshot is gone
    assert result["test"] == reference["test"]
