"""Every ``tfconf`` command through the real typer app: what train writes into its run folder,
--json, --print-config, --max-iter; test, time, validate, schema, devices, draw."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from .util import REPO, SPIRALS, assert_same_tensors, invoke, load, run, weights_path, write


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run shared by the tests that only read its outputs."""
    tmp = tmp_path_factory.mktemp("trained")
    cfg = write(tmp, "tiny.yaml", SPIRALS)
    out = tmp / "run"
    r = invoke(["train", cfg, "--out", out, "--json", "--set", "solver.base_lr=0.05"])
    assert r.exit_code == 0, r.output
    return cfg, out, r


# ------------------------------------------------------------------------------------------- train
def test_train_writes_the_run_folder(trained):
    cfg, out, _ = trained
    assert sorted(os.listdir(out)) == [".tfconf.lock", "config.yaml", "metrics.csv", "metrics.jsonl", "snapshots"]
    snaps = sorted(os.listdir(out / "snapshots"))
    assert snaps == sorted(f"tiny_iter_{i}{ext}" for i in (10, 20, 30, 40)
                           for ext in (".safetensors", ".solverstate.safetensors"))
    w = load(weights_path(out, "tiny", 40))
    assert sorted(w) == ["ip1/bias", "ip1/weights", "ip2/bias", "ip2/weights"]
    assert w["ip1/weights"].shape == (16, 2) and w["ip2/weights"].shape == (3, 16)
    for f in os.listdir(out / "snapshots"):  # ordinary permissions, not mkstemp's 0600
        assert os.stat(out / "snapshots" / f).st_mode & 0o044 == 0o044 & ~_umask()


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_saved_config_is_the_resolved_config_and_reloads(trained):
    from tfconf.frontend.config import load as load_config

    cfg, out, _ = trained
    saved = load_config(str(out / "config.yaml"))
    assert saved.net.solver.base_lr == 0.05  # the --set override is in it
    assert saved.net.solver.max_iter == 40
    assert [layer.name for layer in saved.net.layers] == ["ip1", "relu1", "drop1", "ip2", "accuracy", "loss"]
    original = load_config(cfg, ["solver.base_lr=0.05"])
    assert saved.loaded.data == original.loaded.data


def test_metrics_files(trained):
    _, out, _ = trained
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [e for e in events if e["phase"] == "train"]
    test = [e for e in events if e["phase"] == "test"]
    assert [e["iteration"] for e in train] == [5, 10, 15, 20, 25, 30, 35, 40]  # display: 5
    assert all(set(e) == {"iteration", "phase", "loss", "lr"} for e in train)
    assert all(np.isfinite(e["loss"]) and e["lr"] == 0.05 for e in train)
    assert [e["iteration"] for e in test] == [0, 10, 20, 30, 40]  # test_interval: 10 (+ initialization)
    assert all(set(e) == {"iteration", "phase", "accuracy", "loss"} and 0 <= e["accuracy"] <= 1 for e in test)
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["iteration", "phase", "name", "value"]
    flat = [[str(e["iteration"]), e["phase"], k, v] for e in events for k, v in e.items()
            if k not in ("iteration", "phase")]
    assert [[a, b, c, float(d)] for a, b, c, d in rows[1:]] == [[a, b, c, float(d)] for a, b, c, d in flat]


def test_json_is_the_last_stdout_line(trained):
    _, out, r = trained
    last = r.stdout.strip().splitlines()[-1]
    result = json.loads(last)
    assert {"run_dir", "iterations", "train_loss", "test", "wall_time"} <= set(result)
    assert result["run_dir"] == str(out)
    assert result["iterations"] == 40
    assert isinstance(result["train_loss"], float) and np.isfinite(result["train_loss"])
    assert set(result["test"]) == {"accuracy", "loss"}
    assert result["wall_time"] > 0
    # the final test metrics are the ones logged at the last iteration
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert result["test"] == {k: v for k, v in events[-1].items() if k not in ("iteration", "phase")}


def test_json_alone_on_stdout_of_a_real_process(tmp_path):
    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    r = run(["train", cfg, "--out", tmp_path / "run", "--json", "--max-iter", "12"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert json.loads(lines[-1])["iterations"] == 12
    assert "Traceback" not in r.stderr


def test_max_iter_overrides_the_solver(tmp_path):
    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    r = invoke(["train", cfg, "--out", tmp_path / "run", "--max-iter", "7", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[-1])["iterations"] == 7
    assert os.path.exists(weights_path(tmp_path / "run", "tiny", 7))  # snapshot_after_train
    assert "max_iter: 7" in (tmp_path / "run" / "config.yaml").read_text()


def test_display_lines_without_json(tmp_path):
    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    r = invoke(["train", cfg, "--out", tmp_path / "run", "--max-iter", "10"])
    assert r.exit_code == 0, r.output
    assert "iter      5  loss" in r.stdout and "iter     10  test  accuracy" in r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith("done: 10 iterations")


def test_print_config(tmp_path):
    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    r = invoke(["train", cfg, "--print-config", "--set", "layers.ip1.num_output=8",
                "--set", "solver.base_lr=0.5", "--max-iter", "3", "--out", tmp_path / "run"])
    assert r.exit_code == 0, r.output
    resolved = yaml.safe_load(r.stdout)
    assert resolved["layers"][0] == {"name": "ip1", "type": "InnerProduct", "bottom": "data", "num_output": 8,
                                     "weight_filler": "xavier"}
    assert resolved["solver"]["base_lr"] == 0.5 and resolved["solver"]["max_iter"] == 3
    assert not (tmp_path / "run").exists()  # printing trains nothing
    # what it prints is itself a valid config
    again = write(tmp_path, "again.yaml", r.stdout)
    assert invoke(["validate", again]).exit_code == 0


def test_default_run_folder_is_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "tiny.yaml", SPIRALS)
    r = invoke(["train", "tiny.yaml", "--max-iter", "2", "--json"])
    assert r.exit_code == 0, r.output
    run_dir = json.loads(r.stdout.splitlines()[-1])["run_dir"]
    assert os.path.dirname(run_dir) == "runs" and os.path.basename(run_dir).startswith("tiny-")
    assert os.path.exists(os.path.join(run_dir, "config.yaml"))


def test_repo_cli_py_and_console_script(tmp_path):
    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    r = subprocess.run([sys.executable, str(REPO / "cli.py"), "validate", cfg], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "ok: tiny" in r.stdout, r.stderr
    exe = shutil.which("tfconf")
    if exe is None:
        pytest.skip("the tfconf console script is not on PATH")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for command in ("train", "test", "time", "validate", "schema", "devices", "draw"):
        assert command in r.stdout


# -------------------------------------------------------------------------------------------- test
def test_test_command_reproduces_the_training_test_metrics(trained):
    cfg, out, r = trained
    final = json.loads(r.stdout.splitlines()[-1])["test"]
    t = invoke(["test", cfg, "--weights", weights_path(out, "tiny", 40), "--json", "--set", "solver.base_lr=0.05"])
    assert t.exit_code == 0, t.output
    metrics = json.loads(t.stdout.strip().splitlines()[-1])
    assert set(metrics) == {"accuracy", "loss"}
    # same weights, same test batches (test_iter of the solver), same seed → the same numbers
    assert metrics == pytest.approx(final, rel=1e-6)


def test_test_command_iterations_and_text_output(trained):
    cfg, out, _ = trained
    w = weights_path(out, "tiny", 40)
    one = json.loads(invoke(["test", cfg, "--weights", w, "--iterations", "1", "--json"]).stdout)
    two = json.loads(invoke(["test", cfg, "--weights", w, "--iterations", "2", "--json"]).stdout)
    assert one != two  # another number of batches, another average
    t = invoke(["test", cfg, "--weights", w, "--iterations", "1"])
    assert t.exit_code == 0
    assert t.stdout.splitlines() == [f"accuracy = {one['accuracy']:.6g}", f"loss = {one['loss']:.6g}"]


def test_test_command_errors(trained, tmp_path):
    cfg, out, _ = trained
    r = invoke(["test", cfg, "--weights", tmp_path / "nope.safetensors"])
    assert r.exit_code == 2 and "nope.safetensors" in r.stderr and "no such file" in r.stderr
    r = invoke(["test", cfg, "--weights", cfg])  # not a safetensors file
    assert r.exit_code == 2 and "not a readable .safetensors file" in r.stderr
    r = invoke(["test", cfg, "--weights", weights_path(out, "tiny", 40), "--set", "layers.ip2.num_output=5"])
    assert r.exit_code == 2
    assert "'ip2'" in r.stderr and "[3, 16]" in r.stderr and "[5, 16]" in r.stderr


# -------------------------------------------------------------------------------------------- time
@pytest.mark.parametrize("kernels", ["auto", "numpy"])
def test_time_names_the_kernels_of_each_layer(tmp_path, monkeypatch, kernels):
    from tfconf.engine.kernels.onednn.lib import available

    monkeypatch.setenv("TFCONF_KERNELS", kernels)
    cfg = os.path.join(REPO, "configs", "lenet_mnist.yaml")
    r = invoke(["time", cfg, "--iterations", "1", "--set", "data.train.batch_size=8"])
    assert r.exit_code == 0, r.output
    rows = {ln.split()[0]: ln.split()[3:] for ln in r.stdout.strip().splitlines()[1:-1]}
    onednn = kernels == "auto" and available()
    for layer in ("conv1", "pool1", "conv2", "pool2"):
        assert rows[layer] == (["onednn"] if onednn else ["reference"]), (layer, r.stdout)


def test_time_lists_every_layer_and_a_total(tmp_path):
    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    r = invoke(["time", cfg, "--iterations", "3"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert lines[0].split() == ["layer", "forward", "ms", "backward", "ms", "kernels"]
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[1:-1]}
    # every layer of the train net (Accuracy is test-only)
    assert ["ip1", "relu1", "drop1", "ip2", "loss"] == [n for n in rows if not n.startswith("(")]
    from tfconf.engine.kernels.onednn.lib import available

    onednn = available() and os.environ.get("TFCONF_KERNELS", "auto") in ("auto", "onednn")
    for name in ("ip1", "relu1", "drop1", "ip2", "loss"):
        fwd, bwd = map(float, rows[name][:2])
        assert fwd >= 0 and bwd >= 0
        assert set(rows[name][2].split("+")) <= {"onednn", "reference"}
    # the inner products run on oneDNN's GEMM where it loads, on the reference otherwise
    assert ("onednn" in rows["ip1"][2].split("+")) == onednn, r.stdout
    total = lines[-1].split()
    assert total[0] == "total" and float(total[1]) > 0 and lines[-1].endswith("ms per iteration")


# ---------------------------------------------------------------------------------------- validate
def test_validate_prints_a_one_line_summary(tmp_path):
    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    r = invoke(["validate", cfg])
    assert r.exit_code == 0 and r.stderr == ""
    assert r.stdout.count("\n") == 1
    # 2*16+16 + 16*3+3 = 99 parameters
    assert r.stdout.strip() == f"{cfg}: ok: tiny, 6 layers, 99 parameters; test outputs: accuracy [], loss []"


@pytest.mark.parametrize("name", ["lenet_mnist.yaml", "cifar10_quick.yaml"])
def test_shipped_configs_validate(name):
    r = invoke(["validate", str(REPO / "configs" / name)])
    assert r.exit_code == 0, r.output
    assert ": ok: " in r.stdout


def test_validate_with_set_and_print_config(tmp_path):
    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    r = invoke(["validate", cfg, "--set", "layers.ip1.num_output=4", "--print-config"])
    assert r.exit_code == 0
    assert "num_output: 4" in r.stdout
    # 2*4+4 + 4*3+3 = 27
    assert r.stdout.strip().splitlines()[-1].startswith(f"{cfg}: ok: tiny, 6 layers, 27 parameters")


def test_missing_config_file(tmp_path):
    r = invoke(["validate", tmp_path / "nope.yaml"])
    assert r.exit_code == 2 and r.stderr.strip().endswith("nope.yaml: config file not found")


# ------------------------------------------------------------------------------------------ schema
def test_schema_to_stdout_and_file(tmp_path):
    r = invoke(["schema"])
    assert r.exit_code == 0
    schema = json.loads(r.stdout)
    assert {"name", "data", "layers", "solver"} <= set(schema["properties"])
    text = json.dumps(schema)
    for layer in ("Convolution", "InnerProduct", "SoftmaxWithLoss", "Dropout"):
        assert layer in text
    out = tmp_path / "schema.json"
    r = invoke(["schema", "-o", out])
    assert r.exit_code == 0 and r.stdout.strip() == f"wrote {out}"
    assert json.loads(out.read_text()) == schema


# ----------------------------------------------------------------------------------------- devices
def test_devices_lists_the_cpu():
    r = invoke(["devices"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    cpu = [ln for ln in lines if "device:CPU" in ln]
    assert len(cpu) == 1
    from tfconf.engine.kernels.onednn.lib import available

    kernels = [ln for ln in lines if ln.startswith("CPU kernels: ")]
    assert len(kernels) == 1
    assert ("oneDNN 3." in kernels[0]) == available(), kernels
    assert "/device:CPU:0" in cpu[0]
    import re

    m = re.search(r"memory ([\d.]+) GiB .* ([\d.]+) GFLOP/s", cpu[0])
    assert m and float(m.group(1)) > 0 and float(m.group(2)) > 0, cpu[0]


# -------------------------------------------------------------------------------------------- draw
def test_draw_dot(tmp_path):
    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    out = tmp_path / "net.dot"
    r = invoke(["draw", cfg, "-o", out])
    assert r.exit_code == 0 and r.stdout.strip() == f"wrote {out}"
    dot = out.read_text()
    assert dot.startswith('digraph "tiny" {') and dot.rstrip().endswith("}")
    for layer in ("ip1", "relu1", "drop1", "ip2", "loss"):
        assert f'"L:{layer}"' in dot
    assert '"L:accuracy"' not in dot  # a test-only layer is not in the train net
    assert '"B:data" -> "L:ip1"' in dot and '"B:label" -> "L:loss"' in dot
    r = invoke(["draw", cfg, "-o", out, "--phase", "test"])
    assert r.exit_code == 0 and '"L:accuracy"' in out.read_text()
    r = invoke(["draw", cfg, "-o", out, "--phase", "deploy"])
    assert r.exit_code == 2 and "--phase must be train or test" in r.stderr


def test_draw_png(tmp_path):
    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    out = tmp_path / "net.png"
    r = invoke(["draw", cfg, "-o", out])
    if shutil.which("dot") is None:
        assert r.exit_code == 2
        assert "graphviz" in r.stderr and "install" in r.stderr and "Traceback" not in r.stderr
        assert not out.exists()
    else:
        assert r.exit_code == 0, r.output
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
