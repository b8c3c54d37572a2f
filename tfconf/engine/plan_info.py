"""What compiling one run signature did (``Session.plan_info``): op counts before and after the
rewrites, per-pass counts and seconds, the memory plan, kernels chosen and every stage's decisions."""

from __future__ import annotations

import collections
import dataclasses


@dataclasses.dataclass
class PlanInfo:
    """What compiling one run signature did (``Session.plan_info``): the ops the fetches need in
    the user's graph (``ops_before``, by type in ``types_before``), the steps of the compiled plan
    (``ops_after``, ``types_after``), per-pass counts (``passes``) and seconds (``seconds``, with
    ``copy`` for copying the needed ops), and the executor's memory plan (``memory``: steps that may
    update an input in place)."""

    ops_before: int
    ops_after: int
    types_before: dict
    types_after: dict
    passes: dict
    memory: dict
    seconds: dict = dataclasses.field(default_factory=dict)
    #: the kernel-choice and layout stages: providers enabled, kernels per provider, op types
    #: each ran, op types left to the reference (and why), tensors kept in a provider's layout
    kernels: dict = dataclasses.field(default_factory=dict)
    #: every compile stage's decisions (ops per device, provider kernels, blocked tensors,
    #: partitions and sends) and its seconds (engine/pipeline.py)
    stages: dict = dataclasses.field(default_factory=dict)

    def __str__(self):
        lines = [f"plan: {self.ops_before} ops needed -> {self.ops_after} steps"]
        for name, counts in self.passes.items():
            lines.append(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        if self.memory:
            lines.append("  memory: " + ", ".join(f"{k}={v}" for k, v in self.memory.items()))
        k = self.kernels
        if k:
            ran = ", ".join(f"{p}={n}" for p, n in k["kernels"].items()) or "none"
            lines.append(f"  kernels: providers={','.join(k['providers']) or 'numpy'}, provider kernels: {ran}, "
                         f"blocked tensors={k['blocked_tensors']}")
            for typ, why in k["declined"].items():
                lines.append(f"    {typ} on the reference kernel: {why}")
        if self.seconds:
            lines.append("  ms: " + ", ".join(f"{k}={v * 1e3:.1f}" for k, v in self.seconds.items()))
        st = self.stages
        if st:
            per = st["place"]["ops_per_device"]
            lines.append("  place: " + ", ".join(f"{d}={n}" for d, n in per.items()))
            if "partition" in st:
                lines.append("  partition: " + ", ".join(f"{k}={v}" for k, v in st["partition"].items()))
            lines.append("  stage ms: " + ", ".join(f"{k}={v * 1e3:.1f}" for k, v in st["seconds"].items()))
        return "\n".join(lines)


def plan_info_of(pg, plan, kernels):
    after = collections.Counter(s.op.type for s in plan.steps)
    if pg is None:
        before, passes, seconds = dict(after), {}, {}
    else:
        before, passes, seconds = dict(pg.before), {k: dict(v) for k, v in pg.stats.items()}, dict(pg.seconds)
    return PlanInfo(sum(before.values()), len(plan.steps), before, dict(after), passes, dict(plan.memory),
                    seconds, kernels)
