"""Where a run goes and what ``--resume`` continues from: the run folder, the complete snapshots
newest first, and the newest of them that reads."""

from __future__ import annotations

import os
import time

from . import snapshot as snap
from .errors import TrainError


def choose_run_dir(cfg, out, resume):
    """The run's folder: the one --resume names (or holds the snapshot it names), else --out, else
    a new runs/<net>-<time> one."""
    if resume and os.path.isdir(resume):
        return resume
    if resume:
        d = os.path.dirname(os.path.abspath(resume))
        return os.path.dirname(d) if os.path.basename(d) == "snapshots" else d
    if out:
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join("runs", f"{cfg.net.name}-{stamp}")
    path, n = base, 1
    while os.path.exists(path):  # two runs started in the same second
        n += 1
        path = f"{base}-{n}"
    return path


def snapshot_candidates(resume):
    """The snapshots ``--resume`` may continue from, newest first."""
    if resume.endswith(".solverstate.safetensors"):
        if not os.path.exists(resume):
            raise FileNotFoundError(f"--resume {resume}: no such snapshot")
        return [resume]
    for folder in (os.path.join(resume, "snapshots"), resume):
        found = snap.complete_snapshots(folder)
        if found:
            return found
    raise FileNotFoundError(f"--resume {resume}: no complete snapshot found there")


def restore_newest_good(solver, candidates):
    """Restore the newest snapshot that reads; a damaged newer one is skipped with a warning naming
    both. Returns the path restored."""
    import sys

    first = None
    for i, spath in enumerate(candidates):
        try:
            solver.restore(spath)
        except (snap.SnapshotError, FileNotFoundError) as e:
            first = first or e
            if i + 1 < len(candidates):
                why = str(e) if str(e).startswith(spath) else f"{spath}: {e}"
                print(f"warning: {why}; resuming from the snapshot before it, {candidates[i + 1]}", file=sys.stderr)
            continue
        except ValueError as e:
            raise TrainError(f"--resume {spath}: {e}") from None
        return spath
    raise TrainError(f"--resume: no snapshot there can be read: {first}") from None
