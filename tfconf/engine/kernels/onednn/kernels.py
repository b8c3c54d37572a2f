"""oneDNN kernels for tfconf's NCHW ops: convolution (forward with bias and ReLU post-op, backward
data, backward weights), max and average pooling (forward, backward; max keeps oneDNN's workspace
from the forward for the backward).

Each kernel is made once per plan step (by the op's ``kernels["onednn"]`` hook) and builds its
primitives once per input shape, on the first run that meets the shape; a shape oneDNN refuses
(or that has no exact oneDNN equivalent, such as Caffe's clipped average in ceil mode with pads)
runs the numpy reference kernel instead, which the kernel holds as its fallback. Inputs may be
plain arrays or Blocked values; outputs are Blocked only where the layout stage allowed it.
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import lib as L
from .tensors import Blocked, Input, Output


class _PerShape:
    """A kernel that builds its primitives per input shape (a dict lookup per run)."""

    def __init__(self, fallback, blocked_out=False):
        self.fallback = fallback
        self.blocked_out = blocked_out
        self._by_shape = {}
        self.declined = None  # why the last shape oneDNN refused runs on the reference (plan_info)

    def built(self, key, make):
        b = self._by_shape.get(key, _MISSING)
        if b is _MISSING:
            try:
                b = make()
            except L.DnnlError as e:
                b = None  # oneDNN has no implementation for this case: the reference runs it
                self.declined = f"{e} for {key[0]}"
            else:
                if b is None:
                    self.declined = f"no oneDNN algorithm computes the same numbers for {key[0]}"
            self._by_shape[key] = b
        return b


_MISSING = object()


def _plain_args(args):
    from .tensors import to_plain

    return [to_plain(a) for a in args]


def _geometry_pads(pads):
    pt, pb, pl, pr = (int(p) for p in pads)
    return (pt, pl), (pb, pr)


def _wshape(ws, groups):
    o, cg, kh, kw = ws
    return (groups, o // groups, cg, kh, kw) if groups > 1 else tuple(ws)


def _conv_out(xs, ws, strides, pads, dilations):
    n, _, h, w = xs
    o, _, kh, kw = ws
    pt, pb, pl, pr = pads
    oh = (h + pt + pb - ((kh - 1) * dilations[0] + 1)) // strides[0] + 1
    ow = (w + pl + pr - ((kw - 1) * dilations[1] + 1)) // strides[1] + 1
    return (n, o, oh, ow)


def channels_last(xs, ws, groups):
    """Whether a convolution's activations should be NHWC rather than the layout oneDNN picks
    (channels in blocks of 16 on AVX-512): when blocking would pad the channels by more than 15%
    (LeNet's 20 -> 50 channels compute as 32 -> 64 blocked: 107 against 150 GFLOP/s in NHWC here).
    A rule of the shapes alone, never a timing, so every process makes the same choice and
    results stay bit-identical across runs and resumes."""
    c, o = xs[1] // groups, ws[0] // groups
    pad = (lambda n: -(-n // 16) * 16 / n)
    waste = (pad(c) if c >= 8 else 1.0) * pad(o)
    return waste > 1.15


def activation_md(shape, nhwc):
    if not nhwc:
        return L.MemoryDesc.any(shape)
    n, c, h, w = shape
    return L.MemoryDesc.plain(shape, (h * w * c, 1, w * c, c))


def _conv_mds(xs, ws, ys, groups):
    nhwc = channels_last(xs, ws, groups)
    return activation_md(xs, nhwc), L.MemoryDesc.any(_wshape(ws, groups)), activation_md(ys, nhwc)


def _conv_fwd_pd(xs, ws, ys, bias, strides, pads, dilations, groups, attr, prop=L.FORWARD_TRAINING):
    lib = L.library()
    src, wei, dst = _conv_mds(xs, ws, ys, groups)
    bia = L.MemoryDesc.plain((ws[0],)) if bias else None
    pl, pr = _geometry_pads(pads)
    pd = ctypes.c_void_p()
    lib.check("convolution forward", lib.convolution_forward_primitive_desc_create(
        ctypes.byref(pd), lib.engine, prop, L.CONVOLUTION_DIRECT, src.handle, wei.handle,
        bia.handle if bia is not None else None, dst.handle, L.dims(strides),
        L.dims([d - 1 for d in dilations]), L.dims(pl), L.dims(pr), attr.handle if attr is not None else None))
    return pd


class ConvForward(_PerShape):
    """y = conv(x, w) [+ b] [then ReLU], one oneDNN primitive (bias and ReLU fused into it)."""

    def __init__(self, fallback, strides, pads_of, dilations, groups, bias, relu, blocked_out=False):
        super().__init__(fallback, blocked_out)
        self.strides, self.pads_of, self.dilations, self.groups = strides, pads_of, dilations, groups
        self.bias, self.relu = bias, relu

    def _make(self, xs, ws, pads):
        ys = _conv_out(xs, ws, self.strides, pads, self.dilations)
        attr = L.Attr(relu=self.relu)
        pd = _conv_fwd_pd(xs, ws, ys, self.bias, self.strides, pads, self.dilations, self.groups, attr)
        args = (L.ARG_SRC, L.ARG_WEIGHTS, L.ARG_DST) + ((L.ARG_BIAS,) if self.bias else ())
        prim = L.Primitive(pd, args, "convolution forward")
        wshape = _wshape(ws, self.groups)
        return (prim, Input(prim.mds[L.ARG_SRC], xs), Input(prim.mds[L.ARG_WEIGHTS], wshape),
                Output(prim.mds[L.ARG_DST], ys, self.blocked_out), wshape)

    def __call__(self, x, w, b=None):
        xs, ws = tuple(x.shape), tuple(w.shape)
        pads = self.pads_of(xs[2:], ws[2:])
        b_ok = b is None or b.size == ws[0]
        built = self.built((xs, ws, pads), lambda: self._make(xs, ws, pads)) if b_ok else None
        if built is None:
            return self.fallback(*_plain_args((x, w) if b is None else (x, w, b)))
        prim, xin, win, yout, wshape = built
        keep = []
        if w.__class__ is np.ndarray and w.ndim == 4 and len(wshape) == 5:
            w = w.reshape(wshape)
        y, py = yout.new()
        ptrs = {L.ARG_SRC: xin.pointer(x, keep), L.ARG_WEIGHTS: win.pointer(w, keep), L.ARG_DST: py}
        if self.bias:
            bb = np.ascontiguousarray(b, dtype=np.float32).reshape(-1)
            keep.append(bb)
            ptrs[L.ARG_BIAS] = bb.ctypes.data
        prim(ptrs)
        return yout.finish(y)


def _conv_backward_pd(name, xs, ws, ys, pads, k, handles):
    """A backward convolution primitive descriptor (``name``: the oneDNN function without its
    ``dnnl_`` prefix and ``_primitive_desc_create`` suffix), hinted by the forward one; ``handles``
    turns the (src, weights, dst) descriptors into that function's descriptor arguments."""
    lib = L.library()
    hint = _conv_fwd_pd(xs, ws, ys, False, k.strides, pads, k.dilations, k.groups, None)
    try:
        pl, pr = _geometry_pads(pads)
        pd = ctypes.c_void_p()
        attr = L.Attr()
        create = getattr(lib, f"{name}_primitive_desc_create")
        mds = _conv_mds(xs, ws, ys, k.groups)  # NOTE: kept alive until the call returns
        lib.check(name.replace("_", " "), create(
            ctypes.byref(pd), lib.engine, L.CONVOLUTION_DIRECT, *handles(*mds),
            L.dims(k.strides), L.dims([d - 1 for d in k.dilations]), L.dims(pl), L.dims(pr), hint, attr.handle))
    finally:
        lib.primitive_desc_destroy(hint)
    return pd


class ConvBackwardData(_PerShape):
    """dx = conv2d's adjoint w.r.t. its input, for an input of spatial size ``hw``."""

    def __init__(self, fallback, strides, pads_of, dilations, groups, blocked_out=False):
        super().__init__(fallback, blocked_out)
        self.strides, self.pads_of, self.dilations, self.groups = strides, pads_of, dilations, groups

    def _make(self, xs, ws, ys, pads):
        pd = _conv_backward_pd("convolution_backward_data", xs, ws, ys, pads, self, lambda src, wei, dst: (
            src.handle, wei.handle, dst.handle))
        prim = L.Primitive(pd, (L.ARG_DIFF_SRC, L.ARG_WEIGHTS, L.ARG_DIFF_DST), "convolution backward data")
        wshape = _wshape(ws, self.groups)
        return (prim, Input(prim.mds[L.ARG_WEIGHTS], wshape), Input(prim.mds[L.ARG_DIFF_DST], ys),
                Output(prim.mds[L.ARG_DIFF_SRC], xs, self.blocked_out), wshape)

    def __call__(self, sizes, w, dy):
        xs = tuple(int(s) for s in sizes)
        ws, ys = tuple(w.shape), tuple(dy.shape)
        pads = self.pads_of(xs[2:], ws[2:])
        built = self.built((xs, ws, ys, pads), lambda: self._make(xs, ws, ys, pads))
        if built is None or _conv_out(xs, ws, self.strides, pads, self.dilations) != ys:
            return self.fallback(sizes, *_plain_args((w, dy)))
        prim, win, dyin, dxout, wshape = built
        keep = []
        if w.__class__ is np.ndarray and w.ndim == 4 and len(wshape) == 5:
            w = w.reshape(wshape)
        dx, pdx = dxout.new()
        prim({L.ARG_WEIGHTS: win.pointer(w, keep), L.ARG_DIFF_DST: dyin.pointer(dy, keep), L.ARG_DIFF_SRC: pdx})
        return dxout.finish(dx)


class ConvBackwardWeights(_PerShape):
    """dw = conv2d's adjoint w.r.t. its filter (a plain [O, C/groups, kh, kw] array); with
    ``bias_shape``, also the bias gradient (dy summed over N, H, W) from the same pass."""

    def __init__(self, fallback, filter_shape, strides, pads_of, dilations, groups, bias_shape=None):
        super().__init__(fallback)
        self.bias_shape = None if bias_shape is None else tuple(int(s) for s in bias_shape)
        self.ws = tuple(int(s) for s in filter_shape)
        self.strides, self.pads_of, self.dilations, self.groups = strides, pads_of, dilations, groups

    def _make(self, xs, ys, pads):
        ws = self.ws
        dbias = L.MemoryDesc.plain((ws[0],)) if self.bias_shape is not None else None
        pd = _conv_backward_pd("convolution_backward_weights", xs, ws, ys, pads, self, lambda src, wei, dst: (
            src.handle, wei.handle, dbias.handle if dbias is not None else None, dst.handle))
        args = (L.ARG_SRC, L.ARG_DIFF_WEIGHTS, L.ARG_DIFF_DST) + (() if self.bias_shape is None else (L.ARG_DIFF_BIAS,))
        prim = L.Primitive(pd, args, "convolution backward weights")
        return (prim, Input(prim.mds[L.ARG_SRC], xs), Input(prim.mds[L.ARG_DIFF_DST], ys),
                Output(prim.mds[L.ARG_DIFF_WEIGHTS], _wshape(ws, self.groups), False))

    def __call__(self, x, dy):
        xs, ys = tuple(x.shape), tuple(dy.shape)
        pads = self.pads_of(xs[2:], self.ws[2:])
        built = self.built((xs, ys, pads), lambda: self._make(xs, ys, pads))
        if built is None or _conv_out(xs, self.ws, self.strides, pads, self.dilations) != ys:
            return self.fallback(*_plain_args((x, dy)))
        prim, xin, dyin, dwout = built
        keep = []
        dw, pdw = dwout.new()
        ptrs = {L.ARG_SRC: xin.pointer(x, keep), L.ARG_DIFF_DST: dyin.pointer(dy, keep), L.ARG_DIFF_WEIGHTS: pdw}
        if self.bias_shape is None:
            prim(ptrs)
            return dwout.finish(dw).reshape(self.ws)
        db = np.empty(self.bias_shape, np.float32)
        ptrs[L.ARG_DIFF_BIAS] = db.ctypes.data
        prim(ptrs)
        return dwout.finish(dw).reshape(self.ws), db


# ---------------------------------------------------------------------------- pooling
def pool_geometry(xs, ksize, strides, pads, ceil_mode):
    """(output shape, oneDNN's right/bottom pads): oneDNN wants the pads that make its floor
    formula give tfconf's (Caffe's) output size, so in ceil mode the far pads grow."""
    from ..pool import pool_output_size

    n, c, h, w = xs
    pt, pb, pl, pr = pads
    oh = pool_output_size(h, ksize[0], strides[0], pt, pb, ceil_mode)
    ow = pool_output_size(w, ksize[1], strides[1], pl, pr, ceil_mode)
    rb = (oh - 1) * strides[0] + ksize[0] - h - pt
    rr = (ow - 1) * strides[1] + ksize[1] - w - pl
    return (n, c, oh, ow), (rb, rr)


def pool_algorithm(kind, pads, far, count_include_pad):
    """oneDNN's algorithm for tfconf's pooling, or None where none computes the same numbers.

    Max pooling pads with -inf everywhere: always exact. tfconf's average with
    ``count_include_pad`` divides by the window clipped to [-pad_before, in + pad_after): that is
    oneDNN's include-padding average while no window runs past the pads (``far`` within them),
    and its exclude-padding average when there are no pads at all."""
    if kind == "max":
        return L.POOLING_MAX
    if not count_include_pad:
        return L.POOLING_AVG_EXCLUDE_PADDING
    pt, pb, pl, pr = pads
    if far[0] <= pb and far[1] <= pr:
        return L.POOLING_AVG_INCLUDE_PADDING
    if not any(pads):
        return L.POOLING_AVG_EXCLUDE_PADDING
    return None


def _pool_fwd_pd(alg, xs, ys, ksize, strides, pads, far, prop, attr=None, src_md=None):
    lib = L.library()
    src = src_md if src_md is not None else L.MemoryDesc.any(xs)
    dst = L.MemoryDesc.any(ys)
    pd = ctypes.c_void_p()
    lib.check("pooling forward", lib.pooling_forward_primitive_desc_create(
        ctypes.byref(pd), lib.engine, prop, alg, src.handle, dst.handle, L.dims(strides), L.dims(ksize),
        L.dims((0, 0)), L.dims((pads[0], pads[2])), L.dims(far), attr.handle if attr is not None else None))
    return pd


class PoolForward(_PerShape):
    """Max or average pooling. Max pooling in a training plan keeps the last run's
    (output, workspace) so that its MaxPoolGrad skips a second forward."""

    def __init__(self, fallback, kind, ksize, strides, pads_of, ceil_mode, count_include_pad=True,
                 training=True, blocked_out=False):
        super().__init__(fallback, blocked_out)
        self.kind, self.ksize, self.strides, self.pads_of = kind, ksize, strides, pads_of
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.training = training and kind == "max"
        self.last = None  # (y, workspace, primitive) of the last run, for MaxPoolGrad
        self.src_md = self.src_shape = None  # the layout and shape of the last run's input

    def _make(self, xs, pads, src_md):
        ys, far = pool_geometry(xs, self.ksize, self.strides, pads, self.ceil_mode)
        alg = pool_algorithm(self.kind, pads, far, self.count_include_pad)
        if alg is None:
            return None
        prop = L.FORWARD_TRAINING if self.training else L.FORWARD_INFERENCE
        pd = _pool_fwd_pd(alg, xs, ys, self.ksize, self.strides, pads, far, prop, L.Attr(), src_md)
        args = (L.ARG_SRC, L.ARG_DST) + ((L.ARG_WORKSPACE,) if self.training else ())
        prim = L.Primitive(pd, args, "pooling forward")
        return prim, Input(prim.mds[L.ARG_SRC], xs), Output(prim.mds[L.ARG_DST], ys, self.blocked_out)

    def __call__(self, x):
        xs = tuple(x.shape)
        pads = tuple(self.pads_of(xs[2:]))
        # NOTE: pooling computes in its source's layout (oneDNN refuses `any` for it): a Blocked
        # input keeps its producer's layout (one descriptor object per producer), else plain
        md = x.md if isinstance(x, Blocked) else None
        built = self.built((xs, pads, id(md)), lambda: self._make(xs, pads, md or L.MemoryDesc.plain(xs)))
        if built is None:
            self.last = None
            return self.fallback(*_plain_args((x,)))
        prim, xin, yout = built
        self.src_md, self.src_shape = xin.md, xs
        keep = []
        y, py = yout.new()
        ptrs = {L.ARG_SRC: xin.pointer(x, keep), L.ARG_DST: py}
        ws = None
        if self.training:
            ws = L.empty_bytes(prim.mds[L.ARG_WORKSPACE].nbytes)
            ptrs[L.ARG_WORKSPACE] = ws.ctypes.data
        prim(ptrs)
        y = yout.finish(y)
        if ws is not None:
            self.last = (y, ws, prim)
        return y


class PoolBackward(_PerShape):
    """dx of max pooling (inputs x, y, dy) or average pooling (inputs sizes, dy)."""

    def __init__(self, fallback, kind, ksize, strides, pads_of, ceil_mode, count_include_pad=True,
                 forward=None, blocked_out=False):
        super().__init__(fallback, blocked_out)
        self.kind, self.ksize, self.strides, self.pads_of = kind, ksize, strides, pads_of
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.forward = forward  # the PoolForward kernel of the max pool whose gradient this is

    def _make(self, xs, ys_given, pads, src_md):
        ys, far = pool_geometry(xs, self.ksize, self.strides, pads, self.ceil_mode)
        if ys != ys_given:
            return None
        alg = pool_algorithm(self.kind, pads, far, self.count_include_pad)
        if alg is None:
            return None
        lib = L.library()
        hint = _pool_fwd_pd(alg, xs, ys, self.ksize, self.strides, pads, far, L.FORWARD_TRAINING, None, src_md)
        try:
            pd = ctypes.c_void_p()
            attr = L.Attr()
            ddst = L.MemoryDesc.any(ys)
            lib.check("pooling backward", lib.pooling_backward_primitive_desc_create(
                ctypes.byref(pd), lib.engine, alg, src_md.handle, ddst.handle, L.dims(self.strides),
                L.dims(self.ksize), L.dims((0, 0)), L.dims((pads[0], pads[2])), L.dims(far), hint, attr.handle))
        finally:
            lib.primitive_desc_destroy(hint)
        max_pool = self.kind == "max"
        args = (L.ARG_DIFF_SRC, L.ARG_DIFF_DST) + ((L.ARG_WORKSPACE,) if max_pool else ())
        prim = L.Primitive(pd, args, "pooling backward")
        own_fwd = None
        if max_pool:  # a forward of its own for when the max pool's kept workspace is not this run's
            fpd = _pool_fwd_pd(alg, xs, ys, self.ksize, self.strides, pads, far, L.FORWARD_TRAINING, L.Attr(),
                               src_md)
            own_fwd = L.Primitive(fpd, (L.ARG_SRC, L.ARG_DST, L.ARG_WORKSPACE), "pooling forward")
            own_fwd = (own_fwd, Input(own_fwd.mds[L.ARG_SRC], xs), L.empty_bytes(own_fwd.mds[L.ARG_DST].nbytes),
                       L.empty_bytes(own_fwd.mds[L.ARG_WORKSPACE].nbytes))
        return (prim, Input(prim.mds[L.ARG_DIFF_DST], ys), Output(prim.mds[L.ARG_DIFF_SRC], xs, self.blocked_out),
                own_fwd, src_md)

    def _workspace(self, built, x, y, keep):
        prim = built[0]
        fwd = self.forward
        last = fwd.last if fwd is not None else None
        if last is not None and last[0] is y and last[2].mds[L.ARG_WORKSPACE] == prim.mds[L.ARG_WORKSPACE]:
            return last[1].ctypes.data
        own, xin, ybuf, ws = built[3]
        own({L.ARG_SRC: xin.pointer(x, keep), L.ARG_DST: ybuf.ctypes.data, L.ARG_WORKSPACE: ws.ctypes.data})
        return ws.ctypes.data

    def __call__(self, *args):
        if self.kind == "max":
            x, y, dy = args
            xs = tuple(x.shape)
        else:
            sizes, dy = args
            xs = tuple(int(s) for s in sizes)
        pads = tuple(self.pads_of(xs[2:]))
        ys = tuple(dy.shape)
        # dx in the layout the forward pooled in (that of its input x, which the forward kernel
        # saw last), so that a max pool's workspace matches
        fwd = self.forward
        md = fwd.src_md if fwd is not None and fwd.src_md is not None and fwd.src_shape == xs else None
        built = self.built((xs, ys, pads, id(md)),
                           lambda: self._make(xs, ys, pads, md or L.MemoryDesc.plain(xs)))
        if built is None:
            if self.kind == "max":
                return self.fallback(*_plain_args(args))
            return self.fallback(args[0], *_plain_args(args[1:]))
        prim, dyin, dxout = built[:3]
        keep = []
        dx, pdx = dxout.new()
        ptrs = {L.ARG_DIFF_DST: dyin.pointer(dy, keep), L.ARG_DIFF_SRC: pdx}
        if self.kind == "max":
            ptrs[L.ARG_WORKSPACE] = self._workspace(built, x, y, keep)
        prim(ptrs)
        return dxout.finish(dx)


# ---------------------------------------------------------------------------- ReLU, bias gradient
def _layout_of(v):
    """The descriptor a value is in (its Blocked descriptor, else plain), and a cache key."""
    if isinstance(v, Blocked):
        return v.md, id(v.md)
    return None, None


def _eltwise_fwd_pd(md, prop=L.FORWARD_TRAINING):
    lib = L.library()
    pd = ctypes.c_void_p()
    attr = L.Attr()
    lib.check("eltwise forward", lib.eltwise_forward_primitive_desc_create(
        ctypes.byref(pd), lib.engine, prop, L.ELTWISE_RELU_USE_DST_FOR_BWD, md.handle, md.handle, 0.0, 0.0,
        attr.handle))
    return pd


class ReluForward(_PerShape):
    """y = max(x, 0) in the layout x comes in (oneDNN eltwise)."""

    def _make(self, shape, md):
        prim = L.Primitive(_eltwise_fwd_pd(md), (L.ARG_SRC, L.ARG_DST), "eltwise forward")
        return prim, Input(prim.mds[L.ARG_SRC], shape), Output(prim.mds[L.ARG_DST], shape, self.blocked_out)

    def __call__(self, x):
        if not isinstance(x, Blocked) and (x.__class__ is not np.ndarray or x.dtype != np.float32):
            return self.fallback(x)
        shape = tuple(x.shape)
        md, key = _layout_of(x)
        built = self.built((shape, key), lambda: self._make(shape, md or L.MemoryDesc.plain(shape)))
        if built is None:
            return self.fallback(*_plain_args((x,)))
        prim, xin, yout = built
        keep = []
        y, py = yout.new()
        prim({L.ARG_SRC: xin.pointer(x, keep), L.ARG_DST: py})
        return yout.finish(y)


class ReluBackward(_PerShape):
    """dx = dy * [y > 0] in the layout y comes in (oneDNN eltwise backward from dst)."""

    def _make(self, shape, md):
        lib = L.library()
        hint = _eltwise_fwd_pd(md)
        try:
            pd = ctypes.c_void_p()
            attr = L.Attr()
            lib.check("eltwise backward", lib.eltwise_backward_primitive_desc_create(
                ctypes.byref(pd), lib.engine, L.ELTWISE_RELU_USE_DST_FOR_BWD, md.handle, md.handle, md.handle,
                0.0, 0.0, hint, attr.handle))
        finally:
            lib.primitive_desc_destroy(hint)
        prim = L.Primitive(pd, (L.ARG_DST, L.ARG_DIFF_DST, L.ARG_DIFF_SRC), "eltwise backward")
        return (prim, Input(prim.mds[L.ARG_DST], shape), Input(prim.mds[L.ARG_DIFF_DST], shape),
                Output(prim.mds[L.ARG_DIFF_SRC], shape, self.blocked_out))

    def __call__(self, dy, y):
        shape = tuple(y.shape)
        if tuple(dy.shape) != shape:
            return self.fallback(*_plain_args((dy, y)))
        md, key = _layout_of(y)
        built = self.built((shape, key), lambda: self._make(shape, md or L.MemoryDesc.plain(shape)))
        if built is None:
            return self.fallback(*_plain_args((dy, y)))
        prim, yin, dyin, dxout = built
        keep = []
        dx, pdx = dxout.new()
        prim({L.ARG_DST: yin.pointer(y, keep), L.ARG_DIFF_DST: dyin.pointer(dy, keep), L.ARG_DIFF_SRC: pdx})
        return dxout.finish(dx)


def channel_sum(fallback):
    """The bias gradient (g [N, C, H, W] summed over N, H, W) of a value in any layout: a
    Blocked g is reordered to plain and summed by numpy. oneDNN's reduction primitive would keep
    the layout but measured 60x slower than numpy here (8.5 against 0.14 ms for LeNet's conv1
    gradient: a reference implementation); accepting blocked values lets the convolution
    gradients that share g read it in their own layout."""
    from .tensors import to_plain

    return lambda g, shape: fallback(to_plain(g), shape)
