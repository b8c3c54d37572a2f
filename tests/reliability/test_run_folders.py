"""Run folders are owned. ``train --out DIR`` into a folder that holds a run refuses (exit 2,
pointing at --resume and --force) and changes nothing there; ``--force`` replaces the run and says
so. Two trainings into one folder at once cannot interleave: the second is refused naming the
first one's pid (the lock file DIR/.tfconf.lock), and the first completes normally."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest

from .util import SLOW, Box, complete_snapshots, diff_states, spirals, success, train_ok, tree_state, user_error, \
    wait_for

REFUSE = r"(?s)(?=.*--resume)(?=.*--force)"


@pytest.fixture
def old_run(box):
    """A finished 40-iteration run in work/run (snapshots 10..40, metrics, config.yaml)."""
    cfg = box.write("net.yaml", spirals())
    run_dir = box.work / "run"
    train_ok(box, cfg, run_dir)
    assert sorted(complete_snapshots(run_dir)) == [10, 20, 30, 40]
    return cfg, run_dir


def _refused(box, cfg, run_dir, *extra):
    before = tree_state(run_dir)
    o = box.run(["train", cfg, "--out", run_dir, "-q", *extra])  # nothing allowed to change
    user_error(o, REFUSE)
    assert re.search(re.escape(str(run_dir)), o.err), f"the message does not name the folder\n{o}"
    assert not diff_states(before, tree_state(run_dir)), "the refused training changed the run folder"
    return o


def test_out_folder_holding_a_run_is_refused(box, old_run):
    _refused(box, *old_run)


def test_out_folder_holding_a_run_is_refused_for_another_config(box, old_run):
    _, run_dir = old_run
    other = box.write("other.yaml", spirals(name="other", max_iter=20))
    _refused(box, other, run_dir)


def test_out_folder_holding_only_snapshots_is_refused(box, old_run):
    cfg, run_dir = old_run
    for name in ("metrics.jsonl", "metrics.csv", "config.yaml"):
        (run_dir / name).unlink()
    _refused(box, cfg, run_dir)


def test_out_folder_holding_only_metrics_is_refused(box, old_run):
    cfg, run_dir = old_run
    import shutil

    shutil.rmtree(run_dir / "snapshots")
    _refused(box, cfg, run_dir)


def test_empty_out_folder_is_used(box):
    cfg = box.write("net.yaml", spirals())
    (box.work / "run").mkdir()
    train_ok(box, cfg, box.work / "run")
    assert complete_snapshots(box.work / "run")


def test_force_replaces_the_run_and_says_so(box, old_run):
    cfg, run_dir = old_run
    o = success(box.run(["train", cfg, "--out", run_dir, "--force", "--max-iter", "20"], allowed=[run_dir]))
    assert re.search(r"(?i)replac", o.out + o.err), f"--force does not say what it replaced\n{o}"
    assert sorted(complete_snapshots(run_dir)) == [10, 20], "the old run's snapshots are still there"
    iterations = [json.loads(ln)["iteration"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(iterations) == 20, "the old run's metrics are still there"


# -------------------------------------------------------------------------------------- two at once
def _start_slow(box: Box, run_dir, *extra):
    """A SLOW training (about a second an iteration) that owns ``run_dir`` once it returns."""
    cfg = box.write("slow.yaml", SLOW)
    log = open(box.root / "slow-stdout.txt", "w")
    p = box.popen(["train", cfg, "--out", run_dir, *extra], stdout=log)
    wait_for(lambda: (run_dir / ".tfconf.lock").exists(), timeout=120, proc=p)
    return cfg, p, log


def _stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait(30)


@pytest.mark.slow
def test_second_training_into_a_folder_in_use_is_refused_with_the_pid(box):
    run_dir = box.work / "run"
    cfg, first, log = _start_slow(box, run_dir, "--max-iter", "6", "--set", "solver.snapshot=3")
    try:
        other = box.write("other.yaml", spirals())
        o = box.run(["train", other, "--out", run_dir, "-q"], allowed=[run_dir, log.name])
        assert first.poll() is None, "the first training ended before the second was tried: no race tested"
        user_error(o, rf"\b{first.pid}\b")
        _, err = first.communicate(timeout=300)
        log.close()
        assert first.returncode == 0, err
        assert "Traceback" not in err
    finally:
        _stop(first)
    assert sorted(complete_snapshots(run_dir)) == [3, 6]
    assert not list((run_dir / "snapshots").glob("tiny_*")), "the second training wrote snapshots"
    iterations = [json.loads(ln)["iteration"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert iterations == sorted(iterations), "two runs' metrics are interleaved"


@pytest.mark.slow
def test_resume_into_a_folder_in_use_is_refused_with_the_pid(box):
    run_dir = box.work / "run"
    cfg, first, log = _start_slow(box, run_dir, "--set", "solver.snapshot=1")
    try:
        wait_for(lambda: complete_snapshots(run_dir), timeout=120, proc=first)
        o = box.run(["train", cfg, "--resume", run_dir, "-q"], allowed=[run_dir, log.name])
        assert first.poll() is None, "the first training ended before the resume was tried"
        user_error(o, rf"\b{first.pid}\b")
    finally:
        _stop(first)
        log.close()


def test_stale_lock_of_a_dead_process_does_not_block(box):
    """A lock file left by a process that died (kill -9) is not a live owner."""
    cfg = box.write("net.yaml", spirals())
    run_dir = box.work / "run"
    run_dir.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run_dir / ".tfconf.lock").write_text(str(dead.pid))
    train_ok(box, cfg, run_dir)
    assert complete_snapshots(run_dir)
    assert os.path.exists(run_dir / "snapshots")
