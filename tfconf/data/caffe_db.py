"""Caffe's data formats: databases of ``Datum`` records (LMDB, LevelDB) and ``ImageData`` list files.

- ``lmdb``: an LMDB environment (a folder with ``data.mdb``, what ``convert_imageset`` writes; needs
  the ``lmdb`` package, the ``[caffe]`` extra). Records are read in key order, as Caffe's Data layer
  reads them, one at a time through a bounded cache: an ImageNet-size database is never loaded whole.
- ``leveldb``: the same records in a LevelDB folder (needs ``plyvel``, the ``[leveldb]`` extra).
  LevelDB lets one process open a database at a time; for sweeps and clusters convert it to LMDB.
- ``imagelist``: Caffe's ImageData source, a text file of ``path label`` lines (the label after the
  last space); ``root_folder`` is prefixed to each path as Caffe does, and paths without it are
  relative to the list's folder. Images are read when a batch needs them.

Images come out as Caffe gives them: uint8 ``[C, H, W]`` with colour in BGR order (a Caffe model's
mean values are BGR), grey images as one channel.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator, Optional

import numpy as np

from tfconf.data.errors import DataError, missing_extra
from tfconf.data.lazy import CACHE_BYTES, LazySamples
from tfconf.data.paths import regular, resolve
from tfconf.io.caffemodel import CaffemodelError
from tfconf.io.datum import datum_array, decode_datum, decode_image

__all__ = ["open_database", "read_database", "read_image_list", "parse_image_list", "write_database",
           "database_backend"]


def database_backend(path: str) -> Optional[str]:
    """``lmdb`` or ``leveldb`` for a folder that holds such a database, else None."""
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "data.mdb")):
            return "lmdb"
        if os.path.exists(os.path.join(path, "CURRENT")):
            return "leveldb"
    elif os.path.isfile(path) and path.endswith(".mdb"):
        return "lmdb"
    return None


# ---------------------------------------------------------------------------------------- stores
class _Store:
    """Read access to one database: its keys in order and a record by key. The handle is opened in
    the process that reads (a forked process opens its own)."""

    backend = ""

    def __init__(self, path: str):
        self.path = path
        self._pid = None
        self._handle = None
        self.keys = self._read_keys()
        if not self.keys:
            raise DataError(f"{path}: the {self.backend} database holds no records")

    def _db(self):
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = self._open(), os.getpid()
        return self._handle

    def get(self, i: int) -> bytes:
        value = self._get(self.keys[i])
        if value is None:
            raise DataError(f"{self.path}: record {self.keys[i]!r} vanished while reading (was the database "
                            "changed during training?)")
        return value


#: (pid, device, inode, mtime) of a data.mdb → its environment, open for reading in this process
_OPEN_ENVS: dict = {}


class _LMDBStore(_Store):
    backend = "LMDB"

    def _open(self):
        try:
            import lmdb
        except ImportError:
            raise missing_extra("lmdb", "caffe", "An LMDB source (Caffe's Data layer)") from None
        subdir = os.path.isdir(self.path)
        st = os.stat(os.path.join(self.path, "data.mdb") if subdir else self.path)
        key = (os.getpid(), st.st_dev, st.st_ino, st.st_mtime_ns)
        env = _OPEN_ENVS.get(key)  # LMDB opens an environment once per process: stores share it
        if env is not None:
            return env
        try:
            env = _OPEN_ENVS[key] = lmdb.open(self.path, readonly=True, lock=False, readahead=False,
                                              max_readers=512, subdir=subdir)
            return env
        except lmdb.Error as e:
            raise DataError(f"{self.path}: not a readable LMDB database ({' '.join(str(e).split())[:120]})") from None

    def _read_keys(self) -> list:
        import lmdb

        try:
            with self._db().begin(buffers=False) as txn:
                return [bytes(k) for k in txn.cursor().iternext(keys=True, values=False)]
        except lmdb.Error as e:
            raise DataError(f"{self.path}: not a readable LMDB database ({' '.join(str(e).split())[:120]})") from None

    def _get(self, key: bytes):
        import lmdb

        try:
            with self._db().begin(buffers=False) as txn:
                return txn.get(key)
        except lmdb.Error as e:
            raise DataError(f"{self.path}: reading record {key!r} failed ({' '.join(str(e).split())[:120]})") from None


class _LevelDBStore(_Store):
    backend = "LevelDB"

    def _open(self):
        try:
            import plyvel
        except ImportError:
            raise DataUnavailable() from None
        try:
            return plyvel.DB(self.path, create_if_missing=False)
        except plyvel.Error as e:
            text = " ".join(str(e).split())[:160]
            if "lock" in text.lower():
                raise DataError(f"{self.path}: the LevelDB database is open in another process (LevelDB allows "
                                f"one at a time; convert it to LMDB: tfconf convert-data {self.path} "
                                f"{self.path.rstrip(os.sep)}_lmdb)") from None
            raise DataError(f"{self.path}: not a readable LevelDB database ({text})") from None

    def _read_keys(self) -> list:
        return [bytes(k) for k in self._db().iterator(include_value=False)]

    def _get(self, key: bytes):
        return self._db().get(key)


def DataUnavailable():
    return missing_extra("plyvel", "leveldb", "A LevelDB source (Caffe's Data layer with backend: LEVELDB); or convert "
                         "it to LMDB where plyvel is installed: tfconf convert-data DB DB_lmdb,")


def open_database(path: str, backend: str = "lmdb") -> _Store:
    """The store of an LMDB or LevelDB database."""
    if not os.path.exists(path):
        raise DataError(f"{backend} database not found: {path}")
    found = database_backend(path)
    if found is not None and found != backend:
        raise DataError(f"{path}: a {found} database, not {backend}; set format: {found} (Caffe's "
                        f"backend: {found.upper()})")
    if found is None:
        raise DataError(f"{path}: not a {backend} database (an LMDB database is a folder holding data.mdb, a "
                        "LevelDB one a folder holding CURRENT; Caffe's convert_imageset or tfconf convert-data "
                        "make them)")
    return (_LMDBStore if backend == "lmdb" else _LevelDBStore)(path)


def read_database(path: str, backend: str = "lmdb", is_color: Optional[bool] = None,
                  cache_bytes: int = CACHE_BYTES) -> LazySamples:
    """The Datum records of a database, in key order, as lazily read samples."""
    store = open_database(path, backend)

    def name(i: int) -> str:
        return f"record {store.keys[i].decode('utf-8', 'replace')!r}"

    def read(i: int):
        where = f"{path}: {name(i)}"
        d = _decoded(lambda: decode_datum(store.get(i), where))
        return _decoded(lambda: datum_array(d, where, is_color)), d.label

    return LazySamples(len(store.keys), read, name, path, cache_bytes=cache_bytes)


def _decoded(fn):
    """``fn()``, with a damaged record or image as a DataError and a missing Pillow named as the extra."""
    try:
        return fn()
    except CaffemodelError as e:
        raise DataError(str(e)) from None
    except ImportError:
        raise missing_extra("Pillow", "images", "An encoded (JPEG/PNG) image") from None


# ------------------------------------------------------------------------------------ image lists
def parse_image_list(path: str, root_folder: Optional[str] = None) -> tuple[list, np.ndarray]:
    """(image paths, labels) of a Caffe ImageData list file."""
    regular(path, "image list")
    files, labels = [], []
    base = os.path.dirname(path)
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                name, _, label = line.rpartition(" ")
                if not name:
                    raise DataError(f"{path}:{lineno}: an image list line is `path label`. Received: {line[:80]!r}")
                try:
                    labels.append(int(label))
                except ValueError:
                    raise DataError(f"{path}:{lineno}: the label {label[:40]!r} is not an integer (a line is "
                                    "`path label`)") from None
                name = name.strip()
                files.append(root_folder + name if root_folder else resolve(name, base))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text image list (byte {e.start} is not UTF-8 text)") from None
    if not files:
        raise DataError(f"{path}: the image list names no images")
    return files, np.asarray(labels, np.int64)


def read_image_list(path: str, root_folder: Optional[str] = None, is_color: bool = True, new_height=None,
                    new_width=None, cache_bytes: int = CACHE_BYTES) -> LazySamples:
    """The images a list file names, read (and resized) when a batch needs them."""
    files, labels = parse_image_list(path, root_folder)

    def read(i: int):
        return read_image(files[i], is_color, new_height, new_width), labels[i]

    return LazySamples(len(files), read, lambda i: files[i], path, labels=labels, cache_bytes=cache_bytes)


def read_image(file: str, is_color: Optional[bool] = True, new_height=None, new_width=None) -> np.ndarray:
    """One image file as uint8 ``[C, H, W]`` in Caffe's order (BGR), resized when asked."""
    regular(file, "image")
    with open(file, "rb") as f:
        data = f.read()
    x = _decoded(lambda: decode_image(data, file, is_color))
    if new_height or new_width:
        x = resize(x, new_height or x.shape[1], new_width or x.shape[2])
    return x


def resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[C, H, W]`` uint8 resized bilinearly (Caffe's cv::resize, INTER_LINEAR)."""
    if x.shape[1:] == (height, width):
        return x
    try:
        from PIL import Image
    except ImportError:
        raise missing_extra("Pillow", "images", "Resizing images") from None
    planes = [np.asarray(Image.fromarray(p).resize((width, height), Image.BILINEAR)) for p in x]
    return np.ascontiguousarray(np.stack(planes))


# ----------------------------------------------------------------------------------------- writing
def write_database(path: str, records: Iterable[tuple[bytes, bytes]], backend: str = "lmdb",
                   batch: int = 1000) -> int:
    """Write ``(key, serialized Datum)`` records into a new database at ``path``; returns the count.
    The database is written beside ``path`` and renamed into place when complete, so an interrupted
    conversion leaves nothing that looks like a database."""
    import shutil
    import tempfile

    if os.path.exists(path):
        raise DataError(f"{path} already exists; give a new path (or remove it first)")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise DataError(f"{parent}: no such folder")
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private; a database is as a new folder would be
    try:
        count = (_write_lmdb if backend == "lmdb" else _write_leveldb)(tmp, iter(records), batch)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count


def _chunks(records: Iterator, batch: int) -> Iterator[list]:
    chunk = []
    for r in records:
        chunk.append(r)
        if len(chunk) >= batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _write_lmdb(path: str, records: Iterator, batch: int) -> int:
    try:
        import lmdb
    except ImportError:
        raise missing_extra("lmdb", "caffe", "Writing an LMDB database") from None
    env = lmdb.open(path, map_size=1 << 28, subdir=True, lock=True)
    count = 0
    try:
        for chunk in _chunks(records, batch):
            while True:
                try:
                    with env.begin(write=True) as txn:
                        for key, value in chunk:
                            txn.put(key, value)
                    break
                except lmdb.MapFullError:  # grow the map and write the chunk again
                    env.set_mapsize(env.info()["map_size"] * 2)
            count += len(chunk)
        env.sync()
    finally:
        env.close()
    lock = os.path.join(path, "lock.mdb")
    if os.path.exists(lock):
        os.remove(lock)  # readers open it lock=False; a fresh lock file is made by any writer
    return count


def _write_leveldb(path: str, records: Iterator, batch: int) -> int:
    try:
        import plyvel
    except ImportError:
        raise missing_extra("plyvel", "leveldb", "Writing a LevelDB database") from None
    db = plyvel.DB(path, create_if_missing=True, error_if_exists=False)
    count = 0
    try:
        for chunk in _chunks(records, batch):
            with db.write_batch() as wb:
                for key, value in chunk:
                    wb.put(key, value)
            count += len(chunk)
    finally:
        db.close()
    return count
