"""Ops for recurrent nets.

``CarriedState`` is how a recurrent layer reads the state it carries between ``Session.run`` calls
(truncated back-propagation through time): the state stored by the previous batch continues the
streams of this batch only if it has one row per stream; a state of another batch size (the zeros a
state Variable starts as, or the streams of another phase or batch size) cannot belong to them, so it
reads as zeros of this batch's size.
"""

from __future__ import annotations

from .. import shapes as S
from ..registry import OpDef, register
from .core import convert_to_tensor, graph_of, make, zeros_like


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
    return make("CarriedState", [state, like], None, name or "CarriedState")
