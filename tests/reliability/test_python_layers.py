"""Security of ``type: Python`` layers through the real CLI.

1. A Python layer names a class deriving from ``tfconf.PythonLayer``; anything else (``os.system``,
   ``subprocess.Popen``, ``eval``, a plain class) is refused before it is called: exit 2, the
   message says PythonLayer, and the side effect the callable would have had never happens.
2. A config from elsewhere (``zoo:NAME``, a file in a zoo folder, a file with the download
   attribute ``user.xdg.origin.url``) imports no module without ``--trust-python`` (or
   TFCONF_TRUST_PYTHON=1): exit 2 naming --trust-python, and the module's top-level code did not
   run. A config of the user's own with a proper PythonLayer keeps working without the flag."""

from __future__ import annotations

import pytest

from .util import (
    Box, SPIRALS, TIMES_TWO, python_layer_config, set_origin_url, side_effect_module, success, user_error,
)


# --------------------------------------------------------------------------------- not a PythonLayer
def _hostile(box: Box, kind: str):
    """(config text, the file its callable would create)."""
    marker = box.root / f"pwned-{kind}"
    if kind == "os.system":
        return python_layer_config("os", "system", f"{{command: 'touch {marker}'}}"), marker
    if kind == "subprocess.Popen":
        return python_layer_config("subprocess", "Popen", f"{{args: [touch, '{marker}']}}"), marker
    if kind == "builtins.eval":
        return python_layer_config("builtins", "eval", f"{{source: \"open('{marker}', 'w')\"}}"), marker
    if kind == "plain class":
        box.module("plain_layers", f"""\
class Plain:
    def __init__(self):
        open({str(marker)!r}, "w").write("instantiated")

    def build(self, bottoms):
        return bottoms[0]
""")
        return python_layer_config("plain_layers", "Plain"), marker
    raise AssertionError(kind)


KINDS = ["os.system", "subprocess.Popen", "builtins.eval", "plain class"]


@pytest.mark.parametrize("command", ["validate", "train"])
@pytest.mark.parametrize("kind", KINDS)
def test_callable_that_is_not_a_python_layer_is_refused(box, kind, command):
    text, marker = _hostile(box, kind)
    cfg = box.write("net.yaml", text)
    args = [command, cfg] + (["--out", box.work / "run", "-q"] if command == "train" else [])
    o = box.run(args, allowed=[box.work / "run"])
    assert not marker.exists(), f"{kind} was called\n{o}"
    user_error(o, r"PythonLayer", located=cfg)


def test_os_system_is_refused_even_when_trusted(box):
    text, marker = _hostile(box, "os.system")
    cfg = box.write("net.yaml", text)
    o = box.run(["validate", cfg, "--trust-python"])
    assert not marker.exists(), f"os.system was called\n{o}"
    user_error(o, r"PythonLayer", located=cfg)


def test_shutil_rmtree_cannot_delete_a_folder(box):
    cfg = box.write("net.yaml", python_layer_config("shutil", "rmtree", f"{{path: '{box.sentinel}'}}"))
    o = box.run(["validate", cfg])
    assert box.sentinel.exists(), f"shutil.rmtree ran\n{o}"
    user_error(o, r"PythonLayer", located=cfg)


# ------------------------------------------------------------------------------------- own configs
def _own(box: Box):
    box.module("my_layers", TIMES_TWO)
    return box.write("own.yaml", python_layer_config("my_layers", "TimesTwo"))


def test_own_config_with_a_python_layer_validates(box):
    cfg = _own(box)
    o = success(box.run(["validate", cfg]))
    assert "ok" in o.out


def test_own_config_with_a_python_layer_trains(box):
    cfg = _own(box)
    success(box.run(["train", cfg, "--out", box.work / "run", "-q"], allowed=[box.work / "run"]))
    assert (box.work / "run" / "snapshots").is_dir()


# ------------------------------------------------------------------------------- downloaded configs
@pytest.fixture(scope="module")
def spiral_weights(tmp_path_factory):
    """Weights of the spirals MLP (the Python layer adds no parameters), for test and sample."""
    box = Box(tmp_path_factory.mktemp("weights"))
    cfg = box.write("plain.yaml", SPIRALS)
    success(box.run(["train", cfg, "--out", box.work / "run", "-q"], allowed=[box.work / "run"]))
    return box.work / "run" / "snapshots" / "tiny_iter_40.safetensors"


def _downloaded(box: Box):
    marker = box.root / "module-was-imported"
    box.module("dl_layers", side_effect_module(marker))
    cfg = box.write("downloaded.yaml", python_layer_config("dl_layers", "TimesTwo"))
    if not set_origin_url(cfg):
        pytest.skip("this file system keeps no user.* extended attributes")
    return cfg, marker


def _command(command, cfg, box, weights):
    return {
        "validate": ["validate", cfg],
        "train": ["train", cfg, "--out", box.work / "run", "-q"],
        "test": ["test", cfg, "--weights", weights],
        "time": ["time", cfg, "--iterations", "1"],
        "draw": ["draw", cfg, "-o", box.work / "net.dot"],
        "sample": ["sample", cfg, "--weights", weights, "--length", "5"],
    }[command]


@pytest.mark.parametrize("command", ["validate", "train", "test", "time", "draw", "sample"])
def test_downloaded_config_does_not_import_its_module(box, command, spiral_weights):
    cfg, marker = _downloaded(box)
    o = box.run(_command(command, cfg, box, spiral_weights), allowed=[box.work / "run"])
    assert not marker.exists(), f"the module of a downloaded config was imported\n{o}"
    user_error(o, r"--trust-python")


@pytest.mark.parametrize("command", ["validate", "train", "test", "time", "draw"])
def test_downloaded_config_runs_with_trust_python(box, command, spiral_weights):
    cfg, marker = _downloaded(box)
    o = box.run(_command(command, cfg, box, spiral_weights) + ["--trust-python"],
                allowed=[box.work / "run", box.work / "net.dot", marker])
    success(o)
    if command == "draw":  # draws the layers without building them: nothing to import
        assert (box.work / "net.dot").exists()
    else:
        assert marker.exists()


def test_downloaded_config_runs_with_the_trust_variable(box):
    cfg, marker = _downloaded(box)
    success(box.run(["validate", cfg], env={"TFCONF_TRUST_PYTHON": "1"}, allowed=[marker]))
    assert marker.exists()


def test_trust_variable_set_to_0_does_not_trust(box):
    cfg, marker = _downloaded(box)
    o = box.run(["validate", cfg], env={"TFCONF_TRUST_PYTHON": "0"})
    assert not marker.exists(), str(o)
    user_error(o, r"--trust-python")


# ------------------------------------------------------------------------------------ zoo configs
ZOO_CARD = """\
name: pyzoo
task: image classification
summary: a zoo entry whose net has a Python layer
dataset: {name: spirals, split: test}
reference: {metric: accuracy, value: 0.5, source: nobody}
params: 0
flops: 0
license: none
"""


def _zoo(box: Box):
    marker = box.root / "zoo-module-was-imported"
    box.module("zoo_layers", side_effect_module(marker))
    entry = box.root / "zoo" / "pyzoo"
    entry.mkdir(parents=True)
    (entry / "card.yaml").write_text(ZOO_CARD)
    (entry / "model.yaml").write_text(python_layer_config("zoo_layers", "TimesTwo"))
    return entry, marker, {"TFCONF_ZOO_PATH": str(box.root / "zoo")}


@pytest.mark.parametrize("command", ["validate", "train"])
def test_zoo_entry_does_not_import_its_module(box, command):
    entry, marker, env = _zoo(box)
    args = ["validate", "zoo:pyzoo"] if command == "validate" else \
        ["train", "zoo:pyzoo", "--out", box.work / "run", "-q"]
    o = box.run(args, env=env, allowed=[box.work / "run"])
    assert not marker.exists(), f"a zoo entry's module was imported\n{o}"
    user_error(o, r"--trust-python")


def test_file_inside_a_zoo_folder_does_not_import_its_module(box):
    entry, marker, env = _zoo(box)
    o = box.run(["validate", entry / "model.yaml"], env=env)
    assert not marker.exists(), f"a zoo file's module was imported\n{o}"
    user_error(o, r"--trust-python")


def test_zoo_entry_with_trust_python_validates(box):
    entry, marker, env = _zoo(box)
    success(box.run(["validate", "zoo:pyzoo", "--trust-python"], env=env, allowed=[marker]))
    assert marker.exists()
