"""LSTMLayer and its gradient on oneDNN's LSTM primitive: a whole layer (input projection and
recurrence) in one call each way, where the reference runs a projection and then T steps of numpy.

tfconf's weights are Caffe's: ``w_x`` [4H, C] and ``w_h`` [4H, H] in gate order (i, f, o, g),
``b`` [4H]; oneDNN's are ldigo [1, 1, K, 4, H] in order (i, f, g, o), bias [4, H]. Each run copies
whole gate blocks into oneDNN's order ([4, H, K], once for both directions of the run: the
gradient reuses the forward's copy) and a reorder reads that through strides into the primitive's
layout; the weight gradients come back the same way. oneDNN has no per-step reset of the state, so a batch whose
cont mask resets a stream after the first step runs the reference kernel (a reset at the first
step scales the initial state, which oneDNN takes as given) (the forward's output
then says so, and its gradient follows). The forward keeps the primitive's workspace as the
op's ``saved`` output (uint8); the gradient runs the backward primitive on it.
"""

from __future__ import annotations

import ctypes
import sys
import threading

import numpy as np

from . import lib as L

#: oneDNN gate k is tfconf's gate _PERM[k] ((i, f, o, g) -> (i, f, g, o))
_PERM = (0, 1, 3, 2)
LEFT2RIGHT = 1  # dnnl_unidirectional_left2right
A_SRC_LAYER, A_SRC_ITER, A_SRC_ITER_C = 1, 2, 3
A_DST_LAYER, A_DST_ITER, A_DST_ITER_C = 17, 18, 19
A_W_LAYER, A_W_ITER, A_BIAS, A_WS = 33, 34, 41, 64
DIFF = 128

_vp = ctypes.c_void_p
_bound = set()


def _fn(name, nmds):
    lib = L.library()
    f = getattr(lib.dll, name)
    if name not in _bound:
        tail = [_vp] if "_forward_" in name else [_vp, _vp]  # (hint,) attr
        f.argtypes = [ctypes.POINTER(_vp), _vp, ctypes.c_int, ctypes.c_int] + [_vp] * nmds + [ctypes.c_uint] + tail
        f.restype = ctypes.c_int
        _bound.add(name)
    return f


def _gates_onednn(w, H):
    """[4H, K] in tfconf's gate order -> [4, H, K] in oneDNN's (a contiguous copy of whole gate
    blocks; the transposition into oneDNN's layout is left to a reorder reading it by strides)."""
    return w.reshape(4, H, w.shape[1])[list(_PERM)]


def _gates_tfconf(w4):
    """[4, H, K] in oneDNN's gate order -> [4H, K] in tfconf's."""
    out = np.empty_like(w4)
    out[list(_PERM)] = w4
    return out.reshape(-1, w4.shape[2])


def _no_resets(mask):
    """True when no stream resets after the first step (cont 1 from t = 1 on); the first step's
    mask multiplies the initial state (as in the reference), which oneDNN takes as given."""
    return mask.dtype == np.float32 and bool((mask[1:] == 1).all())


class _Shapes:
    """Descriptors of one (T, N, C, H) for a cell of G gates (and B bias rows)."""

    def __init__(self, T, N, C, H, G=4, B=4):
        P = L.MemoryDesc.plain
        self.src, self.dst = P((T, N, C)), P((T, N, H))
        self.it = P((1, 1, N, H))
        self.w_layer, self.w_iter = L.MemoryDesc.any((1, 1, C, G, H)), L.MemoryDesc.any((1, 1, H, G, H))
        # ldigo read from a [G, H, K] array (gate, output, input): what _gates_onednn makes
        self.w_layer_ours = P((1, 1, C, G, H), (G * H * C, G * H * C, 1, H * C, C))
        self.w_iter_ours = P((1, 1, H, G, H), (G * H * H, G * H * H, 1, H * H, H))
        self.bias = P((1, 1, B, H))


def _forward_pd(s, prop):
    lib = L.library()
    pd = _vp()
    attr = L.Attr()
    f = _fn("dnnl_lstm_forward_primitive_desc_create", 11)
    lib.check("lstm_forward_primitive_desc_create",
              f(ctypes.byref(pd), lib.engine, prop, LEFT2RIGHT, s.src.handle, s.it.handle, s.it.handle,
                s.w_layer.handle, s.w_iter.handle, None, None, s.bias.handle, s.dst.handle, s.it.handle,
                s.it.handle, 0, attr.handle))
    return pd


def _weights_into(prim, arg, ours_md):
    """A reorder from our [4, H, K] weights into the layout ``prim`` chose for ``arg`` (None: the
    same) and the buffer it writes (kept: a plan's provider kernels run one at a time,
    kernel_choice.KernelPlan.make)."""
    md = prim.mds[arg]
    if md == ours_md:
        return None, None
    return L.reorder(ours_md, md), L.empty_bytes(md.nbytes)


def _into_primitive(w4, conversion):
    """The pointer the primitive reads ``w4`` ([4, H, K]) from, after the reorder if it needs one."""
    re, buf = conversion
    if re is None:
        return w4.ctypes.data
    re({L.ARG_SRC: w4.ctypes.data, L.ARG_DST: buf.ctypes.data})
    return buf.ctypes.data


def _diff_weights_out(prim, s):
    """For a backward primitive: (reorder, its buffer) from the layout it writes each weight
    gradient in back to our [G, H, K] (None where that is already the layout)."""
    outs = []
    for arg, ours in ((A_W_LAYER + DIFF, s.w_layer_ours), (A_W_ITER + DIFF, s.w_iter_ours)):
        md = prim.mds[arg]
        outs.append(None if md == ours else (L.reorder(md, ours), L.empty_bytes(md.nbytes)))
    return tuple(outs)


def _diff_weight_buffers(outs, G, H, C):
    """Zeroed buffers the backward accumulates the two weight gradients into (kept ones where a
    reorder follows: a plan's provider kernels run one at a time)."""
    bufs = []
    for out, k in zip(outs, (C, H)):
        b = out[1] if out is not None else np.zeros((G, H, k), np.float32)
        b.fill(0)
        bufs.append(b)
    return bufs


def _diff_weights_ours(outs, bufs, G, H, C):
    """The two weight gradients as [G, H, K] arrays in oneDNN's gate order."""
    res = []
    for out, b, k in zip(outs, bufs, (C, H)):
        if out is not None:
            ours = np.empty((G, H, k), np.float32)
            out[0]({L.ARG_SRC: b.ctypes.data, L.ARG_DST: ours.ctypes.data})
            b = ours
        res.append(b.reshape(G, H, k))
    return res


def _forward_copies(forward, w_x, w_h, gates, H):
    """The forward's [G, H, K] weight copies when this run's forward made them from these very
    arrays, else fresh ones."""
    last = forward.last if forward is not None else None
    if last is not None and last[0] == id(w_x) and last[1] == id(w_h):
        return last[2], last[3]
    return gates(w_x, H), gates(w_h, H)


def _built_for(cache, key, build):
    """``cache[key]``, built by ``build()`` on the first run that meets the shape (None from then
    on where oneDNN refuses it: the reference runs that shape)."""
    built = cache.get(key, False)
    if built is False:
        try:
            built = build()
        except L.DnnlError:
            built = None
        cache[key] = built
    return built


_reuse_lock = threading.Lock()


def _reuse(holder, i, nbytes):
    """``holder[i]`` (a buffer and its owner's reference count when new) again when nothing else
    holds the buffer or a view of it (the last run's gradient is done with it: its slot was
    freed), else a new buffer there. Under a lock: two runs must not both take it."""
    with _reuse_lock:
        kept = holder[i]
        if kept is not None:
            buf, base_refs = kept
            # references: the tuple's, this local and getrefcount's own; views count on the owner
            if buf.nbytes == nbytes and sys.getrefcount(buf) <= 3 and sys.getrefcount(buf.base) <= base_refs:
                return buf
        buf = L.empty_bytes(nbytes)
        holder[i] = (buf, sys.getrefcount(buf.base))
        return buf


# ---------------------------------------------------------------------------- GRU
#: oneDNN's linear-before-reset GRU gate k is tfconf's gate _GPERM[k] ((r, z, n) -> (u = z, r, o = n))
_GPERM = (1, 0, 2)


def _gru_gates(w, H):
    """[3H, K] in tfconf's gate order -> [3, H, K] in oneDNN's (whole gate blocks copied)."""
    return w.reshape(3, H, w.shape[1])[list(_GPERM)]


def _gru_gates_tfconf(w3):
    out = np.empty_like(w3)
    out[list(_GPERM)] = w3
    return out.reshape(-1, w3.shape[2])


def _gru_bias(b_x, b_h, H):
    """oneDNN's [4, H] bias: (b_x + b_h) for u = z and r, b_x for o = n, then b_h of n."""
    bx, bh = b_x.reshape(3, H), b_h.reshape(3, H)
    return np.ascontiguousarray(np.stack([bx[1] + bh[1], bx[0] + bh[0], bx[2], bh[2]]), dtype=np.float32)


def _gru_forward_pd(s, prop):
    lib = L.library()
    pd = _vp()
    attr = L.Attr()
    f = _fn("dnnl_lbr_gru_forward_primitive_desc_create", 7)
    lib.check("lbr_gru_forward_primitive_desc_create",
              f(ctypes.byref(pd), lib.engine, prop, LEFT2RIGHT, s.src.handle, s.it.handle, s.w_layer.handle,
                s.w_iter.handle, s.bias.handle, s.dst.handle, s.it.handle, 0, attr.handle))
    return pd





# ---------------------------------------------------------------------------- the two cells
def _backward_pd(name, nmds, s, hint, descs):
    """A backward primitive descriptor of cell ``name`` from the forward's ``hint``; ``descs``
    are the forward descriptors, given twice (values, then their gradients)."""
    lib = L.library()
    try:
        pd = _vp()
        attr = L.Attr()
        f = _fn(f"dnnl_{name}_backward_primitive_desc_create", nmds)
        lib.check(f"{name}_backward_primitive_desc_create",
                  f(ctypes.byref(pd), lib.engine, L.BACKWARD, LEFT2RIGHT, *descs, *descs, 0, hint, attr.handle))
    finally:
        lib.primitive_desc_destroy(hint)
    return pd


class _LSTM:
    """LSTMLayer: inputs (x, w_x, b, w_h, mask, h0, c0), states h and c, one bias."""

    name, G, B = "lstm", 4, 4
    state_args = ((A_SRC_ITER, A_DST_ITER), (A_SRC_ITER_C, A_DST_ITER_C))
    gates = staticmethod(_gates_onednn)
    gates_tfconf = staticmethod(_gates_tfconf)

    @staticmethod
    def unpack(x, w_x, b, w_h, mask, h0, c0):
        return x, w_x, w_h, mask, (h0, c0), (b,)

    @staticmethod
    def bias(biases, H):
        return np.ascontiguousarray(biases[0].reshape(4, H)[list(_PERM)], dtype=np.float32)

    forward_pd = staticmethod(_forward_pd)

    @staticmethod
    def backward_pd(s):
        return _backward_pd("lstm", 22, s, _forward_pd(s, L.FORWARD_TRAINING),
                            (s.src.handle, s.it.handle, s.it.handle, s.w_layer.handle, s.w_iter.handle, None,
                             None, s.bias.handle, s.dst.handle, s.it.handle, s.it.handle))

    @staticmethod
    def gradients(dx, dw_x, dw_h, db, dstates, H):
        db_out = np.empty((4, H), np.float32)
        db_out[list(_PERM)] = db
        return (dx, dw_x, db_out.reshape(4 * H), dw_h, *dstates)


class _GRU:
    """GRULayer (linear-before-reset): inputs (x, w_x, b_x, w_h, b_h, mask, h0), state h, the two
    biases in oneDNN's four rows."""

    name, G, B = "lbr_gru", 3, 4
    state_args = ((A_SRC_ITER, A_DST_ITER),)
    gates = staticmethod(_gru_gates)
    gates_tfconf = staticmethod(_gru_gates_tfconf)

    @staticmethod
    def unpack(x, w_x, b_x, w_h, b_h, mask, h0):
        return x, w_x, w_h, mask, (h0,), (b_x, b_h)

    @staticmethod
    def bias(biases, H):
        return _gru_bias(*biases, H)

    forward_pd = staticmethod(_gru_forward_pd)

    @staticmethod
    def backward_pd(s):
        return _backward_pd("lbr_gru", 14, s, _gru_forward_pd(s, L.FORWARD_TRAINING),
                            (s.src.handle, s.it.handle, s.w_layer.handle, s.w_iter.handle, s.bias.handle,
                             s.dst.handle, s.it.handle))

    @staticmethod
    def gradients(dx, dw_x, dw_h, db, dstates, H):
        db_x = np.stack([db[1], db[0], db[2]]).reshape(3 * H)
        db_h = np.stack([db[1], db[0], db[3]]).reshape(3 * H)
        return (dx, dw_x, db_x, dw_h, db_h, *dstates)


def _forward_args(cell):
    return [A_SRC_LAYER, *(a for a, _ in cell.state_args), A_W_LAYER, A_W_ITER, A_BIAS, A_DST_LAYER,
            *(a for _, a in cell.state_args)]


# ---------------------------------------------------------------------------- the kernels
class _LayerForward:
    """A recurrent layer's forward on its oneDNN primitive (training when the plan has its
    gradient, else inference). A batch whose cont mask resets a stream after the first step, or
    a shape oneDNN refuses, runs the reference. Returns (hs, each state's last value, workspace)."""

    cell = None

    def __init__(self, reference, training):
        self.reference, self.training = reference, training
        self.built = {}
        #: (id(w_x), id(w_h), their [G, H, K] copies) of this run's forward: its gradient reads the
        #: same arrays (a parameter update runs after the gradient, so they are unchanged in
        #: between). Ids, not the arrays: a reference here would stop the update working in place.
        self.last = None

    def _build(self, T, N, C, H):
        cell = self.cell
        s = _Shapes(T, N, C, H, G=cell.G, B=cell.B)
        prop = L.FORWARD_TRAINING if self.training else L.FORWARD_INFERENCE
        prim = L.Primitive(cell.forward_pd(s, prop), _forward_args(cell) + ([A_WS] if self.training else []),
                           f"{cell.name} forward")
        return s, prim, _weights_into(prim, A_W_LAYER, s.w_layer_ours), _weights_into(prim, A_W_ITER, s.w_iter_ours)

    def __call__(self, *args):
        cell = self.cell
        x, w_x, w_h, mask, states, biases = cell.unpack(*args)
        T, N, C = x.shape
        H = w_h.shape[1]
        self.last = None
        if (x.dtype != np.float32 or N == 0 or T == 0 or not _no_resets(mask)
                or any(st.shape != (N, H) for st in states)):
            return self.reference(*args)
        key = (T, N, C, H)
        built = _built_for(self.built, key, lambda: [*self._build(T, N, C, H), None])
        if built is None:
            return self.reference(*args)
        _, prim, conv_l, conv_i = built[:4]
        wl, wi = cell.gates(w_x, H), cell.gates(w_h, H)
        self.last = (id(w_x), id(w_h), wl, wi)
        bias = cell.bias(biases, H)  # (bound to a name: the primitive reads it after this line)
        x = np.ascontiguousarray(x, dtype=np.float32)
        initial = [np.ascontiguousarray(st * mask[0], np.float32) for st in states]
        hs = L.output_array((T, N, H))
        lasts = [np.empty((N, H), np.float32) for _ in states]
        ptrs = {A_SRC_LAYER: x.ctypes.data, A_W_LAYER: _into_primitive(wl, conv_l),
                A_W_ITER: _into_primitive(wi, conv_i), A_BIAS: bias.ctypes.data, A_DST_LAYER: hs.ctypes.data}
        for (src, dst), v0, v1 in zip(cell.state_args, initial, lasts):
            ptrs[src], ptrs[dst] = v0.ctypes.data, v1.ctypes.data
        if self.training:
            ws = _reuse(built, 4, prim.mds[A_WS].nbytes)
            ptrs[A_WS] = ws.ctypes.data
        else:
            ws = np.empty(0, np.uint8)
        prim(ptrs)
        return (hs, *lasts, ws)


class _LayerBackward:
    """A recurrent layer's gradient on the backward primitive, from the forward's workspace:
    arguments (the 7 inputs, hs, each state's last value, the workspace, the present gradients)."""

    cell = None

    def __init__(self, reference, present, forward=None):
        self.reference = reference
        self.present = present      # which of (dhs, each state's last) reach this gradient
        self.forward = forward      # the plan's forward kernel, whose weight copies it reuses
        self.built = {}

    def _build(self, T, N, C, H):
        cell = self.cell
        s = _Shapes(T, N, C, H, G=cell.G, B=cell.B)
        fwd = _forward_args(cell)
        prim = L.Primitive(cell.backward_pd(s), fwd + [A_WS] + [a + DIFF for a in fwd], f"{cell.name} backward")
        return (s, prim, _weights_into(prim, A_W_LAYER, s.w_layer_ours),
                _weights_into(prim, A_W_ITER, s.w_iter_ours), _diff_weights_out(prim, s))

    def __call__(self, *args):
        cell = self.cell
        n = len(cell.state_args)
        x, w_x, w_h, mask, states, biases = cell.unpack(*args[:7])
        hs, lasts, saved, grads = args[7], args[8:8 + n], args[8 + n], list(args[9 + n:])
        T, N, C = x.shape
        H = w_h.shape[1]
        if saved.dtype != np.uint8 or saved.size == 0 or not _no_resets(mask):  # the reference's forward
            return self.reference(*args)
        key = (T, N, C, H)
        built = _built_for(self.built, key, lambda: self._build(T, N, C, H))
        if built is None:  # pragma: no cover
            return self.reference(*args)
        _, prim, conv_l, conv_i, outs = built
        if saved.nbytes != prim.mds[A_WS].nbytes:  # pragma: no cover - the forward's, for this shape
            raise ValueError(f"{cell.name} gradient: the workspace is not the forward primitive's for these shapes")
        g = [grads.pop(0) if p else None for p in self.present]
        shapes = [(T, N, H)] + [(N, H)] * n
        dys = [np.ascontiguousarray(v, np.float32) if v is not None else np.zeros(shp, np.float32)
               for v, shp in zip(g, shapes)]
        wl, wi = _forward_copies(self.forward, w_x, w_h, cell.gates, H)
        bias = cell.bias(biases, H)
        x = np.ascontiguousarray(x, np.float32)
        m0 = mask[0]
        initial = [np.ascontiguousarray(st * m0, np.float32) for st in states]
        hs = np.ascontiguousarray(hs, np.float32)
        lasts = [np.ascontiguousarray(v, np.float32) for v in lasts]
        dx = L.output_array((T, N, C))
        dstates = [np.empty((N, H), np.float32) for _ in states]
        # the diff weights and bias are accumulated into: they start at zero (kept buffers: a
        # plan's provider kernels run one at a time)
        dwl, dwi = _diff_weight_buffers(outs, cell.G, H, C)
        db = np.zeros((cell.B, H), np.float32)
        ptrs = {A_SRC_LAYER: x.ctypes.data, A_W_LAYER: _into_primitive(wl, conv_l),
                A_W_ITER: _into_primitive(wi, conv_i), A_BIAS: bias.ctypes.data, A_DST_LAYER: hs.ctypes.data,
                A_WS: saved.ctypes.data, A_SRC_LAYER + DIFF: dx.ctypes.data, A_W_LAYER + DIFF: dwl.ctypes.data,
                A_W_ITER + DIFF: dwi.ctypes.data, A_BIAS + DIFF: db.ctypes.data,
                A_DST_LAYER + DIFF: dys[0].ctypes.data}
        for (src, dst), v0, v1, d0, d1 in zip(cell.state_args, initial, lasts, dstates, dys[1:]):
            ptrs[src], ptrs[dst] = v0.ctypes.data, v1.ctypes.data
            ptrs[src + DIFF], ptrs[dst + DIFF] = d0.ctypes.data, d1.ctypes.data
        prim(ptrs)
        dwl, dwi = _diff_weights_ours(outs, (dwl, dwi), cell.G, H, C)  # our [G, H, K], oneDNN's gate order
        for d in dstates:
            d *= m0  # the first step read each initial state times mask[0]
        return cell.gradients(dx, cell.gates_tfconf(dwl.reshape(cell.G, H, C)),
                              cell.gates_tfconf(dwi.reshape(cell.G, H, H)), db, dstates, H)


class LSTMLayerForward(_LayerForward):
    """LSTMLayer's forward (LSTM primitive)."""

    cell = _LSTM


class LSTMLayerBackward(_LayerBackward):
    """LSTMLayerGrad on the LSTM backward primitive."""

    cell = _LSTM

    def __init__(self, reference, dhs, dh_last, dc_last, forward=None):
        super().__init__(reference, (dhs, dh_last, dc_last), forward)


class GRULayerForward(_LayerForward):
    """GRULayer's forward (linear-before-reset GRU primitive)."""

    cell = _GRU


class GRULayerBackward(_LayerBackward):
    """GRULayerGrad on the GRU backward primitive."""

    cell = _GRU

    def __init__(self, reference, dhs, dh_last, forward=None):
        super().__init__(reference, (dhs, dh_last), forward)
