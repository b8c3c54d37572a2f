"""Training: optimizers (graph builders) now; the solver loop, lr policies and checkpoints join
with the front end."""

from .optimizers import (  # noqa: F401
    AdamOptimizer, GradientDescentOptimizer, MomentumOptimizer, Optimizer, get_global_step,
    get_or_create_global_step,
)
