"""tfconf's test kit, for anyone writing an op or a layer: :func:`check_op` checks an op (or a
composite) against a numpy reference in float32 and float64 and its first and second derivatives
against float64 central differences, away from kinks (:func:`away_from`, :func:`distinct`).
tfconf's own op tests run on it."""

from .ops import away_from, check_op, distinct, ops_between, run  # noqa: F401
