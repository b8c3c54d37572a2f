"""Caffe's binary ``.caffemodel`` (a serialized ``caffe.NetParameter``): read its layers' blobs, and
write such a file (for tests, and for going back to Caffe).

Only the fields that carry weights are read; everything else is skipped by its wire type:

=====================  =========================================================================
NetParameter           ``layer`` = 100 (LayerParameter), ``layers`` = 2 (legacy V1LayerParameter)
LayerParameter         ``name`` = 1, ``type`` = 2 (string), ``blobs`` = 7
V1LayerParameter       ``name`` = 4, ``type`` = 5 (the LayerType enum), ``blobs`` = 6
BlobProto              ``shape`` = 7 (BlobShape: ``dim`` = 1, int64, packed), ``data`` = 5 (float,
                       packed), ``double_data`` = 8 (double, packed); legacy 4-D shape ``num``,
                       ``channels``, ``height``, ``width`` = 1..4
=====================  =========================================================================

The protobuf wire format is a sequence of (key, value) pairs, key = field_number << 3 | wire_type,
with wire types 0 (varint), 1 (8 bytes), 2 (length-delimited: a varint length, then the bytes: a
string, a nested message or a packed repeated field) and 5 (4 bytes). Repeated numbers may also be
written one by one (unpacked); both forms are read.

A hostile or truncated file is a :class:`CaffemodelError` naming the byte: a declared length is checked
against the bytes its message has left before anything is read (nothing is allocated for it), the
messages read nest a fixed 4 levels (net, layer, blob, shape), a shape has at most
:data:`MAX_DIMS` axes, and memory stays proportional to the file (unpacked values are gathered into one
buffer, packed ones are views of the file's bytes).
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
from typing import Iterator

import numpy as np

from tfconf.errors import UserError

__all__ = ["Blob", "CaffeLayer", "CaffemodelError", "V1_LAYER_TYPES", "read_caffemodel", "write_caffemodel",
           "encode_net"]

#: caffe.V1LayerParameter.LayerType → today's layer type string.
V1_LAYER_TYPES: dict[int, str] = {
    0: "NONE", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout",
    7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output", 11: "Im2col", 12: "ImageData",
    13: "InfogainLoss", 14: "InnerProduct", 15: "LRN", 16: "MultinomialLogisticLoss", 17: "Pooling",
    18: "ReLU", 19: "Sigmoid", 20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split", 23: "TanH",
    24: "WindowData", 25: "Eltwise", 26: "Power", 27: "SigmoidCrossEntropyLoss", 28: "HingeLoss",
    29: "MemoryData", 30: "ArgMax", 31: "Threshold", 32: "DummyData", 33: "Slice", 34: "MVN",
    35: "AbsVal", 36: "Silence", 37: "ContrastiveLoss", 38: "Exp", 39: "Deconvolution",
}
_V1_CODES = {v: k for k, v in V1_LAYER_TYPES.items()}

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
#: the most axes a blob's shape may have (numpy's limit)
MAX_DIMS = 32


class CaffemodelError(UserError, ValueError):
    """A file that is not a readable caffemodel; the message names the file and the byte offset."""


@dataclasses.dataclass
class Blob:
    """One parameter blob: its values in Caffe's layout; ``legacy`` when its shape came from the
    deprecated 4-D num/channels/height/width fields (always 4 axes, padded with leading 1s)."""

    data: np.ndarray
    legacy: bool = False


@dataclasses.dataclass
class CaffeLayer:
    name: str
    type: str
    blobs: list[Blob]
    v1: bool = False


# ------------------------------------------------------------------------------------------ reading
class _Reader:
    """Reads protobuf messages from ``buf``; ``what`` names the message in errors (``a Caffe
    .caffemodel``, ``a Caffe Datum``)."""

    def __init__(self, buf, path: str, what: str = "a Caffe .caffemodel"):
        self.buf = memoryview(buf)
        self.path = path
        self.what = what

    def fail(self, offset: int, message: str) -> CaffemodelError:
        return CaffemodelError(f"{self.path}: byte {offset}: {message} (not {self.what}, or a truncated one)")

    def varint(self, i: int, end: int) -> tuple[int, int]:
        buf, shift, result, start = self.buf, 0, 0, i
        while True:
            if i >= end:
                raise self.fail(start, "a number runs past the end of its message")
            b = buf[i]
            result |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                return result, i
            shift += 7
            if shift > 63:
                raise self.fail(start, "a number is longer than 10 bytes")

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, object, int]]:
        """(field number, wire type, value, offset): a varint's int, or (start, end) of the bytes."""
        i = start
        while i < end:
            at = i
            key, i = self.varint(i, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise self.fail(at, "field number 0")
            if wire == VARINT:
                value, i = self.varint(i, end)
            elif wire == LENGTH:
                size, i = self.varint(i, end)
                if i + size > end:
                    raise self.fail(at, f"field {number} claims {size} bytes but its message has {end - i} left")
                value = (i, i + size)
                i += size
            elif wire in (FIXED32, FIXED64):
                size = 4 if wire == FIXED32 else 8
                if i + size > end:
                    raise self.fail(at, f"field {number} runs past the end of its message")
                value = (i, i + size)
                i += size
            else:  # 3/4 are the long-deprecated groups, 6/7 do not exist
                raise self.fail(at, f"unsupported wire type {wire} (field {number})")
            yield number, wire, value, at

    def string(self, span, at: int) -> str:
        try:
            return bytes(self.buf[span[0]:span[1]]).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(at, "a layer name or type is not UTF-8") from None

    def numbers(self, wire: int, value, dtype: str, chunks: list, at: int) -> None:
        """A packed run (wire type 2) or one unpacked value of a float/double field. Packed runs are
        views of the file; unpacked values are appended to one growing buffer (a bytearray at the end
        of ``chunks``), so that memory stays proportional to the file."""
        itemsize = np.dtype(dtype).itemsize
        if wire not in (LENGTH, FIXED32 if itemsize == 4 else FIXED64):
            raise self.fail(at, f"a {'float' if itemsize == 4 else 'double'} field has wire type {wire}")
        start, end = value
        if (end - start) % itemsize:
            raise self.fail(at, f"{end - start} bytes of packed {dtype} values (not a multiple of {itemsize})")
        if wire == LENGTH:
            chunks.append(np.frombuffer(self.buf[start:end], dtype=dtype))
        else:
            if not chunks or not isinstance(chunks[-1], bytearray):
                chunks.append(bytearray())
            chunks[-1] += self.buf[start:end]

    def ints(self, wire: int, value, out: list, at: int, limit: int = MAX_DIMS) -> None:
        if wire == VARINT:
            out.append(_signed(value))
        elif wire == LENGTH:
            i, end = value
            while i < end and len(out) <= limit:
                v, i = self.varint(i, end)
                out.append(_signed(v))
        else:
            raise self.fail(at, f"an integer field has wire type {wire}")
        if len(out) > limit:
            raise self.fail(at, f"a blob shape has more than {limit} axes")

    def blob(self, span, where: str) -> Blob:
        floats: list = []
        doubles: list = []
        dims: list | None = None
        legacy = [0, 0, 0, 0]
        seen_legacy = False
        for number, wire, value, at in self.fields(*span):
            if number == 5:
                self.numbers(wire, value, "<f4", floats, at)
            elif number == 8:
                self.numbers(wire, value, "<f8", doubles, at)
            elif number == 7 and wire == LENGTH:
                dims = dims if dims is not None else []
                for n2, w2, v2, at2 in self.fields(*value):
                    if n2 == 1:
                        self.ints(w2, v2, dims, at2)
            elif number in (1, 2, 3, 4) and wire == VARINT:
                legacy[number - 1] = _signed(value)
                seen_legacy = True
        if floats and doubles:
            raise CaffemodelError(f"{self.path}: {where} has both float and double data")
        dtype = "<f8" if doubles else "<f4"
        parts = [np.frombuffer(c, dtype=dtype) if isinstance(c, bytearray) else c for c in (doubles or floats)]
        values = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        is_legacy = dims is None and seen_legacy
        shape = dims if dims is not None else (legacy if seen_legacy else [values.size])
        if any(d < 0 for d in shape) or math.prod(shape) != values.size:  # exact: no int64 wrap-around
            shown = list(shape) if len(str(list(shape))) < 200 else f"{str(list(shape))[:200]}...]"
            raise CaffemodelError(f"{self.path}: {where} has shape {shown} but {values.size} values")
        return Blob(values.astype(np.float32).reshape(shape), legacy=is_legacy)

    def layer(self, span, v1: bool, index: int) -> CaffeLayer:
        name_field, type_field, blobs_field = (4, 5, 6) if v1 else (1, 2, 7)
        name, kind, blob_spans = None, None, []
        for number, wire, value, at in self.fields(*span):
            if number == name_field and wire == LENGTH:
                name = self.string(value, at)
            elif number == type_field:
                if v1 and wire == VARINT:
                    kind = V1_LAYER_TYPES.get(value, f"V1 type {value}")
                elif not v1 and wire == LENGTH:
                    kind = self.string(value, at)
            elif number == blobs_field and wire == LENGTH:
                blob_spans.append(value)
        label = f"{'layers' if v1 else 'layer'}[{index}] ({name or 'unnamed'})"
        blobs = [self.blob(s, f"{label} blob {i}") for i, s in enumerate(blob_spans)]
        return CaffeLayer(name or "", kind or "", blobs, v1)

    def net(self) -> list[CaffeLayer]:
        layers: list[CaffeLayer] = []
        counts = {False: 0, True: 0}
        for number, wire, value, _ in self.fields(0, len(self.buf)):
            if wire == LENGTH and number in (100, 2):
                v1 = number == 2
                layers.append(self.layer(value, v1, counts[v1]))
                counts[v1] += 1
        return layers


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def read_caffemodel(path: str, display: str | None = None) -> list[CaffeLayer]:
    """The layers of a ``.caffemodel`` in file order (layers without blobs included)."""
    display = display or str(path)
    buf = read_file(path, display)
    layers = _Reader(buf, display).net()
    if not layers:
        raise CaffemodelError(f"{display}: holds no layers (not a Caffe .caffemodel?)")
    return layers


def read_file(path: str, display: str | None = None, what: str = ".caffemodel") -> bytes:
    """The bytes of a regular file (a device such as /dev/zero or a pipe would be read without end);
    a CaffemodelError naming the file for whatever stops it being read."""
    display = display or str(path)
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise CaffemodelError(f"{display}: not a regular file (a device or a pipe); give the {what} "
                                      "file itself")
            return f.read()
    except CaffemodelError:
        raise
    except FileNotFoundError:
        raise CaffemodelError(f"{display}: no such file") from None
    except IsADirectoryError:
        raise CaffemodelError(f"{display}: is a folder, not a {what}") from None
    except NotADirectoryError:
        raise CaffemodelError(f"{display}: no such file (a folder in its path is a file)") from None
    except PermissionError:
        raise CaffemodelError(f"{display}: cannot be read: permission denied") from None
    except MemoryError:
        raise CaffemodelError(f"{display}: too large to read into memory") from None
    except ValueError:  # a NUL byte in the name
        raise CaffemodelError(f"{display}: cannot be read: its name contains a NUL byte") from None
    except OSError as e:
        raise CaffemodelError(f"{display}: cannot be read: {(e.strerror or str(e)).lower()}") from None


def read_blob(buf: bytes, where: str = "binaryproto") -> np.ndarray:
    """One BlobProto (a Caffe mean file's ``.binaryproto``) as a float32 array in its shape."""
    reader = _Reader(buf, where)
    return reader.blob((0, len(reader.buf)), where).data


# ------------------------------------------------------------------------------------------ writing
def _varint(v: int) -> bytes:
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _key(number, LENGTH) + _varint(len(payload)) + payload


def _encode_blob(array: np.ndarray, legacy: bool = False, double: bool = False, packed: bool = True) -> bytes:
    a = np.asarray(array)
    out = b""
    if legacy:
        if a.ndim > 4:
            raise ValueError(f"a legacy blob has at most 4 axes; shape {list(a.shape)}")
        dims = [1] * (4 - a.ndim) + list(a.shape)
        for number, d in zip((1, 2, 3, 4), dims):
            out += _key(number, VARINT) + _varint(int(d))
    flat = a.astype("<f8" if double else "<f4").ravel()
    number = 8 if double else 5
    if packed:
        out += _len_field(number, flat.tobytes())
    else:
        wire = FIXED64 if double else FIXED32
        out += b"".join(_key(number, wire) + v.tobytes() for v in flat)
    if not legacy:
        out += _len_field(7, _len_field(1, b"".join(_varint(int(d)) for d in a.shape)))
    return out


def encode_net(layers, name: str = "", legacy: bool = False, double: bool = False, packed: bool = True) -> bytes:
    """A serialized NetParameter. ``layers``: (name, type, [arrays]) in Caffe's layouts. ``legacy``
    writes V1 ``layers`` entries (enum types, 4-D blob shapes), as Caffe did before 2015."""
    out = _len_field(1, name.encode()) if name else b""
    for layer_name, kind, arrays in layers:
        blobs = [_encode_blob(a, legacy, double, packed) for a in arrays]
        if legacy:
            if kind not in _V1_CODES:
                raise ValueError(f"layer type {kind!r} has no V1 enum value")
            body = _len_field(4, layer_name.encode()) + _key(5, VARINT) + _varint(_V1_CODES[kind])
            body += b"".join(_len_field(6, b) for b in blobs)
            out += _len_field(2, body)
        else:
            body = _len_field(1, layer_name.encode()) + _len_field(2, kind.encode())
            body += b"".join(_len_field(7, b) for b in blobs)
            out += _len_field(100, body)
    return out


def write_caffemodel(path: str, layers, name: str = "", legacy: bool = False, double: bool = False) -> None:
    """Write ``layers`` ((name, type, [arrays]) in Caffe's layouts) as a ``.caffemodel``."""
    with open(path, "wb") as f:
        f.write(encode_net(layers, name, legacy, double))

