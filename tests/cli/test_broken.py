"""A corpus of broken net, data and CLI-override configs through the real CLI (``validate`` and
``train``): each is exit code 2 with exactly one located line on stderr and no traceback.

Each file of ``broken/`` starts with ``# expect: REGEX`` (searched in the error line), then
optional ``# set: KEY=VALUE`` overrides and ``# commands: train`` when only training can find the
mistake (a missing solver, a loss the net lacks, labels the net cannot score). The loader and
solver corpus lives in tests/frontend/configs/errors; this one is about nets, data and the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .util import LOCATED, invoke, one_error_line, run

BROKEN = Path(__file__).parent / "broken"
CASES = sorted(p.stem for p in BROKEN.glob("*.yaml"))


def _header(name):
    expect, sets, commands = None, [], ["validate", "train"]
    for line in (BROKEN / f"{name}.yaml").read_text().splitlines():
        if line.startswith("# expect: "):
            expect = line[len("# expect: "):]
        elif line.startswith("# set: "):
            sets += ["--set", line[len("# set: "):]]
        elif line.startswith("# commands: "):
            commands = line[len("# commands: "):].split()
        elif not line.startswith("#"):
            break
    assert expect, f"{name}.yaml has no '# expect:' line"
    return expect, sets, commands


def _args(command, name, sets, tmp_path):
    args = [command, f"{name}.yaml", *sets]
    return args + (["--out", str(tmp_path / "run")] if command == "train" else [])


def _check(line, name, expect):
    assert LOCATED.match(line), line
    if not line.startswith("--set "):
        assert line.startswith(f"{name}.yaml:"), line
    assert re.search(expect, line), f"{expect!r} not in {line!r}"
    assert "pydantic" not in line.lower()


def test_corpus_is_large_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("command", ["validate", "train"])
@pytest.mark.parametrize("name", CASES)
def test_broken_config(name, command, tmp_path, monkeypatch):
    expect, sets, commands = _header(name)
    monkeypatch.chdir(BROKEN)
    r = invoke(_args(command, name, sets, tmp_path))
    if command not in commands:
        assert r.exit_code == 0, r.output  # only training can tell
        return
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    _check(one_error_line(r.stderr), name, expect)
    assert not (tmp_path / "run").exists() or name in ("labels_exceed_outputs",)


# The same corpus as real processes (what a user sees, tracebacks included): a few always...
SAMPLE = ["dangling_bottom", "kernel_larger_than_input", "missing_data_file", "set_bad_yaml_value",
          "labels_exceed_outputs", "no_loss_layer"]


@pytest.mark.parametrize("name", SAMPLE)
def test_broken_config_process(name, tmp_path):
    _process(name, tmp_path)


# ...and all of them, both commands, when slow tests run.
@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_broken_config_process_all(name, tmp_path):
    _process(name, tmp_path, every_command=True)


def _process(name, tmp_path, every_command=False):
    expect, sets, commands = _header(name)
    for command in (commands if every_command else commands[-1:]):
        r = run(_args(command, name, sets, tmp_path), cwd=BROKEN)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert r.stdout == ""
        _check(one_error_line(r.stderr), name, expect)


# --------------------------------------------------------------------------- found, not ours to fix
def test_misspelt_required_field_is_one_line(tmp_path):
    text = (BROKEN / "unknown_layer_field.yaml").read_text().replace(
        "num_output: 8, weight_filer: xavier", "num_ouput: 8")
    (tmp_path / "typo.yaml").write_text(text)
    r = invoke(["validate", tmp_path / "typo.yaml"])
    assert r.exit_code == 2
    line = one_error_line(r.stderr)
    assert "num_ouput: unknown key; did you mean 'num_output'?" in line


def test_synthetic_only_key_message_says_received_once(monkeypatch):
    monkeypatch.chdir(BROKEN)
    r = invoke(["validate", "num_classes_on_mnist.yaml"])
    line = one_error_line(r.stderr)
    assert line.count("Received") == 1 and "patterns" in line
