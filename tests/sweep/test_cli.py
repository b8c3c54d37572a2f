"""``tfconf sweep`` through the real command line: dry runs, errors, a run, status, plot."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
from typer.testing import CliRunner

from .util import run, sweep_config

SWEEP = """\
  grid:
    solver.base_lr: [0.1, 0.01]
    layers.ip1.num_output: [8, 16]
  zip:
    - {solver.momentum: [0.9, 0.0], solver.weight_decay: [0.0005, 0.0]}
"""


@pytest.mark.parametrize("command", [["sweep", "run"], ["sweep"]])
def test_dry_run_prints_the_validated_trials(tmp_path, command):
    path = sweep_config(tmp_path, SWEEP)
    r = run([*command, path, "--dry-run"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "8 trials (grid 2 x 2, zip 2); metric test.accuracy (max)"
    assert lines[1].split() == ["trial", "solver.base_lr", "layers.ip1.num_output", "solver.momentum",
                                "solver.weight_decay"]
    assert lines[3].split() == ["t000", "0.1", "8", "0.9", "0.0005"]
    assert lines[10].split() == ["t007", "0.01", "16", "0", "0"]
    assert len(lines) == 11 and not os.path.exists(tmp_path / "sweeps")


def test_dry_run_json(tmp_path):
    path = sweep_config(tmp_path, SWEEP + "  scheduler: {type: successive_halving, min_iter: 5, eta: 2}\n")
    r = run(["sweep", path, "--dry-run", "--json", "--set", "solver.max_iter=20"])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["rungs"] == [5, 10, 20] and out["metric"] == "test.accuracy" and len(out["trials"]) == 8
    assert out["trials"][1] == {"id": "t001", "params": {"solver.base_lr": 0.1, "layers.ip1.num_output": 8,
                                                          "solver.momentum": 0.0, "solver.weight_decay": 0.0},
                                "overrides": ["solver.base_lr=0.1", "layers.ip1.num_output=8", "solver.momentum=0.0",
                                              "solver.weight_decay=0.0"]}


@pytest.mark.parametrize("sweep, expected", [
    ("  grid:\n    layers.conv1.num_output: [4]\n",
     r"sweep\.yaml:\d+:5: sweep\.grid\['layers\.conv1\.num_output'\]: no layer named 'conv1' in layers; known: ip1, "),
    ("  grid:\n    solver.base_lr: [0.1, 0]\n",
     r"sweep\.yaml:\d+:27: solver\.base_lr: trial t001 \(solver\.base_lr=0\): must be > 0\. Received: 0$"),
])
def test_a_bad_sweep_fails_up_front_with_one_located_line(tmp_path, sweep, expected):
    sweep_config(tmp_path, sweep)
    r = run(["sweep", "run", "sweep.yaml", "--out", tmp_path / "out"], cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(expected, lines[0]), r.stderr
    assert not os.path.exists(tmp_path / "out")  # nothing started


def test_usage_errors(tmp_path):
    path = sweep_config(tmp_path, SWEEP)
    r = run(["sweep", "run", "--resume", tmp_path / "nothing"])
    assert r.returncode == 2 and r.stderr.strip() == f"error: {tmp_path / 'nothing'}: no such sweep folder"
    r = run(["sweep", "run", path, "--backend", "slurm", "--out", tmp_path / "o"])
    assert r.returncode == 2 and "--backend must be local or ray" in r.stderr
    assert not os.path.exists(tmp_path / "o")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    path = sweep_config(tmp, "  grid:\n    solver.base_lr: [0.1, 0.02]\n")
    r = run(["sweep", path, "--workers", "2", "--out", tmp / "out"])
    return tmp / "out", r


def test_a_run_prints_a_ranked_table_naming_the_best(finished):
    out, r = finished
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "t000 done at iteration 30" in text and "t001 done at iteration 30" in text
    table = text[text.index("rank  trial"):].splitlines()
    assert table[2].split()[:3] == ["1", table[2].split()[1], "done"]
    best = table[2].split()[1]
    assert f"best: {best} (solver.base_lr=" in text
    assert f"config:  {out / best / 'config.yaml'}" in text
    assert f"weights: {out / best / 'snapshots' / 'tiny_iter_30.safetensors'}" in text
    r2 = run(["sweep", "status", out])
    assert r2.returncode == 0 and r2.stdout.startswith("2 done") and f"best: {best}" in r2.stdout
    r3 = run(["sweep", "run", "--resume", out, "--json"])  # nothing left to do
    assert r3.returncode == 0 and json.loads(r3.stdout)["best"]["trial"] == best


def test_plot(finished, tmp_path):
    pytest.importorskip("matplotlib")
    out, _ = finished
    r = run(["sweep", "plot", out, "-o", tmp_path / "sweep.png"])
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib(finished, tmp_path, monkeypatch):
    from tfconf.cli import app

    out, _ = finished
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = CliRunner().invoke(app, ["sweep", "plot", str(out), "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2
    assert "tfconf sweep plot needs matplotlib: pip install 'tfconf[plot]'" in r.output


def test_ray_missing_is_a_clear_error(tmp_path, monkeypatch):
    from tfconf.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)
    path = sweep_config(tmp_path, SWEEP)
    r = CliRunner().invoke(app, ["sweep", "run", path, "--backend", "ray", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--backend ray needs Ray: pip install 'tfconf[ray]'" in r.output
    assert not os.path.exists(tmp_path / "o")


def test_the_lenet_sweep_config_expands():
    pytest.importorskip("mlxtend")
    from .util import REPO

    r = run(["sweep", REPO / "configs" / "lenet_sweep.yaml", "--dry-run", "--json"])
    assert r.returncode == 0, r.stderr
    trials = json.loads(r.stdout)["trials"]
    assert len(trials) == 8 and trials[2]["params"] == {"solver.base_lr": 0.02, "layers.conv1.num_output": 32,
                                                        "solver.momentum": 0.9, "solver.weight_decay": 0.0005}
