"""The rewrite pipeline run once per plan (per (fetches, feeds, targets) signature), never per step.

``RewriteConfig`` switches passes on and off (TensorFlow's RewriterConfig): ``SessionConfig(
graph_rewrites=False)`` turns all of them off, ``graph_rewrites={"fusion": False}`` one of them.
``rewrite_plan`` copies the pruned subgraph into a PlanGraph, runs the passes in order and
records what each did in ``PlanGraph.stats`` (``Session.plan_info`` shows it).
"""

from __future__ import annotations

import dataclasses
import time

from .ir import PlanGraph

PASSES = ("identity", "cse", "constant_folding", "stable", "conv_fusion", "fusion")


@dataclasses.dataclass
class RewriteConfig:
    """Which plan rewrites run (all on by default; ``memory="recompute"`` adds recomputation)."""

    identity: bool = True            # bypass Identity/StopGradient, drop pass-through NoOps
    cse: bool = True                 # merge ops that compute the same value
    constant_folding: bool = True    # evaluate constant subgraphs once, at plan time
    stable: bool = True              # log1p, expm1, log_softmax (and its gradient), fused cross-entropy
    conv_fusion: bool = True         # Conv2D / 2-D MatMul + bias (+ Relu) → FusedConv2D / FusedMatMul
    fusion: bool = True              # elementwise chains → FusedElementwise
    fold_max_bytes: int = 1 << 20    # largest constant folding may create
    fusion_min_elements: int = 0     # leave elementwise groups statically smaller than this
    fusion_max_ops: int = 32         # longer elementwise chains become several fused ops
    recompute: bool = False          # gradient checkpointing (SessionConfig(memory="recompute"))
    recompute_min_elements: int = 1024
    recompute_segment: int | None = None  # checkpoint every k-th activation (None: ⌈√n⌉)
    backward_scope: str = r"^gradients(_\d+)?/"

    @classmethod
    def of(cls, value, memory="default"):
        """From SessionConfig's ``graph_rewrites`` (True, False, a dict of fields, or a
        RewriteConfig) and ``memory`` ("default" or "recompute")."""
        if isinstance(value, cls):
            cfg = dataclasses.replace(value)
        elif value is True or value is None:
            cfg = cls()
        elif value is False:
            cfg = cls(**{p: False for p in PASSES})
        elif isinstance(value, dict):
            unknown = set(value) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                raise ValueError(f"graph_rewrites: unknown option(s) {sorted(unknown)}; known: "
                                 f"{', '.join(f.name for f in dataclasses.fields(cls))}")
            cfg = cls(**value)
        else:
            raise TypeError(f"graph_rewrites must be a bool, a dict or a RewriteConfig, received {value!r}")
        if memory not in ("default", "recompute"):
            raise ValueError(f"memory must be 'default' or 'recompute', received {memory!r}")
        if memory == "recompute":
            cfg.recompute = True
        return cfg

    @property
    def active(self):
        return self.recompute or any(getattr(self, p) for p in PASSES)


def rewrite_plan(graph, fetch_tensors, target_ops, feed_tensors, cfg):
    """The rewritten PlanGraph for one run signature (``stats`` says what each pass did)."""
    from .constant_folding import fold_constants
    from .cse import eliminate_common_subexpressions
    from .fusion import fuse_conv_bias_relu, fuse_elementwise
    from .identity import remove_identities
    from .recompute import recompute
    from .stable import stable_rewrites

    clock = time.perf_counter
    t0 = clock()
    pg = PlanGraph.from_graph(graph, fetch_tensors, target_ops, feed_tensors)
    before = pg.type_counts()
    stats, seconds = pg.stats, pg.seconds
    seconds["copy"] = clock() - t0
    stats["prune"] = {"graph_ops": pg.user_op_count, "needed": len(pg.ops)}

    def run(name, fn, *args):
        t = clock()
        out = fn(pg, *args)
        seconds[name] = seconds.get(name, 0.0) + clock() - t
        return out

    if cfg.identity:
        stats["identity"] = run("identity", remove_identities)
    if cfg.cse:
        stats["cse"] = run("cse", eliminate_common_subexpressions)
    if cfg.constant_folding:
        stats["constant_folding"] = run("constant_folding", fold_constants, cfg.fold_max_bytes)
    if cfg.stable:
        stats["stable"] = run("stable", stable_rewrites)
        run("prune", PlanGraph.prune)
    if cfg.cse and cfg.constant_folding and sum(stats["constant_folding"].values()):
        # folding made constants: merge equal ones (and what then reads equal inputs) too
        stats["cse"]["merged"] += run("cse", eliminate_common_subexpressions)["merged"]
    if cfg.conv_fusion:
        stats["conv_fusion"] = run("conv_fusion", fuse_conv_bias_relu)
    if cfg.fusion:
        stats["fusion"] = run("fusion", fuse_elementwise, cfg.fusion_min_elements, cfg.fusion_max_ops)
    if cfg.recompute:
        stats["recompute"] = run("recompute", recompute, cfg.backward_scope, cfg.recompute_min_elements,
                                 cfg.recompute_segment)
    stats["prune"]["dead_after_rewrites"] = run("prune", PlanGraph.prune)
    pg.before = before
    return pg
