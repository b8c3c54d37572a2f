"""SIGTERM is Ctrl-C: cluster schedulers (SLURM, Kubernetes, Ray) stop a job with SIGTERM, so
``train`` must then finish its iteration, snapshot and stop, exit code 143 (SIGINT: 130), the
``--json`` line saying ``"interrupted": true`` and the iteration, and ``--resume`` must continue
bit-identically. ``sweep run`` on SIGTERM exits 143 with its status kept, and ``sweep run --resume``
finishes it."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

from .util import Box, complete_snapshots, diff_states, spirals, success, wait_for

N = 1500  # iterations of the long spirals run (a few seconds): a signal lands in the middle


def _long(box: Box, max_iter=N, name="long.yaml"):
    text = spirals(max_iter=max_iter, snapshot=500).replace("test_interval: 10", "test_interval: 500") \
        .replace("display: 5", "display: 20")
    return box.write(name, text)


def _train_events(run_dir):
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return [e for e in out if e.get("phase") == "train"]


def _interrupt(box: Box, cfg, run_dir, sig, *extra):
    before = box.state()
    p = box.popen(["train", cfg, "--out", run_dir, "--json", *extra])
    try:
        wait_for(lambda: _train_events(run_dir), timeout=120, proc=p)
        p.send_signal(sig)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    changed = diff_states(before, box.state(), [run_dir])
    assert not changed, f"the interrupted training changed files outside its run folder: {changed[:10]}"
    return p.returncode, out, err


def _json_line(out):
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert lines, f"no --json line in\n{out}"
    return json.loads(lines[-1])


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signal_snapshots_and_exits_with_its_code(box, sig, code):
    cfg = _long(box, max_iter=200000)  # cannot finish before the signal
    run_dir = box.work / "run"
    rc, out, err = _interrupt(box, cfg, run_dir, sig)
    assert rc == code, (rc, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    result = _json_line(out)
    assert result.get("interrupted") is True, result
    iteration = result.get("iteration", result.get("iterations"))
    assert isinstance(iteration, int) and 0 < iteration < 200000, result
    done = complete_snapshots(run_dir)
    assert iteration in done, f"no snapshot at the iteration it stopped ({iteration}): {sorted(done)}"


def _weights(run_dir, iteration):
    from tfconf.train.snapshot import load_tensors

    return load_tensors(str(run_dir / "snapshots" / f"tiny_iter_{iteration}.safetensors"))[0]


@pytest.mark.slow
def test_sigterm_then_resume_is_bit_identical(box):
    cfg = _long(box)
    ref = box.work / "ref"
    success(box.run(["train", cfg, "--out", ref, "-q"], allowed=[ref], timeout=300))
    run_dir = box.work / "run"
    rc, out, err = _interrupt(box, cfg, run_dir, signal.SIGTERM)
    assert rc == 143, (rc, out, err)
    stopped = _json_line(out)
    assert stopped.get("interrupted") is True
    assert max(complete_snapshots(run_dir)) < N, "the run was not interrupted"
    o = success(box.run(["train", cfg, "--resume", run_dir, "--json"], allowed=[run_dir], timeout=300))
    assert _json_line(o.out)["iterations"] == N
    a, b = _weights(run_dir, N), _weights(ref, N)
    assert sorted(a) == sorted(b)
    for k in a:
        assert np.array_equal(a[k], b[k]), f"{k} differs after SIGTERM + resume"


# ------------------------------------------------------------------------------------------ sweeps
def _status(sweep_dir):
    try:
        return json.loads((sweep_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None


def _states(status):
    trials = status.get("trials", status) if isinstance(status, dict) else {}
    return {k: v.get("state") for k, v in trials.items() if isinstance(v, dict)}


@pytest.mark.slow
def test_sigterm_stops_a_sweep_that_resume_finishes(box):
    text = spirals(max_iter=3000, snapshot=200).replace("test_interval: 10", "test_interval: 1000") \
        .replace("display: 5", "display: 20")
    cfg = box.write("sweep.yaml", text + "sweep:\n  grid:\n    solver.base_lr: [0.1, 0.05]\n")
    sweep_dir = box.work / "sw"
    p = box.popen(["sweep", "run", cfg, "--workers", "1", "--out", sweep_dir])
    try:
        wait_for(lambda: any(_train_events(t) for t in sweep_dir.glob("t0*")), timeout=120, proc=p)
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 143, (p.returncode, out, err)
    assert "Traceback" not in err
    status = _status(sweep_dir)
    assert status is not None, "status.json is gone or unreadable"
    assert set(_states(status).values()) != {"done"}, f"the sweep finished before SIGTERM: {status}"
    o = success(box.run(["sweep", "run", "--resume", sweep_dir, "--workers", "1"], allowed=[sweep_dir],
                        timeout=400))
    assert set(_states(_status(sweep_dir)).values()) == {"done"}, o
