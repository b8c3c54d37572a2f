"""Shared helpers for the layer tests, on the shipped layer harness (tfconf/testing/layers.py):
a net built from layer dicts through the compiler, run, compared with numpy, configs round-tripped,
gradients checked by central differences (float64). Every run of a net records the layer types it
ran for the module's LAYER_CASES check (conftest.py)."""

from __future__ import annotations

import tfconf as tc
from tests.coverage import Collector
from tfconf.testing.layers import LayerNet, rng, roundtrip, spec  # noqa: F401 - the kit's, re-used here

X4 = (2, 3, 4, 4)
LABEL = "label"

#: the layer types the running test module's passing tests ran
RAN = Collector("layers_ran")


class Net(LayerNet):
    """The kit's net, telling the running module which of its layer types it ran."""

    def run(self, fetch, phase=None, feeds=None):
        out = super().run(fetch, phase, feeds)
        RAN.record(s.type for s in self.specs[len(self.inputs):])
        return out


def build(layers, inputs, **kw):
    return Net(layers, inputs, **kw)


class Double(tc.PythonLayer):
    """A minimal ``type: Python`` layer used by the registry sweep: y = 2x."""

    def build(self, bottoms):
        return [bottoms[0] * 2.0]
