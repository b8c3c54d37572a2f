"""Paths of data sources: relative to the config's folder, and checked to be readable files."""

from __future__ import annotations

import os
from typing import Optional

from tfconf.data.errors import DataError


def resolve(path: str, root: Optional[str]) -> str:
    path = os.path.expanduser(path)
    if root is not None and not os.path.isabs(path):
        path = os.path.join(root, path)
    return path


def require(path: str, what: str = "data file") -> str:
    if not os.path.exists(path):
        raise DataError(f"{what} not found: {path}")
    return path


def regular(path: str, what: str = "data file") -> str:
    """``path`` if it is a file that can be read to its end (not a folder, a device such as /dev/zero,
    or a pipe) and is readable; a DataError naming it otherwise."""
    require(path, what)
    if os.path.isdir(path):
        raise DataError(f"{path}: the {what} is a folder, not a file")
    if not os.path.isfile(path):
        raise DataError(f"{path}: the {what} is not a regular file (a device or a pipe)")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: the {what} cannot be read: permission denied")
    return path
