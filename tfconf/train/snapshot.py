"""Snapshots: weights as safetensors (usable with ``--weights``) plus a solver-state file with the
optimizer slots, the iteration, the data position and the random-op generator states.

Every file is written to a temporary name in the same folder and renamed into place, so a process
killed at any moment leaves either the old file or the complete new one. The solver state is
written after the weights, so a snapshot is complete exactly when its state file exists."""

from __future__ import annotations

import json
import os
import re

import numpy as np

from tfconf.errors import UserError
from tfconf.io.atomic import TMP_PREFIX, atomic_write_bytes

_ITER = re.compile(r"_iter_(\d+)\.solverstate\.safetensors$")


class SnapshotError(UserError, ValueError):
    """A weights or solver-state file that cannot be read (not safetensors, truncated, not ours)."""


def save_tensors(path: str, tensors: dict, metadata: dict | None = None) -> None:
    from safetensors.numpy import save

    # NOTE: np.require, not np.ascontiguousarray, which turns a 0-d array (BatchNorm's moving-average
    # factor) into shape (1,)
    arrays = {k: np.require(v, requirements="C") for k, v in tensors.items()}
    atomic_write_bytes(path, save(arrays, metadata=metadata))


def load_tensors(path: str):
    """(tensors, metadata) of a safetensors file."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except Exception as e:  # safetensors raises its own (Rust) error type for unreadable files
        raise SnapshotError(f"{path}: not a readable .safetensors file ({e})") from None


def snapshot_paths(prefix: str, iteration: int):
    base = f"{prefix}_iter_{iteration}"
    return base + ".safetensors", base + ".solverstate.safetensors"


def write_snapshot(prefix, iteration, weights, slots, state: dict):
    wpath, spath = snapshot_paths(prefix, iteration)
    os.makedirs(os.path.dirname(os.path.abspath(wpath)), exist_ok=True)
    save_tensors(wpath, weights, {"format": "tfconf-weights", "iteration": str(iteration)})
    save_tensors(spath, slots, {"format": "tfconf-solverstate", "state": json.dumps(state),
                                "weights": os.path.basename(wpath)})
    return wpath, spath


def complete_snapshots(folder: str) -> list[str]:
    """The solver-state paths of the complete snapshots in ``folder``, newest first."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        m = _ITER.search(name)
        if not m:
            continue
        spath = os.path.join(folder, name)
        if os.path.exists(spath[: -len(".solverstate.safetensors")] + ".safetensors"):
            found.append((int(m.group(1)), spath))
    return [p for _, p in sorted(found, reverse=True)]


def latest_snapshot(folder: str):
    """The newest complete snapshot's solver-state path in ``folder`` (None when there is none)."""
    found = complete_snapshots(folder)
    return found[0] if found else None


def remove_temporaries(folder: str) -> list[str]:
    """Delete the temporary files a write killed midway left in ``folder`` (call it only while
    owning the folder: a live writer's temporary would go too)."""
    removed = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if name.startswith(TMP_PREFIX) and os.path.isfile(path):
                os.unlink(path)
                removed.append(path)
    return removed


def read_snapshot(spath: str):
    """(weights, slots, state) of a snapshot given its solver-state path."""
    slots, meta = load_tensors(spath)
    if meta.get("format") != "tfconf-solverstate":
        raise SnapshotError(f"{spath} is not a tfconf solver state file")
    try:  # the weights file lies beside the state file: its name only, never a path
        wpath = os.path.join(os.path.dirname(spath), os.path.basename(meta["weights"]))
        state = json.loads(meta["state"])
        int(state["iteration"])
    except (KeyError, TypeError, ValueError) as e:
        raise SnapshotError(f"{spath}: a damaged solver state ({type(e).__name__}: {e})") from None
    weights, _ = load_tensors(wpath)
    return weights, slots, state


# ---------------------------------------------------------------------------- best/last aliases
ALIASES = ("last", "best")


def write_alias(folder: str, name: str, spath: str, **info) -> str:
    """``FOLDER/NAME.json`` (NAME: ``last`` or ``best``) naming the snapshot whose solver-state path
    is ``spath``, written atomically; ``info`` (e.g. the monitored metric and its value) is kept
    with it. Only file names are stored, never paths: an alias resolves beside itself."""
    if name not in ALIASES:
        raise ValueError(f"alias {name!r}: one of {', '.join(ALIASES)}")
    m = _ITER.search(os.path.basename(spath))
    if not m:
        raise ValueError(f"{spath} is not a snapshot's solver-state file")
    state = os.path.basename(spath)
    body = {"iteration": int(m.group(1)), "weights": state[: -len(".solverstate.safetensors")] + ".safetensors",
            "state": state, **info}
    path = os.path.join(folder, f"{name}.json")
    atomic_write_bytes(path, (json.dumps(body, indent=1) + "\n").encode())
    return path


def read_alias(folder: str, name: str):
    """The alias ``name`` of ``folder`` with ``weights``/``state`` made full paths (beside the alias),
    or None when there is none or it names a snapshot that is no longer complete."""
    path = os.path.join(folder, f"{name}.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            body = json.load(f)
        weights = os.path.join(folder, os.path.basename(str(body["weights"])))
        state = os.path.join(folder, os.path.basename(str(body["state"])))
        int(body["iteration"])
    except (OSError, ValueError, KeyError, TypeError):
        raise SnapshotError(f"{path}: a damaged {name} alias (not the JSON tfconf writes)") from None
    if not (os.path.isfile(weights) and os.path.isfile(state)):
        return None
    return dict(body, weights=weights, state=state)
