"""File sources. Each reader returns ``(x, y)``: ``x`` uint8 or float32, NCHW ``[N, C, H, W]`` for
images or ``[N, D]`` for vectors, and ``y`` int64 ``[N]``. :func:`load_source` picks the reader for a
:class:`~tfconf.data.schema.DataSpec` and checks what it returns.

Formats (chosen by ``format:`` or guessed from the path):

- ``npz``: arrays ``x_<split>``/``y_<split>``, else ``x``/``y``, ``data``/``label(s)`` or ``images``/``labels``.
- ``npy``: the data; labels in the file named by ``labels:`` (``.npy``, or text with one label per line).
- ``csv`` (also ``.csv.gz``, ``.tsv``): one sample per row, the label in ``label_column``; a first row
  that is not numeric is taken as a header, whose names ``label_column`` may use.
- ``idx``: MNIST's IDX format (``train-images-idx3-ubyte[.gz]``); labels in ``labels:`` or, by default,
  the file named like the images with ``images-idx3`` replaced by ``labels-idx1``.
- ``images``: a folder with one sub-folder per class (sorted names give labels 0, 1, ...); needs Pillow.
  Images are read as RGB (or grayscale with ``is_color: false``) and must share one size unless
  ``new_height``/``new_width`` resize them.
- ``hdf5``: Caffe's HDF5Data: datasets ``data`` and ``label`` in an ``.h5``/``.hdf5`` file, or in each file
  listed (one per line) in a ``.txt`` file; needs h5py.
- ``lmdb``/``leveldb``/``imagelist``: Caffe's Data and ImageData sources (:mod:`tfconf.data.caffe_db`),
  read sample by sample: they return the columns of :class:`~tfconf.data.lazy.LazySamples`, which
  index like arrays. ``windows`` (WindowData) makes its own batches (:mod:`tfconf.data.windows`).
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
from typing import Optional

import numpy as np

from tfconf.errors import did_you_mean
from tfconf.data.errors import DataError, missing_extra
from tfconf.data.paths import regular as _regular, require as _require, resolve
from tfconf.data.caffe_db import database_backend, read_database, read_image_list
from tfconf.data.lazy import CACHE_BYTES, LazySamples
from tfconf.data.schema import BUILTIN_SOURCES, FORMATS, TEXT_SOURCES, DataSpec

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------------------------- paths


def _decode_error(path: str, e: BaseException, kind: str) -> DataError:
    """The DataError for a file that does not decode as ``kind`` (npz, npy...), from numpy's, zipfile's
    or gzip's exception: one line, naming the file, never the file's bytes."""
    text = " ".join(str(e).split())
    if "allow_pickle" in text or "pickled" in text or "Object arrays" in text:
        return DataError(f"{path}: the {kind} holds Python objects (an object array), which would have to be "
                         "unpickled; tfconf loads numeric arrays only (allow_pickle=False): save the data "
                         "as numbers, e.g. np.savez(path, x=x.astype(np.float32), y=y)")
    if isinstance(e, MemoryError):
        return DataError(f"{path}: the {kind} is too large to load into memory")
    import zipfile

    if isinstance(e, zipfile.BadZipFile):
        why = "not a zip archive, or a truncated one"
    elif isinstance(e, EOFError) or any(w in text.lower() for w in ("truncated", "end of", "eof")):
        why = f"it is truncated: {text[:80]}" if text else "it is truncated"
    else:
        why = text[:120] + ("..." if len(text) > 120 else "") if text else type(e).__name__
    return DataError(f"{path}: not a readable {kind} file ({why})")


#: what numpy, zipfile, gzip and zlib raise for a damaged file
def _decode_errors():
    import zipfile
    import zlib

    return (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, MemoryError, KeyError,
            TypeError, UnicodeError)


def _not_found(source: str, path: str, fmt: Optional[str] = None) -> str:
    if fmt is not None:
        what = {"lmdb": "lmdb database", "leveldb": "leveldb database", "imagelist": "image list",
                "images": "image folder", "windows": "windows file"}.get(fmt, "data file")
        return f"{what} not found: {path}"
    if os.sep in source or "." in os.path.basename(source):
        return f"data file not found: {path}"
    known = BUILTIN_SOURCES + TEXT_SOURCES
    hint = did_you_mean(source, known)
    return f"{source!r} is neither a built-in set ({', '.join(known)}) nor an existing path.{hint}"


def guess_format(path: str) -> str:
    """The format of a path, from its name (a folder is an LMDB or LevelDB database when it holds
    one, else an image folder; a ``.txt`` is an image list when its lines end in a label)."""
    backend = database_backend(path)
    if backend is not None:
        return backend
    if os.path.isdir(path):
        return "images"
    name = os.path.basename(path).lower()
    stem = name[:-3] if name.endswith(".gz") else name
    if stem.endswith(".npz"):
        return "npz"
    if stem.endswith(".npy"):
        return "npy"
    if stem.endswith((".csv", ".tsv")):
        return "csv"
    if stem.endswith(".txt"):
        first = _first_line(path)
        if re.fullmatch(r"#\s*\d+", first):
            return "windows"
        return "imagelist" if _names_labels(first) else "hdf5"
    if stem.endswith((".h5", ".hdf5")):
        return "hdf5"
    if stem.endswith(("-ubyte", ".idx")) or "idx1" in stem or "idx3" in stem:
        return "idx"
    raise DataError(
        f"cannot tell the format of {path!r} from its name; set format: to one of "
        + ", ".join(FORMATS)
    )


def _first_line(path: str) -> str:
    """The first non-empty line of a text file ('' when it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    return line.strip()
    except OSError:
        pass
    return ""


def _names_labels(line: str) -> bool:
    """Whether a text file's first line is ``path label`` (Caffe's ImageData) rather than the name
    of an HDF5 file (Caffe's HDF5Data)."""
    name, _, label = line.rpartition(" ")
    return bool(name) and label.lstrip("-").isdigit()


# ------------------------------------------------------------------------------------------ checking


def _as_labels(y: np.ndarray, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be one integer per sample. Received shape {list(y.shape)}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{where}: labels must be whole numbers. Received e.g. {y[y != np.round(y)][:3].tolist()}")
    elif y.dtype.kind not in "iub":
        raise DataError(f"{where}: labels must be integers. Received dtype {y.dtype}")
    return y.astype(np.int64)


def check_finite(x: np.ndarray, where: str, what: str = "sample") -> None:
    """A DataError naming the first ``what`` (index along axis 0) of ``x`` that holds NaN or inf: bad data
    is reported as the data's fault when it is loaded, not later as a diverging layer. One vectorized
    float64 sum (which finite float32 data cannot overflow) decides; only bad data is searched further."""
    if x.dtype.kind not in "fc" or x.size == 0:
        return
    with np.errstate(all="ignore"):
        if np.isfinite(np.sum(x, dtype=np.complex128 if x.dtype.kind == "c" else np.float64)):
            return
        bad = ~np.isfinite(x.reshape(len(x), -1) if x.ndim else x.reshape(1, 1))
    first = int(np.flatnonzero(bad.any(axis=1))[0])
    value = x.reshape(len(x), -1)[first][bad[first]][0] if x.ndim else x
    kind = "NaN" if np.isnan(value) else "inf"
    count = int(bad.any(axis=1).sum())
    more = f" ({count} {what}s in all)" if count > 1 else ""
    raise DataError(f"{where}: {what} {first} holds {kind}{more}: the data itself is not finite "
                    "(fix or drop those samples; this is not the net diverging)")


def _as_data(x: np.ndarray, where: str, shape: Optional[list[int]] = None) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iufb":
        raise DataError(f"{where}: data must be numeric. Received dtype {x.dtype}")
    check_finite(x, where)
    if x.ndim == 0:
        raise DataError(f"{where}: data must have one row per sample. Received a scalar")
    if shape is not None:
        per = math.prod(x.shape[1:])
        if per != math.prod(shape):
            raise DataError(
                f"{where}: cannot reshape samples of {per} values to shape {shape}. Received data of shape {list(x.shape)}"
            )
        x = x.reshape(len(x), *shape)
    if x.ndim == 1:
        x = x[:, None]
    elif x.ndim == 3:  # [N, H, W]: one channel
        x = x[:, None]
    elif x.ndim not in (2, 4):
        raise DataError(
            f"{where}: data must be [N, D] vectors or [N, C, H, W] images (or [N, H, W]). Received shape {list(x.shape)}"
        )
    return x if x.dtype == np.uint8 else x.astype(np.float32)


def checked(x: np.ndarray, y: np.ndarray, where: str, shape: Optional[list[int]] = None):
    """Bring ``(x, y)`` to the layer's conventions and check that they agree."""
    x, y = _as_data(x, where, shape), _as_labels(y, where)
    if len(x) != len(y):
        raise DataError(f"{where}: {len(y)} labels for {len(x)} samples; there must be one label per sample")
    if len(x) == 0:
        raise DataError(f"{where}: the source holds no samples")
    return x, y


# ----------------------------------------------------------------------------------------- readers

_NPZ_KEYS = (("x", "y"), ("data", "label"), ("data", "labels"), ("images", "labels"), ("X", "y"))


def _load_npy(path: str, what: str = "data file") -> np.ndarray:
    try:
        with open(_regular(path, what), "rb") as f:  # (np.load leaks the file it opens when it fails)
            x = np.load(f, allow_pickle=False)
            if not isinstance(x, np.ndarray):  # an .npz under an .npy name
                raise DataError(f"{path}: an .npz archive, not an .npy array; name it .npz or set format: npz")
    except DataError:
        raise
    except _decode_errors() as e:
        raise _decode_error(path, e, ".npy") from None
    return x


def read_npz(path: str, split: str):
    try:
        with open(_regular(path), "rb") as fh, np.load(fh, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise DataError(f"{path}: an .npy array, not an .npz archive; name it .npy or set format: npy")
            keys = set(f.files)
            for xk, yk in ((f"x_{split}", f"y_{split}"),) + _NPZ_KEYS:
                if xk in keys and yk in keys:
                    try:
                        return f[xk], f[yk]
                    except _decode_errors() as e:
                        raise _decode_error(f"{path} (arrays {xk}, {yk})", e, ".npz") from None
    except DataError:
        raise
    except _decode_errors() as e:
        raise _decode_error(path, e, ".npz") from None
    raise DataError(
        f"{path}: no data/label arrays found; expected x_{split}/y_{split}, x/y, data/label or images/labels. "
        f"Received arrays: {sorted(keys)}"
    )


def _read_label_file(path: str) -> np.ndarray:
    _regular(path, "labels file")
    if path.lower().endswith(".npy"):
        return _load_npy(path, "labels file")
    try:
        return np.loadtxt(path, ndmin=1)
    except (ValueError, UnicodeError) as e:
        raise DataError(f"{path}: labels must be one number per line ({_short(e)})") from None


def _short(e: BaseException, limit: int = 120) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_npy(path: str, labels: Optional[str]):
    x = _load_npy(path)
    if labels is None:
        raise DataError(f"{path}: an .npy source needs labels: naming its labels file (.npy or one label per line)")
    return x, _read_label_file(labels)


def _open_text(path: str):
    return gzip.open(path, "rt") if path.lower().endswith(".gz") else open(path)


def read_csv(path: str, label_column, delimiter: str = ","):
    if path.lower().endswith((".tsv", ".tsv.gz")) and delimiter == ",":
        delimiter = "\t"
    _regular(path)
    try:
        with _open_text(path) as f:
            first = f.readline(1 << 20).strip()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a CSV text file (byte {e.start} is not UTF-8 text: is it a binary "
                        "file?)") from None
    except _decode_errors() as e:
        raise _decode_error(path, e, "CSV") from None
    if "\0" in first:
        raise DataError(f"{path}: not a CSV text file (it holds NUL bytes: is it a binary file?)")
    fields = [s.strip() for s in first.split(delimiter)]
    try:
        [float(s) for s in fields]
        header = None
    except ValueError:
        header = [s.strip('"') for s in fields]
    try:
        table = np.loadtxt(path, delimiter=delimiter, dtype=np.float32, skiprows=1 if header else 0, ndmin=2)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a CSV text file (a byte after the first line is not UTF-8 text: is "
                        "it a binary file?)") from None
    except ValueError as e:
        # numpy counts rows from 0 after the skipped header, columns from 1
        m = re.search(r"could not convert string '(.{0,40}?)' to \w+ at row (\d+), column (\d+)", str(e))
        if m:
            row = int(m.group(2))
            raise DataError(f"{path}: not a numeric CSV table: line {row + 1 + bool(header)}, column {m.group(3)} "
                            f"(sample {row}) is {m.group(1)!r}, not a number") from None
        raise DataError(f"{path}: not a numeric CSV table ({_short(e)})") from None
    except _decode_errors() as e:
        raise _decode_error(path, e, "CSV") from None
    if header is not None and len(header) > 1 and len(header) != table.shape[1] and table.size:
        raise DataError(f"{path}: the header has {len(header)} columns but the rows have {table.shape[1]}")
    ncol = table.shape[1]
    if isinstance(label_column, str):
        if header is None or label_column not in header:
            raise DataError(f"{path}: no column named {label_column!r}. Received header: {header}")
        col = header.index(label_column)
    else:
        if not -ncol <= label_column < ncol:
            raise DataError(f"{path}: label_column {label_column} is out of range for {ncol} columns")
        col = label_column % ncol
    return np.delete(table, col, axis=1), table[:, col]


_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx_file(path: str) -> np.ndarray:
    """One IDX array: magic ``00 00 <dtype> <ndim>``, ``ndim`` big-endian uint32 sizes, then the data."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    try:
        with opener(_regular(path), "rb") as f:
            raw = f.read()
    except DataError:
        raise
    except _decode_errors() as e:
        raise _decode_error(path, e, "IDX") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(
            f"{path}: not an IDX file (bad magic number 0x{raw[:4].hex() or 'empty'}; "
            "expected 0x0000 then a type code 08/09/0b/0c/0d/0e and the number of dimensions)"
        )
    ndim = raw[3]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX header says {list(dims)} ({expected} bytes) but the file holds {len(raw) - header} bytes"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def idx_labels_path(images: str) -> Optional[str]:
    """MNIST's naming: ``train-images-idx3-ubyte.gz`` → ``train-labels-idx1-ubyte.gz``."""
    d, name = os.path.split(images)
    for a, b in (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1"), ("images", "labels")):
        if a in name:
            return os.path.join(d, name.replace(a, b))
    return None


def read_idx(path: str, labels: Optional[str]):
    x = read_idx_file(path)
    labels = labels or idx_labels_path(path)
    if labels is None:
        raise DataError(f"{path}: cannot guess the IDX labels file from the name; name it with labels:")
    y = read_idx_file(labels)
    if y.ndim != 1:
        raise DataError(f"{labels}: IDX labels must be 1-D. Received shape {list(y.shape)}")
    return x, y


def read_image_folder(path: str, is_color: bool = True, new_height=None, new_width=None):
    try:
        from PIL import Image
    except ImportError:
        raise missing_extra("Pillow", "images", "An image-folder source") from None
    _require(path, "image folder")
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise DataError(f"{path}: an image folder needs one sub-folder per class; found none")
    images, labels, first = [], [], None
    for label, cls in enumerate(classes):
        folder = os.path.join(path, cls)
        for name in sorted(os.listdir(folder)):
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            file = os.path.join(folder, name)
            try:
                with Image.open(_regular(file, "image")) as im:
                    im = im.convert("RGB" if is_color else "L")
                    if new_height or new_width:
                        im = im.resize((new_width or im.width, new_height or im.height), Image.BILINEAR)
                    a = np.asarray(im, dtype=np.uint8)
            except DataError:
                raise
            except Exception as e:  # noqa: BLE001 - Pillow's decoders raise many types for a bad file
                raise DataError(f"{file}: not a readable image (sample {len(images)} of {path}; "
                                f"{_short(e, 100)})") from None
            if first is None:
                first = (file, a.shape)
            elif a.shape != first[1]:
                raise DataError(
                    f"{path}: images differ in size ({first[0]}: {first[1][:2]}, {file}: {a.shape[:2]}); "
                    "set new_height and new_width to resize them"
                )
            images.append(a)
            labels.append(label)
    if not images:
        raise DataError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders {classes}")
    x = np.stack(images)
    x = x.transpose(0, 3, 1, 2) if x.ndim == 4 else x[:, None]  # NHWC → NCHW
    return np.ascontiguousarray(x), np.asarray(labels, np.int64)


def read_hdf5(path: str, split: str):
    try:
        import h5py
    except ImportError:
        raise missing_extra("h5py", "hdf5", "An HDF5 source") from None
    _regular(path)
    if path.lower().endswith(".txt"):  # Caffe's HDF5Data source: a list of .h5 files
        try:
            with open(path, encoding="utf-8") as f:
                files = [resolve(line.strip(), os.path.dirname(path)) for line in f if line.strip()]
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not a text list of HDF5 files (byte {e.start} is not UTF-8 text)") from None
        except OSError as e:
            raise _decode_error(path, e, "HDF5 file list") from None
        if any("\0" in f for f in files):
            raise DataError(f"{path}: not a text list of HDF5 files (it holds NUL bytes)")
        if not files:
            raise DataError(f"{path}: the HDF5 file list is empty")
    else:
        files = [path]
    xs, ys = [], []
    for file in files:
        try:
            with h5py.File(_regular(file, "HDF5 file"), "r") as f:
                for xk, yk in ((f"x_{split}", f"y_{split}"), ("data", "label"), ("data", "labels"), ("x", "y")):
                    if xk in f and yk in f:
                        xs.append(np.asarray(f[xk]))
                        ys.append(np.asarray(f[yk]))
                        break
                else:
                    raise DataError(f"{file}: expected datasets 'data' and 'label'. Received: {sorted(f.keys())}")
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - h5py raises OSError, KeyError, TypeError... for a bad file
            raise _decode_error(file, e, "HDF5") from None
    if len({a.shape[1:] for a in xs}) > 1:
        raise DataError(f"{path}: the HDF5 files hold samples of different shapes: {[list(a.shape[1:]) for a in xs]}")
    return np.concatenate(xs), np.concatenate(ys)


# ------------------------------------------------------------------------------------------ dispatch


def load_source(spec: DataSpec, split: str, root: Optional[str] = None, seed: int = 0):
    """``(x, y)`` for a spec: a built-in set or a file, checked and in the layer's conventions."""
    from tfconf.data import builtin

    if spec.is_text:
        raise DataError(f"source {spec.source} streams characters: read it with tfconf.data.make_dataset")
    if spec.is_builtin:
        x, y = builtin.load_builtin(spec, split, seed)
        return keep_classes(*checked(x, y, spec.source, spec.shape), spec.classes, spec.source)
    path = resolve(spec.source, root)
    if not os.path.exists(path):
        raise DataError(_not_found(spec.source, path, spec.format))
    fmt = spec.format or guess_format(path)
    labels = resolve(spec.labels, root) if spec.labels else None
    if fmt == "npz":
        x, y = read_npz(path, split)
    elif fmt == "npy":
        x, y = read_npy(path, labels)
    elif fmt == "csv":
        x, y = read_csv(path, spec.label_column, spec.delimiter)
    elif fmt == "idx":
        x, y = read_idx(path, labels)
    elif fmt == "images":
        x, y = read_image_folder(path, spec.is_color, spec.new_height, spec.new_width)
    elif fmt in ("lmdb", "leveldb", "imagelist"):
        return _lazy(spec, fmt, path, root)
    elif fmt == "windows":
        raise DataError(f"{path}: a WindowData windows file is read batch by batch: use tfconf.data.make_dataset")
    else:
        x, y = read_hdf5(path, split)
    return keep_classes(*checked(x, y, path, spec.shape), spec.classes, path)


def _lazy(spec: DataSpec, fmt: str, path: str, root: Optional[str]):
    """(images, labels) columns of a source read sample by sample (Caffe's databases and lists)."""
    cache = int(spec.cache_mb * (1 << 20)) if spec.cache_mb is not None else CACHE_BYTES
    if fmt == "imagelist":
        root_folder = spec.root_folder
        if root_folder is not None and not os.path.isabs(os.path.expanduser(root_folder)):
            root_folder = resolve(root_folder, root)
        samples = read_image_list(path, root_folder, spec.is_color, spec.new_height, spec.new_width, cache)
    else:
        is_color = spec.is_color if "is_color" in spec.model_fields_set else None
        samples = read_database(path, fmt, is_color, cache)
    if spec.shape is not None and seen_shape(spec, samples.sample_shape) != seen_shape(spec, spec.shape):
        raise DataError(f"{path}: the samples are {list(samples.sample_shape)} but shape: says {spec.shape}"
                        + (f" (compared after the crop to {spec.crop_size})" if spec.crop_size else ""))
    return keep_classes(samples.images, samples.labels, spec.classes, path)


def seen_shape(spec: DataSpec, sample_shape) -> list:
    """The shape of a sample as the net sees it: after the spec's crop."""
    shape = [int(d) for d in sample_shape]
    return [shape[0], spec.crop_size, spec.crop_size] if spec.crop_size and len(shape) == 3 else shape


def declared(spec: DataSpec, root: Optional[str]) -> bool:
    """Whether the spec's data is absent here and ``shape:`` says what it will be (its net can be
    checked without it: ``tfconf validate --shapes``)."""
    if spec.shape is None or spec.is_builtin or spec.is_text:
        return False
    return not os.path.exists(resolve(spec.source, root))


def keep_classes(x, y, classes, where: str):
    """Only the samples whose label is in ``classes`` (``classes: [0, 1, 2, 3, 4]``), labels unchanged."""
    if classes is None:
        return x, y
    lazy = isinstance(getattr(y, "samples", None), LazySamples)
    keep = np.isin(y.samples.all_labels() if lazy else y, classes)
    if not keep.any():
        raise DataError(f"{where}: classes {classes}: no sample has one of these labels "
                        f"(the labels are {sorted(set((y.samples.all_labels() if lazy else y).tolist()))[:20]})")
    if lazy:
        y.samples.subset(keep)
        return x, y
    return x[keep], y[keep]
