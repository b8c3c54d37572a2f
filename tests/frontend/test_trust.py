"""Python layers and trust (tfconf.frontend.trust): a config from elsewhere imports nothing unless
the user says --trust-python; every config may only name tfconf.PythonLayer classes."""

from __future__ import annotations

import os
import sys

import pytest

from tests.cli.util import run

MODULE = '''
import pathlib
pathlib.Path(__file__).with_name("imported.txt").write_text("module code ran")
import tfconf as tc


class Twice(tc.PythonLayer):
    def build(self, bottoms):
        return bottoms[0] * 2.0


class Plain:
    def build(self, bottoms):
        return bottoms[0]
'''

CONFIG = """\
name: trusty
data:
  train: {source: spirals, num_samples: 64, batch_size: 16}
layers:
  - {name: ip1, type: InnerProduct, bottom: data, num_output: 3}
  - {name: twice, type: Python, module: trust_user_layers, layer: %s}
  - {name: loss, type: SoftmaxWithLoss, bottom: [twice, label]}
solver: {base_lr: 0.1, max_iter: 2}
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "trust_user_layers.py").write_text(MODULE)
    (tmp_path / "net.yaml").write_text(CONFIG % "Twice")
    return tmp_path


def _env(folder, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("TFCONF_TRUST_PYTHON", "TFCONF_ZOO_PATH")}
    env.update(PYTHONPATH=os.pathsep.join([str(folder), *sys.path]), PYTHONWARNINGS="ignore", **extra)
    return env


def test_own_config_builds_its_python_layer(folder):
    r = run(["validate", folder / "net.yaml"], env=_env(folder))
    assert r.returncode == 0, r.stderr
    assert (folder / "imported.txt").exists()


def _can_set_xattr(path) -> bool:
    try:
        os.setxattr(path, "user.xdg.origin.url", b"https://example.com/net.yaml")
        return True
    except (OSError, AttributeError):
        return False


@pytest.mark.parametrize("how", ["downloaded", "zoo"])
def test_config_from_elsewhere_imports_nothing_without_trust(folder, how):
    env = _env(folder)
    if how == "downloaded":
        if not _can_set_xattr(folder / "net.yaml"):
            pytest.skip("this file system keeps no extended attributes")
        why = "was downloaded from https://example.com/net.yaml"
    else:
        env["TFCONF_ZOO_PATH"] = str(folder)  # the folder is a model zoo now
        why = "is in the model zoo"
    for cmd in (["validate"], ["train", "--out", folder / "run"]):
        r = run([cmd[0], folder / "net.yaml", *cmd[1:]], env=env)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        assert "net.yaml:6:" in r.stderr and why in r.stderr and "--trust-python" in r.stderr, r.stderr
        assert not (folder / "imported.txt").exists()  # the module's code never ran
        assert not (folder / "run").exists()
    r = run(["validate", folder / "net.yaml", "--trust-python"], env=env)
    assert r.returncode == 0, r.stderr
    assert (folder / "imported.txt").exists()


@pytest.mark.parametrize("module,layer,match", [
    ("trust_user_layers", "Plain", "trust_user_layers.Plain is a class that does not derive from tfconf.PythonLayer"),
    ("os", "system", "os.system is a builtin_function_or_method, not a class"),
    ("subprocess", "Popen", "subprocess.Popen is a class that does not derive from tfconf.PythonLayer"),
    ("builtins", "eval", "builtins.eval is a builtin_function_or_method, not a class"),
])
def test_only_python_layer_classes_are_called(folder, module, layer, match):
    marker = folder / "popen-ran"
    text = CONFIG.replace("module: trust_user_layers, layer: %s", f"module: {module}, layer: {layer}, "
                          f"params: {{args: [touch, {marker}], command: touch {marker}}}")
    (folder / "net.yaml").write_text(text)
    r = run(["validate", folder / "net.yaml"], env=_env(folder))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert match in r.stderr and "net.yaml:6:" in r.stderr, r.stderr
    assert not marker.exists()
