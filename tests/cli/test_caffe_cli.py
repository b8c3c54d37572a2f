"""Caffe's command line on tfconf (tfconf/cli/caffe_args.py): ``train --solver``, ``test --model
--weights X.caffemodel``, ``time --model``, ``--snapshot``, ``-gpu``, Caffe's single-dash and ``=``
spellings, and ``devices`` as ``device_query``. Caffe's own LeNet files (tests/interop/caffe, the
same as shared/caffe) are copied into a temporary folder; their LMDB databases are absent, so the
importer puts the built-in ``mnist`` sample in their place, and every run here is a few iterations."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tfconf.io.caffemodel import write_caffemodel

from .util import LOCATED, assert_same_tensors, invoke, load, one_error_line, run

CAFFE = Path(__file__).resolve().parents[1] / "interop" / "caffe"
# a few iterations with a short test pass (Caffe's test_iter 100 would read 10,000 digits)
SHORT = ["--set", "solver.test_iter=2", "--set", "solver.test_interval=1000", "--set", "solver.display=0"]
LAYERS = ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "loss"]


def caffe_layout(root: Path, net_field="lenet_train_test.prototxt", where="examples/mnist"):
    """Caffe's files in ROOT/examples/mnist/lenet_{solver,train_test}.prototxt as its repository has
    them, the solver's ``net:`` rewritten to ``net_field`` (default: the net beside the solver)."""
    folder = root / where
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(CAFFE / "lenet_train_test.prototxt", folder / "lenet_train_test.prototxt")
    solver = (CAFFE / "lenet_solver.prototxt").read_text()
    solver = solver.replace('net: "examples/mnist/lenet_train_test.prototxt"', f'net: "{net_field}"')
    (folder / "lenet_solver.prototxt").write_text(solver)
    return folder / "lenet_solver.prototxt", folder / "lenet_train_test.prototxt"


def ok(r):
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    return r


def last_json(r):
    return json.loads(r.stdout.strip().splitlines()[-1])


def final_weights(run_dir, iteration, prefix="lenet"):
    return load(Path(run_dir) / "snapshots" / f"{prefix}_iter_{iteration}.safetensors")


def known_weights(seed=0):
    """LeNet's parameters as Caffe stores them (filters [out, in, kh, kw], InnerProduct [out, in])."""
    rng = np.random.default_rng(seed)
    shapes = {"conv1": ((20, 1, 5, 5), 20), "conv2": ((50, 20, 5, 5), 50), "ip1": ((500, 800), 500),
              "ip2": ((10, 500), 10)}
    return {name: [(rng.standard_normal(w) * 0.05).astype(np.float32),
                   (rng.standard_normal(b) * 0.1).astype(np.float32)] for name, (w, b) in shapes.items()}


def write_model(path, blobs, extra=()):
    layers = [("mnist", "Data", [])]
    layers += [(n, "Convolution" if n.startswith("conv") else "InnerProduct", arrays) for n, arrays in blobs.items()]
    write_caffemodel(str(path), layers + list(extra), "LeNet")
    return path


# ------------------------------------------------------------------------------------------- train
def test_train_solver_finds_the_net_as_caffe_does_and_trains(tmp_path, monkeypatch):
    """Run from Caffe's root, `net: examples/mnist/...` is relative to the current folder; the run
    is the one `import-caffe` + `train` gives, bit for bit, and its folder holds the converted YAML."""
    solver, net = caffe_layout(tmp_path, net_field="examples/mnist/lenet_train_test.prototxt")
    monkeypatch.chdir(tmp_path)
    args = ["--max-iter", "3", *SHORT, "--set", "solver.base_lr=0.02", "--json", "-q"]
    r = ok(invoke(["train", "-solver", "examples/mnist/lenet_solver.prototxt", "--out", tmp_path / "run", *args]))
    ours = last_json(r)
    assert ours["iterations"] == 3 and np.isfinite(ours["train_loss"])

    (tmp_path / "imported").mkdir()
    ok(invoke(["import-caffe", net, "--solver", solver, "-o", tmp_path / "imported" / "lenet.yaml"]))
    ref = last_json(ok(invoke(["train", tmp_path / "imported" / "lenet.yaml", "--out", tmp_path / "ref", *args])))
    assert ours["train_loss"] == ref["train_loss"] and ours["test"] == ref["test"]
    assert_same_tensors(final_weights(tmp_path / "run", 3), final_weights(tmp_path / "ref", 3))

    # the run folder: the converted YAML (reproducible without Caffe's files) beside the resolved config
    from tfconf.frontend.config import load as load_config

    converted = tmp_path / "run" / "lenet_train_test.yaml"
    assert "Converted by tfconf import-caffe" in converted.read_text()
    saved = load_config(str(tmp_path / "run" / "config.yaml"))
    assert saved.net.solver.base_lr == 0.02 and saved.net.solver.max_iter == 3  # --set and --max-iter
    assert saved.loaded.data == load_config(str(tmp_path / "imported" / "lenet.yaml"),
                                            ["solver.max_iter=3", *SHORT[1::2], "solver.base_lr=0.02"]).loaded.data
    again = last_json(ok(invoke(["train", converted, "--out", tmp_path / "again", *args])))
    assert again["train_loss"] == ours["train_loss"]


def test_train_solver_falls_back_to_the_solvers_folder(tmp_path, monkeypatch):
    solver, _ = caffe_layout(tmp_path, net_field="lenet_train_test.prototxt", where="caffe")
    monkeypatch.chdir(tmp_path)  # the net is in caffe/, beside the solver, not here
    r = ok(invoke(["train", f"--solver={solver}", "--out", tmp_path / "run", "--max-iter", "2", *SHORT, "--json"]))
    assert last_json(r)["iterations"] == 2
    r = ok(invoke(["train", f"-solver={solver}", "--print-config", "--set", "layers.conv1.num_output=8"]))
    assert "num_output: 8" in r.stdout


def test_snapshot_resumes_bit_exactly_like_resume(tmp_path):
    solver, _ = caffe_layout(tmp_path)
    common = ["--max-iter", "4", *SHORT, "--set", "solver.snapshot=2", "-q"]
    ok(invoke(["train", "--solver", solver, "--out", tmp_path / "a", *common]))
    reference = final_weights(tmp_path / "a", 4)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    # Caffe's name for the snapshot (NAME_iter_N.solverstate) and tfconf's own, with --resume
    ok(invoke(["train", "-solver", solver, "-snapshot", tmp_path / "a" / "snapshots" / "lenet_iter_2.solverstate",
               *common]))
    ok(invoke(["train", "--solver", solver, "--resume",
               tmp_path / "b" / "snapshots" / "lenet_iter_2.solverstate.safetensors", *common]))
    assert_same_tensors(final_weights(tmp_path / "a", 4), reference)
    assert_same_tensors(final_weights(tmp_path / "b", 4), reference)


def test_train_weights_caffemodel_fine_tunes_as_the_imported_weights_do(tmp_path):
    """`train --solver S --weights X.caffemodel` starts where `import-caffe --weights` +
    `train --weights OUT.safetensors` starts; messages name the .caffemodel; the importer's notes
    are printed once."""
    solver, net = caffe_layout(tmp_path)
    model = write_model(tmp_path / "lenet.caffemodel", known_weights(),
                        extra=[("old_head", "InnerProduct", [np.ones((2, 2), np.float32)])])
    args = ["--max-iter", "2", *SHORT]
    r = ok(invoke(["train", "--solver", solver, "-weights", model, "--out", tmp_path / "run", *args]))
    assert f"loaded 8 parameters from {model}\n" in r.stdout
    assert r.stderr.count("ignored layers that are not in the net") == 1, r.stderr
    assert "tfconf-caffemodel-" not in r.output  # the temporary conversion is never named

    (tmp_path / "imp").mkdir()
    ok(invoke(["import-caffe", net, "--solver", solver, "--weights", model, "-o", tmp_path / "imp" / "lenet.yaml"]))
    ref = ok(invoke(["train", tmp_path / "imp" / "lenet.yaml", "--weights", tmp_path / "imp" / "lenet.safetensors",
                     "--out", tmp_path / "ref", *args]))
    # the same losses and test metrics, and the same weights
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == (tmp_path / "ref" / "metrics.jsonl").read_text()
    assert_same_tensors(final_weights(tmp_path / "run", 2), final_weights(tmp_path / "ref", 2))


def test_a_caffemodel_that_does_not_fit_is_an_error_at_it(tmp_path):
    solver, _ = caffe_layout(tmp_path)
    blobs = known_weights()
    blobs["ip2"][0] = blobs["ip2"][0][:, :499]
    model = write_model(tmp_path / "bad.caffemodel", blobs)
    r = invoke(["train", "--solver", solver, "--weights", model, "--out", tmp_path / "run"])
    assert r.exit_code == 2
    assert r.stderr.strip() == f"{model}: weights 'ip2/weights': shape [10, 499] but the net's parameter is [10, 500]"
    assert not (tmp_path / "run").exists()


# -------------------------------------------------------------------------------------- test, time
def test_test_model_caffemodel_matches_test_of_the_imported_config(tmp_path):
    _, net = caffe_layout(tmp_path)
    model = write_model(tmp_path / "lenet.caffemodel", known_weights(1))
    r = ok(invoke(["test", "-model", net, "-weights", model, "-iterations", "2", "--json"]))
    ours = last_json(r)
    assert set(ours) == {"accuracy", "loss"}
    (tmp_path / "imp").mkdir()
    ok(invoke(["import-caffe", net, "--weights", model, "-o", tmp_path / "imp" / "lenet.yaml"]))
    ref = ok(invoke(["test", tmp_path / "imp" / "lenet.yaml", "--weights", tmp_path / "imp" / "lenet.safetensors",
                     "--iterations", "2", "--json"]))
    assert ours == last_json(ref)
    # = forms, and the text output
    r = ok(invoke(["test", f"--model={net}", f"--weights={model}", "--iterations=2"]))
    assert r.stdout.splitlines() == [f"accuracy = {ours['accuracy']:.6g}", f"loss = {ours['loss']:.6g}"]


def test_test_model_with_a_caffemodel_lacking_a_layer(tmp_path):
    _, net = caffe_layout(tmp_path)
    blobs = known_weights()
    del blobs["ip2"]
    model = write_model(tmp_path / "part.caffemodel", blobs)
    r = invoke(["test", "--model", net, "--weights", model])
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: --weights {model}: lacks parameters: ip2/weights, ip2/bias"


def test_time_model_prints_per_layer_rows(tmp_path):
    _, net = caffe_layout(tmp_path)
    r = ok(invoke(["time", "-model", net, "-iterations", "2"]))
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["layer", "forward", "ms", "backward", "ms", "kernels"]
    assert [ln.split()[0] for ln in lines[1:1 + len(LAYERS)]] == LAYERS
    for ln in lines[1:1 + len(LAYERS)]:
        assert all(float(v) >= 0 for v in ln.split()[1:3]), ln
    assert re.match(r"total\s+[\d.]+ ms per iteration$", lines[-1]), lines[-1]


# ------------------------------------------------------------------------------------------ devices
def test_gpu_without_a_gpu_is_one_clear_line(tmp_path):
    from tfconf.engine.devices import local_devices

    if any(d.device_type == "GPU" for d in local_devices()):
        pytest.skip("this machine has a GPU")
    solver, _ = caffe_layout(tmp_path)
    p = run(["train", "--solver", solver, "-gpu", "0", "--out", tmp_path / "run"])
    assert p.returncode == 2
    line = one_error_line(p.stderr)
    assert line.startswith("error: -gpu 0: no such device here (gpu:0). Available: "), line
    assert "device:CPU:0" in line
    assert not (tmp_path / "run").exists()


def test_gpu_spellings():
    from tfconf.cli.caffe_args import gpu_device
    from tfconf.errors import UserError

    assert gpu_device("0", None) == "gpu:0" and gpu_device("3", None) == "gpu:3" and gpu_device("all", None) == "gpu"
    assert gpu_device(None, "cpu") == "cpu"
    for bad, says in [("0,1", "one GPU"), ("x", "expected a GPU number")]:
        with pytest.raises(UserError, match=says):
            gpu_device(bad, None)
    with pytest.raises(UserError, match="not both"):
        gpu_device("0", "cpu")


def test_devices_prints_a_device_query_block():
    r = ok(invoke(["devices"]))
    lines = r.stdout.splitlines()
    at = next(i for i, ln in enumerate(lines) if "/device:CPU:0" in ln)
    block = {}
    for ln in lines[at + 1:]:
        if not ln.startswith("  "):
            break
        key, _, value = ln.strip().partition(":")
        block[key] = value.strip()
    assert {"Device id", "Name", "Type", "Total memory", "Cores", "numpy SIMD", "oneDNN ISA"} <= set(block), block
    assert block["Device id"] == "0" and block["Type"].startswith("CPU")
    assert re.match(r"(\d+ physical, )?\d+ logical, \d+ usable by this process$", block["Cores"]), block["Cores"]
    from tfconf.engine.kernels.onednn.lib import available

    assert ("oneDNN 3." in block["oneDNN ISA"]) == available()
    assert sum("device:CPU" in ln for ln in lines) == 1  # one device line, as before


# ----------------------------------------------------------------------------------------- mistakes
def test_bad_input_is_one_located_line(tmp_path):
    """Through the real entry point: exit code 2, one line, no traceback."""
    solver, net = caffe_layout(tmp_path)
    nonet = tmp_path / "nonet_solver.prototxt"
    nonet.write_text("base_lr: 0.01\nmax_iter: 10\n")
    missing_net = tmp_path / "missing_solver.prototxt"
    missing_net.write_text('base_lr: 0.01\nnet: "nowhere.prototxt"\nmax_iter: 10\n')
    cases = [
        (["train", "--solver", tmp_path / "nope.prototxt"], f"{tmp_path / 'nope.prototxt'}: no such file"),
        (["train", "-solver", nonet], f"{nonet}:1:1: net: the solver names no net file"),
        (["train", "-solver", missing_net], f"{missing_net}:2:1: net: no such net file"),
        (["train", tmp_path / "x.yaml", "--solver", solver], "error: give a config or --solver"),
        (["test", tmp_path / "x.yaml", "--model", net, "--weights", "w.caffemodel"], "error: give a config or --model"),
        (["train"], "error: missing the config"),
        # a mistake found after the conversion is located at the prototxt too
        (["train", "--solver", solver, "--set", "layers.conv2.kernel_size=29"],
         f"{net}:70:1: layers[2] (conv2): conv2d: a 29x29 filter"),
    ]
    for args, start in cases:
        p = run(args, cwd=tmp_path)
        assert p.returncode == 2, (args, p.stderr)
        line = one_error_line(p.stderr)
        assert line.startswith(start), (args, line)
    assert LOCATED.match(line)


def test_conversion_errors_are_located_at_the_prototxt(tmp_path):
    _, net = caffe_layout(tmp_path)
    text = net.read_text().replace("kernel_size: 5\n    stride: 1", "kernal_size: 5\n    stride: 1", 1)
    net.write_text(text)
    r = invoke(["time", "--model", net])
    assert r.exit_code == 2
    assert r.stderr.strip().startswith(f"{net}:49:5: layer[2] (conv1).convolution_param.kernal_size: unknown field")


def test_more_mistakes(tmp_path):
    solver, net = caffe_layout(tmp_path)
    cases = [
        (["train", "--solver", solver, "--model", net], "No such option"),  # train takes no --model
        (["train", "--solver", solver, "-snapshot", tmp_path / "x.solverstate"], "no such snapshot"),
        (["train", "--solver", solver, "-snapshot", "a.solverstate", "-weights", "w.caffemodel"],
         "give a snapshot to resume training or weights to fine-tune from, not both"),
        (["train", "--solver", solver, "--snapshot", "a.solverstate", "--resume", "b"], "not both"),
        (["train", "--solver", solver, "-gpu", "0,1"], "one GPU"),
        (["train", "--solver", solver, "-gpu", "0", "--device", "cpu"], "not both"),
        (["test", "--model", net], "test needs --weights"),
        (["test", tmp_path / "x.yaml", "--weights", "w.caffemodel"], "a .caffemodel is mapped"),
    ]
    (tmp_path / "caffe.solverstate").write_bytes(b"\x08\x02")  # Caffe's own (protobuf): not resumable
    cases.append((["train", "--solver", solver, "-snapshot", tmp_path / "caffe.solverstate"], "a Caffe solver state"))
    for args, says in cases:
        r = invoke(args)
        assert r.exit_code == 2, (args, r.output)
        assert says in r.output and "Traceback" not in r.output, (args, r.output)


def test_python_layers_of_a_converted_net_need_trust(tmp_path, monkeypatch):
    """A converted net is from elsewhere: its Python layer is refused at python_param.module, and
    the module is not imported (as tfconf import-caffe's output is refused)."""
    _, net = caffe_layout(tmp_path)
    text = net.read_text().replace('layer {\n  name: "relu1"', 'layer {\n  name: "py"\n  type: "Python"\n'
                                   '  bottom: "ip1"\n  top: "ip1"\n  python_param {\n    module: "caffe_cli_probe"\n'
                                   '    layer: "Probe"\n  }\n}\nlayer {\n  name: "relu1"', 1)
    net.write_text(text)
    (tmp_path / "caffe_cli_probe.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("TFCONF_TRUST_PYTHON", raising=False)
    r = invoke(["time", "--model", net])
    assert r.exit_code == 2
    line = r.stderr.strip()
    module_line = text.splitlines().index('    module: "caffe_cli_probe"') + 1
    assert line.startswith(f"{net}:{module_line}:5: layer[7] (py).python_param.module: this net would import"), line
    assert "--trust-python" in line
    assert not (tmp_path / "imported").exists()


def test_devices_gpu_block_from_cuda_properties(monkeypatch):
    """A GPU's block: CUDA's device properties as CuPy reports them (a stand-in CuPy here; the
    real one is read on a machine with a GPU)."""
    import sys
    import types

    import tfconf.engine.devices as devices

    props = {"name": b"NVIDIA H100 80GB HBM3", "major": 9, "minor": 0, "totalGlobalMem": 85_000_000_000,
             "sharedMemPerBlock": 49152, "regsPerBlock": 65536, "warpSize": 32, "memPitch": 2147483647,
             "maxThreadsPerBlock": 1024, "maxThreadsDim": (1024, 1024, 64), "maxGridSize": (2147483647, 65535, 65535),
             "clockRate": 1980000, "totalConstMem": 65536, "textureAlignment": 512, "deviceOverlap": 1,
             "multiProcessorCount": 132, "kernelExecTimeoutEnabled": 0}
    runtime = types.SimpleNamespace(getDeviceProperties=lambda i: props, runtimeGetVersion=lambda: 12040,
                                    driverGetVersion=lambda: 12080)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime)))
    gpu = {"name": "/job:localhost/replica:0/task:0/device:GPU:0", "type": "GPU", "memory_gb": 79.2, "gflops": 50000.0}
    monkeypatch.setattr(devices, "describe_devices", lambda counts=None: [gpu])
    r = ok(invoke(["devices"]))
    rows = dict(ln.strip().split(":", 1) for ln in r.stdout.splitlines()[1:] if ln.startswith("  "))
    rows = {k: v.strip() for k, v in rows.items()}
    assert rows["Name"] == "NVIDIA H100 80GB HBM3" and rows["Type"] == "GPU (CUDA)"
    assert rows["Compute capability"] == "9.0" and rows["Number of multiprocessors"] == "132"
    assert rows["Total global memory"] == "85,000,000,000 bytes"
    assert rows["Maximum dimension of grid"] == "2147483647, 65535, 65535"
    assert rows["Concurrent copy and execution"] == "Yes" and rows["Kernel execution timeout"] == "No"
    assert rows["CUDA runtime / driver"] == "12.4 / 12.8"


def test_validation_errors_of_the_converted_yaml_are_translated_to_the_prototxt(tmp_path, monkeypatch):
    """What the config pipeline finds in the converted YAML (here a value the importer would not
    write, slipped into its output) is reported at the Caffe field it came from."""
    import tfconf.interop.caffe_import as caffe_import

    _, net = caffe_layout(tmp_path)
    real = caffe_import.convert

    def convert(*args, **kw):
        result = real(*args, **kw)
        result.yaml = result.yaml.replace("num_output: 20", "num_output: -20", 1)
        return result

    monkeypatch.setattr(caffe_import, "convert", convert)
    r = invoke(["time", "--model", net])
    assert r.exit_code == 2
    lines = net.read_text().splitlines()
    line = lines.index("    num_output: 20") + 1
    assert r.stderr.strip().startswith(f"{net}:{line}:5: layers[0] (conv1).num_output: "), r.stderr
    assert "tfconf-caffe-" not in r.stderr
