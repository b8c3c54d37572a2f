"""tfconf's test kit, for anyone writing an op or a layer: :func:`check_op` checks an op (or a
composite) against a numpy reference in float32 and float64 and its first and second derivatives
against float64 central differences, away from kinks (:func:`away_from`, :func:`distinct`);
:func:`check_layer` checks a layer built from its config (round-trip, shapes in both phases, a
numpy reference, float64 gradients of its inputs and parameters). tfconf's own op and layer tests
run on them."""

from .layers import LayerNet, check_layer  # noqa: F401
from .ops import away_from, check_op, distinct, ops_between, run  # noqa: F401
