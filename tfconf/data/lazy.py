"""Samples read one at a time, for sources too large to load: Caffe's databases (LMDB, LevelDB) and
image lists. :class:`LazySamples` reads sample ``i`` through a function, keeps recently read samples
in a cache bounded in bytes, and offers ``images`` and ``labels`` columns that index like arrays
(``x[idx]`` for an index array), which is all :class:`~tfconf.data.batcher.Batcher` asks of its data.

Every sample must have the shape and dtype of the first; one that differs is a DataError naming it
(its key or file), found when it is read. A NaN or inf in float data is found the same way.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable, Optional

import numpy as np

from tfconf.data.errors import DataError

#: the default cache: recently read samples, at most this many bytes
CACHE_BYTES = 256 << 20


class BoundedCache:
    """Recently used arrays by key, at most ``limit`` bytes of them (the oldest go first; the newest
    always stays). Safe to use from the prefetch thread and the main thread at once."""

    def __init__(self, limit: int = CACHE_BYTES):
        self.limit = int(limit)
        self.nbytes = 0
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key):
        """The item cached under ``key`` (marked as just used), else None."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key, item, nbytes: int) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (item, int(nbytes))
            self.nbytes += int(nbytes)
            while self.nbytes > self.limit and len(self._items) > 1:
                _, (_, old) = self._items.popitem(last=False)
                self.nbytes -= old

    def __getitem__(self, key):
        hit = self.get(key)
        return None if hit is None else hit[0]


class LazySamples:
    """``n`` samples, sample ``i`` read by ``read(i) -> (x uint8/float32 [C, H, W], label)``;
    ``name(i)`` says which record or file it is (for errors). ``labels``, when the source knows them
    without reading the samples (an image list), is used instead of reading."""

    def __init__(self, n: int, read: Callable, name: Callable, where: str, *, labels: Optional[np.ndarray] = None,
                 cache_bytes: int = CACHE_BYTES):
        if n < 1:
            raise DataError(f"{where}: the source holds no samples")
        self.where = where
        self._read, self._name = read, name
        self._index: Optional[np.ndarray] = None  # a subset (classes:) as indices into the source
        self._n = int(n)
        self._labels = None if labels is None else np.asarray(labels, np.int64)
        self._cache = BoundedCache(cache_bytes)
        first, _ = self._fetch(0)
        self.sample_shape = tuple(first.shape)
        self.dtype = first.dtype
        self.images = _Column(self, 0)
        self.labels = _Column(self, 1)

    def __len__(self) -> int:
        return self._n if self._index is None else len(self._index)

    def _source_index(self, i: int) -> int:
        return int(i) if self._index is None else int(self._index[i])

    def _fetch(self, i: int):
        """(x, label) of sample ``i`` of the source (not of a subset), from the cache or read."""
        hit = self._cache[i]
        if hit is not None:
            return hit
        x, label = self._read(i)
        x = np.asarray(x)
        if hasattr(self, "sample_shape") and (x.shape != self.sample_shape or x.dtype != self.dtype):
            raise DataError(f"{self.where}: sample {i} ({self._name(i)}) is {x.dtype} {list(x.shape)} but the "
                            f"first is {self.dtype} {list(self.sample_shape)}; every sample must have one shape "
                            "(resize the images when making the data, e.g. tfconf convert-data --resize-height/"
                            "--resize-width)")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise DataError(f"{self.where}: sample {i} ({self._name(i)}) holds NaN or inf: the data itself is not "
                            "finite (fix or drop it; this is not the net diverging)")
        if self._labels is not None:
            label = int(self._labels[i])
        item = (x, int(label))
        self._cache.put(i, item, x.nbytes)
        return item

    def take(self, idx) -> tuple[np.ndarray, np.ndarray]:
        """(x [len(idx), ...], labels [len(idx)]) of the samples ``idx``."""
        items = [self._fetch(self._source_index(i)) for i in np.asarray(idx).reshape(-1)]
        return np.stack([x for x, _ in items]), np.asarray([y for _, y in items], np.int64)

    def all_labels(self) -> np.ndarray:
        """Every label, in order (reads every sample a database holds once)."""
        if self._labels is not None:
            return self._labels if self._index is None else self._labels[self._index]
        return np.asarray([self._fetch(self._source_index(i))[1] for i in range(len(self))], np.int64)

    def subset(self, keep: np.ndarray) -> "LazySamples":
        """Only the samples where ``keep`` (a boolean mask over these samples) holds."""
        base = np.arange(self._n) if self._index is None else self._index
        self._index = base[np.asarray(keep, bool)]
        return self


class _Column:
    """One column of :class:`LazySamples` (0: the samples, 1: the labels), indexed like an array."""

    def __init__(self, samples: LazySamples, which: int):
        self.samples, self.which = samples, which

    @property
    def shape(self) -> tuple:
        s = self.samples
        return (len(s),) + (s.sample_shape if self.which == 0 else ())

    @property
    def dtype(self):
        return self.samples.dtype if self.which == 0 else np.dtype(np.int64)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            return self.samples.take([idx])[self.which][0]
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        return self.samples.take(idx)[self.which]

    def max(self):
        return self.samples.all_labels().max() if self.which == 1 else None


def is_lazy(a) -> bool:
    """Whether ``a`` is a column of :class:`LazySamples` rather than an array."""
    return isinstance(a, _Column)
