"""Shared helpers for the layer tests, on the shipped layer harness (tfconf/testing/layers.py):
a net built from layer dicts through the compiler, run, compared with numpy, configs round-tripped,
gradients checked by central differences (float64)."""

from __future__ import annotations

import tfconf as tc
from tfconf.testing.layers import LayerNet as Net, rng, roundtrip, spec  # noqa: F401 - the kit's, re-used here


def build(layers, inputs, **kw):
    return Net(layers, inputs, **kw)


class Double(tc.PythonLayer):
    """A minimal ``type: Python`` layer used by the registry sweep: y = 2x."""

    def build(self, bottoms):
        return [bottoms[0] * 2.0]
