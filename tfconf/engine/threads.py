"""Who owns the cores while a plan runs.

oneDNN runs its primitives on an OpenMP team (libgomp) sized to the cores; numpy's BLAS
(OpenBLAS) has a pthread pool of its own whose workers busy-wait for a while after every
multi-threaded call. In one serial plan that alternates the two, both pools spin on the same
cores: on a 2-core machine LeNet's step measured 23 ms that way against 13 ms with OpenBLAS at one
thread. So a plan with oneDNN kernels runs with the BLAS libraries at one thread (the cores belong
to oneDNN's team, and GEMMs of that plan run in the calling thread), and the BLAS thread counts are
put back when the run ends, so the user's own numpy code between runs keeps them. Plans without
oneDNN kernels leave BLAS as it is. Thread counts themselves come from the usual variables
(OMP_NUM_THREADS for oneDNN, OPENBLAS_NUM_THREADS...), which sweeps set per trial.

The BLAS side goes through threadpoolctl (found once, on first use); without it, nothing changes.
"""

from __future__ import annotations

import threading

import numpy as np

_controllers = None
_lock = threading.Lock()
_depth = 0
_parts = 1      # how many threads a matrix product may use while oneDNN owns the cores
_pool = None    # their worker threads (made on first use)
#: products smaller than this many multiply-adds run in one call (a thread hand-off costs ~20 µs)
SPLIT_MIN_MACS = 1 << 21


def _blas():
    """[(controller, its own thread count)] of the loaded BLAS libraries (cached)."""
    global _controllers
    if _controllers is None:
        with _lock:
            if _controllers is None:
                try:
                    from threadpoolctl import ThreadpoolController
                except ImportError:  # pragma: no cover - a core dependency where oneDNN is
                    _controllers = []
                else:
                    _controllers = [c for c in ThreadpoolController().select(user_api="blas").lib_controllers]
    return _controllers


class onednn_owns_cores:
    """Context manager: BLAS at one thread inside (re-entrant; counts restored on the way out)."""

    __slots__ = ("_saved",)

    def __enter__(self):
        global _depth
        with _lock:
            _depth += 1
            first = _depth == 1
        self._saved = None
        if first:
            global _parts
            libs = _blas()
            self._saved = [(c, c.get_num_threads()) for c in libs]
            _parts = max([n for _, n in self._saved] or [1])
            for c, n in self._saved:
                if n != 1:
                    c.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        global _depth, _parts
        if self._saved is not None:
            _parts = 1
            for c, n in self._saved:
                if n != 1:
                    c.set_num_threads(n)
        with _lock:
            _depth -= 1
        return False


def matmul(a, b):
    """a @ b (2-D) over the cores while oneDNN owns them: BLAS is single-threaded then, so the
    product is split by output rows (or columns, when there are few rows) over as many threads as
    BLAS had, each a single-threaded numpy matmul in a thread of this module's pool. Those threads
    wait on a queue, not in a spin, so they leave the cores to oneDNN's team between products
    (LeNet's ip1, [64, 800] x [800, 500]: 0.69 ms in one thread, 0.37 split in two, as OpenBLAS's
    own two threads)."""
    n = _parts
    m, k = a.shape
    cols = b.shape[1]
    if n <= 1 or m * k * cols < SPLIT_MIN_MACS or max(m, cols) < 2 * n:
        return a @ b
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                from concurrent.futures import ThreadPoolExecutor

                _pool = ThreadPoolExecutor(max(n - 1, 1), thread_name_prefix="tfconf-matmul")
    out = np.empty((m, cols), dtype=np.result_type(a, b))
    by_rows = m >= cols or m >= 8 * n
    size = m if by_rows else cols
    bounds = [size * i // n for i in range(n + 1)]
    if by_rows:
        parts = [(a[lo:hi], b, out[lo:hi]) for lo, hi in zip(bounds, bounds[1:])]
    else:
        parts = [(a, b[:, lo:hi], out[:, lo:hi]) for lo, hi in zip(bounds, bounds[1:])]
    futures = [_pool.submit(np.matmul, x, y, out=o) for x, y, o in parts[1:]]
    x, y, o = parts[0]
    np.matmul(x, y, out=o)
    for f in futures:
        f.result()
    return out
