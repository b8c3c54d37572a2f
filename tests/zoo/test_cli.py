"""``tfconf zoo list/show/get/verify/test`` through the real entry point, user zoos (--zoo and
TFCONF_ZOO_PATH), corrupted files refused with exit code 2, and zoo:NAME in train/test."""

from __future__ import annotations

import json

import pytest

from tfconf.zoo import registry

from .util import ZOO, copy_entry, flip_byte, run_env


def test_list_shows_every_entry():
    r = run_env(["zoo", "list"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["name", "task", "dataset", "metric", "params", "FLOPs", "weights"]
    rows = {ln.split()[0]: ln for ln in lines[2:]}
    assert {"lenet", "mlp", "mnist_autoencoder", "cifar10_quick", "resnet20_cifar", "vgg11_cifar", "caffenet"} <= set(rows)
    card = registry.find("lenet").card
    assert f"accuracy {card.metrics.values['accuracy']:.4g}" in rows["lenet"] and "431k" in rows["lenet"]
    assert rows["lenet"].rstrip().endswith("yes") and rows["caffenet"].rstrip().endswith("no")
    assert "accuracy 0.75 (reported)" in rows["cifar10_quick"] and "61M" in rows["caffenet"]


def test_show_prints_card_and_config():
    r = run_env(["zoo", "show", "lenet"])
    assert r.returncode == 0, r.stderr
    assert "## card.yaml" in r.stdout and "## model.yaml" in r.stdout
    assert (ZOO / "lenet" / "model.yaml").read_text().strip() in r.stdout


def test_unknown_entry_is_one_line_with_a_suggestion():
    r = run_env(["zoo", "show", "lenett"])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no such zoo entry" in r.stderr and "Did you mean 'lenet'?" in r.stderr
    r = run_env(["train", "zoo:nope", "--max-iter", "1"])
    assert r.returncode == 2 and "zoo:nope: no such zoo entry" in r.stderr and "Traceback" not in r.stderr


def test_get_copies_verified_files(tmp_path):
    r = run_env(["zoo", "get", "lenet", tmp_path / "mine"])
    assert r.returncode == 0, r.stderr
    assert "weights.safetensors: copied, sha256 ok" in r.stdout
    for f in ("model.yaml", "card.yaml", "weights.safetensors"):
        assert (tmp_path / "mine" / f).read_bytes() == (ZOO / "lenet" / f).read_bytes()


def test_verify_all_passes():
    r = run_env(["zoo", "verify"])
    assert r.returncode == 0, r.stderr
    assert "lenet: weights.safetensors sha256 ok" in r.stdout
    assert "caffenet: config only" in r.stdout


@pytest.mark.parametrize("how", ["--zoo", "TFCONF_ZOO_PATH"])
def test_a_corrupted_weights_file_is_refused(tmp_path, how):
    entry = copy_entry("lenet", tmp_path)  # shadows the built-in lenet: user zoos come first
    flip_byte(entry / "weights.safetensors")
    args, env = (["zoo", "--zoo", tmp_path], None) if how == "--zoo" else (["zoo"], {"TFCONF_ZOO_PATH": str(tmp_path)})
    r = run_env([*args, "verify", "lenet"], env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "is corrupted or was replaced" in r.stderr and "refusing to use it" in r.stderr
    assert str(entry / "weights.safetensors") in r.stderr
    r = run_env([*args, "test", "lenet"], env)
    assert r.returncode == 2 and "is corrupted or was replaced" in r.stderr and "Traceback" not in r.stderr


def test_corrupted_weights_are_never_used_by_train_or_test(tmp_path):
    entry = copy_entry("lenet", tmp_path, as_name="lenet_copy")
    flip_byte(entry / "weights.safetensors")
    env = {"TFCONF_ZOO_PATH": str(tmp_path)}
    r = run_env(["test", "zoo:lenet_copy"], env)
    assert r.returncode == 2 and "corrupted" in r.stderr and "Traceback" not in r.stderr
    r = run_env(["train", "zoo:lenet", "--weights", "zoo:lenet_copy", "--max-iter", "1", "--out", tmp_path / "run"], env)
    assert r.returncode == 2 and "corrupted" in r.stderr
    assert not (tmp_path / "run").exists()
    r = run_env(["zoo", "list"], env)  # the user zoo joins the list, with its folder
    assert r.returncode == 0 and "lenet_copy" in r.stdout and str(tmp_path) in r.stdout


def test_a_missing_file_and_a_bad_card_are_reported(tmp_path):
    entry = copy_entry("mlp", tmp_path)
    (entry / "weights.safetensors").unlink()
    r = run_env(["zoo", "--zoo", tmp_path, "verify", "mlp"])
    assert r.returncode == 2 and "is missing" in r.stderr
    (entry / "card.yaml").write_text((entry / "card.yaml").read_text().replace("tolerance: 0.001", "tolerance: -1"))
    r = run_env(["zoo", "--zoo", tmp_path, "show", "mlp"])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"{entry / 'card.yaml'}:") and "metrics.tolerance" in r.stderr


def test_test_command_reads_the_entry_weights_by_default():
    r = run_env(["test", "zoo:lenet", "--json"])
    assert r.returncode == 0, r.stderr
    measured = json.loads(r.stdout.strip().splitlines()[-1])
    card = registry.find("lenet").card.metrics
    for k, v in card.values.items():
        assert abs(measured[k] - v) <= card.tolerance
    r = run_env(["test", "zoo:caffenet"])
    assert r.returncode == 2 and "config only" in r.stderr
