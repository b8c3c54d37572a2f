"""Caffe's ``Datum``: one sample of a Caffe database (what ``convert_imageset`` writes into LMDB or
LevelDB, one record per image).

======================  ==================================================================
``channels`` = 1        int32; ``height`` = 2, ``width`` = 3
``data`` = 4            bytes: the pixels as uint8 ``[C, H, W]`` (Caffe's BGR channel order), or,
                        with ``encoded``, the image file itself (JPEG, PNG...)
``label`` = 5           int32
``float_data`` = 6      repeated float: the values when ``data`` is empty (packed or not)
``encoded`` = 7         bool
======================  ==================================================================

Decoding follows Caffe: raw data is ``[C, H, W]`` as stored; an encoded image is decoded in its own
colour (a grey image stays one channel, a colour one is three, in OpenCV's BGR order, which is what
a Caffe model's ``mean_value: [104, 117, 123]`` expects), or forced to colour/grey by ``is_color``.
A damaged record is a :class:`~tfconf.io.caffemodel.CaffemodelError` naming the record and the byte.
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Optional

import numpy as np

from tfconf.io.caffemodel import LENGTH, VARINT, CaffemodelError, _key, _len_field, _Reader, _signed, _varint

__all__ = ["Datum", "decode_datum", "encode_datum", "decode_image", "datum_array"]

#: the most pixels one record may claim (a 64k x 64k RGB image): a hostile header allocates nothing more
MAX_VALUES = 1 << 34


@dataclasses.dataclass
class Datum:
    channels: int = 0
    height: int = 0
    width: int = 0
    data: bytes = b""
    label: int = 0
    float_data: Optional[np.ndarray] = None
    encoded: bool = False


def _int32(v: int) -> int:
    v = _signed(v)
    return ((v + (1 << 31)) % (1 << 32)) - (1 << 31)


def decode_datum(buf: bytes, where: str = "Datum") -> Datum:
    """The fields of one serialized Datum."""
    r = _Reader(buf, where, "a Caffe Datum")
    d = Datum()
    floats: list = []
    for number, wire, value, at in r.fields(0, len(r.buf)):
        if number in (1, 2, 3, 5):
            if wire != VARINT:
                raise r.fail(at, f"field {number} (an int32) has wire type {wire}")
            v = _int32(value)
            setattr(d, {1: "channels", 2: "height", 3: "width", 5: "label"}[number], v)
        elif number == 4:
            if wire != LENGTH:
                raise r.fail(at, f"the data field has wire type {wire}")
            d.data = bytes(r.buf[value[0]:value[1]])
        elif number == 6:
            r.numbers(wire, value, "<f4", floats, at)
        elif number == 7:
            if wire != VARINT:
                raise r.fail(at, f"the encoded field has wire type {wire}")
            d.encoded = bool(value)
    if floats:
        parts = [np.frombuffer(c, dtype="<f4") if isinstance(c, bytearray) else c for c in floats]
        d.float_data = np.concatenate(parts).astype(np.float32)
    return d


def encode_datum(x: np.ndarray, label: int, encoded: Optional[bytes] = None) -> bytes:
    """A serialized Datum of ``x`` (``[C, H, W]``; uint8 goes to ``data``, anything else to
    ``float_data``) or, with ``encoded``, of that image file's bytes (``x`` then gives the shape)."""
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 1:
        x = x[:, None, None]
    if x.ndim != 3:
        raise ValueError(f"a Datum holds one [C, H, W] sample. Received shape {list(x.shape)}")
    c, h, w = (int(v) for v in x.shape)
    out = _key(1, VARINT) + _varint(c) + _key(2, VARINT) + _varint(h) + _key(3, VARINT) + _varint(w)
    if encoded is not None:
        out += _len_field(4, bytes(encoded))
    elif x.dtype == np.uint8:
        out += _len_field(4, np.ascontiguousarray(x).tobytes())
    else:
        out += _len_field(6, np.ascontiguousarray(x, dtype="<f4").tobytes())
    out += _key(5, VARINT) + _varint(int(label))
    if encoded is not None:
        out += _key(7, VARINT) + _varint(1)
    return out


def decode_image(data: bytes, where: str, is_color: Optional[bool] = None) -> np.ndarray:
    """An image file's bytes as uint8 ``[C, H, W]`` in Caffe's channel order (BGR for colour):
    its own colour when ``is_color`` is None, else forced to 3 channels (True) or 1 (False)."""
    from PIL import Image  # ImportError without Pillow: the caller names the extra
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_VALUES // 3:
                raise CaffemodelError(f"{where}: an image of {im.width}x{im.height} pixels is too large")
            grey = im.mode in ("1", "L", "I;16", "I", "F") if is_color is None else not is_color
            a = np.asarray(im.convert("L" if grey else "RGB"), dtype=np.uint8)
    except CaffemodelError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise many types for a bad image
        text = " ".join(str(e).split())[:100]
        raise CaffemodelError(f"{where}: the encoded image does not decode ({text or type(e).__name__})") from None
    if a.ndim == 2:
        return a[None]
    return np.ascontiguousarray(a[:, :, ::-1].transpose(2, 0, 1))  # RGB HWC → BGR CHW


def datum_array(d: Datum, where: str, is_color: Optional[bool] = None) -> np.ndarray:
    """A decoded Datum's sample: uint8 ``[C, H, W]`` (raw or encoded) or float32 (float_data).
    ``is_color`` forces an encoded image's colour, as Caffe's force_color/force_gray do (raw records
    are used as stored)."""
    if d.encoded:
        return decode_image(d.data, where, is_color)
    shape = (d.channels, d.height, d.width)
    if min(shape) < 1 or math.prod(shape) > MAX_VALUES:
        raise CaffemodelError(f"{where}: a Datum of shape {list(shape)} (channels, height, width must be positive)")
    n = math.prod(shape)
    if d.data:
        if len(d.data) != n:
            raise CaffemodelError(f"{where}: the Datum says {list(shape)} ({n} bytes) but holds {len(d.data)} bytes")
        x = np.frombuffer(d.data, np.uint8).reshape(shape)
    elif d.float_data is not None:
        if d.float_data.size != n:
            raise CaffemodelError(f"{where}: the Datum says {list(shape)} ({n} values) but holds "
                                  f"{d.float_data.size} float values")
        x = d.float_data.reshape(shape)
    else:
        raise CaffemodelError(f"{where}: the Datum holds neither data nor float_data")
    return x
