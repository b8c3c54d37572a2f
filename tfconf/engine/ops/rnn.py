"""Ops for recurrent nets.

``CarriedState`` is how a recurrent layer reads the state it carries between ``Session.run`` calls
(truncated back-propagation through time): the state stored by the previous batch continues the
streams of this batch only if it has one row per stream; a state of another batch size (the zeros a
state Variable starts as, or the streams of another phase or batch size) cannot belong to them, so it
reads as zeros of this batch's size.
"""

from __future__ import annotations

from .. import shapes as S
from ..kernels.providers import onednn
from ..registry import OpDef, register
from .core import apply_op, convert_to_tensor, graph_of, zeros_like


@register
class CarriedState(OpDef):
    """y = state if rows(state) == rows(like) else zeros([rows(like), *state.shape[1:]]).

    Gradients: d state = CarriedState(dy, state) (dy where the rows matched, else zeros: y did not
    depend on state); d like = 0 (only its number of rows is read)."""

    def infer(op):
        state, like = op.inputs
        ss, ls = state._shape, like._shape
        if ss is None or ls is None or not ls:
            return [(None, state.dtype)]
        if len(ss) < 1:
            raise ValueError(f"the state must have rank >= 1. Received: {S.fmt(ss)}")
        return [((ls[0],) + tuple(ss[1:]), state.dtype)]  # always one row per row of like

    def forward(xp, state, like):
        if state.shape[0] == like.shape[0]:
            return state
        return xp.zeros((like.shape[0],) + tuple(state.shape[1:]), dtype=state.dtype)

    def grad(op, dy):
        state, like = op.inputs
        return [carried_state(dy, state), zeros_like(like)]


def carried_state(state, like, name=None):
    """``state`` if it has as many rows as ``like`` (one per stream), else zeros of that many rows."""
    state = convert_to_tensor(state)
    like = convert_to_tensor(like, graph=graph_of(state))
    return apply_op("CarriedState", [state, like], None, name or "CarriedState")


# ----------------------------------------------------------------------------- the fused LSTM cell
def _lstm_shapes(op):
    pre = op.inputs[0]
    ps = pre._shape
    if ps is not None and (len(ps) != 2 or (ps[1] is not None and ps[1] % 4)):
        raise ValueError(f"the gate pre-activations must have shape [N, 4·H]. Received: {S.fmt(ps)}")
    n = ps[0] if ps is not None else None
    h = ps[1] // 4 if ps is not None and ps[1] is not None else None
    return n, h


@register
class LSTMCell(OpDef):
    """One LSTM step from its gate pre-activations (Caffe's gate order i, f, o, g), fused:

        i, f, o = sigmoid(pre[:, :3H]);  g = tanh(pre[:, 3H:])
        c = f·c_prev + i·g  (c = i·g without c_prev);  h = o·tanh(c)

    Inputs ``pre`` [N, 4H] and optionally ``c_prev`` [N, H]; outputs ``h``, ``c`` and ``acts``
    [N, 5H] (i, f, o, g, tanh(c): what the gradient reads, as TensorFlow's LSTMBlockCell keeps
    them). One op instead of about ten per step, in fewer passes over memory."""

    grad_accepts_none = True  # dh or dc may be absent (the last step's c, a sequence's end)

    def infer(op):
        n, h = _lstm_shapes(op)
        dt = op.inputs[0].dtype
        if len(op.inputs) > 1:
            cs = op.inputs[1]._shape
            if cs is not None and h is not None and (len(cs) != 2 or cs[1] not in (None, h)):
                raise ValueError(f"c_prev must have shape [N, {h}]. Received: {S.fmt(cs)}")
        return [((n, h), dt), ((n, h), dt), ((n, None if h is None else 5 * h), dt)]

    def forward(xp, pre, c_prev=None):
        n, h4 = pre.shape
        h = h4 // 4
        acts = xp.empty((n, 5 * h), dtype=pre.dtype)
        c = xp.empty((n, h), dtype=pre.dtype)
        out = xp.empty((n, h), dtype=pre.dtype)
        _cell_forward(xp, pre, c_prev, acts, c, out)
        return out, c, acts

    def grad(op, dh, dc, dacts=None):
        if dacts is not None:
            raise ValueError("LSTMCell's acts output is internal to its gradient; it cannot be differentiated")
        ins = list(op.inputs[1:2]) + [op.outputs[2]]
        ins += [dh if dh is not None else zeros_like(op.outputs[0])]
        ins += [dc] if dc is not None else []
        g = graph_of(op.outputs[0]).create_op(
            "LSTMCellGrad", ins, {"has_prev": len(op.inputs) > 1, "has_dc": dc is not None},
            "LSTMCellGrad")
        return [g.outputs[0]] + ([g.outputs[1]] if len(op.inputs) > 1 else [])


@register
class LSTMCellGrad(OpDef):
    """The gradient of :class:`LSTMCell`: inputs [c_prev?], acts, dh, [dc?]; outputs d_pre
    [N, 4H] and (with c_prev) dc_prev [N, H]."""

    nondifferentiable = True

    def infer(op):
        acts = op.inputs[1 if op.attrs["has_prev"] else 0]
        n = acts._shape[0] if acts._shape is not None else None
        h = acts._shape[1] // 5 if acts._shape is not None and acts._shape[1] is not None else None
        out = [((n, None if h is None else 4 * h), acts.dtype)]
        if op.attrs["has_prev"]:
            out.append(((n, h), acts.dtype))
        return out

    def forward(xp, *args, has_prev, has_dc):
        args = list(args)
        c_prev = args.pop(0) if has_prev else None
        acts, dh = args[0], args[1]
        dc = args[2] if has_dc else None
        n, h5 = acts.shape
        d = xp.empty((n, 4 * (h5 // 5)), dtype=acts.dtype)
        dc_prev = _cell_backward(xp, acts, c_prev, dh, dc, d)
        if c_prev is None:
            return d  # a single-output op returns its array, not a 1-tuple
        return d, dc_prev


def _cell_forward(xp, pre, c_prev, acts, c, h_out):
    """One LSTM step into preallocated arrays: ``acts`` [N, 5H] gets i, f, o, g, tanh(c)."""
    h = pre.shape[1] // 4
    # sigmoid(x) = 0.5·tanh(x/2) + 0.5 (Caffe's form: stable, one transcendental pass)
    s = acts[:, :3 * h]
    xp.multiply(pre[:, :3 * h], 0.5, out=s)
    xp.tanh(s, out=s)
    s *= 0.5
    s += 0.5
    xp.tanh(pre[:, 3 * h:], out=acts[:, 3 * h:4 * h])
    i, f, o, g, tc = (acts[:, k * h:(k + 1) * h] for k in range(5))
    xp.multiply(i, g, out=c)
    if c_prev is not None:
        c += f * c_prev
    xp.tanh(c, out=tc)
    xp.multiply(o, tc, out=h_out)


def _cell_backward(xp, acts, c_prev, dh, dc, d):
    """The pre-activation gradient of one step into ``d`` [N, 4H]; returns d c_prev (None without
    c_prev). ``dc`` may be None (no gradient reaches c from later)."""
    h = acts.shape[1] // 5
    i, f, o, g, tc = (acts[:, k * h:(k + 1) * h] for k in range(5))
    di, df, do, dg = (d[:, k * h:(k + 1) * h] for k in range(4))
    # dc_total = dc + dh·o·(1 - tanh(c)²)
    dct = tc * tc
    xp.subtract(1, dct, out=dct)
    dct *= o
    dct *= dh
    if dc is not None:
        dct += dc
    xp.multiply(dh, tc, out=do)
    xp.multiply(dct, g, out=di)
    xp.multiply(dct, i, out=dg)
    if c_prev is not None:
        xp.multiply(dct, c_prev, out=df)
    else:
        df.fill(0)
    # through the nonlinearities: sigmoid' = s(1 - s), tanh' = 1 - t²
    s = acts[:, :3 * h]
    ds = d[:, :3 * h]
    ds *= s
    ds *= 1 - s
    dg *= 1 - g * g
    if c_prev is None:
        return None
    dct *= f
    return dct


def lstm_cell(pre, c_prev=None, name=None):
    """(h, c) of one LSTM step from the gate pre-activations ``pre`` [N, 4H] (order i, f, o, g)."""
    pre = convert_to_tensor(pre)
    ins = [pre] if c_prev is None else [pre, convert_to_tensor(c_prev, graph=graph_of(pre))]
    op = graph_of(pre).create_op("LSTMCell", ins, None, name or "LSTMCell")
    return op.outputs[0], op.outputs[1]


# ----------------------------------------------------------------------------- a whole LSTM sequence
@register
class LSTMSequence(OpDef):
    """A whole LSTM layer direction as one op (a scan with its own gradient, like cuDNN's RNN):

        for t in order (0..T-1, or T-1..0 with ``reverse``):
            h', c' = h_prev·mask_t, c_prev·mask_t       (mask: cont, 0 resets the state)
            pre_t = gx_t + h' · W_hᵀ;  h_t, c_t = LSTMCell(pre_t, c')

    Inputs: ``gx`` [T, N, 4H] (the input projection with its bias), ``w_h`` [4H, H], ``mask``
    [T, N, 1] and optionally ``h0``, ``c0`` [N, H] (without them the first step starts at zero).
    Outputs: ``hs`` [T, N, H], the last ``h`` and ``c`` [N, H], and for the gradient ``acts``
    [T, N, 5H] and ``cs`` [T, N, H]. The gradient runs the steps backwards once and forms dW_h as
    one matrix product over all T·N rows instead of T small ones."""

    grad_accepts_none = True
    kernels = {"onednn": onednn("lstm_sequence")}

    def infer(op):
        gx, w = op.inputs[0], op.inputs[1]
        gs = gx._shape
        if gs is not None and (len(gs) != 3 or (gs[2] is not None and gs[2] % 4)):
            raise ValueError(f"gx must have shape [T, N, 4·H]. Received: {S.fmt(gs)}")
        t, n = (gs[0], gs[1]) if gs is not None else (None, None)
        h = gs[2] // 4 if gs is not None and gs[2] is not None else None
        ws = w._shape
        if ws is not None and h is not None and tuple(ws) not in ((4 * h, h),):
            raise ValueError(f"w_h must have shape [{4 * h}, {h}]. Received: {S.fmt(ws)}")
        dt = gx.dtype
        h5 = None if h is None else 5 * h
        return [((t, n, h), dt), ((n, h), dt), ((n, h), dt), ((t, n, h5), dt), ((t, n, h), dt)]

    def forward(xp, gx, w_h, mask, h0=None, c0=None, reverse=False, out=None):
        T, N, G = gx.shape
        H = G // 4
        hs = xp.empty((T, N, H), dtype=gx.dtype)
        if out is not None:  # (acts, cs) buffers of the caller's (LSTMLayer keeps both in one)
            acts, cs = out
        else:
            cs = xp.empty((T, N, H), dtype=gx.dtype)
            acts = xp.empty((T, N, 5 * H), dtype=gx.dtype)
        pre = xp.empty((N, G), dtype=gx.dtype)
        whT = w_h.T
        h_prev, c_prev = h0, c0
        carry = bool((mask == 1).all())  # no resets (Caffe's cont all 1): the masks change nothing
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            if h_prev is None:
                pre[...] = gx[t]
                cp = None
            elif carry:
                xp.matmul(h_prev, whT, out=pre)
                pre += gx[t]
                cp = c_prev
            else:
                m = mask[t]
                xp.matmul(h_prev * m, whT, out=pre)
                pre += gx[t]
                cp = c_prev * m
            _cell_forward(xp, pre, cp, acts[t], cs[t], hs[t])
            h_prev, c_prev = hs[t], cs[t]
        return hs, h_prev, c_prev, acts, cs

    def grad(op, dhs, dh_last, dc_last, dacts=None, dcs=None):
        if dacts is not None or dcs is not None:
            raise ValueError("LSTMSequence's acts and cs outputs are internal to its gradient; "
                             "they cannot be differentiated")
        gx, w_h, mask = op.inputs[:3]
        has_init = len(op.inputs) > 3
        present = {"dhs": dhs is not None, "dh_last": dh_last is not None, "dc_last": dc_last is not None}
        ins = [w_h, mask, op.outputs[0], op.outputs[4], op.outputs[3]]
        ins += [t for t, p in zip((dhs, dh_last, dc_last), present.values()) if p]
        ins += list(op.inputs[3:5])
        g = graph_of(gx).create_op("LSTMSequenceGrad", ins,
                                   dict(present, reverse=op.attrs.get("reverse", False), has_init=has_init),
                                   "LSTMSequenceGrad")
        out = [g.outputs[0], g.outputs[1], None]
        return out + ([g.outputs[2], g.outputs[3]] if has_init else [])


@register
class LSTMSequenceGrad(OpDef):
    """The gradient of :class:`LSTMSequence`: outputs d gx [T, N, 4H], d w_h [4H, H] and, with an
    initial state, d h0 and d c0."""

    nondifferentiable = True
    kernels = {"onednn": onednn("lstm_sequence_grad")}

    def infer(op):
        w_h, hs = op.inputs[0], op.inputs[2]
        t, n, h = hs._shape if hs._shape is not None else (None, None, None)
        dt = hs.dtype
        out = [((t, n, None if h is None else 4 * h), dt), (w_h._shape, dt)]
        if op.attrs["has_init"]:
            out += [((n, h), dt), ((n, h), dt)]
        return out

    def forward(xp, w_h, mask, hs, cs, acts, *rest, dhs, dh_last, dc_last, reverse, has_init):
        rest = list(rest)
        g_hs = rest.pop(0) if dhs else None
        g_h = rest.pop(0) if dh_last else None
        g_c = rest.pop(0) if dc_last else None
        h0, c0 = (rest[0], rest[1]) if has_init else (None, None)
        T, N, H = hs.shape
        order = list(range(T - 1, -1, -1)) if reverse else list(range(T))
        dgx = xp.empty((T, N, 4 * H), dtype=hs.dtype)
        dh_next, dc_next = g_h, g_c
        carry = bool((mask == 1).all())  # no resets: the masks change nothing
        for k in range(T - 1, -1, -1):
            t = order[k]
            dh = g_hs[t] if g_hs is not None else None
            if dh_next is not None:
                dh = dh_next if dh is None else dh + dh_next
            if dh is None:
                dh = xp.zeros((N, H), dtype=hs.dtype)
            if k > 0:
                cp = cs[order[k - 1]] if carry else cs[order[k - 1]] * mask[t]
            elif has_init:
                cp = c0 if carry else c0 * mask[t]
            else:
                cp = None
            dcp = _cell_backward(xp, acts[t], cp, dh, dc_next, dgx[t])
            if k == 0 and not has_init:
                break
            dh_next = xp.matmul(dgx[t], w_h)
            if not carry:
                dh_next *= mask[t]
                dcp *= mask[t]
            dc_next = dcp
        # dW_h = Σ_t d pre_tᵀ · h'_t, as one product over the T·N rows
        hprev = xp.empty((T, N, H), dtype=hs.dtype)
        first = order[0]
        if reverse:
            xp.multiply(hs[1:], mask[:-1], out=hprev[:-1])
        else:
            xp.multiply(hs[:-1], mask[1:], out=hprev[1:])
        if has_init:
            xp.multiply(h0, mask[first], out=hprev[first])
        else:
            hprev[first] = 0
        dw = xp.matmul(dgx.reshape(T * N, 4 * H).T, hprev.reshape(T * N, H))
        if has_init:
            return dgx, dw, dh_next, dc_next
        return dgx, dw


def lstm_sequence(gx, w_h, mask, h0=None, c0=None, reverse=False, name=None):
    """(hs, h_last, c_last) of an LSTM run over ``gx`` [T, N, 4H]; see :class:`LSTMSequence`."""
    gx = convert_to_tensor(gx)
    g = graph_of(gx)
    ins = [gx, convert_to_tensor(w_h, graph=g), convert_to_tensor(mask, dtype=gx.dtype, graph=g)]
    if (h0 is None) != (c0 is None):
        raise ValueError("give both h0 and c0, or neither")
    if h0 is not None:
        ins += [convert_to_tensor(h0, graph=g), convert_to_tensor(c0, graph=g)]
    op = g.create_op("LSTMSequence", ins, {"reverse": bool(reverse)}, name or "LSTMSequence")
    return op.outputs[0], op.outputs[1], op.outputs[2]


# ----------------------------------------------------------------------------- a whole LSTM layer
_LAYER_INPUTS = ("x", "w_x", "b", "w_h", "mask", "h0", "c0")


def _saved_views(saved, T, N, H):
    """The reference kernel's saved float32 buffer as (acts [T, N, 5H], cs [T, N, H])."""
    acts = saved[:T * N * 5 * H].reshape(T, N, 5 * H)
    return acts, saved[T * N * 5 * H:].reshape(T, N, H)


def _layer_dims(op, gates):
    """(T, N, H) of a recurrent layer op (inputs x [T, N, C] first, w_h [gates·H, H] fourth),
    checking the ranks and w_h's gate count; None where unknown."""
    xs, ws = op.inputs[0]._shape, op.inputs[3]._shape
    if xs is not None and len(xs) != 3:
        raise ValueError(f"x must have shape [T, N, C]. Received: {S.fmt(xs)}")
    h = ws[1] if ws is not None and len(ws) == 2 else None
    if h is not None and ws[0] is not None and ws[0] != gates * h:
        raise ValueError(f"w_h must have shape [{gates}·H, H]. Received: {S.fmt(ws)}")
    return (xs[0], xs[1], h) if xs is not None else (None, None, h)


def _layer_forward(xp, x, w_x, b, w_h, mask, h0, c0):
    """The reference: gx = x·W_xᵀ + b over all T·N rows, then LSTMSequence's scan; returns hs, the
    last h and c and ``saved`` (acts and cs in one flat buffer, for the gradient)."""
    T, N, C = x.shape
    H = w_h.shape[1]
    gx = xp.matmul(x.reshape(T * N, C), w_x.T)
    gx += b
    saved = xp.empty(T * N * 6 * H, dtype=x.dtype)
    acts, cs = _saved_views(saved, T, N, H)
    hs, h_last, c_last, _, _ = LSTMSequence.forward(xp, gx.reshape(T, N, 4 * H), w_h, mask, h0, c0,
                                                   out=(acts, cs))
    return hs, h_last, c_last, saved


@register
class LSTMLayer(OpDef):
    """A whole (forward-direction) LSTM layer from its input, as one op: gx = x·W_xᵀ + b over all
    T·N rows, then the :class:`LSTMSequence` recurrence from (h0, c0) with the cont mask. One op
    because oneDNN's LSTM primitive does exactly this in one call (the provider kernel); the
    reference kernel is the projection and the scan.

    Inputs: ``x`` [T, N, C], ``w_x`` [4H, C], ``b`` [4H], ``w_h`` [4H, H] (Caffe's gate order i, f,
    o, g), ``mask`` [T, N, 1], ``h0``, ``c0`` [N, H]. Outputs: ``hs`` [T, N, H], the last ``h`` and
    ``c`` [N, H], and ``saved`` [None]: what the gradient needs, internal to it (the reference's
    activations, or a oneDNN kernel's workspace)."""

    grad_accepts_none = True
    kernels = {"onednn": onednn("lstm_layer")}

    def infer(op):
        t, n, h = _layer_dims(op, 4)
        dt = op.inputs[0].dtype
        return [((t, n, h), dt), ((n, h), dt), ((n, h), dt), ((None,), dt)]

    def forward(xp, x, w_x, b, w_h, mask, h0, c0):
        return _layer_forward(xp, x, w_x, b, w_h, mask, h0, c0)

    def grad(op, dhs, dh_last, dc_last, dsaved=None):
        if dsaved is not None:
            raise ValueError("LSTMLayer's saved output is internal to its gradient; it cannot be differentiated")
        present = {"dhs": dhs is not None, "dh_last": dh_last is not None, "dc_last": dc_last is not None}
        ins = list(op.inputs) + [op.outputs[0], op.outputs[1], op.outputs[2], op.outputs[3]]
        ins += [t for t, p in zip((dhs, dh_last, dc_last), present.values()) if p]
        g = graph_of(op.inputs[0]).create_op("LSTMLayerGrad", ins, present, "LSTMLayerGrad")
        dx, dw_x, db, dw_h, dh0, dc0 = g.outputs
        return [dx, dw_x, db, dw_h, None, dh0, dc0]


@register
class LSTMLayerGrad(OpDef):
    """The gradient of :class:`LSTMLayer`: d x, d w_x, d b, d w_h, d h0, d c0."""

    nondifferentiable = True
    kernels = {"onednn": onednn("lstm_layer_grad")}

    def infer(op):
        return [(t._shape, t.dtype) for t in (op.inputs[0], op.inputs[1], op.inputs[2], op.inputs[3],
                                              op.inputs[5], op.inputs[6])]

    def forward(xp, x, w_x, b, w_h, mask, h0, c0, hs, h_last, c_last, saved, *rest, dhs, dh_last, dc_last):
        T, N, C = x.shape
        H = w_h.shape[1]
        if saved.dtype != x.dtype or saved.size != T * N * 6 * H:  # another kernel's: recompute ours
            hs, h_last, c_last, saved = _layer_forward(xp, x, w_x, b, w_h, mask, h0, c0)
        acts, cs = _saved_views(saved, T, N, H)
        dgx, dw_h, dh0, dc0 = LSTMSequenceGrad.forward(
            xp, w_h, mask, hs, cs, acts, *rest, h0, c0, dhs=dhs, dh_last=dh_last, dc_last=dc_last,
            reverse=False, has_init=True)
        d2 = dgx.reshape(T * N, 4 * H)
        dx = xp.matmul(d2, w_x).reshape(T, N, C)
        dw_x = xp.matmul(d2.T, x.reshape(T * N, C))
        return dx, dw_x, d2.sum(axis=0), dw_h, dh0, dc0


def lstm_layer(x, w_x, b, w_h, mask, h0, c0, name=None):
    """(hs, h_last, c_last) of a forward LSTM layer over ``x`` [T, N, C]; see :class:`LSTMLayer`."""
    x = convert_to_tensor(x)
    g = graph_of(x)
    ins = [x] + [convert_to_tensor(t, dtype=x.dtype, graph=g) for t in (w_x, b, w_h, mask, h0, c0)]
    op = g.create_op("LSTMLayer", ins, None, name or "LSTMLayer")
    return op.outputs[0], op.outputs[1], op.outputs[2]


# ---------------------------------------------------------------------------- GRU layer
def _sigmoid(xp, v):
    out = xp.negative(v)
    xp.exp(out, out=out)
    out += 1
    return xp.reciprocal(out, out=out)


def _gru_forward(xp, x, w_x, b_x, w_h, b_h, mask, h0):
    """The reference scan: gx = x·W_xᵀ + b_x over all T·N rows, then per step (hp = h·cont_t)
    gh = hp·W_hᵀ + b_h, r = σ(gx_r + gh_r), z = σ(gx_z + gh_z), n = tanh(gx_n + r·gh_n),
    h = (1 - z)·n + z·hp. Returns hs, the last h and ``saved`` (r, z, n, gh_n per step)."""
    T, N, C = x.shape
    H = w_h.shape[1]
    gx = (xp.matmul(x.reshape(T * N, C), w_x.T) + b_x).reshape(T, N, 3 * H)
    saved = xp.empty((T, N, 4 * H), dtype=x.dtype)
    hs = xp.empty((T, N, H), dtype=x.dtype)
    h = h0
    for t in range(T):
        hp = h * mask[t]
        gh = xp.matmul(hp, w_h.T) + b_h
        r = _sigmoid(xp, gx[t, :, :H] + gh[:, :H])
        z = _sigmoid(xp, gx[t, :, H:2 * H] + gh[:, H:2 * H])
        n = xp.tanh(gx[t, :, 2 * H:] + r * gh[:, 2 * H:])
        h = n + z * (hp - n)
        hs[t] = h
        s = saved[t]
        s[:, :H], s[:, H:2 * H], s[:, 2 * H:3 * H], s[:, 3 * H:] = r, z, n, gh[:, 2 * H:]
    return hs, hs[T - 1].copy() if T else h0 * 1, saved.reshape(-1)


@register
class GRULayer(OpDef):
    """A whole (forward-direction) GRU layer from its input, as one op, in PyTorch's and cuDNN's
    form (the GRU layer's: gate order r, z, n, the reset applied to W_h·h + b_h): the input
    projection and the recurrence from h0 with the cont mask [T, N, 1] (hp = h·cont_t before
    each step, as the unrolled layer). One op because oneDNN's linear-before-reset GRU primitive
    computes exactly this in one call (the provider kernel); the reference is a numpy scan.

    Inputs: ``x`` [T, N, C], ``w_x`` [3H, C], ``b_x`` [3H], ``w_h`` [3H, H], ``b_h`` [3H], ``mask``,
    ``h0`` [N, H]. Outputs: ``hs`` [T, N, H], the last ``h`` and ``saved`` [None]: what the gradient
    needs, internal to it (the reference's activations, or a oneDNN kernel's workspace)."""

    grad_accepts_none = True
    kernels = {"onednn": onednn("gru_layer")}

    def infer(op):
        t, n, h = _layer_dims(op, 3)
        dt = op.inputs[0].dtype
        return [((t, n, h), dt), ((n, h), dt), ((None,), dt)]

    def forward(xp, x, w_x, b_x, w_h, b_h, mask, h0):
        return _gru_forward(xp, x, w_x, b_x, w_h, b_h, mask, h0)

    def grad(op, dhs, dh_last, dsaved=None):
        if dsaved is not None:
            raise ValueError("GRULayer's saved output is internal to its gradient; it cannot be differentiated")
        present = {"dhs": dhs is not None, "dh_last": dh_last is not None}
        ins = list(op.inputs) + list(op.outputs)
        ins += [t for t, p in zip((dhs, dh_last), present.values()) if p]
        g = graph_of(op.inputs[0]).create_op("GRULayerGrad", ins, present, "GRULayerGrad")
        dx, dw_x, db_x, dw_h, db_h, dh0 = g.outputs
        return [dx, dw_x, db_x, dw_h, db_h, None, dh0]


@register
class GRULayerGrad(OpDef):
    """The gradient of :class:`GRULayer`: d x, d w_x, d b_x, d w_h, d b_h, d h0 (back-propagation
    through time over the forward's saved gates)."""

    nondifferentiable = True
    kernels = {"onednn": onednn("gru_layer_grad")}

    def infer(op):
        return [(op.inputs[i]._shape, op.inputs[i].dtype) for i in (0, 1, 2, 3, 4, 6)]

    def forward(xp, x, w_x, b_x, w_h, b_h, mask, h0, hs, h_last, saved, *rest, dhs, dh_last):
        T, N, C = x.shape
        H = w_h.shape[1]
        if saved.dtype != x.dtype or saved.size != T * N * 4 * H:  # another kernel's: recompute ours
            hs, h_last, saved = _gru_forward(xp, x, w_x, b_x, w_h, b_h, mask, h0)
        saved = saved.reshape(T, N, 4 * H)
        rest = list(rest)
        g_hs = rest.pop(0) if dhs else None
        g_last = rest.pop(0) if dh_last else None
        dgx = xp.empty((T, N, 3 * H), dtype=x.dtype)
        dw_h = xp.zeros_like(w_h)
        db_h = xp.zeros_like(b_h)
        dh_next = g_last if g_last is not None else xp.zeros((N, H), dtype=x.dtype)
        for t in range(T - 1, -1, -1):
            s = saved[t]
            r, z, n, ghn = s[:, :H], s[:, H:2 * H], s[:, 2 * H:3 * H], s[:, 3 * H:]
            hp = (hs[t - 1] if t else h0) * mask[t]
            dh = dh_next + g_hs[t] if g_hs is not None else dh_next
            dn = dh * (1 - z) * (1 - n * n)
            dz = dh * (hp - n) * z * (1 - z)
            dr = dn * ghn * r * (1 - r)
            d = dgx[t]
            d[:, :H], d[:, H:2 * H], d[:, 2 * H:] = dr, dz, dn
            dgh = xp.concatenate([dr, dz, dn * r], axis=1)
            dw_h += xp.matmul(dgh.T, hp)
            db_h += dgh.sum(axis=0)
            dh_next = (xp.matmul(dgh, w_h) + dh * z) * mask[t]
        d2 = dgx.reshape(T * N, 3 * H)
        dx = xp.matmul(d2, w_x).reshape(T, N, C)
        dw_x = xp.matmul(d2.T, x.reshape(T * N, C))
        return dx, dw_x, d2.sum(axis=0), dw_h, db_h, dh_next


def gru_layer(x, w_x, b_x, w_h, b_h, mask, h0, name=None):
    """(hs, h_last) of a forward GRU layer over ``x`` [T, N, C]; see :class:`GRULayer`."""
    x = convert_to_tensor(x)
    g = graph_of(x)
    ins = [x] + [convert_to_tensor(t, dtype=x.dtype, graph=g) for t in (w_x, b_x, w_h, b_h, mask, h0)]
    op = g.create_op("GRULayer", ins, None, name or "GRULayer")
    return op.outputs[0], op.outputs[1]
