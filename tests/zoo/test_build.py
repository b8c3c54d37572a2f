"""`tfconf zoo build` retrains a (tiny, user-zoo) entry deterministically: two builds give the same
weights byte for byte, and the card it writes is reproduced by `tfconf zoo test`."""

from __future__ import annotations

import pytest

from tests.cli.util import invoke

from tfconf.zoo import registry

SPIRALS_MODEL = """\
name: spiral_mlp
data:
  train: {source: spirals, num_samples: 300, batch_size: 16}
  test: {source: spirals, num_samples: 150, batch_size: 50}
layers:
  - {name: ip1, type: InnerProduct, bottom: data, num_output: 16, weight_filler: xavier}
  - {name: relu1, type: ReLU}
  - {name: drop1, type: Dropout, dropout_ratio: 0.2}
  - {name: ip2, type: InnerProduct, num_output: 3, weight_filler: xavier}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], include: {phase: test}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label]}
solver: {base_lr: 0.1, momentum: 0.9, max_iter: 150, test_interval: 50, test_iter: 3, random_seed: 3}
"""

SPIRALS_CARD = """\
name: spiral_mlp
task: classification
summary: a 2-16-3 MLP on the built-in spirals
dataset: {name: spirals, split: test}
metrics: {values: {accuracy: 0.0}, tolerance: 0.0001, command: tfconf test zoo:spiral_mlp}
params: 0
flops: 0
license: Apache-2.0
weights: {file: weights.safetensors, sha256: '0000000000000000000000000000000000000000000000000000000000000000'}
files: [{file: vocab.json, sha256: '%s'}]
"""

VOCAB = '{"chars": "abc"}\n'


@pytest.fixture()
def zoo(tmp_path):
    import hashlib

    d = tmp_path / "zoo" / "spiral_mlp"
    d.mkdir(parents=True)
    (d / "model.yaml").write_text(SPIRALS_MODEL)
    (d / "card.yaml").write_text(SPIRALS_CARD % hashlib.sha256(VOCAB.encode()).hexdigest())
    (d / "vocab.json").write_text(VOCAB)  # an extra shipped file (a char model's vocabulary)
    return tmp_path / "zoo"


def _build(zoo):
    r = invoke(["zoo", "--zoo", zoo, "build", "spiral_mlp", "-q"])
    assert r.exit_code == 0, r.output
    return registry.find("spiral_mlp")


def test_build_is_deterministic_and_reproduced_by_zoo_test(zoo):
    first = _build(zoo)
    sha1 = first.card.weights.sha256
    assert sha1 == registry.sha256_file(first.weights)
    assert first.card.params == 2 * 16 + 16 + 16 * 3 + 3
    assert first.card.flops == (2 * 2 * 16 + 16) + 16 + (2 * 16 * 3 + 3)
    assert first.card.build.iterations == 150 and first.card.build.command == "tfconf zoo build spiral_mlp"
    assert first.card.metrics.values["accuracy"] > 0.5 and first.card.metrics.tolerance == 0.0001
    assert first.card.files[0].file == "vocab.json"  # kept by the rewrite
    second = _build(zoo)
    assert second.card.weights.sha256 == sha1
    assert second.card.metrics.values == first.card.metrics.values
    r = invoke(["zoo", "--zoo", zoo, "test", "spiral_mlp"])
    assert r.exit_code == 0 and "reproduces its card" in r.output
    r = invoke(["zoo", "--zoo", zoo, "verify", "spiral_mlp"])
    assert r.exit_code == 0 and "vocab.json sha256 ok" in r.output
    (zoo / "spiral_mlp" / "vocab.json").write_text('{"chars": "abd"}\n')
    r = invoke(["zoo", "--zoo", zoo, "verify", "spiral_mlp"])
    assert r.exit_code == 2 and "vocab.json is corrupted" in r.output


def test_config_only_entries_are_not_built():
    r = invoke(["zoo", "build", "caffenet"])
    assert r.exit_code == 2 and "config only" in r.output and "--counts-only" in r.output


def test_a_card_with_files_outside_its_folder_is_refused(zoo):
    card = zoo / "spiral_mlp" / "card.yaml"
    card.write_text(card.read_text().replace("file: vocab.json", "file: ../../etc/passwd"))
    r = invoke(["zoo", "--zoo", zoo, "verify", "spiral_mlp"])
    assert r.exit_code == 2 and "files[0].file" in r.output and "no '/' or '..'" in r.output
