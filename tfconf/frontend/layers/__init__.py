"""The layer library: one module per family; importing this package registers every layer."""

from . import activation, core, loss, normalization, python_layer, recurrent, shape, vision  # noqa: F401
from .base import LAYERS, BuildContext, LayerSpec, NetState, get_layer_class, register_layer  # noqa: F401
