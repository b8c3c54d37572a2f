"""Character text sources (source: text / pystdlib): corpus, vocabulary, truncated-BPTT streaming."""

import json
import math
import time

import numpy as np
import pytest
from pydantic import ValidationError

from tfconf.data import DataError, DataSpec, input_tops, make_dataset
from tfconf.data import text as tx


def _spec(**kw):
    return DataSpec.model_validate(dict({"source": "text", "seq_len": 3, "batch_size": 2}, **kw))


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("abcdefghijklmnopqrstuvwxyz0123456789" * 2, encoding="utf-8")
    return path


def test_streams_hold_the_next_characters_of_every_stream(corpus_file):
    text = corpus_file.read_text()
    ds = make_dataset(_spec(path=str(corpus_file), val_fraction=0.0, split="train"), "test")
    assert ds.tops == input_tops(_spec(path="x"))
    assert ds.vocab == sorted(set(text))
    ids = np.array([ds.vocab.index(c) for c in text])
    S = (len(text) - 1) // 2  # stream length
    assert ds.stream_len == S and ds.batches_per_epoch == (S - 1) // 3
    for i in range(ds.batches_per_epoch):
        data, label, cont = next(ds)
        assert data.shape == label.shape == cont.shape == (3, 2)
        assert data.dtype == label.dtype == np.int64 and cont.dtype == np.float32
        for n in range(2):
            start = n * S + i * 3
            np.testing.assert_array_equal(data[:, n], ids[start:start + 3])
            np.testing.assert_array_equal(label[:, n], ids[start + 1:start + 4])  # the next character
        want = np.ones((3, 2), np.float32)
        if i == 0:
            want[0] = 0  # every stream starts a sequence at the first step
        np.testing.assert_array_equal(cont, want)
    again = next(ds)  # a new epoch starts the streams again
    np.testing.assert_array_equal(again[0], ds.batch_at(0)[0])
    assert np.all(again[2][0] == 0)


def test_documents_start_sequences_and_the_folder_order_is_sorted(tmp_path):
    (tmp_path / "b.txt").write_text("BBBBBBBBBBBB", encoding="utf-8")
    (tmp_path / "a.txt").write_text("aaaaaaaaaaaa", encoding="utf-8")
    (tmp_path / ".hidden").write_text("zzz", encoding="utf-8")
    spec = _spec(path=str(tmp_path), batch_size=1, seq_len=20, val_fraction=0.0, split="train")
    ds = make_dataset(spec, "test")
    data, _, cont = ds.batch_at(0)
    assert "".join(ds.vocab[i] for i in data[:, 0]) == "a" * 12 + "B" * 8
    assert list(np.flatnonzero(cont[:, 0] == 0)) == [0, 12]  # the start of b.txt resets the state


def test_train_and_test_splits_and_the_unigram_baseline(corpus_file):
    spec = _spec(path=str(corpus_file), val_fraction=0.25)
    train, test = make_dataset(spec, "train"), make_dataset(spec, "test")
    assert train.num_samples == 54 and test.num_samples == 18
    assert train.vocab == test.vocab  # one vocabulary for the whole corpus
    text = corpus_file.read_text()[:54]
    counts = np.array([text.count(c) for c in sorted(set(text))], float)
    p = counts / counts.sum()
    assert train.unigram_bits == pytest.approx(-(p * np.log2(p)).sum())
    assert test.unigram_bits == train.unigram_bits  # always the training split's
    assert tx.bits(math.log(2.0)) == pytest.approx(1.0)


def test_shuffle_rotates_each_epoch_reproducibly(corpus_file):
    spec = _spec(path=str(corpus_file), val_fraction=0.0, split="train")
    a, b = make_dataset(spec, "train", seed=5), make_dataset(spec, "train", seed=5)
    n = a.batches_per_epoch
    offsets = [a.offset(e) for e in range(4)]
    assert offsets == [b.offset(e) for e in range(4)] and len(set(offsets)) > 1
    for i in (0, 1, n, n + 1):
        for x, y in zip(a.batch_at(i), b.batch_at(i)):
            np.testing.assert_array_equal(x, y)
    assert not make_dataset(spec, "test").shuffle and make_dataset(spec, "train").shuffle
    fixed = make_dataset(_spec(path=str(corpus_file), val_fraction=0.0, shuffle=False), "train")
    assert fixed.offset(3) == 0 and a.offset(3) != 0
    assert fixed.offset(3) == 0


def test_state_restore_and_seek(corpus_file):
    ds = make_dataset(_spec(path=str(corpus_file)), "train", seed=1)
    next(ds), next(ds)
    st = json.loads(json.dumps(ds.state()))
    want = next(ds)
    other = make_dataset(_spec(path=str(corpus_file)), "train", seed=1)
    other.restore(st)
    for x, y in zip(next(other), want):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(DataError, match="batch_size"):
        make_dataset(_spec(path=str(corpus_file), batch_size=3), "train", seed=1).restore(st)


def test_vocab_size_keeps_the_most_frequent_characters(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("aaaaabbbbcccdde", encoding="utf-8")
    spec = _spec(path=str(path), vocab_size=3, batch_size=1, val_fraction=0.0, split="train")
    ds = make_dataset(spec, "test")
    assert ds.vocab == ["a", "b", tx.UNK]
    assert "".join(ds.vocab[i] for i in ds.ids) == "aaaaabbbb" + tx.UNK * 6
    tx.write_vocab(str(tmp_path / "vocab.json"), ds.vocab)
    assert tx.read_vocab(str(tmp_path / "vocab.json")) == ds.vocab


def test_pystdlib_is_the_standard_library_in_a_fixed_order():
    files = tx.pystdlib_files()
    assert files == tx.pystdlib_files() and len(files) > 100
    assert any(f.endswith("/os.py") for f in files)
    assert not any("/test/" in f or "site-packages" in f for f in files)
    t = time.perf_counter()
    spec = DataSpec.model_validate({"source": "pystdlib", "seq_len": 50, "batch_size": 8, "max_chars": 200_000})
    ds = make_dataset(spec, "train")
    assert time.perf_counter() - t < 10
    assert ds.num_samples == 190_000 and 3.5 < ds.unigram_bits < 6
    assert "d" in ds.vocab and "\n" in ds.vocab
    assert tx.PYSTDLIB_CHARS == 2_000_000


def test_errors(tmp_path, corpus_file):
    with pytest.raises(ValidationError, match="needs seq_len"):
        DataSpec.model_validate({"source": "pystdlib"})
    with pytest.raises(ValidationError, match="needs path"):
        DataSpec.model_validate({"source": "text", "seq_len": 5})
    with pytest.raises(ValidationError, match="remove path"):
        DataSpec.model_validate({"source": "pystdlib", "seq_len": 5, "path": "x"})
    with pytest.raises(ValidationError, match="seq_len applies only to the text sources"):
        DataSpec.model_validate({"source": "mnist", "seq_len": 5})
    with pytest.raises(ValidationError, match="crop_size does not apply"):
        DataSpec.model_validate({"source": "pystdlib", "seq_len": 5, "crop_size": 3})
    with pytest.raises(DataError, match="no such text file"):
        make_dataset(_spec(path=str(tmp_path / "missing.txt")), "train")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 ".encode("latin-1") * 20)
    with pytest.raises(DataError, match="not UTF-8"):
        make_dataset(_spec(path=str(bad)), "train")
    with pytest.raises(DataError, match="too few"):
        make_dataset(_spec(path=str(corpus_file), batch_size=30), "train")
    with pytest.raises(DataError, match="empty"):
        make_dataset(_spec(path=str(corpus_file), val_fraction=0.0), "test")
