"""``tc.nn``: neural-network ops (NCHW), the engine's half of the facade's ``tfconf.nn``."""

from .ops.math import elu, leaky_relu, relu, sigmoid, softplus, tanh  # noqa: F401
from .ops.nn import (  # noqa: F401
    avg_pool, batch_normalization, bias_add, conv2d, conv2d_transpose, dropout, l2_loss,
    local_response_normalization, log_softmax, lrn, max_pool, moments,
    sigmoid_cross_entropy_with_logits, softmax, softmax_cross_entropy_with_logits,
    sparse_softmax_cross_entropy_with_logits,
)
from .ops.array import gather as embedding_lookup  # noqa: F401


def relu6(features, name=None):
    from .ops.math import minimum

    return minimum(relu(features), 6.0, name=name)
