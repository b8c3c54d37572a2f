"""oneDNN kernels for normalisations: local response normalisation across channels (forward, and
its gradient from the forward's kept workspace), batch normalisation with the batch's statistics
(forward and its input gradient) and softmax forward.

LRN: tfconf's (TensorFlow's) op is y = x / (bias + alpha * S)^beta with S the sum of x² over the
2r + 1 channels centred on each one (zero beyond the edges). oneDNN's ``lrn_across_channels``
computes y = x * (k + alpha' / n * S)^-beta over a window of n = local_size channels centred the
same way (for odd n), so tfconf's parameters map to local_size = 2r + 1, alpha' = alpha * (2r + 1)
and k = bias. It runs in the layout its input comes in (a Blocked value from a convolution, ReLU or
pooling keeps its channel blocks), like pooling and ReLU, or in NHWC where oneDNN has only its slow
reference kernel for that layout (:func:`lrn_layout`); the provider takes local_size 3 and 5 only.

Batch normalisation, and the channel affine (Caffe's Scale) computed by the same primitive, run
in the layout their input comes in (a convolution's blocked output stays
blocked through it), on 2-D to 5-D NCHW values; its statistics are plain [C] arrays, the biased
variance as tfconf's op defines it.

Softmax runs on plain arrays (its inputs are products or reshapes, never blocked), along the
innermost axis.

Every kernel builds its primitives once per input shape and layout and falls back to the numpy
reference kernel it holds for anything oneDNN refuses.
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import lib as L
from .kernels import _PerShape, _layout_of, _plain_args
from .tensors import Blocked, Input, Output


def _md_bytes(pd, arg):
    """Size in bytes of the descriptor ``pd`` has for ``arg`` (0 when the primitive has none)."""
    h = L.library().primitive_desc_query_md(pd, L.QUERY_EXEC_ARG_MD, arg)
    return L.MemoryDesc.clone(h).nbytes if h else 0


def _float32_value(v):
    return isinstance(v, Blocked) or (v.__class__ is np.ndarray and v.dtype == np.float32)


# ---------------------------------------------------------------------------- LRN
def lrn_parameters(depth_radius, bias, alpha, beta):
    """tfconf's (depth_radius, bias, alpha, beta) as oneDNN's (local_size, k, alpha, beta)."""
    n = 2 * int(depth_radius) + 1
    return n, float(bias), float(alpha) * n, float(beta)


class ReferenceOnly(L.DnnlError):
    """oneDNN has only its reference implementation here (several times slower than numpy's)."""

    def __init__(self, what):
        RuntimeError.__init__(self, f"oneDNN has only its reference {what} for these parameters and layouts, "
                                    "slower than the numpy kernel,")
        self.status = 3


def implementation(pd):
    """The name of the implementation oneDNN chose for primitive descriptor ``pd``."""
    lib = L.library()
    s = ctypes.c_char_p()
    lib.check("primitive_desc_query", lib.primitive_desc_query(pd, L.QUERY_IMPL_INFO_STR, 0, ctypes.byref(s)))
    return (s.value or b"").decode()


def _optimised(pd):
    return not implementation(pd).startswith("ref")


def _lrn_fwd_pd(md, shape, params, prop):
    lib = L.library()
    n, k, alpha, beta = params
    pd = ctypes.c_void_p()
    attr = L.Attr()
    dst = L.MemoryDesc.any(shape)
    lib.check("lrn forward", lib.lrn_forward_primitive_desc_create(
        ctypes.byref(pd), lib.engine, prop, L.LRN_ACROSS_CHANNELS, md.handle, dst.handle, n, alpha, beta, k,
        attr.handle))
    return pd


def _lrn_bwd_pd(md, shape, params, hint):
    lib = L.library()
    n, k, alpha, beta = params
    pd = ctypes.c_void_p()
    attr = L.Attr()
    dsrc, ddst = L.MemoryDesc.any(shape), L.MemoryDesc.any(shape)
    lib.check("lrn backward", lib.lrn_backward_primitive_desc_create(
        ctypes.byref(pd), lib.engine, L.LRN_ACROSS_CHANNELS, dsrc.handle, ddst.handle, md.handle, n, alpha, beta, k,
        hint, attr.handle))
    return pd


def _nhwc(shape):
    n, c, h, w = shape
    return L.MemoryDesc.plain(shape, (h * w * c, 1, w * c, c))


def lrn_layout(shape, md, params, backward):
    """The layout an LRN over ``shape`` computes in, given its input's layout ``md`` (None: plain
    NCHW): that one when oneDNN has optimised kernels for it (the forward, and with ``backward``
    the gradient too), else NHWC (oneDNN 3.2's AVX-512 LRN has both there for local_size 3 and 5
    on every channel count), else None: only oneDNN's reference implementation, which the numpy
    kernel beats.

    What oneDNN 3.2 chose on this project's (AVX-512) machine: plain NCHW has a forward kernel for
    local_size 5 on channel counts divisible by 8 and no backward one; the 16-channel blocked
    layout has both for local_size 5 only; every layout has only the reference for beta other than
    0.75. A rule of the shapes and layouts, never a timing."""
    lib = L.library()
    own = md if md is not None else L.MemoryDesc.plain(shape)
    nhwc = _nhwc(shape)
    # NOTE: both even where they compare equal (one channel): oneDNN picks its kernel by strides
    for cand in (own, nhwc):
        fwd = _lrn_fwd_pd(cand, shape, params, L.FORWARD_TRAINING if backward else L.FORWARD_INFERENCE)
        try:
            ok = _optimised(fwd)
            if ok and backward:
                bwd = _lrn_bwd_pd(cand, shape, params, fwd)
                try:
                    ok = _optimised(bwd)
                finally:
                    lib.primitive_desc_destroy(bwd)
        finally:
            lib.primitive_desc_destroy(fwd)
        if ok:
            return cand
    return None


_probed = {}


def lrn_supported(shape, params):
    """Whether oneDNN has an optimised LRN (forward and backward, in NHWC) for ``params`` on
    ``shape`` (a small stand-in when it is not fully known); cached."""
    if shape is None or len(shape) != 4 or any(d is None or d <= 0 for d in shape):
        shape = (1, 16, 4, 4)
    key = (tuple(shape), params)
    if key not in _probed:
        try:
            _probed[key] = lrn_layout(tuple(shape), _nhwc(tuple(shape)), params, True) is not None
        except L.DnnlError:
            _probed[key] = False
    return _probed[key]


class _LRNBase(_PerShape):
    def __init__(self, fallback, depth_radius, bias, alpha, beta, blocked_out=False):
        super().__init__(fallback, blocked_out)
        self.params = lrn_parameters(depth_radius, bias, alpha, beta)

    def _layout(self, shape, md, backward):
        chosen = lrn_layout(shape, md, self.params, backward)
        if chosen is None:
            raise ReferenceOnly("LRN" + (" backward" if backward else ""))
        return chosen

    def _forward(self, shape, md, training):
        """A forward primitive for ``shape`` computing in layout ``md``, with its workspace size."""
        pd = _lrn_fwd_pd(md, shape, self.params, L.FORWARD_TRAINING if training else L.FORWARD_INFERENCE)
        try:
            ws = _md_bytes(pd, L.ARG_WORKSPACE) if training else 0
        except L.DnnlError:
            L.library().primitive_desc_destroy(pd)
            raise
        args = (L.ARG_SRC, L.ARG_DST) + ((L.ARG_WORKSPACE,) if ws else ())
        return L.Primitive(pd, args, "lrn forward"), ws


class LRNForward(_LRNBase):
    """y = LRN(x), in x's layout or NHWC (:func:`lrn_layout`). In a plan that also runs this
    LRN's gradient (``training``) the layout is one with a fast backward too, and the last run's
    (y, workspace, primitive) stay for LRNGrad, which then skips recomputing the normaliser."""

    def __init__(self, fallback, depth_radius, bias, alpha, beta, training=False, blocked_out=False):
        super().__init__(fallback, depth_radius, bias, alpha, beta, blocked_out)
        self.training = bool(training)
        self.last = None

    def _make(self, shape, md):
        prim, ws = self._forward(shape, self._layout(shape, md, self.training), self.training)
        return prim, Input(prim.mds[L.ARG_SRC], shape), Output(prim.mds[L.ARG_DST], shape, self.blocked_out), ws

    def __call__(self, x):
        shape = tuple(x.shape)
        built = None
        if _float32_value(x) and len(shape) == 4 and 0 not in shape:
            md, key = _layout_of(x)
            built = self.built((shape, key), lambda: self._make(shape, md))
        if built is None:
            self.last = None
            return self.fallback(*_plain_args((x,)))
        prim, xin, yout, nws = built
        keep = []
        y, py = yout.new()
        ptrs = {L.ARG_SRC: xin.pointer(x, keep), L.ARG_DST: py}
        ws = None
        if nws:
            ws = L.empty_bytes(nws)
            ptrs[L.ARG_WORKSPACE] = ws.ctypes.data
        prim(ptrs)
        y = yout.finish(y)
        self.last = (y, ws, prim) if ws is not None else None
        return y


class LRNBackward(_LRNBase):
    """dx of LRN (inputs x, y, dy), computed in the layout the training forward chose for x (the
    same rule, so the forward's workspace fits). Where oneDNN's backward wants that workspace, it
    takes the one ``forward`` (the LRN's own kernel) kept when its last output is this y, else runs
    a forward of its own for it."""

    def __init__(self, fallback, depth_radius, bias, alpha, beta, forward=None, blocked_out=False):
        super().__init__(fallback, depth_radius, bias, alpha, beta, blocked_out)
        self.forward = forward

    def _make(self, shape, md):
        lib = L.library()
        md = self._layout(shape, md, True)
        hint = _lrn_fwd_pd(md, shape, self.params, L.FORWARD_TRAINING)
        try:
            pd = _lrn_bwd_pd(md, shape, self.params, hint)
        finally:
            lib.primitive_desc_destroy(hint)
        try:
            nws = _md_bytes(pd, L.ARG_WORKSPACE)
        except L.DnnlError:
            lib.primitive_desc_destroy(pd)
            raise
        args = (L.ARG_SRC, L.ARG_DIFF_DST, L.ARG_DIFF_SRC) + ((L.ARG_WORKSPACE,) if nws else ())
        prim = L.Primitive(pd, args, "lrn backward")
        own = None
        if nws:  # for a run whose forward's workspace is not at hand
            fprim, fws = self._forward(shape, md, True)
            if fws != nws or fprim.mds[L.ARG_WORKSPACE] != prim.mds[L.ARG_WORKSPACE]:
                raise ReferenceOnly("LRN backward with a matching forward")
            own = (fprim, Input(fprim.mds[L.ARG_SRC], shape), L.empty_bytes(fprim.mds[L.ARG_DST].nbytes),
                   L.empty_bytes(fws))
        return (prim, Input(prim.mds[L.ARG_SRC], shape), Input(prim.mds[L.ARG_DIFF_DST], shape),
                Output(prim.mds[L.ARG_DIFF_SRC], shape, self.blocked_out), own)

    def _workspace(self, prim, own, x, y, keep):
        fwd = self.forward
        last = fwd.last if fwd is not None else None
        if last is not None and last[0] is y and last[2].mds[L.ARG_WORKSPACE] == prim.mds[L.ARG_WORKSPACE]:
            self.reused = True
            return last[1].ctypes.data
        self.reused = False
        fprim, xin, ybuf, ws = own
        fprim({L.ARG_SRC: xin.pointer(x, keep), L.ARG_DST: ybuf.ctypes.data, L.ARG_WORKSPACE: ws.ctypes.data})
        return ws.ctypes.data

    reused = None  # whether the last run took the forward's workspace (tests read it)

    def __call__(self, x, y, dy):
        shape = tuple(x.shape)
        built = None
        if _float32_value(x) and _float32_value(dy) and len(shape) == 4 and 0 not in shape \
                and tuple(dy.shape) == shape:
            md, key = _layout_of(x)
            built = self.built((shape, key), lambda: self._make(shape, md))
        if built is None:
            return self.fallback(*_plain_args((x, y, dy)))
        prim, xin, dyin, dxout, own = built
        keep = []
        dx, pdx = dxout.new()
        ptrs = {L.ARG_SRC: xin.pointer(x, keep), L.ARG_DIFF_DST: dyin.pointer(dy, keep), L.ARG_DIFF_SRC: pdx}
        if own is not None:
            ptrs[L.ARG_WORKSPACE] = self._workspace(prim, own, x, y, keep)
        prim(ptrs)
        return dxout.finish(dx)


# ---------------------------------------------------------------------------- batch normalisation
ARG_MEAN, ARG_VARIANCE = 49, 50  # DNNL_ARG_MEAN, DNNL_ARG_VARIANCE


def _bnorm_fwd_pd(md, epsilon):
    lib = L.library()
    pd = ctypes.c_void_p()
    attr = L.Attr()
    lib.check("batch normalization forward", lib.batch_normalization_forward_primitive_desc_create(
        ctypes.byref(pd), lib.engine, L.FORWARD_TRAINING, md.handle, md.handle, epsilon, 0, attr.handle))
    return pd


def _checked_optimised(pd, what):
    try:
        fast = _optimised(pd)
    except L.DnnlError:
        L.library().primitive_desc_destroy(pd)
        raise
    if not fast:
        L.library().primitive_desc_destroy(pd)
        raise ReferenceOnly(what)
    return pd


def _bn_value(v):
    return _float32_value(v) and 2 <= len(v.shape) <= 5 and 0 not in tuple(v.shape)


class BatchNormForward(_PerShape):
    """(y, mean, variance) of FusedBatchNorm: oneDNN's forward-training batch normalisation in
    the layout x comes in (y in the same one)."""

    def __init__(self, fallback, epsilon, blocked_out=False):
        super().__init__(fallback, blocked_out)
        self.epsilon = float(epsilon)

    def _make(self, shape, md):
        pd = _checked_optimised(_bnorm_fwd_pd(md, self.epsilon), "batch normalization")
        prim = L.Primitive(pd, (L.ARG_SRC, L.ARG_DST, ARG_MEAN, ARG_VARIANCE), "batch normalization forward")
        return prim, Input(prim.mds[L.ARG_SRC], shape), Output(prim.mds[L.ARG_DST], shape, self.blocked_out)

    def __call__(self, x):
        built = None
        if _bn_value(x):
            shape = tuple(x.shape)
            md, key = _layout_of(x)
            built = self.built((shape, key), lambda: self._make(shape, md or L.MemoryDesc.plain(shape)))
        if built is None:
            return self.fallback(*_plain_args((x,)))
        prim, xin, yout = built
        keep = []
        y, py = yout.new()
        c = x.shape[1]
        mean, var = np.empty(c, np.float32), np.empty(c, np.float32)
        prim({L.ARG_SRC: xin.pointer(x, keep), L.ARG_DST: py, ARG_MEAN: mean.ctypes.data,
              ARG_VARIANCE: var.ctypes.data})
        return yout.finish(y), mean, var


class BatchNormBackward(_PerShape):
    """dx of FusedBatchNorm from (dy, x, mean, variance): oneDNN's backward-data batch
    normalisation in the layout x comes in (dy is reordered into it when it differs)."""

    def __init__(self, fallback, epsilon, blocked_out=False):
        super().__init__(fallback, blocked_out)
        self.epsilon = float(epsilon)

    def _make(self, shape, md):
        lib = L.library()
        hint = _bnorm_fwd_pd(md, self.epsilon)
        try:
            pd = ctypes.c_void_p()
            attr = L.Attr()
            lib.check("batch normalization backward", lib.batch_normalization_backward_primitive_desc_create(
                ctypes.byref(pd), lib.engine, L.BACKWARD_DATA, md.handle, md.handle, md.handle, self.epsilon, 0,
                hint, attr.handle))
        finally:
            lib.primitive_desc_destroy(hint)
        pd = _checked_optimised(pd, "batch normalization backward")
        prim = L.Primitive(pd, (L.ARG_SRC, ARG_MEAN, ARG_VARIANCE, L.ARG_DIFF_DST, L.ARG_DIFF_SRC),
                           "batch normalization backward")
        return (prim, Input(prim.mds[L.ARG_SRC], shape), Input(prim.mds[L.ARG_DIFF_DST], shape),
                Output(prim.mds[L.ARG_DIFF_SRC], shape, self.blocked_out))

    def __call__(self, dy, x, mean, var):
        built = None
        if (_bn_value(x) and _float32_value(dy) and tuple(dy.shape) == tuple(x.shape)
                and mean.dtype == np.float32 and var.dtype == np.float32):
            shape = tuple(x.shape)
            md, key = _layout_of(x)
            built = self.built((shape, key), lambda: self._make(shape, md or L.MemoryDesc.plain(shape)))
        if built is None:
            return self.fallback(*_plain_args((dy, x, mean, var)))
        prim, xin, dyin, dxout = built
        keep = []
        mean, var = np.ascontiguousarray(mean), np.ascontiguousarray(var)
        dx, pdx = dxout.new()
        prim({L.ARG_SRC: xin.pointer(x, keep), ARG_MEAN: mean.ctypes.data, ARG_VARIANCE: var.ctypes.data,
              L.ARG_DIFF_DST: dyin.pointer(dy, keep), L.ARG_DIFF_SRC: pdx})
        return dxout.finish(dx)


# ---------------------------------------------------------------------------- channel affine
ARG_SCALE, ARG_SHIFT, ARG_DIFF_SCALE, ARG_DIFF_SHIFT = 51, 52, 255, 256
GLOBAL_STATS, USE_SCALE, USE_SHIFT = 0x1, 0x2, 0x4


class _AffineBase(_PerShape):
    """ChannelAffine as oneDNN's batch normalisation with given statistics mean 0 and variance 1
    at epsilon 0: y = scale·(x - 0)/sqrt(1 + 0) + offset, which its jit kernels compute in
    every layout (oneDNN 3.2's binary primitive has only its reference implementation for the
    channel-blocked ones), and whose backward gives dx, dscale and doffset in one pass."""

    def __init__(self, fallback, offset, blocked_out=False):
        super().__init__(fallback, blocked_out)
        self.offset = bool(offset)
        self.flags = GLOBAL_STATS | USE_SCALE | (USE_SHIFT if offset else 0)
        self._stats = {}

    def stats(self, c):
        st = self._stats.get(c)
        if st is None:
            st = self._stats[c] = (np.zeros(c, np.float32), np.ones(c, np.float32))
        return st

    def _fwd_pd(self, md, prop):
        lib = L.library()
        pd = ctypes.c_void_p()
        attr = L.Attr()
        lib.check("channel affine forward", lib.batch_normalization_forward_primitive_desc_create(
            ctypes.byref(pd), lib.engine, prop, md.handle, md.handle, 0.0, self.flags, attr.handle))
        return pd


class ChannelAffineForward(_AffineBase):
    def _make(self, shape, md):
        pd = _checked_optimised(self._fwd_pd(md, L.FORWARD_INFERENCE), "channel affine")
        args = (L.ARG_SRC, L.ARG_DST, ARG_MEAN, ARG_VARIANCE, ARG_SCALE) + ((ARG_SHIFT,) if self.offset else ())
        prim = L.Primitive(pd, args, "channel affine forward")
        return prim, Input(prim.mds[L.ARG_SRC], shape), Output(prim.mds[L.ARG_DST], shape, self.blocked_out)

    def __call__(self, x, scale, offset=None):
        built = None
        params = (scale,) if offset is None else (scale, offset)
        if _bn_value(x) and all(p.dtype == np.float32 and p.shape == (x.shape[1],) for p in params):
            shape = tuple(x.shape)
            md, key = _layout_of(x)
            built = self.built((shape, key), lambda: self._make(shape, md or L.MemoryDesc.plain(shape)))
        if built is None:
            return self.fallback(*_plain_args((x,) + params))
        prim, xin, yout = built
        keep = []
        mean, var = self.stats(x.shape[1])
        y, py = yout.new()
        scale = np.ascontiguousarray(scale)  # (a name holds it until the primitive ran)
        ptrs = {L.ARG_SRC: xin.pointer(x, keep), L.ARG_DST: py, ARG_MEAN: mean.ctypes.data,
                ARG_VARIANCE: var.ctypes.data, ARG_SCALE: scale.ctypes.data}
        if self.offset:
            off = np.ascontiguousarray(offset)
            ptrs[ARG_SHIFT] = off.ctypes.data
        prim(ptrs)
        return yout.finish(y)


class ChannelAffineBackward(_AffineBase):
    def _make(self, shape, md):
        lib = L.library()
        hint = self._fwd_pd(md, L.FORWARD_TRAINING)
        try:
            pd = ctypes.c_void_p()
            attr = L.Attr()
            lib.check("channel affine backward", lib.batch_normalization_backward_primitive_desc_create(
                ctypes.byref(pd), lib.engine, L.BACKWARD, md.handle, md.handle, md.handle, 0.0, self.flags, hint,
                attr.handle))
        finally:
            lib.primitive_desc_destroy(hint)
        pd = _checked_optimised(pd, "channel affine backward")
        args = (L.ARG_SRC, ARG_MEAN, ARG_VARIANCE, ARG_SCALE, L.ARG_DIFF_DST, L.ARG_DIFF_SRC, ARG_DIFF_SCALE) + (
            (ARG_DIFF_SHIFT,) if self.offset else ())
        prim = L.Primitive(pd, args, "channel affine backward")
        return (prim, Input(prim.mds[L.ARG_SRC], shape), Input(prim.mds[L.ARG_DIFF_DST], shape),
                Output(prim.mds[L.ARG_DIFF_SRC], shape, self.blocked_out))

    def __call__(self, dy, x, scale):
        built = None
        if (_bn_value(x) and _float32_value(dy) and tuple(dy.shape) == tuple(x.shape)
                and scale.dtype == np.float32 and scale.shape == (x.shape[1],)):
            shape = tuple(x.shape)
            md, key = _layout_of(x)
            built = self.built((shape, key), lambda: self._make(shape, md or L.MemoryDesc.plain(shape)))
        if built is None:
            return self.fallback(*_plain_args((dy, x, scale)))
        prim, xin, dyin, dxout = built
        keep = []
        c = x.shape[1]
        mean, var = self.stats(c)
        scale = np.ascontiguousarray(scale)
        dx, pdx = dxout.new()
        dscale = np.empty(c, np.float32)
        ptrs = {L.ARG_SRC: xin.pointer(x, keep), ARG_MEAN: mean.ctypes.data, ARG_VARIANCE: var.ctypes.data,
                ARG_SCALE: scale.ctypes.data, L.ARG_DIFF_DST: dyin.pointer(dy, keep), L.ARG_DIFF_SRC: pdx,
                ARG_DIFF_SCALE: dscale.ctypes.data}
        if self.offset:
            doffset = np.empty(c, np.float32)
            ptrs[ARG_DIFF_SHIFT] = doffset.ctypes.data
        prim(ptrs)
        dx = dxout.finish(dx)
        return (dx, dscale, doffset) if self.offset else (dx, dscale)


# ---------------------------------------------------------------------------- softmax
def softmax_inner(shape, axis):
    """Whether ``axis`` is the innermost axis of ``shape`` that is not 1 (None dims unknown):
    the only case oneDNN 3.2 has an optimised softmax for; along an outer axis it runs its
    reference implementation, several times slower than numpy's."""
    return all(d == 1 for d in shape[axis + 1:])


class SoftmaxForward(_PerShape):
    """softmax along ``axis`` of a plain float32 array: one oneDNN primitive per shape, plain
    source and destination (no reorder on either side).

    NOTE: no log-softmax: oneDNN's (``softmax_log``) measured ten times less accurate than numpy's
    in float32 near log-probabilities of 0 (3.4e-6 absolute error on -0.0326, beyond the op tests'
    1e-6 + 1e-5 * |y|), where cross-entropies of confident predictions live."""

    def __init__(self, fallback, axis):
        super().__init__(fallback)
        self.axis = int(axis)

    def _make(self, shape):
        lib = L.library()
        axis = self.axis % len(shape)
        if not softmax_inner(shape, axis):
            raise ReferenceOnly("softmax along an outer axis")
        md = L.MemoryDesc.plain(shape)
        pd = ctypes.c_void_p()
        attr = L.Attr()
        lib.check("softmax forward", lib.softmax_forward_primitive_desc_create(
            ctypes.byref(pd), lib.engine, L.FORWARD_INFERENCE, L.SOFTMAX_ACCURATE, md.handle, md.handle, axis,
            attr.handle))
        try:
            fast = _optimised(pd)
        except L.DnnlError:
            lib.primitive_desc_destroy(pd)
            raise
        if not fast:
            lib.primitive_desc_destroy(pd)
            raise ReferenceOnly("softmax")
        return L.Primitive(pd, (L.ARG_SRC, L.ARG_DST), "softmax forward")

    def __call__(self, x):
        if x.__class__ is not np.ndarray or x.dtype != np.float32 or x.ndim == 0 or x.size == 0:
            return self.fallback(*_plain_args((x,)))
        shape = x.shape
        prim = self.built((shape,), lambda: self._make(shape))
        if prim is None:
            return self.fallback(x)
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        y = np.empty(shape, np.float32)
        prim({L.ARG_SRC: x.ctypes.data, L.ARG_DST: y.ctypes.data})
        return y
