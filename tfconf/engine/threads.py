"""Who owns the cores while a plan runs.

oneDNN runs its primitives and its GEMM on an OpenMP team (libgomp) sized to the cores; numpy's
BLAS (OpenBLAS) has a pthread pool of its own whose workers busy-wait for a while after every
multi-threaded call. In one serial plan that alternates the two, both pools spin on the same
cores: on a 2-core machine LeNet's step measured 23 ms that way against 13 ms with OpenBLAS at one
thread. So a plan with oneDNN kernels runs with the BLAS libraries at one thread (the cores belong
to oneDNN's team, which also runs that plan's matrix products: kernels/onednn/gemm.py), and the
BLAS thread counts are put back when the run ends, so the user's own numpy code between runs keeps
them. Plans without oneDNN kernels leave BLAS as it is. Thread counts themselves come from the
usual variables (OMP_NUM_THREADS for oneDNN, OPENBLAS_NUM_THREADS...), which sweeps set per trial.

The BLAS side goes through threadpoolctl (found once, on first use); without it, nothing changes.
"""

from __future__ import annotations

import threading

_controllers = None
_lock = threading.Lock()
_depth = 0


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
            libs = _blas()
            self._saved = [(c, c.get_num_threads()) for c in libs]
            for c, n in self._saved:
                if n != 1:
                    c.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        global _depth
        if self._saved is not None:
            for c, n in self._saved:
                if n != 1:
                    c.set_num_threads(n)
        with _lock:
            _depth -= 1
        return False
