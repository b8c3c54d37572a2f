"""Kill-and-resume, atomic snapshots, Ctrl-C and divergence, on real ``tfconf train`` processes."""

from __future__ import annotations

import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tfconf.train import snapshot as snap

from .util import (
    DIGITS, ENV, SLOW, assert_same_tensors, complete_snapshots, invoke, load, one_error_line, popen, run,
    wait_for, weights_path, write,
)

N = 600  # iterations of the DIGITS net: about a second of training


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted N-iteration run everything below must reproduce bit for bit."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = write(tmp, "dig.yaml", DIGITS)
    r = invoke(["train", cfg, "--out", tmp / "run", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[-1])["iterations"] == N
    return cfg, tmp / "run"


def _events(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _kill_after_first_snapshot(cfg, run_dir, extra_delay=0.0):
    p = popen(["train", cfg, "--out", run_dir, "-q"])
    try:
        wait_for(lambda: complete_snapshots(run_dir), proc=p)
        time.sleep(extra_delay)
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGKILL
    return p


def test_sigkill_then_resume_is_bit_identical(reference, tmp_path):
    cfg, ref = reference
    run_dir = tmp_path / "killed"
    _kill_after_first_snapshot(cfg, run_dir)
    done = complete_snapshots(run_dir)
    assert done and max(done) < N, "the process was not killed mid-way"
    r = invoke(["train", cfg, "--resume", run_dir, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[-1])["iterations"] == N
    # the net has Dropout (generator state restored) and shuffled data (position restored)
    assert_same_tensors(load(weights_path(run_dir, "dig", N)), load(weights_path(ref, "dig", N)))
    slots = {k: v for k, v in load(complete_snapshots(run_dir)[N]).items()}
    assert_same_tensors(slots, load(complete_snapshots(ref)[N]))  # momentum too
    # what the killed run logged after its snapshot is not logged twice: the metrics are the same
    assert _events(run_dir) == _events(ref)


def test_resume_from_a_given_snapshot_file(reference, tmp_path):
    cfg, ref = reference
    run_dir = tmp_path / "copy"
    (run_dir / "snapshots").mkdir(parents=True)
    for f in glob.glob(str(ref / "snapshots" / "dig_iter_240.*")) + glob.glob(str(ref / "snapshots" / "dig_iter_480.*")):
        shutil.copy(f, run_dir / "snapshots")
    state = run_dir / "snapshots" / "dig_iter_240.solverstate.safetensors"
    r = invoke(["train", cfg, "--resume", state])
    assert r.exit_code == 0, r.output
    assert f"resumed from {state} at iteration 240" in r.stdout
    assert_same_tensors(load(weights_path(run_dir, "dig", N)), load(weights_path(ref, "dig", N)))


def test_resume_errors(reference, tmp_path):
    cfg, _ = reference
    r = invoke(["train", cfg, "--resume", tmp_path / "nothing"])
    assert r.exit_code == 2 and "no complete snapshot" in r.stderr
    assert not (tmp_path / "nothing").exists()  # a bad --resume creates no run folder
    r = invoke(["train", cfg, "--resume", tmp_path / "x_iter_3.solverstate.safetensors"])
    assert r.exit_code == 2 and "no such snapshot" in r.stderr


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_random_moments_leaves_only_complete_snapshots(tmp_path, seed):
    cfg = write(tmp_path, "dig.yaml", DIGITS.replace("snapshot: 20", "snapshot: 1"))  # always writing
    run_dir = tmp_path / "run"
    _kill_after_first_snapshot(cfg, run_dir, extra_delay=random.Random(seed).uniform(0.0, 0.4))
    folder = run_dir / "snapshots"
    for name in os.listdir(folder):
        if name.startswith(snap.TMP_PREFIX):
            continue  # a temp file the kill interrupted: never picked by --resume
        assert name.endswith(".safetensors"), name
        tensors, meta = snap.load_tensors(str(folder / name))  # every named file is complete
        assert tensors and meta["format"] in ("tfconf-weights", "tfconf-solverstate")
    done = complete_snapshots(run_dir)
    newest = max(done)
    assert snap.latest_snapshot(str(folder)) == done[newest]
    r = invoke(["train", cfg, "--resume", run_dir, "--max-iter", newest + 2])
    assert r.exit_code == 0, r.output
    assert f"resumed from {done[newest]} at iteration {newest}" in r.stdout
    assert max(complete_snapshots(run_dir)) == newest + 2


_CRASH = """
import os, sys
real, victim = os.replace, sys.argv[1]
def crash(src, dst, *a, **k):
    if str(dst).endswith(os.sep + victim):
        os._exit(9)  # the machine dies after the temp file is written, before the rename
    return real(src, dst, *a, **k)
os.replace = crash
sys.argv = ["tfconf"] + sys.argv[2:]
from tfconf.cli import main
main()
"""


@pytest.mark.parametrize("victim", ["dig_iter_60.safetensors", "dig_iter_60.solverstate.safetensors"])
def test_crash_while_writing_a_snapshot_keeps_the_previous_one(reference, tmp_path, victim):
    cfg, ref = reference
    run_dir = tmp_path / "run"
    p = subprocess.run([sys.executable, "-c", _CRASH, victim, "train", cfg, "--out", run_dir, "-q"],
                       env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 9, p.stderr
    names = os.listdir(run_dir / "snapshots")
    temps = [n for n in names if n.startswith(snap.TMP_PREFIX)]
    assert len(temps) == 1  # the interrupted write left its temp file, under a name nothing reads
    assert victim not in names
    done = complete_snapshots(run_dir)
    assert sorted(done) == [20, 40]
    assert snap.latest_snapshot(str(run_dir / "snapshots")) == done[40]
    # the previous snapshot is intact: identical to the reference run's
    assert_same_tensors(load(weights_path(run_dir, "dig", 40)), load(weights_path(ref, "dig", 40)))
    r = invoke(["train", cfg, "--resume", run_dir, "--json"])
    assert r.exit_code == 0, r.output
    assert_same_tensors(load(weights_path(run_dir, "dig", N)), load(weights_path(ref, "dig", N)))


def test_failed_write_in_process_removes_its_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "w.safetensors"
    snap.save_tensors(str(target), {"a": np.arange(3, dtype=np.float32)})
    calls = []

    def boom(src, dst):
        calls.append(src)
        assert os.path.exists(src)  # the temp file was fully written
        raise OSError("disk full")

    monkeypatch.setattr(snap.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        snap.save_tensors(str(target), {"a": np.zeros(3, dtype=np.float32)})
    monkeypatch.undo()
    assert calls and not os.path.exists(calls[0])
    assert os.listdir(tmp_path) == ["w.safetensors"]
    np.testing.assert_array_equal(snap.load_tensors(str(target))[0]["a"], np.arange(3, dtype=np.float32))


# ------------------------------------------------------------------------------------------- Ctrl-C
def _start_slow(tmp_path):
    cfg = write(tmp_path, "slow.yaml", SLOW)
    log = open(tmp_path / "stdout.txt", "w")
    p = popen(["train", cfg, "--out", tmp_path / "run"], stdout=log)
    # "iter 1" is printed when the first iteration ends: the second one is running now
    wait_for(lambda: "iter      1  loss" in (tmp_path / "stdout.txt").read_text(), timeout=120, proc=p)
    return p, log


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_saves_a_snapshot_and_exits_130_or_143(tmp_path, sig, code):
    p, log = _start_slow(tmp_path)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    log.close()
    out = (tmp_path / "stdout.txt").read_text()
    assert p.returncode == code, err
    assert "Traceback" not in err
    assert "done:" not in out  # an interrupted run does not look finished
    lines = [ln for ln in out.splitlines() if ln.startswith(f"interrupted by {sig.name} at iteration 2 of 100: ")]
    assert len(lines) == 1, out
    state = lines[0].split(" saved to ", 1)[1].split(";")[0]
    assert lines[0].endswith(f"continue with --resume {tmp_path / 'run'}")
    assert os.path.exists(state) and state.endswith("slow_iter_2.solverstate.safetensors")
    assert snap.latest_snapshot(str(tmp_path / "run" / "snapshots")) == state
    assert load(state[: -len(".solverstate.safetensors")] + ".safetensors")["ip1/weights"].shape == (4096, 3072)


def test_second_ctrl_c_stops_at_once(tmp_path):
    p, log = _start_slow(tmp_path)
    p.send_signal(signal.SIGINT)
    time.sleep(0.2)  # still inside the (one-second) iteration
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    log.close()
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted: snapshot saved" not in (tmp_path / "stdout.txt").read_text()
    assert not complete_snapshots(tmp_path / "run")


# --------------------------------------------------------------------------------------- divergence
def test_exploding_weights_are_divergence_before_nan_and_keep_the_last_snapshot(tmp_path):
    cfg = write(tmp_path, "dig.yaml", DIGITS.replace("snapshot: 20", "snapshot: 1"))
    run_dir = tmp_path / "run"
    r = run(["train", cfg, "--out", run_dir, "--set", "solver.base_lr=1e6", "--set", "solver.test_interval=0"])
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert re.match(r"error: training diverged: the loss grew from [\d.]+ \(iteration 0\) to [\d.e+]+ at "
                    r"iteration 1 without becoming NaN: the weights are exploding \(lr 1e\+06\)", line), line
    done = complete_snapshots(run_dir)
    assert done, "no snapshot before the divergence"
    newest = done[max(done)]
    assert line.endswith(f"the last good snapshot is {newest}")
    for path in (newest, newest[: -len(".solverstate.safetensors")] + ".safetensors"):
        for k, v in load(path).items():
            assert np.all(np.isfinite(v)) and np.abs(v).max() < 1e10, (path, k)


def test_nan_divergence_names_the_op_and_its_layer(tmp_path):
    text = DIGITS.replace("  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label]}",
                          "  - {name: log, type: Log, bottom: ip2, shift: -100.0}\n"
                          "  - {name: loss, type: SoftmaxWithLoss, bottom: [log, label]}")
    cfg = write(tmp_path, "dig.yaml", text)
    r = run(["train", cfg, "--out", tmp_path / "run", "--set", "solver.test_interval=0"])
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert line.startswith("error: training diverged: loss became nan at iteration 0: "), line
    m = re.search(r"op '([^']+)' \(type (\w+)(?:, run fused with .*? as one \w+)?\) of layer '(\w+)' "
                  r"\((\S+):(\d+):(\d+)\) produced (NaN|Inf)", line)
    assert m, line
    assert m.group(4) == cfg and m.group(3) == "log" and m.group(5) == "12", line
    assert line.endswith("no snapshot was saved before it")
