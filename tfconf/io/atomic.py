"""Files written atomically: to a temporary name in the same folder, then renamed into place, so a
process killed at any moment leaves either the old file or the complete new one (snapshots,
metrics, sweep status, exported models, the zoo's rebuilt weights)."""

from __future__ import annotations

import os
import tempfile

#: the prefix of the temporary files (a run folder's leftovers after kill -9 are removed by it)
TMP_PREFIX = ".tmp-"


def _file_mode() -> int:
    # mkstemp creates 0600 files; give snapshots the mode an ordinary open() would (0666 & ~umask).
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()


def naming(e: OSError, path: str) -> OSError:
    """``e`` with ``path`` as its file when the OS gave none (a write to a full disk names nothing)."""
    if e.filename is not None or not e.errno:
        return e
    return OSError(e.errno, e.strerror, path)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (fsync of the file and of its folder)."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), _MODE)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise naming(e, path) from None
        raise
    try:  # make the rename itself durable
        dfd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
