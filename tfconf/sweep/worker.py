"""One trial in its own process: ``python -m tfconf.sweep.worker TRIAL_DIR --root DIR [--stop-at N]``.

Trains the frozen config ``TRIAL_DIR/config.yaml`` into ``TRIAL_DIR`` (continuing from its newest
snapshot when there is one: a trial killed mid-way, or paused at a successive-halving rung) and
writes ``TRIAL_DIR/result.json``. Exit status: 0 reached its target iteration, 1 failed (the error
is in result.json), 3 interrupted (SIGINT: snapshot saved, resumable). The process ends itself
when the process that started it dies, so killing a sweep never leaves trials running.

The BLAS thread count comes from the environment the sweep sets (OPENBLAS_NUM_THREADS, ...):
it must be set before numpy is imported, which is why trials are processes of their own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 3


def _die_with_parent() -> None:
    parent = os.getppid()
    try:  # Linux: the kernel kills us when the parent goes
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the watchdog below does it
        pass

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(137)
            time.sleep(0.5)

    if os.getppid() != parent or parent == 1:
        os._exit(137)
    threading.Thread(target=watch, daemon=True, name="sweep-parent-watchdog").start()


def load_trial(trial_dir: str, root: str):
    """The trial's Config: its frozen config.yaml, with data paths resolved from ``root`` (the
    folder of the sweep's config, as ``tfconf train`` resolves them)."""
    from tfconf.frontend.config import Config, _check_names
    from tfconf.frontend.loader import load_config
    from tfconf.frontend.net_schema import NetConfig
    from tfconf.frontend.schema_base import validate_section

    loaded = load_config(os.path.join(trial_dir, "config.yaml"))
    cfg = Config(validate_section(NetConfig, loaded), loaded, os.path.join(root, "config.yaml"))
    _check_names(cfg)
    return cfg


def _error_text(e: BaseException) -> str:
    from tfconf.train.solver import DivergenceError

    if isinstance(e, DivergenceError):
        return f"training diverged: {e}"
    if isinstance(e, MemoryError):
        return "out of memory" + (f": {e}" if str(e) else "")
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def run_trial(trial_dir: str, root: str, stop_at: int | None = None) -> tuple[int, dict]:
    """Train the trial; (exit status, result) where result is what result.json holds."""
    from tfconf.train import runner
    from tfconf.train import snapshot as snap

    started = time.time()
    try:
        cfg = load_trial(trial_dir, root)
        target = cfg.net.solver.max_iter if stop_at is None else min(stop_at, cfg.net.solver.max_iter)
        has_snapshot = snap.latest_snapshot(os.path.join(trial_dir, "snapshots")) is not None
        # (a trial killed before its first snapshot starts again: force replaces its partial metrics)
        res = runner.train(cfg, out=trial_dir, resume=trial_dir if has_snapshot else None, quiet=False,
                           echo=lambda m: print(m, flush=True), stop_at=stop_at, force=not has_snapshot)
    except BaseException as e:  # noqa: BLE001 - everything a trial raises is its failure
        if isinstance(e, KeyboardInterrupt):
            return EXIT_INTERRUPTED, {"ok": False, "interrupted": True, "error": "interrupted"}
        import traceback

        traceback.print_exc()
        return EXIT_FAILED, {"ok": False, "error": _error_text(e), "wall_time": time.time() - started}
    weights = None
    if res.get("snapshot"):
        spath = res["snapshot"]
        weights = os.path.relpath(spath[: -len(".solverstate.safetensors")] + ".safetensors", trial_dir)
    out = {"ok": True, "iterations": res["iterations"], "target": target, "train_loss": res["train_loss"],
           "test": res["test"], "wall_time": res["wall_time"], "weights": weights,
           "resumed": has_snapshot}
    return (EXIT_OK if res["iterations"] >= target else EXIT_INTERRUPTED), out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tfconf.sweep.worker", description=__doc__.split("\n")[0])
    p.add_argument("trial_dir")
    p.add_argument("--root", required=True)
    p.add_argument("--stop-at", type=int, default=None)
    args = p.parse_args(argv)
    _die_with_parent()
    from .executors import BLAS_VARS

    print(f"trial {os.environ.get('TFCONF_SWEEP_TRIAL', '?')} (pid {os.getpid()}): "
          + ", ".join(f"{v}={os.environ.get(v, '-')}" for v in BLAS_VARS), flush=True)
    from tfconf.io.atomic import atomic_write_bytes

    code, result = run_trial(os.path.abspath(args.trial_dir), args.root, args.stop_at)
    result["pid"] = os.getpid()
    atomic_write_bytes(os.path.join(args.trial_dir, "result.json"), (json.dumps(result) + "\n").encode())
    return code


if __name__ == "__main__":
    sys.exit(main())
