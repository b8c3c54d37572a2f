"""Batches from a data set (in memory, or read sample by sample: :mod:`tfconf.data.lazy`), reproducible from ``(seed, iteration)`` alone.

The samples are read as one endless stream, epoch after epoch, as Caffe's data layers read their
database: batch ``i`` holds stream positions ``i*B .. i*B+B-1``, so a last partial batch wraps around
into the next epoch instead of being dropped or padded. With ``shuffle`` epoch ``e`` reads the
samples in the order ``permutation(N)`` drawn from ``SeedSequence([seed, 0, e])``, and the random
crops and flips of batch ``i`` come from ``SeedSequence([seed, 1, i])``. Nothing depends on what was
drawn before, so :meth:`Batcher.batch_at` is a pure function and a run resumed at iteration ``k``
(:meth:`Batcher.restore` of a :meth:`Batcher.state`) sees exactly the batches of an uninterrupted one.

With ``prefetch=n`` a background thread prepares up to ``n`` batches ahead by calling the same
:meth:`batch_at`, so prefetched and synchronous batches are identical.
"""

from __future__ import annotations

import queue
import threading
import weakref
from typing import Optional

import numpy as np

from tfconf.data.errors import DataError
from tfconf.data.lazy import is_lazy
from tfconf.data.transforms import Transform

_SHUFFLE, _AUGMENT = 0, 1


def resume_stream(stream, state: dict, what: str) -> None:
    """Seek ``stream`` (a Batcher or a text stream) to a snapshot's ``state``; every other field
    of its :meth:`state` must be what the snapshot recorded."""
    mine = stream.state()
    changed = [f"{k}: {state.get(k)!r} -> {mine[k]!r}" for k in mine if k != "iteration" and state.get(k) != mine[k]]
    if changed:
        raise DataError(f"cannot resume the {what} stream, the data changed since the snapshot ("
                        + "; ".join(changed) + ")")
    stream.seek(int(state["iteration"]))


class Batcher:
    """An iterator of ``(x float32 [B, ...], y int64 [B])`` batches over ``(x, y)``.

    ``next(batcher)`` returns batch ``batcher.iteration`` and advances it; :meth:`batch_at` reads any
    batch without moving. Close it (or use it as a context manager) to stop a prefetch thread.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        transform: Optional[Transform] = None,
        prefetch: int = 0,
    ):
        if len(x) != len(y) or len(x) == 0:
            raise DataError(f"a batcher needs as many labels as samples (>0). Received {len(x)} samples, {len(y)} labels")
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1. Received: {batch_size}")
        self.x, self.y = x, (y if is_lazy(y) else np.asarray(y, np.int64))
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.transform = transform if transform is not None else Transform(x.shape[1:], train=False)
        self.prefetch = int(prefetch)
        self.iteration = 0
        self._orders: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self._worker: Optional[_Prefetcher] = None

    # ------------------------------------------------------------------ shape and size

    @property
    def num_samples(self) -> int:
        return len(self.y)

    @property
    def output_shape(self) -> tuple:
        """Shape of one batch of ``x``: ``(B, C, H, W)`` after cropping, or ``(B, D)``."""
        return (self.batch_size,) + tuple(self.transform.output_shape)

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1

    @property
    def batches_per_epoch(self) -> int:
        """Batches that cover every sample at least once (the last may wrap into the next epoch)."""
        return -(-self.num_samples // self.batch_size)

    @property
    def epoch(self) -> int:
        """The epoch that the next batch starts in."""
        return self.iteration * self.batch_size // self.num_samples

    # ------------------------------------------------------------------ pure reads

    def order(self, epoch: int) -> np.ndarray:
        """The order in which epoch ``epoch`` reads the samples."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        with self._lock:
            perm = self._orders.get(epoch)
            if perm is None:
                rng = np.random.default_rng(np.random.SeedSequence([self.seed, _SHUFFLE, epoch]))
                perm = rng.permutation(self.num_samples)
                if len(self._orders) >= 4:
                    self._orders.pop(min(self._orders))
                self._orders[epoch] = perm
        return perm

    def indices_at(self, iteration: int) -> np.ndarray:
        """Sample indices of batch ``iteration``."""
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0. Received: {iteration}")
        pos = iteration * self.batch_size + np.arange(self.batch_size)
        epochs, offsets = np.divmod(pos, self.num_samples)
        out = np.empty(self.batch_size, np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self.order(int(e))[offsets[sel]]
        return out

    def batch_at(self, iteration: int):
        """Batch ``iteration`` as ``(x float32, y int64)``; the same for the same seed, always."""
        idx = self.indices_at(iteration)
        rng = None
        if self.transform.is_random:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, _AUGMENT, iteration]))
        if is_lazy(self.x):  # one read per sample for both columns
            x, y = self.x.samples.take(idx)
            return self.transform(x, rng), y
        return self.transform(self.x[idx], rng), self.y[idx]

    # ------------------------------------------------------------------ iteration

    def __iter__(self):
        return self

    def __next__(self):
        if self.prefetch > 0:
            if self._worker is None:
                self._worker = _Prefetcher(self, self.iteration, self.prefetch)
            i, batch, error = self._worker.get()
            assert i == self.iteration, (i, self.iteration)
            if error is not None:
                self._stop_worker()
                raise error
        else:
            batch = self.batch_at(self.iteration)
        self.iteration += 1
        return batch

    def seek(self, iteration: int) -> None:
        """Make batch ``iteration`` the next one."""
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0. Received: {iteration}")
        self._stop_worker()
        self.iteration = int(iteration)

    def state(self) -> dict:
        """What a snapshot needs to resume these batches (JSON-serialisable)."""
        return {
            "iteration": self.iteration,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
        }

    def restore(self, state: dict) -> None:
        """Continue from a :meth:`state`; the data set and its settings must be the same."""
        resume_stream(self, state, "data")

    # ------------------------------------------------------------------ prefetch thread

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def close(self) -> None:
        self._stop_worker()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class _Prefetcher:
    """Calls ``batcher.batch_at(i)`` for ``i = start, start+1, ...`` in a daemon thread, ``depth``
    batches ahead. It holds the batcher weakly, so a forgotten batcher is still collected."""

    def __init__(self, batcher: Batcher, start: int, depth: int):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(weakref.WeakMethod(batcher.batch_at), start), daemon=True, name="tfconf-prefetch"
        )
        self.thread.start()

    def _run(self, batch_at_ref, i: int) -> None:
        while not self.stopped.is_set():
            batch_at = batch_at_ref()
            if batch_at is None:
                return
            try:
                item = (i, batch_at(i), None)
            except BaseException as e:  # handed to the consumer, which raises it
                item = (i, None, e)
            del batch_at
            while not self.stopped.is_set():
                try:
                    self.queue.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return
            i += 1

    def get(self):
        while True:
            try:
                return self.queue.get(timeout=0.5)
            except queue.Empty:
                if not self.thread.is_alive():
                    raise RuntimeError("the data prefetch thread stopped unexpectedly") from None

    def close(self) -> None:
        self.stopped.set()
        if self.thread is not threading.current_thread():
            self.thread.join()


class SimpleStream:
    """What a stream without a prefetch thread shares (TextStream, NoFeed): iteration, resume from a
    snapshot's state (``what`` names the stream in errors), and nothing to close."""

    what = "data"

    def __iter__(self):
        return self

    def restore(self, state: dict) -> None:
        resume_stream(self, state, self.what)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class NoFeed(SimpleStream):
    """The stream of a net whose own layers make its inputs (DummyData): every batch is empty, and
    its state is just where the run is, so snapshots and resume work as for real data."""

    tops: dict = {}  # no inputs to feed
    batch_size = 0
    prefetch = 0

    def __init__(self):
        self.iteration = 0

    def __next__(self):
        self.iteration += 1
        return ()

    def batch_at(self, iteration: int):
        return ()

    def seek(self, iteration: int) -> None:
        self.iteration = int(iteration)

    def state(self) -> dict:
        return {"iteration": self.iteration, "made_by_the_net": True}
