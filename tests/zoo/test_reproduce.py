"""``tfconf zoo test lenet`` reproduces the card on the shipped weights; fine-tuning zoo:lenet on a
5-class subset with a new head trains."""

from __future__ import annotations

import json

import numpy as np

from tests.cli.util import invoke, load, weights_path

from .util import ZOO, copy_entry, run_env


def test_zoo_test_lenet_reproduces_the_card():
    r = run_env(["zoo", "test", "lenet"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "zoo:lenet reproduces its card" in r.stdout
    assert "accuracy" in r.stdout and "NO" not in r.stdout


def test_a_card_that_the_weights_do_not_reproduce_fails(tmp_path):
    entry = copy_entry("mlp", tmp_path)
    card = entry / "card.yaml"
    text = card.read_text()
    i = text.index("accuracy: ") + len("accuracy: ")
    j = text.index("\n", i)
    card.write_text(text[:i] + str(round(float(text[i:j]) - 0.01, 4)) + text[j:])
    r = invoke(["zoo", "--zoo", tmp_path, "test", "mlp"])
    assert r.exit_code == 2
    assert "does not reproduce its card" in r.output and "NO" in r.output


def test_finetune_lenet_on_five_classes_with_a_new_head(tmp_path):
    five = "[0,1,2,3,4]"
    r = invoke(["train", "zoo:lenet", "--weights", "zoo:lenet", "--reinit", "ip2",
                "--set", "layers.ip2.num_output=5", "--set", f"data.train.classes={five}",
                "--set", f"data.test.classes={five}", "--set", "solver.random_seed=2",
                "--set", "solver.test_interval=40", "--max-iter", "40", "--out", tmp_path / "run", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    # 40 iterations from a random head (another seed than the entry's): the pretrained features carry it
    assert res["iterations"] == 40 and res["test"]["accuracy"] > 0.9
    after = load(weights_path(tmp_path / "run", "lenet", 40))
    shipped = load(ZOO / "lenet" / "weights.safetensors")
    assert after["ip2/weights"].shape == (5, 500)
    assert not np.array_equal(after["ip2/weights"], shipped["ip2/weights"][:5])
    # the copied layers moved only a little from the shipped values
    rel = np.linalg.norm(after["ip1/weights"] - shipped["ip1/weights"]) / np.linalg.norm(shipped["ip1/weights"])
    assert rel < 0.1


def test_five_class_subset_keeps_only_those_labels():
    from tfconf.data import make_dataset

    ds = make_dataset({"source": "mnist", "batch_size": 1000, "classes": [0, 1, 2, 3, 4]}, "test")
    x, y = next(ds)
    assert set(np.unique(y).tolist()) <= {0, 1, 2, 3, 4} and ds.num_samples < 1000
