"""The engine's TF1-named API: what ``import tfconf as tc`` gives (``tc.placeholder``, ``tc.Variable``,
``tc.Session``, ``tc.gradients``, ``tc.nn.conv2d``...), minus the training and distributed
namespaces, which live above the engine. tfconf's own packages import this module (``from
tfconf.engine import api as tc``), never the ``tfconf`` facade, so that no package below the
training side reaches it through the facade."""

from . import api_nn as nn  # noqa: F401
from tfconf import errors  # noqa: F401 - tc.errors: the TF1 error types (and UserError)
from .autodiff import GradientError, gradients  # noqa: F401
from .devices import DeviceSpec, list_devices  # noqa: F401
from .dtypes import (  # noqa: F401
    DType, as_dtype, bool_, float16, float32, float64, int8, int16, int32, int64, uint8,
)
from .graph import (  # noqa: F401
    Graph, GraphError, Operation, Tensor, add_to_collection, colocate_with, control_dependencies,
    device, get_collection, get_default_graph, get_default_session, name_scope, reset_default_graph,
)
from .ops.array import *  # noqa: F401,F403 - its __all__
from .ops.array import slice_ as slice  # noqa: F401
from .ops.core import *  # noqa: F401,F403 - its __all__
from .ops.core import tuple_ as tuple  # noqa: F401
from .ops.math import *  # noqa: F401,F403 - its __all__
from .ops.random import *  # noqa: F401,F403 - its __all__
from .ops.reduce import *  # noqa: F401,F403 - its __all__
from .run_config import RunMetadata, RunOptions, SessionConfig  # noqa: F401
from .session import InteractiveSession, Session  # noqa: F401
from .shapes import TensorShape  # noqa: F401
from .variables import (  # noqa: F401
    GLOBAL_VARIABLES, TRAINABLE_VARIABLES, Variable, assign, assign_add, assign_sub,
    global_variables, global_variables_initializer, is_variable_initialized,
    local_variables_initializer, trainable_variables, variables_initializer,
)

float = float32  # noqa: A001 - TF alias
double = float64
ConfigProto = SessionConfig
initialize_all_variables = global_variables_initializer


class GraphKeys:
    GLOBAL_VARIABLES = GLOBAL_VARIABLES
    TRAINABLE_VARIABLES = TRAINABLE_VARIABLES
