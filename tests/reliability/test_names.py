"""Names that become file names are checked when the config validates: the net's ``name`` (the
snapshot prefix and the default run folder ``runs/NAME-STAMP``), ``solver.snapshot_prefix``, the
names a sweep gives its trials, zoo entry names. A name that would leave its folder or that no file
system takes is a located error (``config:line``, or the ``--set`` that gave it), exit 2, and
nothing is written anywhere."""

from __future__ import annotations

import json

import pytest

from .util import Box, spirals, user_error

BAD = {
    "dotdot-path": "../../x",
    "absolute": None,  # an absolute path into the sandbox (filled in per test)
    "slash": "a/b",
    "dotdot": "..",
    "empty": "",
    "nul": "a\0b",
    "too-long": "n" * 220,
}


def _name(box: Box, key: str) -> str:
    if key == "absolute":
        (box.root / "abs").mkdir(exist_ok=True)
        return str(box.root / "abs" / "x")
    return BAD[key]


def _config(box: Box, field: str, value: str) -> str:
    quoted = json.dumps(value)  # a JSON string is a YAML double-quoted scalar (\u0000 included)
    if field == "name":
        text = spirals().replace("name: tiny\n", f"name: {quoted}\n", 1)
    else:
        text = spirals(solver_extra=f"  snapshot_prefix: {quoted}\n")
    return str(box.write("net.yaml", text))


# Caffe's snapshot_prefix is a path (examples/mnist/lenet); tfconf keeps only its last component,
# inside RUN/snapshots/: those values are not refused but cannot leave the run folder
PREFIX_PATHS = {"dotdot-path", "absolute", "slash"}
REFUSED = [(f, k) for f in ("name", "snapshot_prefix") for k in BAD if not (f == "snapshot_prefix" and k in PREFIX_PATHS)]


@pytest.mark.parametrize("field,key", REFUSED)
def test_validate_refuses_a_name_that_is_not_a_file_name(box, field, key):
    cfg = _config(box, field, _name(box, key))
    user_error(box.run(["validate", cfg]), field, located=cfg)


@pytest.mark.parametrize("field,key", REFUSED)
def test_train_refuses_a_name_and_writes_nothing(box, field, key):
    cfg = _config(box, field, _name(box, key))
    o = box.run(["train", cfg, "--out", box.work / "run", "-q"])  # nothing allowed, not even run/
    user_error(o, field, located=cfg)
    assert not (box.work / "run").exists()


@pytest.mark.parametrize("key", sorted(PREFIX_PATHS))
def test_a_snapshot_prefix_path_keeps_its_last_component_inside_the_run(box, key):
    cfg = _config(box, "snapshot_prefix", _name(box, key))
    run = box.work / "run"
    o = box.run(["train", cfg, "--out", run, "-q"], allowed=[run])
    assert o.code == 0 and not o.changed, str(o)
    last = _name(box, key).rsplit("/", 1)[-1]
    assert sorted(p.name for p in (run / "snapshots").iterdir())[:2] == [
        f"{last}_iter_10.safetensors", f"{last}_iter_10.solverstate.safetensors"]


@pytest.mark.parametrize("key", ["dotdot-path", "absolute", "slash", "dotdot"])
def test_train_without_out_refuses_a_net_name_for_its_run_folder(box, key):
    cfg = _config(box, "name", _name(box, key))
    o = box.run(["train", cfg, "-q"])
    user_error(o, "name", located=cfg)
    assert not (box.work / "runs").exists()


def test_name_given_with_set_is_checked(box):
    cfg = box.write("net.yaml", spirals())
    o = box.run(["train", cfg, "--set", "name=../../escaped", "--out", box.work / "run", "-q"])
    line = user_error(o, r"name")
    assert line.startswith("--set name=../../escaped"), line


# ------------------------------------------------------------------------------------------ sweeps
def _sweep(box: Box, key: str, values) -> str:
    text = spirals(max_iter=10) + f"sweep:\n  grid:\n    {key}: {json.dumps(values)}\n"
    return str(box.write("sweep.yaml", text))


@pytest.mark.parametrize("key,bad", [("name", "../../escaped"), ("solver.snapshot_prefix", "..")])
def test_sweep_dry_run_refuses_a_trial_name_that_leaves_its_folder(box, key, bad):
    cfg = _sweep(box, key, ["fine", bad])
    user_error(box.run(["sweep", "run", cfg, "--dry-run"]), r"name|snapshot_prefix", located=cfg)


def test_sweep_run_refuses_a_trial_name_and_writes_nothing(box):
    cfg = _sweep(box, "name", ["fine", str(box.root / "escaped")])
    o = box.run(["sweep", "run", cfg, "--workers", "1", "--out", box.work / "sw"])
    user_error(o, r"name", located=cfg)
    assert not (box.work / "sw").exists()


def test_sweep_of_a_net_with_a_bad_name_writes_no_sweep_folder(box):
    text = spirals(max_iter=10).replace("name: tiny\n", "name: ../../escaped\n", 1)
    cfg = box.write("sweep.yaml", text + "sweep:\n  grid:\n    solver.base_lr: [0.1, 0.2]\n")
    o = box.run(["sweep", "run", cfg, "--workers", "1"])
    user_error(o, r"name", located=cfg)
    assert not (box.work / "sweeps").exists()


# --------------------------------------------------------------------------------------------- zoo
@pytest.mark.parametrize("name", ["../model_zoo/mlp", "/etc", "..", "mlp/../mlp"])
def test_zoo_get_refuses_a_name_that_is_a_path(box, name):
    o = box.run(["zoo", "get", name, box.work / "got"])
    user_error(o, r"zoo|entry|name")
    assert not (box.work / "got").exists()


def test_zoo_card_naming_a_file_outside_its_entry_is_refused(box):
    entry = box.root / "zoo" / "evil"
    entry.mkdir(parents=True)
    (entry / "model.yaml").write_text(spirals())
    (entry / "card.yaml").write_text(
        "name: evil\ntask: t\nsummary: s\ndataset: {name: spirals, split: test}\n"
        "reference: {metric: accuracy, value: 0.5, source: nobody}\nparams: 0\nflops: 0\nlicense: none\n"
        f"files:\n  - {{file: ../../sentinel/notes.txt, sha256: '{'0' * 64}'}}\n")
    o = box.run(["zoo", "get", "evil", box.work / "got"], env={"TFCONF_ZOO_PATH": str(box.root / "zoo")})
    user_error(o, r"card\.yaml:\d+")
    assert not (box.work / "got").exists()
