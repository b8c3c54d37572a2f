"""Values in oneDNN layouts, and binding a primitive's arguments to the values of a run.

A tensor between two oneDNN kernels may stay in the blocked layout the primitives prefer (a
:class:`Blocked`: logical shape, descriptor, bytes); the layout stage of the compile pipeline
decides where that is allowed (every reader is a oneDNN kernel, nothing fetches it). Everything
else sees plain C-contiguous float32 numpy arrays; :func:`to_plain` is the one way back.
"""

from __future__ import annotations

import numpy as np

from . import lib as L


class Blocked:
    """A float32 tensor of logical ``shape`` held in oneDNN layout ``md`` inside ``buf``."""

    __slots__ = ("shape", "md", "buf")
    dtype = np.dtype(np.float32)

    def __init__(self, shape, md, buf):
        self.shape = shape
        self.md = md
        self.buf = buf

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    def __array__(self, dtype=None, copy=None):
        # NOTE: the layout stage never hands a Blocked value to a numpy kernel; this makes any
        # array consumer (a numerics check, a debugger) see the right numbers regardless
        a = to_plain(self)
        return a if dtype is None else a.astype(dtype, copy=False)

    def __repr__(self):
        return f"Blocked(shape={self.shape})"


_to_plain = {}


def to_plain(v):
    """``v`` as a plain numpy array (a Blocked value is reordered; anything else is returned)."""
    if not isinstance(v, Blocked):
        return v
    out = L.output_array(v.shape)
    key = v.shape
    for md, prim in _to_plain.get(key, ()):
        if md == v.md:
            break
    else:
        prim = L.reorder(v.md, L.MemoryDesc.plain(v.shape))
        _to_plain.setdefault(key, []).append((v.md, prim))
    prim({L.ARG_SRC: v.buf.ctypes.data, L.ARG_DST: out.ctypes.data})
    return out


class Input:
    """One input argument of a primitive whose layout is ``md``: takes a plain array or a Blocked
    value and gives the pointer to pass, reordering into a buffer of the output pool for the call
    when the layouts differ (so a plan's reorders share memory instead of each kernel keeping
    one; reorders are made on first need and kept)."""

    __slots__ = ("md", "shape", "plain_md", "direct", "_from")

    def __init__(self, md, shape):
        self.md = md
        self.shape = tuple(shape)
        self.plain_md = L.MemoryDesc.plain(self.shape)
        self.direct = md == self.plain_md
        self._from = []  # (source md, reorder primitive)

    def _reorder_from(self, md):
        for src, prim in self._from:
            if src == md:
                return prim
        prim = L.reorder(md, self.md)
        self._from.append((md, prim))
        return prim

    def _into(self, src_md, src_ptr, keep):
        buf = L.output_bytes(self.md.nbytes)
        keep.append(buf)  # taken until the caller's primitive has run
        self._reorder_from(src_md)({L.ARG_SRC: src_ptr, L.ARG_DST: buf.ctypes.data})
        return buf.ctypes.data

    def pointer(self, v, keep):
        """The data pointer for value ``v``; arrays that must outlive the call go into ``keep``."""
        if isinstance(v, Blocked):
            keep.append(v)
            if v.md == self.md:
                return v.buf.ctypes.data
            return self._into(v.md, v.buf.ctypes.data, keep)
        if v.__class__ is not np.ndarray or v.dtype != np.float32 or not v.flags.c_contiguous:
            v = np.ascontiguousarray(v, dtype=np.float32)
        keep.append(v)
        if self.direct:
            return v.ctypes.data
        return self._into(self.plain_md, v.ctypes.data, keep)


class Output:
    """One output argument in layout ``md``: a fresh value per run, Blocked when ``blocked`` (the
    layout stage allowed it) and the layout is not plain, else a plain array (computed into a kept
    buffer and reordered out when the primitive's layout is not plain)."""

    __slots__ = ("md", "shape", "plain_md", "direct", "blocked", "buf", "_out")

    def __init__(self, md, shape, blocked):
        self.md = md
        self.shape = tuple(shape)
        self.plain_md = L.MemoryDesc.plain(self.shape)
        self.direct = md == self.plain_md
        self.blocked = bool(blocked) and not self.direct
        self.buf = None if self.direct or self.blocked else L.empty_bytes(md.nbytes)
        self._out = None if self.direct or self.blocked else L.reorder(md, self.plain_md)

    def new(self):
        """(value to return, pointer the primitive writes to)."""
        if self.direct:
            y = L.output_array(self.shape)
            return y, y.ctypes.data
        if self.blocked:
            buf = L.output_bytes(self.md.nbytes)
            return Blocked(self.shape, self.md, buf), buf.ctypes.data
        return None, self.buf.ctypes.data

    def finish(self, y):
        """The value to hand on once the primitive ran (reorders to plain where needed)."""
        if y is not None:
            return y
        y = L.output_array(self.shape)
        self._out({L.ARG_SRC: self.buf.ctypes.data, L.ARG_DST: y.ctypes.data})
        return y
