"""Running sweeps: status bookkeeping, failure isolation, --max-failures, successive halving
(with pauses that do not change the numbers), and resume after SIGKILL of the sweep process."""

from __future__ import annotations

import csv
import json
import os
import signal
import time

import numpy as np
import pytest

from tfconf.sweep.executors import usable_cores
from tfconf.sweep.expand import expand
from tfconf.sweep.run import resume, run_sweep, start
from tfconf.sweep.status import SweepDirError
from tfconf.train import snapshot as snap

from .util import HERE, NET, alive, popen, run, status, sweep_config


def _run(tmp_path, sweep, workers=2, net=NET, **kw):
    path = sweep_config(tmp_path, sweep, net=net)
    log = []
    d = start(expand(path), str(tmp_path / "out"))
    outcome = run_sweep(d, workers=workers, echo=log.append, **kw)
    return d, outcome, log


def test_status_bookkeeping_and_results(tmp_path):
    seen_running = []
    path = sweep_config(tmp_path, "  grid:\n    solver.base_lr: [0.2, 0.05]\n    layers.ip1.num_output: [4, 16]\n")
    d = start(expand(path), str(tmp_path / "out"))
    assert {r["state"] for r in status(d.path).values()} == {"pending"}
    assert sorted(os.listdir(d.path)) == [".lock", "status.json", "sweep.json", "sweep.yaml", "t000", "t001", "t002",
                                          "t003"]

    def echo(msg):  # each message follows the status write it reports
        if msg.endswith(" started"):
            tid = msg.split()[0]
            rec = status(d.path)[tid]
            seen_running.append((tid, rec["state"], rec["attempts"], alive(rec["pid"])))

    outcome = run_sweep(d, workers=2, echo=echo)
    assert sorted(seen_running) == [(f"t00{i}", "running", 1, True) for i in range(4)]
    assert outcome.finished and outcome.counts["done"] == 4 and outcome.stopped_early is None
    recs = status(d.path)
    for tid, rec in recs.items():
        result = json.loads(open(os.path.join(d.path, tid, "result.json")).read())
        assert rec["state"] == "done" and rec["error"] is None and rec["iterations"] == 30
        assert rec["metric"] == result["test"]["accuracy"]
        assert os.path.exists(os.path.join(d.path, rec["weights"]))
        for f in ("config.yaml", "metrics.jsonl", "metrics.csv", "log.txt"):  # a `tfconf train` run folder
            assert os.path.exists(os.path.join(d.path, tid, f))
    assert not [f for f in os.listdir(d.path) if f.startswith(snap.TMP_PREFIX)]  # atomic writes left nothing
    # two trials at a time share the cores: each got cores // 2 BLAS threads
    n = max(1, usable_cores() // 2)
    first = open(os.path.join(d.path, "t003", "log.txt")).readline()
    assert f"OPENBLAS_NUM_THREADS={n}, OMP_NUM_THREADS={n}, MKL_NUM_THREADS={n}" in first
    rows = list(csv.DictReader(open(os.path.join(d.path, "results.csv"))))
    accs = [float(r["test.accuracy"]) for r in rows]
    assert accs == sorted(accs, reverse=True) and [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[0]["trial"] == outcome.best
    summary = d.summary()
    assert f"best: {outcome.best} (" in summary
    assert os.path.join(d.path, outcome.best, "config.yaml") in summary
    assert os.path.join(d.path, recs[outcome.best]["weights"]) in summary


def test_a_failing_trial_is_isolated(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    net = NET.replace("  - {name: relu1, type: ReLU}\n",
                      "  - {name: relu1, type: ReLU}\n"
                      "  - {name: crash, type: Python, module: sweep_crash_layer, layer: Crash}\n")
    d, outcome, log = _run(tmp_path, """\
  zip:
    - solver.base_lr: [0.1, 1.0e+30, 0.1, 0.1]
      layers.crash.params: [{mode: none}, {mode: none}, {mode: kill}, {mode: raise}]
""", net=net)
    recs = status(d.path)
    assert [recs[t]["state"] for t in ("t000", "t001", "t002", "t003")] == ["done", "failed", "failed", "failed"]
    assert recs["t001"]["error"].startswith("training diverged: ")
    assert recs["t002"]["error"].startswith("killed by SIGKILL (out of memory?)")
    assert "boom" in recs["t003"]["error"]
    assert outcome.best == "t000" and outcome.counts == {"pending": 0, "running": 0, "done": 1, "stopped": 0,
                                                         "failed": 3}
    assert "t002 failed: killed by SIGKILL" in "\n".join(log)
    assert "t001 failed: training diverged" in d.summary()


def test_max_failures_stops_the_sweep(tmp_path):
    d, outcome, log = _run(tmp_path, "  grid:\n    solver.base_lr: [1.0e+30, 0.1, 0.1]\n", workers=1,
                           max_failures=1)
    assert outcome.stopped_early == "1 trial failed (--max-failures 1)"
    assert [status(d.path)[t]["state"] for t in ("t000", "t001", "t002")] == ["failed", "pending", "pending"]
    # the rest runs on resume; the failure is kept unless --retry-failed
    outcome = run_sweep(resume(d.path), workers=2, echo=lambda m: None)
    assert outcome.finished and outcome.counts["done"] == 2 and outcome.counts["failed"] == 1


SH_NET = NET.replace("max_iter: 30", "max_iter: 40\n  lr_policy: {type: poly, power: 2}").replace(
    "snapshot: 10", "snapshot: 0")


def test_successive_halving(tmp_path):
    d, outcome, log = _run(tmp_path, """\
  grid:
    solver.base_lr: [0.3, 0.1, 0.03, 0.01]
  scheduler: {type: successive_halving, min_iter: 10, eta: 2}
""", net=SH_NET)
    assert d.meta["rungs"] == [10, 20, 40]
    recs = status(d.path)
    at10 = sorted(recs, key=lambda t: (-recs[t]["rungs"]["10"], t))
    assert {recs[t]["state"] for t in at10[2:]} == {"stopped"} and {recs[t]["stopped_at"] for t in at10[2:]} == {10}
    at20 = sorted(at10[:2], key=lambda t: (-recs[t]["rungs"]["20"], t))
    assert recs[at20[1]]["state"] == "stopped" and recs[at20[1]]["stopped_at"] == 20
    best = at20[0]
    assert recs[best]["state"] == "done" and recs[best]["iterations"] == 40 and outcome.best == best
    assert sorted(recs[best]["rungs"]) == ["10", "20", "40"] and recs[best]["attempts"] == 3
    assert [recs[t]["iterations"] for t in at10[2:]] == [10, 10]
    # trained in three pauses, with a poly lr that depends on max_iter: the same weights as in one go
    from tfconf.frontend import config as cfgmod
    from tfconf.train.runner import train

    cfg = cfgmod.load(os.path.join(d.path, best, "config.yaml"))
    train(cfg, out=str(tmp_path / "straight"), quiet=True)
    a, _ = snap.load_tensors(os.path.join(d.path, recs[best]["weights"]))
    b, _ = snap.load_tensors(str(tmp_path / "straight" / "snapshots" / "tiny_iter_40.safetensors"))
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    # resuming a finished sweep runs nothing and changes nothing
    before = status(d.path)
    outcome = run_sweep(resume(d.path), workers=2, echo=lambda m: None)
    assert status(d.path) == before | {} and outcome.best == best


@pytest.mark.slow
def test_resume_after_sigkill_of_the_sweep(tmp_path):
    path = sweep_config(tmp_path, """\
  grid:
    solver.max_iter: [60, 3000]
    solver.base_lr: [0.1, 0.05]
""", net=NET.replace("snapshot: 10", "snapshot: 200"))
    out = tmp_path / "out"
    p = popen(["sweep", "run", path, "--out", out, "--workers", "2"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the short trials done, a long one past a snapshot
            try:
                recs = status(out)
            except (OSError, ValueError):
                recs = {}
            if (recs and all(recs[t]["state"] == "done" for t in ("t000", "t001"))
                    and snap.latest_snapshot(str(out / "t002" / "snapshots"))):
                break
            assert p.poll() is None, p.communicate()
            time.sleep(0.02)
        else:
            raise AssertionError("the sweep did not get there")
        with pytest.raises(SweepDirError, match=f"{out} is in use by another sweep process \\(pid {p.pid}\\)"):
            resume(str(out))  # one sweep process per folder
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    recs = status(out)
    assert recs["t002"]["state"] == "running" and recs["t002"]["iterations"] == 0
    pids = [recs[t]["pid"] for t in ("t002", "t003")]
    end = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < end:  # trials die with their sweep
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)
    done_before = {t: (recs[t], os.path.getmtime(out / t / "result.json")) for t in ("t000", "t001")}

    r = run(["sweep", "run", "--resume", out, "--json"])
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.splitlines()[-1])
    assert res["counts"]["done"] == 4
    recs = status(out)
    for t, (rec, mtime) in done_before.items():  # no finished trial ran again
        assert recs[t] == rec and os.path.getmtime(out / t / "result.json") == mtime
    assert recs["t002"]["attempts"] == 2 and recs["t002"]["iterations"] == 3000
    log = (out / "t002" / "log.txt").read_text()
    assert "resumed from" in log and json.loads((out / "t002" / "result.json").read_text())["resumed"]
