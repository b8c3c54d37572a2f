"""``tfconf convert-data``: write a database of Caffe ``Datum`` records, as Caffe's ``convert_imageset``
does, from an image list (``path label`` lines), an image folder (one sub-folder per class) or any
source tfconf reads (``.npz``, ``.npy``, CSV, IDX, HDF5, the built-in sets).

Records are keyed like ``convert_imageset``'s (``%08d_<path>`` for images, ``%08d`` for arrays), so
key order is the order written. Images are stored raw (uint8 ``[C, H, W]``, BGR) or, with
``encoded``, as image files: the file's own bytes when nothing changes it, else re-encoded.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Optional

import numpy as np

from tfconf.data.caffe_db import parse_image_list, read_image, write_database
from tfconf.data.errors import DataError, missing_extra
from tfconf.data.paths import resolve
from tfconf.data.schema import DataSpec
from tfconf.data.sources import IMAGE_EXTENSIONS, guess_format, load_source
from tfconf.io.datum import encode_datum

__all__ = ["Converted", "convert_data"]


@dataclasses.dataclass
class Converted:
    count: int
    shape: tuple           # of the first sample
    classes: Optional[list]  # class folder names by label (an image folder), else None


def _folder_list(path: str) -> tuple[list, np.ndarray, list]:
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise DataError(f"{path}: an image folder needs one sub-folder per class; found none")
    files, labels = [], []
    for label, cls in enumerate(classes):
        for name in sorted(os.listdir(os.path.join(path, cls))):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                files.append(os.path.join(path, cls, name))
                labels.append(label)
    if not files:
        raise DataError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders {classes}")
    return files, np.asarray(labels, np.int64), classes


def _encode_image(x: np.ndarray, kind: str) -> bytes:
    """uint8 ``[C, H, W]`` (BGR or grey) as a PNG or JPEG file."""
    try:
        from PIL import Image
    except ImportError:
        raise missing_extra("Pillow", "images", "Writing encoded images") from None
    if x.dtype != np.uint8 or x.shape[0] not in (1, 3):
        raise DataError(f"--encoded stores images: uint8 samples with 1 or 3 channels. Received {x.dtype} "
                        f"{list(x.shape)}; leave out --encoded to store the values raw")
    im = Image.fromarray(x[0] if x.shape[0] == 1 else np.ascontiguousarray(x[::-1].transpose(1, 2, 0)))
    buf = io.BytesIO()
    im.save(buf, format="JPEG" if kind in ("jpg", "jpeg") else "PNG", **({"quality": 95} if kind != "png" else {}))
    return buf.getvalue()


def convert_data(source: str, out: str, *, backend: str = "lmdb", fmt: Optional[str] = None, encoded: bool = False,
                 encode_type: Optional[str] = None, gray: bool = False, resize_height: Optional[int] = None,
                 resize_width: Optional[int] = None, shuffle: bool = False, seed: int = 0, split: str = "train",
                 root_folder: Optional[str] = None, mean: Optional[str] = None) -> Converted:
    """Write ``source`` into a new ``backend`` database at ``out``; with ``mean``, also the samples'
    mean image as a ``.binaryproto`` (Caffe's compute_image_mean: ``[1, C, H, W]``, for mean_file)."""
    if mean is not None and not mean.endswith(".binaryproto"):
        raise DataError(f"--mean writes Caffe's mean file: give a .binaryproto path. Received: {mean!r}")
    if backend not in ("lmdb", "leveldb"):
        raise DataError(f"--backend must be lmdb or leveldb. Received: {backend!r}")
    if encode_type is not None and encode_type.lower() not in ("png", "jpg", "jpeg"):
        raise DataError(f"--encode-type must be png or jpg. Received: {encode_type!r}")
    path = os.path.expanduser(source)
    kind = fmt or (guess_format(path) if os.path.exists(path) else None)
    resized = bool(resize_height or resize_width)
    classes = None
    if kind in ("imagelist", "images"):
        if kind == "imagelist":
            root = resolve(root_folder, None) if root_folder else None
            files, labels = parse_image_list(path, root)
        else:
            files, labels, classes = _folder_list(path)
        names = files if kind == "images" else [line for line in _listed_names(path)]
        order = np.random.default_rng(seed).permutation(len(files)) if shuffle else np.arange(len(files))
        keep_file = encoded and not resized and not gray and encode_type is None

        def records():
            for n, i in enumerate(order):
                key = f"{n:08d}_{os.path.relpath(names[i], path) if kind == 'images' else names[i]}".encode()[:500]  # (LMDB's key limit; the counter keeps keys unique)
                x = read_image(files[i], not gray, resize_height, resize_width)
                if keep_file:
                    with open(files[i], "rb") as f:
                        yield key, encode_datum(x, labels[i], f.read()), x
                elif encoded:
                    yield key, encode_datum(x, labels[i], _encode_image(x, (encode_type or "png").lower())), x
                else:
                    yield key, encode_datum(x, labels[i]), x

        first = read_image(files[order[0]], not gray, resize_height, resize_width)
    else:
        spec = DataSpec(source=source, format=fmt, split=split)
        x, y = load_source(spec, split, root=None, seed=seed)
        if x.ndim == 2:  # vectors: Caffe stores them as [D, 1, 1]
            x = x.reshape(len(x), -1, 1, 1)
        if resized or gray:
            raise DataError("--resize-height, --resize-width and --gray apply to images (an image list or folder)")
        order = np.random.default_rng(seed).permutation(len(y)) if shuffle else np.arange(len(y))

        def records():
            for n, i in enumerate(order):
                sample = np.asarray(x[i])
                value = _encode_image(sample, (encode_type or "png").lower()) if encoded else None
                yield f"{n:08d}".encode(), encode_datum(sample, int(y[i]), value), sample

        first = np.asarray(x[order[0]])
    total = np.zeros(first.shape, np.float64) if mean is not None else None

    def summed():  # the mean, when asked for, of samples that must then share one shape
        for key, value, sample in records():
            if total is not None:
                if sample.shape != total.shape:
                    raise DataError(f"--mean needs samples of one shape: {key.decode(errors='replace')} is "
                                    f"{list(sample.shape)}, the first {list(total.shape)} (resize them with "
                                    "--resize-height/--resize-width)")
                np.add(total, sample, out=total)
            yield key, value

    count = write_database(out, summed(), backend)
    if mean is not None:
        from tfconf.io.atomic import atomic_write_bytes
        from tfconf.io.caffemodel import _encode_blob

        atomic_write_bytes(mean, _encode_blob((total / count).astype(np.float32)[None]))
    return Converted(count, tuple(first.shape), classes)


def _listed_names(path: str) -> list:
    """The paths of an image list as written in it (the keys convert_imageset makes)."""
    names = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                names.append(line.rpartition(" ")[0].strip())
    return names
