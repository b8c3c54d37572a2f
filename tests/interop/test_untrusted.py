"""Hostile and faulty Caffe files: the .prototxt reader and the .caffemodel reader are bounded and
raise their own located errors for any input, never RecursionError/IndexError/MemoryError."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli.util import one_error_line, run
from tfconf.frontend.errors import ConfigError
from tfconf.io import caffemodel as cm
from tfconf.interop import prototxt
from tfconf.interop.prototxt import parse, parse_file


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, "net.prototxt")
    (line,) = info.value.lines
    return line


# ---------------------------------------------------------------------------------------------- prototxt


@pytest.mark.parametrize("text", ["layer {" * 10000, "a <" * 10000, "a: [" + "{ b: [" * 5000])
def test_deep_prototxt_is_located(text):
    line = _error(text)
    assert line.startswith("net.prototxt:1:") and "nested more than 100 levels deep" in line


def test_nesting_up_to_the_bound_parses():
    msg = parse("a {" * 100 + "}" * 100)
    for _ in range(100):
        (msg,) = [f.value for f in msg]
    assert len(msg) == 0


def test_a_number_of_thousands_of_digits():
    line = _error("layer { num_output: " + "7" * 5000 + " }")
    assert line.startswith("net.prototxt:1:21: the number 77777") and "has 5000 characters" in line


def test_a_lone_surrogate_in_a_string():
    assert _error('name: "a\ud800"') == "net.prototxt:1:9: the character U+D800 cannot be in a string"


@pytest.mark.parametrize("text, expect", [
    ('name: "abc', "net.prototxt:1:7: unterminated string"),
    ("layer { name: 'x' ", "net.prototxt:1:7: this '{' is never closed"),
    ("}", "net.prototxt:1:1: unexpected '}'"),
    ("a: [1, 2", "net.prototxt:1:9: expected ',' or ']' in a list. Received: end of file"),
    ('a: "\\x"', "net.prototxt:1:5: \\x must be followed by hex digits"),
    ('a: "\\U0011ffff"', "net.prototxt:1:5: \\U0011ffff is not a valid code point"),
    ("a: 09", "net.prototxt:1:4: invalid octal number 09"),
    ("a: -b", "net.prototxt:1:4: expected a number after '-'"),
    ("a: \x00", "net.prototxt:1:4: unexpected character '\\x00'"),
])
def test_malformed_prototxt(text, expect):
    assert _error(text).startswith(expect)


def test_parse_file_bounds_and_reading_errors(tmp_path, monkeypatch):
    with open(tmp_path / "big.prototxt", "wb") as f:
        f.truncate(prototxt.MAX_BYTES + 1)
    with pytest.raises(ConfigError, match=r"big.prototxt: the file has 16,777,217 bytes: more than a .prototxt may"):
        parse_file(str(tmp_path / "big.prototxt"))
    with pytest.raises(ConfigError, match="^/dev/zero: more than 16,777,216 bytes: too large for a .prototxt$"):
        parse_file("/dev/zero")
    (tmp_path / "d").mkdir()
    with pytest.raises(ConfigError, match="is a folder, not a .prototxt file"):
        parse_file(str(tmp_path / "d"))
    with pytest.raises(ConfigError, match=r"no such file \(a folder in its path is a file\)"):
        parse_file(str(tmp_path / "big.prototxt" / "x"))
    with pytest.raises(ConfigError, match="cannot be read: file name too long"):
        parse_file(str(tmp_path / ("x" * 300)))
    (tmp_path / "bin.prototxt").write_bytes(b"name: \xff\xfe")
    with pytest.raises(ConfigError, match=r"not a text file \(byte 6 is not UTF-8\)"):
        parse_file(str(tmp_path / "bin.prototxt"))
    monkeypatch.setattr(prototxt, "MAX_BYTES", 10)
    with pytest.raises(ConfigError, match="more than a .prototxt may"):
        parse("name: 'a long net name'")


_PIECES = st.sampled_from(list("ab_:{}<>[],;#\"'\\ \n\t.-0123456789exXfu") + [
    "inf", "nan", "layer {", "}", "name: ", '"\\x', '"\\u12', '"\\U0011ffff"', "0x", "\\377", "\ud800"])


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.text(max_size=60), st.lists(_PIECES, max_size=40).map("".join)))
def test_fuzz_prototxt_parser(text):
    try:
        parse(text, "f.prototxt")
    except ConfigError as e:
        (line,) = e.lines
        assert line.startswith("f.prototxt:")


# -------------------------------------------------------------------------------------------- caffemodel


def _net() -> bytes:
    rng = np.random.default_rng(0)
    return cm.encode_net([("conv1", "Convolution", [rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4)]),
                          ("ip1", "InnerProduct", [rng.standard_normal((2, 36))])], name="n")


def test_every_truncation_is_a_caffemodel_error():
    buf = _net()
    for n in range(0, len(buf), 7):
        try:
            cm._Reader(buf[:n], "t.caffemodel").net()
        except cm.CaffemodelError as e:
            assert str(e).startswith("t.caffemodel: ")


def test_a_huge_declared_length_is_not_allocated():
    buf = cm._key(100, cm.LENGTH) + cm._varint(1 << 62) + b"abc"
    tracemalloc.start()
    try:
        with pytest.raises(cm.CaffemodelError, match="field 100 claims 4611686018427387904 bytes but its message "
                                                     "has 3 left"):
            cm._Reader(buf, "h.caffemodel").net()
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()


def test_hostile_blob_shapes():
    huge = cm._len_field(7, cm._len_field(1, b"".join(cm._varint(1 << 62) for _ in range(4))))
    with pytest.raises(cm.CaffemodelError, match=r"has shape \[4611686018427387904, .* but 0 values"):
        cm.read_blob(huge, "m.binaryproto")
    # 2**64 wraps to 0 in int64: the product must be exact
    wrap = cm._len_field(7, cm._len_field(1, cm._varint(1 << 32) + cm._varint(1 << 32)))
    with pytest.raises(cm.CaffemodelError, match="but 0 values"):
        cm.read_blob(wrap, "m.binaryproto")
    axes = cm._len_field(7, cm._len_field(1, b"\x01" * 100_000))
    with pytest.raises(cm.CaffemodelError, match="a blob shape has more than 32 axes"):
        cm.read_blob(axes, "m.binaryproto")


def test_unpacked_values_read_like_packed_ones():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    for double in (False, True):
        got = cm.read_blob(cm._encode_blob(a, packed=False, double=double))
        assert got.dtype == np.float32 and np.array_equal(got, a)


def test_read_caffemodel_reading_errors(tmp_path):
    with pytest.raises(cm.CaffemodelError, match="^/dev/zero: not a regular file"):
        cm.read_caffemodel("/dev/zero")
    with pytest.raises(cm.CaffemodelError, match="is a folder, not a .caffemodel"):
        cm.read_caffemodel(str(tmp_path))
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(cm.CaffemodelError, match=r"no such file \(a folder in its path is a file\)"):
        cm.read_caffemodel(str(tmp_path / "f" / "x.caffemodel"))
    with pytest.raises(cm.CaffemodelError, match="cannot be read: file name too long"):
        cm.read_caffemodel(str(tmp_path / ("x" * 300)))
    with pytest.raises(cm.CaffemodelError, match="holds no layers"):
        cm.read_caffemodel(str(tmp_path / "f"))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200), st.integers(0, 400))
def test_fuzz_caffemodel_reader(noise, at):
    buf = bytearray(_net())
    at = min(at, len(buf))
    buf[at:at + len(noise)] = noise
    for read in (lambda: cm._Reader(bytes(buf), "f.caffemodel").net(), lambda: cm.read_blob(noise, "f")):
        try:
            read()
        except cm.CaffemodelError as e:
            assert str(e).startswith("f")


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_import_caffe_hostile_files(tmp_path):
    deep = tmp_path / "deep.prototxt"
    deep.write_text("layer {" * 10000)
    r = run(["import-caffe", deep])
    assert r.returncode == 2
    assert one_error_line(r.stderr).startswith(f"{deep}:1:") and "nested more than 100 levels" in r.stderr
    r = run(["import-caffe", "/dev/zero"])
    assert r.returncode == 2 and one_error_line(r.stderr) == \
        "/dev/zero: more than 16,777,216 bytes: too large for a .prototxt"
