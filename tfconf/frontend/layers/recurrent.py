"""RNN, LSTM, GRU: recurrent layers with Caffe's interface, unrolled into engine ops.

Bottoms (Caffe's RecurrentLayer): ``x`` of shape [T, N, ...] (flattened from axis 2 to [T, N, D]),
``cont`` [T, N], the continuation indicator, 0 where a sequence starts (the state is reset there) and 1
where it goes on, and optionally a static input [N, ...] added to every step's pre-activations.
Top: the hidden sequence h [T, N, num_output] ([T, N, 2·num_output] when ``bidirectional``).

State for truncated back-propagation through time: each phase of the layer keeps its final hidden
(and, for LSTM, cell) state in non-trainable Variables (``<phase>/<layer>/h_state``...). Step 0 of a
run starts from them (multiplied by ``cont[0]``, so a sequence start still begins at zero), and the
layer adds the assignments of the state at step T-1 to the net's update ops, which the solver runs
with each training step (and each test batch): the next batch's streams continue where this one's
stopped. Gradients do not flow into the previous batch (the truncation). The state Variables start
as zeros of shape [1, H] and take the batch's [N, H] from the first run on; a stored state whose
number of rows is not this batch's N reads as zeros (the ``CarriedState`` op).

Recurrences (σ the logistic function; at every step the previous states are first multiplied by cont_t):

- ``LSTM`` (Caffe's gate order i, f, o, g; weights W_x [4H, D], b [4H], W_h [4H, H])::

      [i, f, o, g] = W_x x_t + b + W_h h_{t-1} (+ W_s x_static)
      c_t = σ(f)·c_{t-1} + σ(i)·tanh(g);   h_t = σ(o)·tanh(c_t)

- ``RNN`` (Caffe's RNNLayer; W_x [H, D], b [H], W_h [H, H], W_o [H, H], b_o [H])::

      h_t = tanh(W_x x_t + b + W_h h_{t-1});   o_t = tanh(W_o h_t + b_o)   (the top is o)

- ``GRU`` (not in Caffe; PyTorch's and cuDNN's form, gate order r, z, n; W_x [3H, D], b_x [3H],
  W_h [3H, H], b_h [3H])::

      r = σ(x_r + h_r);  z = σ(x_z + h_z);  n = tanh(x_n + r·h_n);  h_t = (1 - z)·n + z·h_{t-1}
      where [x_r, x_z, x_n] = W_x x_t + b_x and [h_r, h_z, h_n] = W_h h_{t-1} + b_h

Parameters follow Caffe's blob order: W_x, b, (W_static), W_h, then RNN's W_o, b_o or GRU's b_h.
``bidirectional: true`` adds a second set (the same order, names ending in ``_reverse``) for a pass
from t = T-1 down to 0 whose state resets where the *next* step starts a sequence
(cont_{t+1} = 0) and starts from zero at T-1 in every run (it cannot be carried: it would come from the
future). The two hidden sequences are concatenated on axis 2.

The input projection W_x x_t is one matmul over all T·N rows. RNN (and GRU's reverse direction or
one with a static input) unroll the recurrence into T small matmuls and the gates' elementwise ops
per step, all ordinary engine ops, so autodiff gives the backward; GRU's forward direction is one
``GRULayer`` op (oneDNN's linear-before-reset GRU primitive runs it in one call); LSTM runs each
direction as one op with its own gradient: the forward direction
(without a static input) as one ``LSTMLayer`` (projection and scan, which oneDNN's LSTM primitive
runs in one call), the others as an ``LSTMSequence`` scan after the projection. The sequence
length must be known when the net is built.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from tfconf.engine import api as tc
from tfconf.engine.ops.rnn import carried_state, gru_layer, lstm_layer, lstm_sequence

from ..fillers import ConstantFiller, FillerSpec, XavierFiller, coerce_filler
from .base import LayerSpec, per_sample, register_layer
from .caffe_map import CaffeLayer, Fixed, Ignored, filler as filler_field, integer


def _recurrent_caffe(blobs):
    """Caffe's recurrent_param, and the layer's blobs (a third bottom, the static input, adds its
    weights after the bias as in Caffe)."""
    return CaffeLayer(
        {"recurrent_param": {"num_output": integer("num_output"), "weight_filler": filler_field("weight_filler"),
                             "bias_filler": filler_field("bias_filler"),
                             "debug_info": Ignored("tfconf's recurrent layers are ordinary ops; see tfconf draw"),
                             "expose_hidden": Fixed(False, "tfconf carries the hidden state between batches "
                                                           "itself")}},
        blobs=blobs,
        blobs_for=lambda spec: blobs[:2] + ("weights_static",) + blobs[2:] if len(spec.get("bottom") or []) == 3
        else blobs)

STATE_COLLECTION = "recurrent_state"


def _flatten_steps(x, name):
    """[T, N, ...] → [T, N, D] (T must be known)."""
    shp = x.shape.as_list() if x.shape.ndims is not None else None
    if shp is None or len(shp) < 3:
        raise ValueError(f"{name} must have shape [T, N, ...] (time, streams, features). "
                         f"Received: {shp}")
    if shp[0] is None:
        raise ValueError(f"the sequence length T (axis 0 of {name}, shape {shp}) must be known to "
                         "unroll the recurrence")
    tail = shp[2:]
    if None in tail:
        raise ValueError(f"the feature axes of {name} (from axis 2) must be known. Received: {shp}")
    d = math.prod(tail)
    if len(shp) == 3:
        return x, shp[0], d
    return tc.reshape(x, [shp[0], -1 if shp[1] is None else shp[1], d]), shp[0], d


def _unstack_steps(x, steps):
    """[T, ...] → T tensors [...] (one Split, whose gradient is one Concat)."""
    if steps == 1:
        return [tc.squeeze(x, [0])]  # (one op instead of a one-piece Split and a Squeeze)
    return tc.unstack(x, num=steps, axis=0)


def _matmul_rows(x3, w, bias=None):
    """[T, N, D] · Wᵀ (+ b) → [T, N, G] as one matmul over the T·N rows."""
    t, n, d = x3.shape.as_list()
    y = tc.matmul(tc.reshape(x3, [-1, d]), w, transpose_b=True)
    if bias is not None:
        y = y + bias
    return tc.reshape(y, [t, -1 if n is None else n, w.shape.as_list()[0]])


class _Recurrent(LayerSpec):
    num_output: int = Field(gt=0, description="H: the size of the hidden state (and of the top's last axis).")
    weight_filler: FillerSpec = Field(default_factory=XavierFiller)
    bias_filler: FillerSpec = Field(default_factory=ConstantFiller)
    bidirectional: bool = Field(False, description="Also run the sequence backwards and concatenate both "
                                "hidden sequences (the top gets 2·num_output features).")

    num_bottoms: ClassVar = (2, 3)
    onnx_absent = ("ONNX's LSTM, GRU and RNN have no sequence-continuation input, the cont bottom these "
                   "layers take")
    gates: ClassVar[int] = 1          # G: pre-activation blocks of size H
    state_names: ClassVar[tuple] = ("h",)

    _coerce = field_validator("weight_filler", "bias_filler", mode="before")(lambda cls, v: coerce_filler(v))

    def flops(self, bottoms, outs, weights, axis=0) -> int:
        # the step's matmuls (every weight matrix) once per output position
        if not outs:
            return 0
        mats = sum(math.prod(w) for w in weights if len(w) >= 2)
        hidden = outs[0][-1] if outs[0] and outs[0][-1] else 1
        return 2 * mats * max(per_sample(outs[0], axis) // hidden, 1)

    # -- subclasses: parameters and one step
    def extra_params(self, sfx, h):
        """Parameters after W_h: key → (name suffix, shape, filler)."""
        return {}

    def step(self, p, gx, prev):  # pragma: no cover - abstract
        """One step: ``gx`` [N, G·H] (input part, with its bias), ``prev`` the previous states (already
        multiplied by cont_t) or None at a zero start; returns the new states (h first)."""
        raise NotImplementedError

    def output(self, p, hs):
        """The top's sequence from the stacked hidden states [T, N, H] (RNN adds its output layer)."""
        return hs

    # -- the unrolled graph
    def build(self, ctx, bottoms):
        x, cont = bottoms[0], bottoms[1]
        static = bottoms[2] if len(bottoms) > 2 else None
        if not x.dtype.is_floating:
            raise ValueError(f"the input x must be floating point (e.g. an Embed layer's output). "
                             f"Received: {x.dtype.name}")
        x3, steps, _ = _flatten_steps(x, "x")
        cshape = cont.shape.as_list() if cont.shape.ndims is not None else None
        if cshape is not None and (len(cshape) != 2 or (cshape[0] is not None and cshape[0] != steps)):
            raise ValueError(f"cont must have shape [T, N] = [{steps}, N]. Received: {cshape}")
        mask = tc.reshape(tc.cast(cont, x3.dtype), [steps, -1, 1])  # [T, N, 1]
        if static is not None:
            sshape = static.shape.as_list()
            if static.shape.ndims is None or len(sshape) < 2 or None in sshape[1:]:
                raise ValueError(f"the static input must have shape [N, ...] with known features. Received: {sshape}")
            static = tc.reshape(static, [-1, math.prod(sshape[1:])]) if len(sshape) > 2 else static
        outs = [self._direction(ctx, x3, mask, static, steps, reverse=False)]
        if self.bidirectional:
            outs.append(self._direction(ctx, x3, mask, static, steps, reverse=True))
        y = outs[0] if len(outs) == 1 else tc.concat(outs, axis=2)
        return [tc.identity(y, name=self.name)]

    def _params(self, ctx, d, ds, reverse):
        h, g = self.num_output, self.gates * self.num_output
        sfx = "_reverse" if reverse else ""
        # the reverse set's param indices follow the forward set's (as many blobs again)
        base = (3 + (1 if ds is not None else 0) + len(self.extra_params("", h))) if reverse else 0
        p = {"w_x": ctx.param(base, "weights_x" + sfx, [g, d], self.weight_filler),
             "b": ctx.param(base + 1, "bias" + sfx, [g], self.bias_filler)}
        i = base + 2
        if ds is not None:
            p["w_s"] = ctx.param(i, "weights_static" + sfx, [g, ds], self.weight_filler)
            i += 1
        p["w_h"] = ctx.param(i, "weights_h" + sfx, [g, h], self.weight_filler)
        i += 1
        for k, (suffix, shape, filler) in self.extra_params(sfx, h).items():
            p[k] = ctx.param(i, suffix, shape, filler)
            i += 1
        return p

    def _projected(self, ctx, x3, static, reverse):
        """The direction's parameters and its input pre-activations [T, N, G·H] for all steps: one
        matmul over the T·N rows (plus the static input's, broadcast over T)."""
        d = x3.shape.as_list()[2]
        ds = static.shape.as_list()[1] if static is not None else None
        p = self._params(ctx, d, ds, reverse)
        gx_all = _matmul_rows(x3, p["w_x"], p["b"])
        if static is not None:
            gx_all = gx_all + tc.expand_dims(tc.matmul(static, p["w_s"], transpose_b=True), 0)
        return p, gx_all

    def _direction(self, ctx, x3, mask, static, steps, reverse):
        with tc.name_scope("reverse" if reverse else "forward"):
            p, gx_all = self._projected(ctx, x3, static, reverse)
            conts = _unstack_steps(mask, steps)  # T tensors [N, 1]
            gxs = _unstack_steps(gx_all, steps)
            if reverse:
                states = None
                order = range(steps - 1, -1, -1)
            else:
                variables = [self._state_variable(ctx, n) for n in self.state_names]
                states = [v.value() for v in variables]
                order = range(steps)
            hs = [None] * steps
            for t in order:
                if reverse:
                    # the reverse pass's sequence ends where the next step starts a new one
                    prev = None if states is None or t == steps - 1 else [s * conts[t + 1] for s in states]
                elif t == 0:  # the stored state, if it belongs to these streams (one row each)
                    prev = [carried_state(s, conts[0]) * conts[0] for s in states]
                else:
                    prev = [s * conts[t] for s in states]
                states = self.step(p, gxs[t], prev)
                hs[t] = states[0]
            if not reverse:
                for v, s in zip(variables, states):
                    ctx.updates.append(v.assign(s, name=f"{v.op.name.rsplit('/', 1)[-1]}_store"))
            return self.output(p, tc.stack(hs, axis=0))

    def _state_variable(self, ctx, which):
        """This phase's ``which`` state (h or c): zeros [1, H] until a run stores its [N, H]."""
        import numpy as np

        h = self.num_output
        g = ctx.graph
        with g.as_default():
            var = tc.Variable(np.zeros((1, h), dtype=ctx.dtype.np), trainable=False, name=f"{which}_state",
                              validate_shape=False, shape=[None, h],
                              collections=[tc.GLOBAL_VARIABLES, STATE_COLLECTION])
        return var


def _recurrent_matmul(prev_h, w_h):
    return tc.matmul(prev_h, w_h, transpose_b=True)


@register_layer
class LSTM(_Recurrent):
    """Long short-term memory (Caffe's LSTMLayer: gate order i, f, o, g)."""

    type: Literal["LSTM"] = "LSTM"
    caffe = _recurrent_caffe(("weights_x", "bias", "weights_h"))
    gates: ClassVar[int] = 4
    state_names: ClassVar[tuple] = ("h", "c")

    def _direction(self, ctx, x3, mask, static, steps, reverse):
        """The whole direction as one op with its own gradient: the same recurrence as the
        unrolled steps. The forward direction without a static input is one LSTMLayer (input
        projection and scan; oneDNN's LSTM primitive runs it in one call), the others an input
        projection and an LSTMSequence scan."""
        with tc.name_scope("reverse" if reverse else "forward"):
            if not reverse and static is None:
                p = self._params(ctx, x3.shape.as_list()[2], None, reverse)
                variables = [self._state_variable(ctx, n) for n in self.state_names]
                h0, c0 = (carried_state(v.value(), mask[0]) for v in variables)
                hs, h_last, c_last = lstm_layer(x3, p["w_x"], p["b"], p["w_h"], mask, h0, c0)
                for v, s in zip(variables, (h_last, c_last)):
                    ctx.updates.append(v.assign(s, name=f"{v.op.name.rsplit('/', 1)[-1]}_store"))
                return hs
            p, gx_all = self._projected(ctx, x3, static, reverse)
            if reverse:
                # step t's state comes from t+1 and resets where t+1 starts a sequence; T-1 starts at zero
                hs, _, _ = lstm_sequence(gx_all, p["w_h"], tc.concat([mask[1:], tc.zeros_like(mask[:1])], 0)
                                         if steps > 1 else tc.zeros_like(mask), reverse=True)
                return hs
            variables = [self._state_variable(ctx, n) for n in self.state_names]
            h0, c0 = (carried_state(v.value(), mask[0]) for v in variables)
            hs, h_last, c_last = lstm_sequence(gx_all, p["w_h"], mask, h0, c0)
            for v, s in zip(variables, (h_last, c_last)):
                ctx.updates.append(v.assign(s, name=f"{v.op.name.rsplit('/', 1)[-1]}_store"))
            return hs


@register_layer
class RNN(_Recurrent):
    """Caffe's RNNLayer: a tanh recurrence h and a tanh output layer o = tanh(W_o h + b_o) (the top)."""

    type: Literal["RNN"] = "RNN"
    caffe = _recurrent_caffe(("weights_x", "bias", "weights_h", "weights_o", "bias_o"))
    gates: ClassVar[int] = 1

    def extra_params(self, sfx, h):
        return {"w_o": ("weights_o" + sfx, [h, h], self.weight_filler),
                "b_o": ("bias_o" + sfx, [h], self.bias_filler)}

    def step(self, p, gx, prev):
        pre = gx if prev is None else gx + _recurrent_matmul(prev[0], p["w_h"])
        return [tc.tanh(pre)]

    def output(self, p, hs):
        return tc.tanh(_matmul_rows(hs, p["w_o"], p["b_o"]))


@register_layer
class GRU(_Recurrent):
    """Gated recurrent unit (PyTorch's/cuDNN's form: gate order r, z, n, reset applied after W_h)."""

    type: Literal["GRU"] = "GRU"
    caffe = _recurrent_caffe(("weights_x", "bias", "weights_h", "bias_h"))
    gates: ClassVar[int] = 3

    def extra_params(self, sfx, h):
        return {"b_h": ("bias_h" + sfx, [3 * h], self.bias_filler)}

    def _direction(self, ctx, x3, mask, static, steps, reverse):
        """The forward direction without a static input is one GRULayer (projection and scan,
        which oneDNN's linear-before-reset GRU primitive runs in one call); the others unroll."""
        if reverse or static is not None:
            return super()._direction(ctx, x3, mask, static, steps, reverse)
        with tc.name_scope("forward"):
            p = self._params(ctx, x3.shape.as_list()[2], None, reverse)
            (v,) = [self._state_variable(ctx, n) for n in self.state_names]
            hs, h_last = gru_layer(x3, p["w_x"], p["b"], p["w_h"], p["b_h"], mask, carried_state(v.value(), mask[0]))
            ctx.updates.append(v.assign(h_last, name=f"{v.op.name.rsplit('/', 1)[-1]}_store"))
            return hs

    def step(self, p, gx, prev):
        xr, xz, xn = tc.split(gx, 3, axis=1)
        if prev is None:
            hr, hz, hn = tc.split(tc.reshape(p["b_h"], [1, -1]), 3, axis=1)
        else:
            hr, hz, hn = tc.split(_recurrent_matmul(prev[0], p["w_h"]) + p["b_h"], 3, axis=1)
        r = tc.sigmoid(xr + hr)
        z = tc.sigmoid(xz + hz)
        n = tc.tanh(xn + r * hn)
        h = n - z * n if prev is None else n + z * (prev[0] - n)
        return [h]
