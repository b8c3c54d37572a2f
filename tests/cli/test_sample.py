"""``tfconf sample`` through the real entry point, with a tiny character LSTM trained by ``tfconf train``
(which also writes vocab.json and logs bits per character beside the unigram baseline)."""

from __future__ import annotations

import json
import os

import pytest

from .util import invoke, one_error_line, run, weights_path, write

TEXT = "hello world\n" * 60  # 9 characters: ' ', '\n', d, e, h, l, o, r, w

CHARS = """\
name: chars
data:
  train: {source: text, path: corpus.txt, batch_size: 4, seq_len: 12, val_fraction: 0.2}
  test: {source: text, path: corpus.txt, batch_size: 2, seq_len: 12, val_fraction: 0.2}
layers:
  - {name: embed, type: Embed, bottom: data, input_dim: 9, num_output: 8}
  - {name: lstm, type: LSTM, bottom: [embed, cont], num_output: 16}
  - {name: ip, type: InnerProduct, num_output: 9, axis: 2}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], axis: 2}
solver:
  type: Adam
  base_lr: 0.03
  max_iter: 150
  display: 50
  test_interval: 75
  test_iter: 3
  snapshot: 75
  random_seed: 2
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chars")
    write(tmp, "corpus.txt", TEXT)
    cfg = write(tmp, "chars.yaml", CHARS)
    out = tmp / "run"
    r = invoke(["train", cfg, "--out", out])
    assert r.exit_code == 0, r.output
    return cfg, out, r.output


def test_train_saves_the_vocab_and_logs_bits_per_char_beside_the_baseline(trained):
    cfg, out, log = trained
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab["chars"] == sorted(set(TEXT))
    assert "unigram baseline" in log and "bits_per_char" in log
    tests = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["phase"] == "test"]
    first, last = tests[0], tests[-1]
    assert first["unigram_bits"] == pytest.approx(vocab["unigram_bits"]) and 2.5 < first["unigram_bits"] < 3.2
    assert last["bits_per_char"] < 0.5 * last["unigram_bits"]  # the pattern is learnt


def test_sample_through_the_real_entry_point(trained):
    cfg, out, _ = trained
    w = weights_path(out, "chars", 150)
    r = run(["sample", cfg, "--weights", w, "--prime", "hello", "--length", "40", "--temperature", "0.2",
             "--seed", "1"], timeout=60)
    assert r.returncode == 0, r.stderr
    text = r.stdout[:-1]  # echo's newline
    assert text.startswith("hello") and len(text) == 45
    assert set(text) <= set(TEXT)
    assert "world\nhello world" in text
    again = run(["sample", cfg, "--weights", w, "--prime", "hello", "--length", "40", "--temperature", "0.2",
                 "--seed", "1"], timeout=60)
    assert again.stdout == r.stdout  # the seed fixes the sample


def test_sample_without_a_prime_and_with_an_explicit_vocab(trained, tmp_path):
    cfg, out, _ = trained
    elsewhere = tmp_path / "w.safetensors"
    elsewhere.write_bytes(open(weights_path(out, "chars", 150), "rb").read())
    r = invoke(["sample", cfg, "--weights", elsewhere, "--length", "24", "--vocab", out / "vocab.json"])
    assert r.exit_code == 0, r.output
    assert len(r.output) == 25 and set(r.output) <= set(TEXT)


def test_sample_mistakes_exit_2_with_one_line(trained, tmp_path):
    cfg, out, _ = trained
    w = weights_path(out, "chars", 150)
    cases = [
        (["--weights", w, "--prime", "héllo"], r"--prime has characters outside the model's vocabulary of 9: 'é'"),
        (["--weights", tmp_path / "missing.safetensors"], "no such file"),
        (["--weights", w, "--temperature", "0"], "--temperature must be a positive number"),
    ]
    lonely = tmp_path / "lonely.safetensors"
    lonely.write_bytes(open(w, "rb").read())
    cases.append((["--weights", lonely], "no vocab.json"))
    for args, message in cases:
        r = run(["sample", cfg, *args], timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        line = one_error_line(r.stderr)
        assert line.startswith("error: ") and __import__("re").search(message, line), line


def test_sample_refuses_a_net_that_is_not_a_character_model(tmp_path):
    from .util import SPIRALS

    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    w = write(tmp_path, "w.safetensors", "")
    r = run(["sample", cfg, "--weights", w], timeout=60)
    assert r.returncode == 2
    assert "sampling needs a character model" in one_error_line(r.stderr)
    assert os.path.basename(cfg) in r.stderr


def test_resume_continues_the_streams_and_the_carried_state_bit_exactly(trained, tmp_path):
    """The recurrent state is saved with the solver state: 75 + 75 resumed iterations give the
    weights of the uninterrupted 150."""
    import shutil

    from tfconf.train.snapshot import read_snapshot

    from .util import assert_same_tensors, load

    cfg, out, _ = trained
    half = out / "snapshots" / "chars_iter_75.solverstate.safetensors"
    _, slots, state = read_snapshot(str(half))
    carried = {k: v for k, v in slots.items() if k.startswith("state:")}
    assert sorted(carried) == ["state:test/lstm/forward/c_state", "state:test/lstm/forward/h_state",
                               "state:train/lstm/forward/c_state", "state:train/lstm/forward/h_state"]
    assert carried["state:train/lstm/forward/h_state"].shape == (4, 16)
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    for f in os.listdir(copy / "snapshots"):
        if "_iter_150" in f:
            os.remove(copy / "snapshots" / f)
    r = invoke(["train", cfg, "--resume", copy / "snapshots" / "chars_iter_75.solverstate.safetensors"])
    assert r.exit_code == 0, r.output
    assert_same_tensors(load(weights_path(copy, "chars", 150)), load(weights_path(out, "chars", 150)))


def test_shipped_char_lstm_config_validates():
    from .util import REPO

    r = invoke(["validate", str(REPO / "configs" / "char_lstm.yaml")])
    assert r.exit_code == 0, r.output
    assert ": ok: char_lstm, 5 layers, 885,538 parameters" in r.stdout


def test_sample_from_the_zoo_char_lstm():
    """`tfconf sample zoo:char_lstm --weights zoo:char_lstm`: the shipped weights and vocab.json
    write Python-looking text (the model learnt its keywords)."""
    r = invoke(["sample", "zoo:char_lstm", "--weights", "zoo:char_lstm", "--prime", "def ", "--length", "300",
                "--seed", "1", "--temperature", "0.8"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("def ")
    assert "self" in r.stdout and "return" in r.stdout
