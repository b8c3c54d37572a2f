"""Caffe's data formats: Datum records (checked against the protobuf package's own encoding), LMDB
and LevelDB databases read lazily in key order, ImageData list files, and `tfconf convert-data`."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from tfconf.data import DataError, DataSpec, load_source, make_dataset
from tfconf.data.sources import guess_format
from tfconf.io.caffemodel import CaffemodelError
from tfconf.io.datum import datum_array, decode_datum, encode_datum

from tests.cli.util import run

lmdb = pytest.importorskip("lmdb")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def Datum():
    """caffe.Datum as the protobuf package builds it from its descriptor (caffe.proto's fields)."""
    pb = pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    del pb
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="caffe_datum_test.proto", package="caffe", syntax="proto2")
    m = fdp.message_type.add(name="Datum")
    for name, number, kind, label in [("channels", 1, F.TYPE_INT32, F.LABEL_OPTIONAL),
                                      ("height", 2, F.TYPE_INT32, F.LABEL_OPTIONAL),
                                      ("width", 3, F.TYPE_INT32, F.LABEL_OPTIONAL),
                                      ("data", 4, F.TYPE_BYTES, F.LABEL_OPTIONAL),
                                      ("label", 5, F.TYPE_INT32, F.LABEL_OPTIONAL),
                                      ("float_data", 6, F.TYPE_FLOAT, F.LABEL_REPEATED),
                                      ("encoded", 7, F.TYPE_BOOL, F.LABEL_OPTIONAL)]:
        m.field.add(name=name, number=number, type=kind, label=label)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.Datum"))


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _lmdb(path, records):
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for k, v in records:
            txn.put(k, v)
    env.close()
    return str(path)


# ---------------------------------------------------------------------------- Datum


def test_datum_encoding_matches_protobuf_both_ways(Datum):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    ours = Datum.FromString(encode_datum(x, -7))
    assert (ours.channels, ours.height, ours.width, ours.label, ours.encoded) == (3, 4, 5, -7, False)
    assert ours.data == x.tobytes()
    f = rng.standard_normal((2, 3, 1)).astype(np.float32)
    ours = Datum.FromString(encode_datum(f, 4))
    np.testing.assert_array_equal(np.float32(ours.float_data), f.ravel())
    # protobuf's records, read here: raw bytes, unpacked float_data (proto2's default), encoded
    raw = Datum(channels=3, height=4, width=5, data=x.tobytes(), label=2147483647).SerializeToString()
    d = decode_datum(raw)
    assert d.label == 2147483647 and not d.encoded
    np.testing.assert_array_equal(datum_array(d, "r"), x)
    fl = Datum(channels=2, height=3, width=1, float_data=f.ravel().tolist(), label=-1).SerializeToString()
    d = decode_datum(fl)
    assert d.label == -1
    np.testing.assert_array_equal(datum_array(d, "f"), f)
    rgb = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    enc = Datum(channels=3, height=4, width=5, data=_png(rgb), label=1, encoded=True).SerializeToString()
    got = datum_array(decode_datum(enc), "e")
    np.testing.assert_array_equal(got, rgb[:, :, ::-1].transpose(2, 0, 1))  # BGR, as Caffe's OpenCV decode
    assert datum_array(decode_datum(enc), "e", is_color=False).shape == (1, 4, 5)


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_damaged_datum_records_are_located_errors(Datum, cut):
    good = Datum(channels=1, height=4, width=4, data=bytes(16), label=1).SerializeToString()
    if cut < 20:  # inside the data field
        with pytest.raises(CaffemodelError, match="byte .*Datum"):
            decode_datum(good[:-cut], "rec")
    else:  # at a field boundary: a valid message that lacks its pixels
        with pytest.raises(CaffemodelError, match="neither data nor float_data"):
            datum_array(decode_datum(good[:-cut], "rec"), "rec")
    short = Datum(channels=1, height=4, width=4, data=bytes(15), label=1).SerializeToString()
    with pytest.raises(CaffemodelError, match="15 bytes"):
        datum_array(decode_datum(short), "rec")
    huge = Datum(channels=1 << 30, height=1 << 30, width=4, data=b"x").SerializeToString()
    with pytest.raises(CaffemodelError, match="channels, height, width"):
        datum_array(decode_datum(huge), "rec")


# ---------------------------------------------------------------------------- databases


def test_lmdb_is_read_in_key_order_with_labels_and_transforms(tmp_path, Datum):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (7, 1, 6, 6), dtype=np.uint8)
    keys = [f"{i:08d}".encode() for i in range(7)]
    order = [3, 0, 6, 1, 5, 2, 4]  # written out of order: Caffe reads in key order
    db = _lmdb(tmp_path / "db", [(keys[i], Datum(channels=1, height=6, width=6, data=x[i].tobytes(),
                                                 label=i % 3).SerializeToString()) for i in order])
    assert guess_format(db) == "lmdb"
    xs, ys = load_source(DataSpec(source=db), "train")
    assert xs.shape == (7, 1, 6, 6) and len(ys) == 7
    np.testing.assert_array_equal(xs[np.arange(7)], x)
    np.testing.assert_array_equal(ys[np.arange(7)], np.arange(7) % 3)
    ds = make_dataset({"source": db, "batch_size": 5, "scale": 0.5, "crop_size": 4}, "test")
    bx, by = next(ds)
    np.testing.assert_allclose(bx, x[:5, :, 1:5, 1:5] * 0.5)
    np.testing.assert_array_equal(by, np.arange(5) % 3)
    bx, by = next(ds)  # the stream wraps into the next epoch, as Caffe's cursor does
    np.testing.assert_array_equal(by, np.array([5, 6, 0, 1, 2]) % 3)
    subset = make_dataset({"source": db, "batch_size": 3, "classes": [1]}, "test")
    assert subset.num_samples == 2 and next(subset)[1].tolist() == [1, 1, 1]


def test_lmdb_shuffled_stream_resumes_exactly(tmp_path):
    x = np.arange(40 * 2 * 3 * 3, dtype=np.uint8).reshape(40, 2, 3, 3)
    db = _lmdb(tmp_path / "db", [(f"{i:04d}".encode(), encode_datum(x[i], i)) for i in range(40)])
    spec = {"source": db, "batch_size": 6, "shuffle": True, "seed": 5, "mirror": True}
    a = make_dataset(spec, "train")
    first = [next(a) for _ in range(9)]
    b = make_dataset(spec, "train")
    for _ in range(4):
        next(b)
    state = b.state()
    c = make_dataset(spec, "train")
    c.restore(state)
    for i in range(4, 9):
        bx, by = next(c)
        np.testing.assert_array_equal(bx, first[i][0])
        np.testing.assert_array_equal(by, first[i][1])


def test_the_cache_is_bounded_and_reads_stay_correct(tmp_path):
    x = np.random.default_rng(2).integers(0, 256, (50, 3, 16, 16), dtype=np.uint8)
    db = _lmdb(tmp_path / "db", [(f"{i:04d}".encode(), encode_datum(x[i], i)) for i in range(50)])
    xs, ys = load_source(DataSpec(source=db, cache_mb=0.01), "train")  # 10 kB: about 13 samples
    for start in (0, 20, 40, 0):
        idx = np.arange(start, start + 10)
        np.testing.assert_array_equal(xs[idx], x[idx])
        np.testing.assert_array_equal(ys[idx], idx)
    samples = xs.samples
    assert samples._cache.nbytes <= 0.01 * (1 << 20) and len(samples._cache) < 50


def test_a_record_of_another_shape_or_a_broken_one_is_named(tmp_path, Datum):
    recs = [(b"a", encode_datum(np.zeros((1, 4, 4), np.uint8), 0)),
            (b"b", encode_datum(np.zeros((1, 5, 4), np.uint8), 0)),
            (b"c", b"\x08")]
    db = _lmdb(tmp_path / "db", recs)
    xs, _ = load_source(DataSpec(source=db), "train")
    with pytest.raises(DataError, match=r"sample 1 \(record 'b'\) is uint8 \[1, 5, 4\].*first is uint8 \[1, 4, 4\]"):
        xs[np.array([1])]
    with pytest.raises(DataError, match=r"record 'c'.*not a Caffe Datum"):
        xs[np.array([2])]
    nan = _lmdb(tmp_path / "nan", [(b"a", encode_datum(np.full((1, 2, 2), np.nan, np.float32), 0))])
    with pytest.raises(DataError, match="NaN or inf"):
        load_source(DataSpec(source=nan), "train")
    empty = _lmdb(tmp_path / "empty", [])
    with pytest.raises(DataError, match="holds no records"):
        load_source(DataSpec(source=empty), "train")
    with pytest.raises(DataError, match="a lmdb database, not leveldb"):
        load_source(DataSpec(source=db, format="leveldb"), "train")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not a lmdb database"):
        load_source(DataSpec(source=str(tmp_path / "plain"), format="lmdb"), "train")


def test_leveldb_reads_the_same_records(tmp_path, Datum):
    plyvel = pytest.importorskip("plyvel")
    x = np.random.default_rng(3).integers(0, 256, (5, 3, 2, 2), dtype=np.uint8)
    db = plyvel.DB(str(tmp_path / "ldb"), create_if_missing=True)
    for i in (4, 2, 0, 3, 1):
        db.put(f"{i:08d}".encode(), Datum(channels=3, height=2, width=2, data=x[i].tobytes(), label=i).SerializeToString())
    db.close()
    path = str(tmp_path / "ldb")
    assert guess_format(path) == "leveldb"
    xs, ys = load_source(DataSpec(source=path), "test")
    np.testing.assert_array_equal(xs[np.arange(5)], x)
    np.testing.assert_array_equal(ys[np.arange(5)], np.arange(5))


# ---------------------------------------------------------------------------- image lists


def _images(tmp_path, n=6, size=(5, 4)):
    rng = np.random.default_rng(4)
    folder = tmp_path / "imgs"
    folder.mkdir()
    arrays = []
    for i in range(n):
        a = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(a).save(folder / f"im{i}.png")
        arrays.append(a)
    return folder, arrays


def test_image_lists_read_like_caffes_image_data(tmp_path):
    folder, arrays = _images(tmp_path)
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"im{i}.png {i % 2}\n" for i in range(6)))
    assert guess_format(str(lst)) == "imagelist"
    xs, ys = load_source(DataSpec(source=str(lst), root_folder="imgs/"), "train", root=str(tmp_path))
    np.testing.assert_array_equal(xs[np.arange(6)], np.stack([a[:, :, ::-1].transpose(2, 0, 1) for a in arrays]))
    np.testing.assert_array_equal(ys[np.arange(6)], np.arange(6) % 2)
    grey = make_dataset({"source": str(lst), "root_folder": str(folder) + "/", "is_color": False, "new_height": 8,
                         "new_width": 6, "batch_size": 4}, "test")
    assert grey.output_shape == (4, 1, 8, 6)
    (tmp_path / "rel.txt").write_text("imgs/im0.png 3\n")  # without root_folder: beside the list
    assert load_source(DataSpec(source=str(tmp_path / "rel.txt")), "train")[1][np.array([0])].tolist() == [3]
    (tmp_path / "bad.txt").write_text("imgs/im0.png 1\nimgs/im1.png one\n")
    with pytest.raises(DataError, match=r"bad.txt:2: the label 'one' is not an integer"):
        load_source(DataSpec(source=str(tmp_path / "bad.txt"), format="imagelist"), "train")
    (tmp_path / "gone.txt").write_text("imgs/im0.png 1\nimgs/missing.png 1\n")
    xs, _ = load_source(DataSpec(source=str(tmp_path / "gone.txt")), "train")
    with pytest.raises(DataError, match="image not found: .*missing.png"):
        xs[np.array([1])]


def test_hdf5_lists_are_still_told_apart_from_image_lists(tmp_path):
    (tmp_path / "h.txt").write_text("train.h5\nmore.h5\n")
    assert guess_format(str(tmp_path / "h.txt")) == "hdf5"


# ---------------------------------------------------------------------------- convert-data


def test_convert_data_makes_databases_from_folders_lists_and_sets(tmp_path, Datum):
    folder, arrays = _images(tmp_path)
    cls = tmp_path / "classes"
    for c in ("cat", "dog"):
        (cls / c).mkdir(parents=True)
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(cls / ("cat" if i < 4 else "dog") / f"{i}.png")
    r = run(["convert-data", cls, tmp_path / "raw_lmdb"])
    assert r.returncode == 0, r.stderr
    assert "6 records" in r.stdout and "0 = cat, 1 = dog" in r.stdout
    xs, ys = load_source(DataSpec(source=str(tmp_path / "raw_lmdb")), "test")
    np.testing.assert_array_equal(xs[np.arange(6)], np.stack([a[:, :, ::-1].transpose(2, 0, 1) for a in arrays]))
    np.testing.assert_array_equal(ys[np.arange(6)], [0, 0, 0, 0, 1, 1])
    # --encoded keeps each PNG file as it is, keyed as convert_imageset keys it
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"im{i}.png {i}\n" for i in range(6)))
    r = run(["convert-data", lst, tmp_path / "enc_lmdb", "--encoded", "--root-folder", str(folder) + "/"])
    assert r.returncode == 0, r.stderr
    env = lmdb.open(str(tmp_path / "enc_lmdb"), readonly=True, lock=False)
    with env.begin() as txn:
        items = list(txn.cursor())
    env.close()
    assert items[0][0] == b"00000000_im0.png"
    d = Datum.FromString(items[2][1])
    assert d.encoded and d.label == 2 and d.data == (folder / "im2.png").read_bytes()
    enc = make_dataset({"source": str(tmp_path / "enc_lmdb"), "batch_size": 6}, "test")
    np.testing.assert_array_equal(next(enc)[0], xs[np.arange(6)].astype(np.float32))
    # a built-in set, shuffled, and a LevelDB
    r = run(["convert-data", "digits", tmp_path / "dig_ldb", "--backend", "leveldb", "--shuffle", "--split", "test"])
    if "scikit-learn" not in r.stderr:
        assert r.returncode == 0, r.stderr
    r = run(["convert-data", cls, tmp_path / "small", "--resize-height", "3", "--resize-width", "2", "--gray"])
    assert r.returncode == 0 and "samples 1x3x2" in r.stdout


def test_convert_data_refuses_cleanly_and_leaves_no_partial_database(tmp_path):
    folder, _ = _images(tmp_path, n=3)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    lst = tmp_path / "list.txt"
    lst.write_text("im0.png 0\nim1.png 1\nbroken.png 0\n")
    r = run(["convert-data", lst, tmp_path / "out_lmdb", "--root-folder", str(folder) + "/"])
    assert r.returncode == 2 and "broken.png" in r.stderr and "Traceback" not in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["imgs", "list.txt"]  # nothing half-written
    (tmp_path / "out_lmdb").mkdir()
    r = run(["convert-data", "mnist", tmp_path / "out_lmdb"])
    assert r.returncode == 2 and "already exists" in r.stderr
    r = run(["convert-data", "mnist", tmp_path / "x", "--backend", "rocksdb"])
    assert r.returncode == 2 and "lmdb or leveldb" in r.stderr


def test_images_of_several_sizes_convert_but_their_mean_needs_one_size(tmp_path):
    (tmp_path / "c" / "a").mkdir(parents=True)
    for i, size in enumerate([(4, 5), (6, 3)]):
        Image.fromarray(np.zeros((*size, 3), np.uint8)).save(tmp_path / "c" / "a" / f"{i}.png")
    r = run(["convert-data", tmp_path / "c", tmp_path / "db"])
    assert r.returncode == 0 and "2 records" in r.stdout, r.stderr  # as convert_imageset, sizes may differ
    r = run(["convert-data", tmp_path / "c", tmp_path / "db2", "--mean", tmp_path / "m.binaryproto"])
    assert r.returncode == 2 and "--mean needs samples of one shape" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "db2").exists() and not (tmp_path / "m.binaryproto").exists()
