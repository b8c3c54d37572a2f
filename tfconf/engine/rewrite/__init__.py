"""Graph rewrites applied when a Session compiles a plan: pruning, identity and no-op removal,
common subexpression elimination, constant folding, numerically stable rewrites, conv + bias +
relu fusion, elementwise fusion and (``memory="recompute"``) recomputation. Each pass works on a
private copy of the plan's ops (``ir.PlanGraph``); the user's Graph is never changed."""

from .pipeline import PASSES, RewriteConfig, rewrite_plan  # noqa: F401
