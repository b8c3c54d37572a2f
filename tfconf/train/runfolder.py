"""Run folders are owned: one training at a time writes into a folder, and a new training does not
write over an old one.

* A lock file (``RUN/.tfconf.lock``, an ``flock`` the kernel releases however the process ends, even
  by ``kill -9``) holds the pid of the training that owns the folder; a second training into the
  same folder is refused naming that pid.
* ``train --out RUN`` where RUN already holds a run (snapshots or metrics) is refused, pointing at
  ``--resume RUN`` and at ``--force``, which deletes that run's files (and only tfconf's: snapshots,
  metrics, vocabulary, TensorBoard events) and says what it replaced."""

from __future__ import annotations

import os

from tfconf.errors import UserError

LOCK = ".tfconf.lock"


class FolderBusy(UserError, ValueError):
    """The folder is owned by another live process."""

    def __init__(self, path, pid, what):
        self.path, self.pid = path, pid
        super().__init__(f"{path} is in use by {what}" + (f" (pid {pid})" if pid else "")
                         + "; wait for it to finish or choose another folder")


class FolderLock:
    """An exclusive ``flock`` on ``FOLDER/NAME`` holding this process's pid. The file stays (removing
    a locked file races with the next locker); the lock goes with the process."""

    def __init__(self, folder, name=LOCK, what="another training"):
        self.path = os.path.join(folder, name)
        self.folder, self.what = folder, what
        self._f = None

    def holder(self):
        """The pid of a live process holding the lock, else None (no lock taken)."""
        if self._f is not None or not os.path.exists(self.path):
            return None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking
            return None
        with open(self.path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                return f.read().strip() or "unknown"
            fcntl.flock(f, fcntl.LOCK_UN)
        return None

    def acquire(self):
        if self._f is not None:
            return self
        f = open(self.path, "a+")
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover
            pass
        except OSError:
            f.seek(0)
            pid = f.read().strip()
            f.close()
            raise FolderBusy(self.folder, pid, self.what) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._f = f
        return self

    def release(self):
        if self._f is not None:
            try:
                self._f.truncate(0)
            except OSError:
                pass
            self._f.close()
            self._f = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


_RUN_FILES = ("metrics.jsonl", "metrics.csv", "vocab.json")


def run_contents(folder) -> list[str]:
    """The files of a run in ``folder`` that a new run would replace (relative paths); empty when
    the folder holds no run (a config.yaml alone, as a sweep writes before its trial starts, is none)."""
    if not os.path.isdir(folder):
        return []
    found = []
    snaps = os.path.join(folder, "snapshots")
    if os.path.isdir(snaps):
        found += [os.path.join("snapshots", n) for n in sorted(os.listdir(snaps))]
    for name in sorted(os.listdir(folder)):
        if name in _RUN_FILES or name.startswith("events.out.tfevents."):
            found.append(name)
    return found


def describe(files) -> str:
    snaps = sum(1 for f in files if f.startswith("snapshots" + os.sep) and f.endswith(".solverstate.safetensors"))
    other = [f for f in files if not f.startswith("snapshots" + os.sep)]
    parts = ([f"{snaps} snapshot{'s' if snaps != 1 else ''}"] if snaps else []) + other[:4]
    if len(other) > 4:
        parts.append(f"{len(other) - 4} more files")
    return ", ".join(parts) or f"{len(files)} files"


def refuse_message(folder) -> str | None:
    """Why ``train --out folder`` (no --resume, no --force) must not start, or None."""
    files = run_contents(folder)
    if not files:
        return None
    return (f"--out {folder} already holds a run ({describe(files)}); continue it with --resume {folder}, "
            f"or replace it with --force")


def clear(folder) -> list[str]:
    """Delete the run's files (what :func:`run_contents` lists); returns them."""
    files = run_contents(folder)
    for rel in files:
        path = os.path.join(folder, rel)
        if os.path.isdir(path) and not os.path.islink(path):
            import shutil

            shutil.rmtree(path)
        else:
            os.unlink(path)
    return files
