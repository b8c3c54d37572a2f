"""The op library. Importing this package registers every op type."""

from . import array, core, fused, math, nn, random, reduce, rnn, state, updates  # noqa: F401
