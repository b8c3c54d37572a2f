"""oneDNN's C API through ctypes (no compiler): the library, one CPU engine and stream, memory
descriptors, primitives and reorders.

The library is the ``onednn-cpu-gomp`` wheel's ``lib/libdnnl.so.3`` (oneDNN 3.x, OpenMP threads
from the system's libgomp), found under the installation's data directory, or wherever
``TFCONF_DNNL_LIBRARY`` points. Everything here is float32 (the only type the provider serves;
float64 stays on the numpy reference kernels).

Only the oneDNN 3.x ABI is used: opaque memory descriptors (``dnnl_memory_desc_create_*``),
``*_primitive_desc_create`` functions and ``dnnl_primitive_desc_query_md`` by execution argument
(``dnnl_query_exec_arg_md``), so no struct layout and no format-tag numbering beyond ``any`` is
relied on; plain layouts are described by strides.
"""

from __future__ import annotations

import ctypes
import os
import sys
import sysconfig
import threading

import numpy as np

# ---------------------------------------------------------------------------- ABI constants
SUCCESS = 0
F32 = 3
FORMAT_ANY = 1
ENGINE_CPU = 1
STREAM_IN_ORDER = 1
QUERY_EXEC_ARG_MD = 255

FORWARD_TRAINING = 64
FORWARD_INFERENCE = 96
BACKWARD = 128
BACKWARD_DATA = 160
BACKWARD_WEIGHTS = 192

CONVOLUTION_DIRECT = 0x1
ELTWISE_RELU = 0x20
ELTWISE_RELU_USE_DST_FOR_BWD = 0x100
POOLING_MAX = 0x1FF
POOLING_AVG_INCLUDE_PADDING = 0x2FF
POOLING_AVG_EXCLUDE_PADDING = 0x3FF
LRN_ACROSS_CHANNELS = 0xAFF  # dnnl_alg_kind_t (oneDNN 3.x dnnl_types.h)
SOFTMAX_ACCURATE = 0x30000
QUERY_IMPL_INFO_STR = 8  # dnnl_query_t: the implementation's name ("jit:avx2", "ref:any", ...)

ARG_SRC = 1
ARG_DST = 17
ARG_WEIGHTS = 33
ARG_BIAS = 41
ARG_WORKSPACE = 64
ARG_SCRATCHPAD = 80
ARG_DIFF_SRC = 129
ARG_DIFF_DST = 145
ARG_DIFF_WEIGHTS = 161
ARG_DIFF_BIAS = 169

SCRATCHPAD_USER = 1

_STATUS = {1: "out of memory", 2: "invalid arguments", 3: "unimplemented", 4: "last implementation reached",
           5: "runtime error", 6: "not required"}

MAX_NDIMS = 12
Dims = ctypes.c_int64 * MAX_NDIMS
_vp = ctypes.c_void_p


class ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int),
                ("hash", ctypes.c_char_p), ("cpu_runtime", ctypes.c_uint), ("gpu_runtime", ctypes.c_uint)]


class Unavailable(RuntimeError):
    """oneDNN cannot be used here (no library, an unsupported platform, a failed load)."""


class DnnlError(RuntimeError):
    """A oneDNN call failed; ``status`` is its dnnl_status_t."""

    def __init__(self, what, status):
        super().__init__(f"oneDNN {what} failed: {_STATUS.get(status, status)}")
        self.status = status


def dims(values):
    d = Dims()
    for i, v in enumerate(values):
        d[i] = int(v)
    return d


# ---------------------------------------------------------------------------- library
_SIGNATURES = {
    # name: (argtypes); every function returns dnnl_status_t unless listed in _RETURNS
    "dnnl_engine_create": (ctypes.POINTER(_vp), ctypes.c_int, ctypes.c_size_t),
    "dnnl_stream_create": (ctypes.POINTER(_vp), _vp, ctypes.c_uint),
    "dnnl_stream_wait": (_vp,),
    "dnnl_memory_desc_create_with_strides": (ctypes.POINTER(_vp), ctypes.c_int, Dims, ctypes.c_int, Dims),
    "dnnl_memory_desc_create_with_tag": (ctypes.POINTER(_vp), ctypes.c_int, Dims, ctypes.c_int, ctypes.c_int),
    "dnnl_memory_desc_clone": (ctypes.POINTER(_vp), _vp),
    "dnnl_memory_desc_destroy": (_vp,),
    "dnnl_memory_desc_get_size": (_vp,),
    "dnnl_memory_desc_equal": (_vp, _vp),
    "dnnl_memory_create": (ctypes.POINTER(_vp), _vp, _vp, _vp),
    "dnnl_memory_set_data_handle": (_vp, _vp),
    "dnnl_memory_destroy": (_vp,),
    "dnnl_primitive_attr_create": (ctypes.POINTER(_vp),),
    "dnnl_primitive_attr_destroy": (_vp,),
    "dnnl_primitive_attr_set_post_ops": (_vp, _vp),
    "dnnl_primitive_attr_set_scratchpad_mode": (_vp, ctypes.c_int),
    "dnnl_post_ops_create": (ctypes.POINTER(_vp),),
    "dnnl_post_ops_destroy": (_vp,),
    "dnnl_post_ops_append_eltwise": (_vp, ctypes.c_int, ctypes.c_float, ctypes.c_float),
    "dnnl_primitive_desc_query_md": (_vp, ctypes.c_int, ctypes.c_int),
    "dnnl_primitive_desc_destroy": (_vp,),
    "dnnl_primitive_create": (ctypes.POINTER(_vp), _vp),
    "dnnl_primitive_execute": (_vp, _vp, ctypes.c_int, ctypes.POINTER(ExecArg)),
    "dnnl_primitive_destroy": (_vp,),
    "dnnl_reorder_primitive_desc_create": (ctypes.POINTER(_vp), _vp, _vp, _vp, _vp, _vp),
    "dnnl_convolution_forward_primitive_desc_create": (
        ctypes.POINTER(_vp), _vp, ctypes.c_int, ctypes.c_int, _vp, _vp, _vp, _vp, Dims, Dims, Dims, Dims, _vp),
    "dnnl_convolution_backward_data_primitive_desc_create": (
        ctypes.POINTER(_vp), _vp, ctypes.c_int, _vp, _vp, _vp, Dims, Dims, Dims, Dims, _vp, _vp),
    "dnnl_convolution_backward_weights_primitive_desc_create": (
        ctypes.POINTER(_vp), _vp, ctypes.c_int, _vp, _vp, _vp, _vp, Dims, Dims, Dims, Dims, _vp, _vp),
    "dnnl_pooling_forward_primitive_desc_create": (
        ctypes.POINTER(_vp), _vp, ctypes.c_int, ctypes.c_int, _vp, _vp, Dims, Dims, Dims, Dims, Dims, _vp),
    "dnnl_pooling_backward_primitive_desc_create": (
        ctypes.POINTER(_vp), _vp, ctypes.c_int, _vp, _vp, Dims, Dims, Dims, Dims, Dims, _vp, _vp),
    "dnnl_eltwise_forward_primitive_desc_create": (
        ctypes.POINTER(_vp), _vp, ctypes.c_int, ctypes.c_int, _vp, _vp, ctypes.c_float, ctypes.c_float, _vp),
    "dnnl_eltwise_backward_primitive_desc_create": (
        ctypes.POINTER(_vp), _vp, ctypes.c_int, _vp, _vp, _vp, ctypes.c_float, ctypes.c_float, _vp, _vp),

    "dnnl_version": (),
    "dnnl_lrn_forward_primitive_desc_create": (
        ctypes.POINTER(_vp), _vp, ctypes.c_int, ctypes.c_int, _vp, _vp, ctypes.c_int64, ctypes.c_float,
        ctypes.c_float, ctypes.c_float, _vp),
    "dnnl_lrn_backward_primitive_desc_create": (
        ctypes.POINTER(_vp), _vp, ctypes.c_int, _vp, _vp, _vp, ctypes.c_int64, ctypes.c_float, ctypes.c_float,
        ctypes.c_float, _vp, _vp),
    "dnnl_batch_normalization_forward_primitive_desc_create": (
        ctypes.POINTER(_vp), _vp, ctypes.c_int, _vp, _vp, ctypes.c_float, ctypes.c_uint, _vp),
    "dnnl_batch_normalization_backward_primitive_desc_create": (
        ctypes.POINTER(_vp), _vp, ctypes.c_int, _vp, _vp, _vp, ctypes.c_float, ctypes.c_uint, _vp, _vp),
    "dnnl_softmax_forward_primitive_desc_create": (
        ctypes.POINTER(_vp), _vp, ctypes.c_int, ctypes.c_int, _vp, _vp, ctypes.c_int, _vp),
    "dnnl_primitive_desc_query": (_vp, ctypes.c_int, ctypes.c_int, _vp),
}
_RETURNS = {
    "dnnl_memory_desc_get_size": ctypes.c_size_t,
    "dnnl_memory_desc_equal": ctypes.c_int,
    "dnnl_primitive_desc_query_md": _vp,
    "dnnl_version": ctypes.POINTER(_Version),
}


def _candidates():
    env = os.environ.get("TFCONF_DNNL_LIBRARY")
    if env:
        yield env
        return
    seen = set()
    for base in (sysconfig.get_path("data"), sys.prefix, sys.base_prefix,
                 os.path.join(os.path.dirname(sys.executable), "..")):
        path = os.path.normpath(os.path.join(base, "lib", "libdnnl.so.3"))
        if path not in seen:
            seen.add(path)
            yield path


class Library:
    """The loaded library with its functions typed, one CPU engine and one in-order stream."""

    def __init__(self, path):
        # NOTE: libgomp's wait policy is left as the user set it (by default its idle threads spin
        # briefly, then sleep). A plan with oneDNN kernels runs all its products on oneDNN's GEMM
        # and numpy's BLAS at one thread (engine/threads.py), so no second pool competes with the
        # spinning threads; OMP_WAIT_POLICY=PASSIVE would make every primitive wake sleeping
        # threads instead (LeNet's step 7.8 ms against 6.9, CIFAR-10 quick 30.2 against 27.3).
        self.path = path
        self.dll = ctypes.CDLL(path)
        for name, argtypes in _SIGNATURES.items():
            f = getattr(self.dll, name)
            f.argtypes = list(argtypes)
            f.restype = _RETURNS.get(name, ctypes.c_int)
            setattr(self, name[5:], f)  # dnnl_memory_create -> self.memory_create
        v = self.version().contents
        self.version_string = f"{v.major}.{v.minor}.{v.patch}"
        if v.major != 3:
            raise Unavailable(f"{path} is oneDNN {self.version_string}; tfconf needs oneDNN 3.x")
        self.engine = _vp()
        self.check("engine_create", self.engine_create(ctypes.byref(self.engine), ENGINE_CPU, 0))
        self.stream = _vp()
        self.check("stream_create", self.stream_create(ctypes.byref(self.stream), self.engine, STREAM_IN_ORDER))

    @staticmethod
    def check(what, status):
        if status != SUCCESS:
            raise DnnlError(what, status)


_lib = None
_error = None
_lock = threading.Lock()


def library() -> Library:
    """The loaded oneDNN library; raises Unavailable (with the reason) when it cannot be used."""
    global _lib, _error
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None and _error is None:
            if not sys.platform.startswith("linux"):
                _error = f"the onednn-cpu-gomp wheel is Linux-only (this is {sys.platform})"
            else:
                tried = []
                for path in _candidates():
                    if not os.path.exists(path):
                        tried.append(path)
                        continue
                    try:
                        _lib = Library(path)
                        break
                    except (OSError, AttributeError, Unavailable, DnnlError) as e:
                        _error = f"{path}: {e}"
                        break
                else:
                    _error = ("libdnnl.so.3 not found (install the onednn-cpu-gomp wheel, or set "
                              f"TFCONF_DNNL_LIBRARY); looked at {', '.join(tried)}")
    if _lib is None:
        raise Unavailable(_error)
    return _lib


def available() -> bool:
    try:
        library()
    except Unavailable:
        return False
    return True


def unavailable_reason():
    """None when oneDNN loads, else why not."""
    try:
        library()
    except Unavailable as e:
        return str(e)
    return None


# ---------------------------------------------------------------------------- memory descriptors
class MemoryDesc:
    """An owned oneDNN memory descriptor (destroyed with this object)."""

    __slots__ = ("handle", "lib", "__weakref__")

    def __init__(self, handle, lib):
        self.handle = handle
        self.lib = lib

    @classmethod
    def plain(cls, shape, strides=None):
        """float32 ``shape`` with ``strides`` in elements (default: C-contiguous)."""
        lib = library()
        if strides is None:
            strides, acc = [], 1
            for s in reversed(shape):
                strides.append(acc)
                acc *= int(s)
            strides.reverse()
        h = _vp()
        lib.check("memory_desc_create_with_strides",
                  lib.memory_desc_create_with_strides(ctypes.byref(h), len(shape), dims(shape), F32, dims(strides)))
        return cls(h, lib)

    @classmethod
    def any(cls, shape):
        """float32 ``shape`` in whatever layout the primitive prefers."""
        lib = library()
        h = _vp()
        lib.check("memory_desc_create_with_tag",
                  lib.memory_desc_create_with_tag(ctypes.byref(h), len(shape), dims(shape), F32, FORMAT_ANY))
        return cls(h, lib)

    @classmethod
    def clone(cls, const_handle):
        lib = library()
        h = _vp()
        lib.check("memory_desc_clone", lib.memory_desc_clone(ctypes.byref(h), const_handle))
        return cls(h, lib)

    @property
    def nbytes(self):
        return int(self.lib.memory_desc_get_size(self.handle))

    def __eq__(self, other):
        return isinstance(other, MemoryDesc) and bool(self.lib.memory_desc_equal(self.handle, other.handle))

    __hash__ = None

    def __del__(self):
        if self.handle:
            self.lib.memory_desc_destroy(self.handle)
            self.handle = None


def empty_bytes(nbytes):
    """A 64-byte aligned, uninitialised uint8 buffer of ``nbytes`` (AVX-512 loads want it)."""
    raw = np.empty(nbytes + 64, dtype=np.uint8)
    off = (-raw.ctypes.data) % 64
    return raw[off:off + nbytes]


class _OutputPool:
    """Recycled buffers for the provider kernels' outputs. A fresh large allocation is mapped
    from the kernel on every run and pays a page fault per 4 KiB on first write (an 8 MiB
    ResNet activation: 2,048 faults, several ms on this project's VM, more than the kernel
    itself), while the numpy kernels write in place into dying inputs. A buffer here is handed
    out again once nothing references it or any view of it (reference counts: a fetched array,
    a Blocked value or a later op's view keeps it taken), so reuse can never alias a live
    value. Buffers of at least ``MIN_BYTES``; at most ``PER_SIZE`` kept per size, beyond which
    allocations are plain ones."""

    MIN_BYTES = 1 << 18
    PER_SIZE = 64

    def __init__(self):
        self._by_size = {}
        self._lock = threading.Lock()
        probe = self._new(self.MIN_BYTES)
        self._idle = _refs(probe)  # the counts of an entry only this pool holds

    @staticmethod
    def _new(nbytes):
        v = empty_bytes(nbytes)
        return (v.base, v)

    def take(self, nbytes):
        if nbytes < self.MIN_BYTES:
            return empty_bytes(nbytes)
        with self._lock:
            entries = self._by_size.setdefault(nbytes, [])
            for entry in entries:
                if _refs(entry) == self._idle:
                    return entry[1]
            entry = self._new(nbytes)
            if len(entries) < self.PER_SIZE:
                entries.append(entry)
            return entry[1]

    def held_bytes(self):
        return sum(n * len(e) for n, e in self._by_size.items())


def _refs(entry):
    return sys.getrefcount(entry[0]), sys.getrefcount(entry[1])


_pool = None


def output_bytes(nbytes):
    """A 64-byte aligned uint8 buffer for a kernel's output (recycled, :class:`_OutputPool`)."""
    global _pool
    if _pool is None:
        _pool = _OutputPool()
    return _pool.take(nbytes)


def output_array(shape):
    """An uninitialised C-contiguous float32 array for a kernel's output (recycled)."""
    n = 4
    for d in shape:
        n *= int(d)
    return output_bytes(n).view(np.float32).reshape(shape)


class Attr:
    """Primitive attributes: user scratchpad (one buffer per primitive, allocated once) and an
    optional ReLU post-op."""

    def __init__(self, relu=False):
        lib = self.lib = library()
        self.handle = _vp()
        lib.check("primitive_attr_create", lib.primitive_attr_create(ctypes.byref(self.handle)))
        lib.check("set_scratchpad_mode", lib.primitive_attr_set_scratchpad_mode(self.handle, SCRATCHPAD_USER))
        if relu:
            po = _vp()
            lib.check("post_ops_create", lib.post_ops_create(ctypes.byref(po)))
            try:
                lib.check("post_ops_append_eltwise", lib.post_ops_append_eltwise(po, ELTWISE_RELU, 0.0, 0.0))
                lib.check("set_post_ops", lib.primitive_attr_set_post_ops(self.handle, po))
            finally:
                lib.post_ops_destroy(po)

    def __del__(self):
        if self.handle:
            self.lib.primitive_attr_destroy(self.handle)
            self.handle = None


class _SignalsHeld:
    """Asynchronous signals (SIGINT, SIGTERM, timers...) held back in the calling thread while a
    primitive runs, delivered as soon as it returns: a signal landing in the thread that runs a
    oneDNN product corrupted the heap (oneDNN 3.2's matmul and sgemm, every ISA, with or without
    worker threads; Ctrl-C during a step aborted `tfconf train` with "corrupted size vs.
    prev_size"). Python's handlers then run as usual, a primitive later. Three pthread_sigmask
    calls cost ~1.5 µs. oneDNN's OpenMP workers inherit the held mask: the team is made inside
    the first held call (unless another user of the process's libgomp made it before)."""

    def __init__(self):
        self._fn = None
        try:
            import signal

            libc = ctypes.CDLL(None)
            fn = libc.pthread_sigmask
        except (OSError, AttributeError, ImportError):  # pragma: no cover - not POSIX
            return
        fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        fn.restype = ctypes.c_int
        words = ctypes.c_ulong * (1024 // (8 * ctypes.sizeof(ctypes.c_ulong)))
        held = words()
        bits = 8 * ctypes.sizeof(ctypes.c_ulong)
        keep = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP, signal.SIGABRT,
                signal.SIGKILL, signal.SIGSTOP}  # faults must stay deliverable
        for sig in range(1, 65):
            if sig not in keep:
                held[(sig - 1) // bits] |= 1 << ((sig - 1) % bits)
        self._held = held
        self._words = words
        self._block, self._set = int(signal.SIG_BLOCK), int(signal.SIG_SETMASK)
        self._fn = fn

    def call(self, run, *args):
        fn = self._fn
        if fn is None:  # pragma: no cover
            return run(*args)
        old = self._words()
        fn(self._block, None, ctypes.byref(old))  # read the mask first: nothing to undo yet
        try:
            # NOTE: inside the try: a Python handler may raise (KeyboardInterrupt) as soon as any
            # C call returns, and the mask must then still be put back
            fn(self._block, ctypes.byref(self._held), None)
            return run(*args)
        finally:
            fn(self._set, ctypes.byref(old), None)


_signals = None


def call_with_signals_held(fn, *args):
    """``fn(*args)`` (a oneDNN call) with asynchronous signals held back in this thread."""
    global _signals
    if _signals is None:
        _signals = _SignalsHeld()
    return _signals.call(fn, *args)


class Primitive:
    """A primitive made once from its primitive descriptor, run with fixed memory objects whose
    data handles are pointed at the arrays of each call.

    ``args`` are the execution arguments (ARG_* values) the caller will pass; the scratchpad is
    allocated here once (user scratchpad mode) and kept. ``mds`` gives the descriptors of
    arguments the primitive descriptor cannot be queried for (a post-op's operands)."""

    def __init__(self, pd, args, what, mds=None):
        lib = self.lib = library()
        self.pd = pd
        self.what = what
        self.handle = _vp()
        try:
            lib.check(f"{what} primitive_create", lib.primitive_create(ctypes.byref(self.handle), pd))
        except DnnlError:
            lib.primitive_desc_destroy(pd)
            self.pd = None
            raise
        given = mds or {}
        self.mds = {a: given[a] if a in given else self.md(a) for a in args}
        all_args = list(args)
        scratch_md = self.md(ARG_SCRATCHPAD)
        self._scratch = None
        if scratch_md.nbytes:
            self._scratch = empty_bytes(scratch_md.nbytes)
            self.mds[ARG_SCRATCHPAD] = scratch_md
            all_args.append(ARG_SCRATCHPAD)
        self._mems = {}
        for a in all_args:
            m = _vp()
            lib.check("memory_create", lib.memory_create(ctypes.byref(m), self.mds[a].handle, lib.engine, None))
            self._mems[a] = m
        self._order = all_args
        self._exec = (ExecArg * len(all_args))(*[ExecArg(a, self._mems[a]) for a in all_args])
        if self._scratch is not None:
            lib.check("set_data_handle", lib.memory_set_data_handle(self._mems[ARG_SCRATCHPAD],
                                                                    self._scratch.ctypes.data))
        self._set = lib.memory_set_data_handle
        self._run = lib.primitive_execute
        self._lock = threading.Lock()

    def md(self, arg) -> MemoryDesc:
        """A copy of the descriptor the primitive chose for execution argument ``arg``."""
        return MemoryDesc.clone(self.lib.primitive_desc_query_md(self.pd, QUERY_EXEC_ARG_MD, arg))

    def __call__(self, pointers):
        """Run with {ARG_*: data pointer} for every argument named at creation. The memory objects
        are the primitive's own, so runs from several threads (a thread-pool executor, sessions
        sharing a cached primitive) take turns."""
        mems, setp = self._mems, self._set
        with self._lock:
            for a, p in pointers.items():
                setp(mems[a], p)
            st = call_with_signals_held(self._run, self.handle, self.lib.stream, len(self._order), self._exec)
        if st != SUCCESS:
            raise DnnlError(f"{self.what} execute", st)

    def __del__(self):
        for m in getattr(self, "_mems", {}).values():
            self.lib.memory_destroy(m)
        if getattr(self, "handle", None):
            self.lib.primitive_destroy(self.handle)
            self.handle = None
        if getattr(self, "pd", None):
            self.lib.primitive_desc_destroy(self.pd)
            self.pd = None


def reorder(src_md: MemoryDesc, dst_md: MemoryDesc) -> Primitive:
    """A reorder primitive from ``src_md`` to ``dst_md`` (run with ARG_SRC and ARG_DST)."""
    lib = library()
    pd = _vp()
    attr = Attr()
    lib.check("reorder_primitive_desc_create",
              lib.reorder_primitive_desc_create(ctypes.byref(pd), src_md.handle, lib.engine, dst_md.handle,
                                                lib.engine, attr.handle))
    return Primitive(pd, (ARG_SRC, ARG_DST), "reorder")
