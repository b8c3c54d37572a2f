"""Damaged and hostile data files: each decode error is a DataError naming the file (and the sample
where known), NaN/inf in the data is the data's fault when it is loaded, and nothing is unpickled."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.cli.util import LOCATED, one_error_line, run
from tfconf.data import DataError, DataSpec, load_source, make_dataset
from tfconf.data.sources import check_finite
from tfconf.data.text import read_vocab, write_vocab
from tfconf.data.transforms import Transform, read_mean_file
from tfconf.io.caffemodel import _encode_blob

X = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
Y = np.arange(20) % 2


def _load(path, **kw):
    return load_source(DataSpec(source=str(path), **kw), "train")


def _fails(match, path, **kw):
    with pytest.raises(DataError, match=match) as info:
        _load(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400
    return msg


# ------------------------------------------------------------------------------------------ npz / npy


def test_truncated_npz(tmp_path):
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    raw = (tmp_path / "d.npz").read_bytes()
    for cut in (10, len(raw) // 2, len(raw) - 30):
        (tmp_path / "t.npz").write_bytes(raw[:cut])
        msg = _fails(r"t\.npz: not a readable \.npz file", tmp_path / "t.npz")
        assert msg.startswith(str(tmp_path / "t.npz"))


def test_npz_with_a_damaged_member(tmp_path):
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    raw = bytearray((tmp_path / "d.npz").read_bytes())
    at = raw.index(b"\x93NUMPY")  # x.npy's header inside the (stored, uncompressed) archive
    raw[at:at + 6] = b"garbag"
    (tmp_path / "d.npz").write_bytes(bytes(raw))
    _fails(r"d\.npz.*not a readable \.npz file", tmp_path / "d.npz")


def test_npz_that_needs_pickle_is_refused(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}] * 20, dtype=object), y=Y)
    _fails(r"o\.npz \(arrays x, y\): the \.npz holds Python objects .*allow_pickle=False", tmp_path / "o.npz")


def test_npy_problems(tmp_path):
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    raw = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[:100])
    _fails(r"t\.npy: not a readable \.npy file \(it is truncated", tmp_path / "t.npy", labels=str(tmp_path / "y.npy"))
    np.save(tmp_path / "o.npy", np.array([None] * 20, dtype=object))
    _fails(r"o\.npy: the \.npy holds Python objects", tmp_path / "x.npy", labels=str(tmp_path / "o.npy"))
    np.savez(tmp_path / "z.npz", x=X)
    os.rename(tmp_path / "z.npz", tmp_path / "z.npy")
    _fails(r"z\.npy: an \.npz archive, not an \.npy array", tmp_path / "z.npy", labels=str(tmp_path / "y.npy"))
    (tmp_path / "g.npy").write_bytes(b"\x93NUMPY" + bytes(range(100)))
    _fails(r"g\.npy: not a readable \.npy file", tmp_path / "g.npy", labels=str(tmp_path / "y.npy"))


def test_a_device_or_a_folder_as_a_data_file(tmp_path):
    np.save(tmp_path / "y.npy", Y)
    _fails(r"^/dev/zero: the data file is not a regular file", "/dev/zero", format="npy",
           labels=str(tmp_path / "y.npy"))
    (tmp_path / "d.npz").mkdir()
    _fails(r"d\.npz: the data file is a folder, not a file", tmp_path / "d.npz", format="npz")


# ----------------------------------------------------------------------------------------------- CSV


def test_a_binary_file_as_csv(tmp_path):
    (tmp_path / "b.csv").write_bytes(bytes(range(256)) * 8)
    _fails(r"b\.csv: not a CSV text file \(byte 128 is not UTF-8 text: is it a binary file\?\)", tmp_path / "b.csv")
    (tmp_path / "n.csv").write_bytes(b"1,2,3\x00\x00\x00\n")
    _fails(r"n\.csv: not a CSV text file \(it holds NUL bytes", tmp_path / "n.csv")
    (tmp_path / "later.csv").write_bytes(b"1,2,3\n" * 3000 + bytes(range(128, 256)))
    _fails(r"later\.csv: not a CSV text file", tmp_path / "later.csv")


def test_truncated_gzip_csv(tmp_path):
    import gzip

    raw = gzip.compress(b"1,2,0\n" * 5000)
    (tmp_path / "t.csv.gz").write_bytes(raw[: len(raw) // 2])
    _fails(r"t\.csv\.gz: not a readable CSV file \(it is truncated", tmp_path / "t.csv.gz")


def test_a_csv_row_that_is_not_numbers_names_the_row(tmp_path):
    (tmp_path / "r.csv").write_text("1,2,0\n3,4,1\n5,oops,0\n")
    _fails(r"r\.csv: not a numeric CSV table: line 3, column 2 \(sample 2\) is 'oops', not a number$",
           tmp_path / "r.csv")
    (tmp_path / "h.csv").write_text("a,b,label\n1,2,0\n5,x,0\n")
    _fails(r"h\.csv: not a numeric CSV table: line 3, column 2 \(sample 1\) is 'x'", tmp_path / "h.csv")


# --------------------------------------------------------------------------------------------- IDX


def test_truncated_gzip_idx(tmp_path):
    import gzip
    import struct

    raw = gzip.compress(struct.pack(">BBBBI", 0, 0, 8, 1, 5000) + bytes(5000))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(raw[:-20])
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(raw[:-20])
    _fails(r"train-images-idx3-ubyte\.gz: not a readable IDX file \(it is truncated",
           tmp_path / "train-images-idx3-ubyte.gz")


# -------------------------------------------------------------------------------------------- images


def _png(path, size=(4, 4)):
    from PIL import Image

    Image.new("RGB", size, (10, 20, 30)).save(path)


def test_an_image_that_does_not_decode_names_the_file_and_sample(tmp_path):
    pytest.importorskip("PIL")
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
    _png(tmp_path / "imgs" / "a" / "0.png")
    _png(tmp_path / "imgs" / "a" / "1.png")
    (tmp_path / "imgs" / "b" / "0.png").write_bytes(b"not a png at all")
    msg = _fails(r"imgs/b/0\.png: not a readable image \(sample 2 of ", tmp_path / "imgs")
    assert msg.startswith(str(tmp_path / "imgs" / "b" / "0.png"))


def test_a_truncated_image(tmp_path):
    pytest.importorskip("PIL")
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.png")
    raw = (tmp_path / "full.png").read_bytes()
    (tmp_path / "imgs" / "a" / "0.png").write_bytes(raw[: len(raw) // 2])
    _fails(r"imgs/a/0\.png: not a readable image \(sample 0", tmp_path / "imgs")


# ----------------------------------------------------------------------------------------- NaN / inf


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_non_finite_data_names_the_file_and_first_sample(tmp_path, bad, word):
    x = X.copy()
    x[7, 3] = bad
    x[12, 0] = bad
    np.savez(tmp_path / "d.npz", x=x, y=Y)
    msg = _fails(rf"d\.npz: sample 7 holds {word} \(2 samples in all\): the data itself is not finite",
                 tmp_path / "d.npz")
    assert "diverging" in msg


def test_non_finite_csv_and_float16(tmp_path):
    (tmp_path / "n.csv").write_text("1,2,0\n3,nan,1\n")
    _fails(r"n\.csv: sample 1 holds NaN", tmp_path / "n.csv")
    x = X.astype(np.float16)
    x[4, 1] = np.inf
    np.savez(tmp_path / "h.npz", x=x, y=Y)
    _fails(r"h\.npz: sample 4 holds inf", tmp_path / "h.npz")


def test_check_finite_accepts_large_finite_values():
    x = np.full((1000, 10), np.finfo(np.float32).max, np.float32)
    check_finite(x, "big")  # the float64 sum does not overflow
    check_finite(np.zeros((3, 2), np.uint8), "ints")
    with pytest.raises(DataError, match="^v: sample 0 holds NaN$|^v: sample 0 holds NaN:"):
        check_finite(np.array([np.nan], np.float32), "v")


def test_non_finite_mean_scale_and_mean_file(tmp_path):
    with pytest.raises(DataError, match="scale must be a finite number"):
        Transform((4,), scale=float("inf"))
    with pytest.raises(DataError, match="mean_value holds NaN or inf"):
        Transform((4,), mean=[0, float("nan"), 0, 0])
    np.save(tmp_path / "m.npy", np.array([[0.0, np.inf]], np.float32))
    with pytest.raises(DataError, match=r"m\.npy: the mean_file holds NaN or inf \(first at index \[0, 1\]\)"):
        read_mean_file(str(tmp_path / "m.npy"))


# --------------------------------------------------------------------------------------------- mean file


def test_garbage_and_truncated_mean_files(tmp_path):
    (tmp_path / "g.binaryproto").write_bytes(os.urandom(64) + b"\xff" * 16)
    with pytest.raises(DataError, match=r"^mean_file .*g\.binaryproto: not a valid Caffe BlobProto"):
        read_mean_file(str(tmp_path / "g.binaryproto"))
    good = _encode_blob(np.ones((1, 3, 4, 4), np.float32))
    (tmp_path / "t.binaryproto").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"^mean_file .*t\.binaryproto: not a valid Caffe BlobProto, or a truncated one"):
        read_mean_file(str(tmp_path / "t.binaryproto"))
    (tmp_path / "g.npy").write_bytes(b"\x93NUMPY\x01\x00" + os.urandom(40))
    with pytest.raises(DataError, match=r"^mean_file .*g\.npy: not a readable \.npy file"):
        read_mean_file(str(tmp_path / "g.npy"))
    np.save(tmp_path / "o.npy", np.array([None], dtype=object))
    with pytest.raises(DataError, match=r"o\.npy: the \.npy holds Python objects"):
        read_mean_file(str(tmp_path / "o.npy"))
    with pytest.raises(DataError, match="the mean_file is not a regular file"):
        read_mean_file("/dev/zero.npy") if os.path.exists("/dev/zero.npy") else read_mean_file(_fifo(tmp_path))


def _fifo(tmp_path) -> str:
    path = tmp_path / "pipe.binaryproto"
    os.mkfifo(path)
    return str(path)


# ----------------------------------------------------------------------------------------------- vocab


def test_vocab_faults(tmp_path):
    path = tmp_path / "vocab.json"
    write_vocab(str(path), ["a", "b", "c"])
    assert read_vocab(str(path)) == ["a", "b", "c"]
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"vocab\.json: the vocabulary file is damaged or not a vocab\.json written "
                                        r"by tfconf \(not valid JSON, truncated or edited: .* line \d+, column \d+\)"):
        read_vocab(str(path))
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match=r"damaged .*\(byte 0 is not UTF-8 text\)"):
        read_vocab(str(path))
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(DataError, match="damaged"):
        read_vocab(str(path))
    path.write_text('{"chars": ["a", "a"]}')
    with pytest.raises(DataError, match="lists a character twice"):
        read_vocab(str(path))
    path.write_text('{"format": "x"}')
    with pytest.raises(DataError, match=r"it has no 'chars' list"):
        read_vocab(str(path))
    with pytest.raises(DataError, match="the vocabulary file is a folder"):
        read_vocab(str(tmp_path))
    with pytest.raises(DataError, match="the vocabulary file is not a regular file"):
        read_vocab("/dev/zero")


# ------------------------------------------------------------------------------------------------- CLI


NET = """\
name: t
data:
  train: {{source: {source}, batch_size: 4{extra}}}
layers:
  - {{name: ip1, type: InnerProduct, bottom: data, num_output: 2}}
  - {{name: loss, type: SoftmaxWithLoss, bottom: [ip1, label]}}
solver: {{base_lr: 0.1, max_iter: 2}}
"""


@pytest.mark.parametrize("case", ["nan", "pickle", "truncated", "mean"])
def test_cli_validate_reports_the_data_fault(tmp_path, case):
    extra = ""
    if case == "nan":
        x = X.copy()
        x[5, 0] = np.nan
        np.savez(tmp_path / "d.npz", x=x, y=Y)
        expect = "data.train.source: " + str(tmp_path / "d.npz") + ": sample 5 holds NaN"
    elif case == "pickle":
        np.savez(tmp_path / "d.npz", x=np.array([[1]] * 20, dtype=object), y=Y)
        expect = "allow_pickle=False"
    elif case == "truncated":
        np.savez(tmp_path / "full.npz", x=X, y=Y)
        (tmp_path / "d.npz").write_bytes((tmp_path / "full.npz").read_bytes()[:200])
        expect = "d.npz: not a readable .npz file"
    else:
        np.savez(tmp_path / "d.npz", x=X, y=Y)
        (tmp_path / "m.binaryproto").write_bytes(b"\xff" * 50)
        extra = ", mean_file: m.binaryproto"
        expect = "data.train.mean_file: mean_file "
    (tmp_path / "c.yaml").write_text(NET.format(source="d.npz", extra=extra))
    r = run(["validate", tmp_path / "c.yaml"])
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert LOCATED.match(line) and expect in line, line
