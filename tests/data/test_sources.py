"""File sources: each reads a small file written here, and each mistake gives a short, clear error."""

import gzip
import struct
import sys

import numpy as np
import pytest

from tfconf.data import DataError, DataSpec, DataUnavailableError, load_source, make_dataset
from tfconf.data.sources import read_idx_file
from tfconf.data.transforms import parse_blob_proto, read_mean_file


def load(tmp_path, split="train", **spec):
    return load_source(DataSpec(**spec), split, root=str(tmp_path))


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 1, 4, 5), dtype=np.uint8), np.array([0, 1, 2, 0, 1, 2])


# ---------------------------------------------------------------------------- npz / npy


def test_npz_with_plain_and_split_keys(tmp_path, images):
    x, y = images
    np.savez(tmp_path / "d.npz", x=x, y=y)
    gx, gy = load(tmp_path, source="d.npz")
    assert gx.dtype == np.uint8 and np.array_equal(gx, x) and gy.dtype == np.int64 and np.array_equal(gy, y)
    np.savez(tmp_path / "s.npz", x_train=x[:4], y_train=y[:4], x_test=x[4:].astype(np.float64), y_test=y[4:])
    tx, ty = load(tmp_path, "test", source="s.npz")
    assert tx.dtype == np.float32 and np.array_equal(tx, x[4:]) and np.array_equal(ty, y[4:])
    assert len(load(tmp_path, "train", source="s.npz")[1]) == 4


def test_npz_without_known_keys_lists_what_it_has(tmp_path, images):
    np.savez(tmp_path / "d.npz", pixels=images[0], targets=images[1])
    with pytest.raises(DataError, match=r"\['pixels', 'targets'\]"):
        load(tmp_path, source="d.npz")


def test_npy_with_npy_or_text_labels(tmp_path, images):
    x, y = images
    np.save(tmp_path / "x.npy", x[:, 0])  # [N, H, W] gains a channel axis
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "y.txt").write_text("\n".join(map(str, y)) + "\n")
    for labels in ("y.npy", "y.txt"):
        gx, gy = load(tmp_path, source="x.npy", labels=labels)
        assert gx.shape == (6, 1, 4, 5) and np.array_equal(gx, x) and np.array_equal(gy, y)


def test_npy_label_errors(tmp_path, images):
    x, y = images
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y5.npy", y[:5])
    np.save(tmp_path / "yf.npy", y + 0.5)
    with pytest.raises(DataError, match="needs labels:"):
        load(tmp_path, source="x.npy")
    with pytest.raises(DataError, match="5 labels for 6 samples"):
        load(tmp_path, source="x.npy", labels="y5.npy")
    with pytest.raises(DataError, match="whole numbers"):
        load(tmp_path, source="x.npy", labels="yf.npy")
    with pytest.raises(DataError, match="labels file not found: .*nope.npy"):
        load(tmp_path, source="x.npy", labels="nope.npy")


# ---------------------------------------------------------------------------------- csv


def test_csv_label_last_without_header_and_reshaped(tmp_path):
    rows = np.array([[1, 2, 3, 4, 7], [5, 6, 7, 8, 3]])
    np.savetxt(tmp_path / "d.csv", rows, delimiter=",", fmt="%d")
    x, y = load(tmp_path, source="d.csv")
    assert x.shape == (2, 4) and x.dtype == np.float32 and np.array_equal(x, rows[:, :4]) and y.tolist() == [7, 3]
    x, _ = load(tmp_path, source="d.csv", shape=[1, 2, 2])
    assert x.shape == (2, 1, 2, 2) and x[1, 0, 1, 0] == 7
    with pytest.raises(DataError, match="cannot reshape samples of 4 values"):
        load(tmp_path, source="d.csv", shape=[1, 3, 3])


def test_csv_with_header_label_by_name_and_gzip(tmp_path):
    text = "label,a,b\n1,0.5,2\n0,1.5,3\n"
    with gzip.open(tmp_path / "d.csv.gz", "wt") as f:
        f.write(text)
    x, y = load(tmp_path, source="d.csv.gz", label_column="label")
    assert np.allclose(x, [[0.5, 2], [1.5, 3]]) and y.tolist() == [1, 0]
    x0, y0 = load(tmp_path, source="d.csv.gz", label_column=0)
    assert np.array_equal(x0, x) and np.array_equal(y0, y)
    with pytest.raises(DataError, match="no column named 'target'"):
        load(tmp_path, source="d.csv.gz", label_column="target")
    with pytest.raises(DataError, match="out of range for 3 columns"):
        load(tmp_path, source="d.csv.gz", label_column=5)


# ---------------------------------------------------------------------------------- IDX


def write_idx(path, array, code=0x08, magic=None):
    header = magic if magic is not None else bytes([0, 0, code, array.ndim])
    data = header + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


def test_idx_gz_images_with_labels_found_by_name(tmp_path):
    x = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    y = np.array([9, 0, 4], np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y)
    gx, gy = load(tmp_path, source="train-images-idx3-ubyte.gz")
    assert gx.shape == (3, 1, 4, 5) and gx.dtype == np.uint8 and np.array_equal(gx[:, 0], x)
    assert gy.dtype == np.int64 and gy.tolist() == [9, 0, 4]


def test_idx_plain_float_and_explicit_labels(tmp_path):
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    write_idx(tmp_path / "feats.idx", x, code=0x0D)
    write_idx(tmp_path / "lab.idx", np.array([1, 2, 3, 4], np.int32), code=0x0C)
    assert np.array_equal(read_idx_file(str(tmp_path / "feats.idx")), x)
    gx, gy = load(tmp_path, source="feats.idx", labels="lab.idx")
    assert np.array_equal(gx, x) and gy.tolist() == [1, 2, 3, 4]


def test_idx_bad_magic_and_truncation(tmp_path):
    x = np.zeros((2, 2, 2), np.uint8)
    write_idx(tmp_path / "a-images-idx3-ubyte", x, magic=b"\x08\x03\x00\x00")
    with pytest.raises(DataError, match="bad magic number 0x08030000"):
        load(tmp_path, source="a-images-idx3-ubyte")
    raw = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 2, 2) + bytes(7)
    (tmp_path / "b-images-idx3-ubyte").write_bytes(raw)
    with pytest.raises(DataError, match=r"\[2, 2, 2\] \(8 bytes\) but the file holds 7 bytes"):
        load(tmp_path, source="b-images-idx3-ubyte")
    write_idx(tmp_path / "c-images-idx3-ubyte", x)
    write_idx(tmp_path / "c-labels-idx1-ubyte", np.array([1, 2, 3], np.uint8))
    with pytest.raises(DataError, match="3 labels for 2 samples"):
        load(tmp_path, source="c-images-idx3-ubyte")


# ------------------------------------------------------------------------- image folder


def test_image_folder_of_pngs(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(1)
    pics = {}
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(2):
            a = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)  # H=3, W=4, RGB
            Image.fromarray(a).save(tmp_path / "imgs" / cls / f"{i}.png")
            pics[(cls, i)] = a
    (tmp_path / "imgs" / "dog" / "notes.txt").write_text("not an image")
    x, y = load(tmp_path, source="imgs")
    assert x.shape == (4, 3, 3, 4) and x.dtype == np.uint8 and y.tolist() == [0, 0, 1, 1]
    assert np.array_equal(x[2], pics[("dog", 0)].transpose(2, 0, 1))
    g, _ = load(tmp_path, source="imgs", is_color=False)
    assert g.shape == (4, 1, 3, 4)
    r, _ = load(tmp_path, source="imgs", new_height=6, new_width=5)
    assert r.shape == (4, 3, 6, 5)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "imgs" / "dog" / "big.png")
    with pytest.raises(DataError, match="images differ in size"):
        load(tmp_path, source="imgs")


def test_image_folder_without_pillow_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(DataUnavailableError, match=r'pip install "tfconf\[images\]"'):
        load(tmp_path, source="imgs")


# --------------------------------------------------------------------------------- HDF5


def test_hdf5_file_and_caffe_file_list(tmp_path, images):
    h5py = pytest.importorskip("h5py")
    x, y = images
    for i, (a, b) in enumerate([(x[:4], y[:4]), (x[4:], y[4:])]):
        with h5py.File(tmp_path / f"part{i}.h5", "w") as f:
            f["data"] = a.astype(np.float32)
            f["label"] = b.astype(np.float32)[:, None]  # Caffe stores labels as float [N, 1]
    gx, gy = load(tmp_path, source="part0.h5")
    assert gx.dtype == np.float32 and np.array_equal(gx, x[:4]) and np.array_equal(gy, y[:4])
    (tmp_path / "list.txt").write_text("part0.h5\npart1.h5\n")
    gx, gy = load(tmp_path, source="list.txt")
    assert np.array_equal(gx, x) and np.array_equal(gy, y)
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["pixels"] = x
    with pytest.raises(DataError, match="expected datasets 'data' and 'label'"):
        load(tmp_path, source="bad.h5")


def test_hdf5_without_h5py_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "d.h5").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(DataUnavailableError, match=r"tfconf\[hdf5\]"):
        load(tmp_path, source="d.h5")


# ------------------------------------------------------------------------ paths, errors


def test_missing_file_and_misspelt_builtin(tmp_path):
    with pytest.raises(DataError, match=r"data file not found: .*missing\.npz"):
        load(tmp_path, source="missing.npz")
    with pytest.raises(DataError, match="Did you mean 'mnist'"):
        load(tmp_path, source="mnsit")
    (tmp_path / "weird.bin").write_bytes(b"1")
    with pytest.raises(DataError, match="set format:"):
        load(tmp_path, source="weird.bin")


def test_relative_paths_resolve_against_root_and_explicit_format(tmp_path, images):
    x, y = images
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "sub" / "blobs", x=x, y=y)  # a file named like a built-in
    ds = make_dataset({"source": "sub/blobs.npz", "batch_size": 2}, "test", root=tmp_path)
    assert np.array_equal(ds.x, x)
    (tmp_path / "sub" / "data.bin").write_bytes((tmp_path / "sub" / "blobs.npz").read_bytes())
    ds = make_dataset({"source": "sub/data.bin", "format": "npz", "batch_size": 2}, "test", root=tmp_path)
    assert np.array_equal(ds.y, y)


def test_mean_file_npy_and_binaryproto(tmp_path):
    mean = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    np.save(tmp_path / "m.npy", mean)
    assert np.array_equal(read_mean_file(str(tmp_path / "m.npy")), mean)

    def varint(v):
        out = bytearray()
        while True:
            b, v = v & 0x7F, v >> 7
            out.append(b | (0x80 if v else 0))
            if not v:
                return bytes(out)

    packed = mean.astype("<f4").tobytes()
    legacy = b"".join(varint(f << 3) + varint(v) for f, v in [(1, 1), (2, 2), (3, 3), (4, 4)])
    legacy += varint(5 << 3 | 2) + varint(len(packed)) + packed
    (tmp_path / "mean.binaryproto").write_bytes(legacy)
    assert np.array_equal(read_mean_file(str(tmp_path / "mean.binaryproto")), mean[None])
    dims = b"".join(varint(1 << 3) + varint(d) for d in (2, 3, 4))
    shaped = varint(7 << 3 | 2) + varint(len(dims)) + dims
    shaped += b"".join(varint(5 << 3 | 5) + np.float32(v).tobytes() for v in mean.ravel())  # unpacked floats
    assert np.array_equal(parse_blob_proto(shaped), mean)
    with pytest.raises(DataError, match="not a valid Caffe BlobProto"):
        parse_blob_proto(legacy[:-3])
    with pytest.raises(DataError, match="mean_file not found"):
        read_mean_file(str(tmp_path / "nope.npy"))
