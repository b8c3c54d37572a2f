"""tfconf: a TensorFlow-1-style dataflow engine with a Caffe-style YAML front end.

The public API mirrors ``tf.compat.v1`` names: ``tc.placeholder``, ``tc.Variable``, ``tc.Session``,
``tc.gradients``, ``tc.nn.conv2d``... Importing tfconf loads numpy and nothing heavier. The engine's
names are defined in :mod:`tfconf.engine.api`; ``tc.train`` and ``tc.distributed`` join them here.
"""

from .engine.api import *  # noqa: F401,F403 - the engine's TF1-named API
from . import distributed, nn, train  # noqa: F401,E402 - distributed imports Ray only when used
from .python_layer import PythonLayer  # noqa: F401,E402

__version__ = "0.1.0"
