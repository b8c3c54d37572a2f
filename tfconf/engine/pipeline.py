"""The compile pipeline: one run signature (fetches, feeds, targets) into an executable plan, once,
in stages that each have their own module and can be read and tested alone:

    resolve    session.resolve_run   the fed and fetched tensors and target ops, checked
    rewrite    rewrite/              a private PlanGraph rewritten by the passes (identity, CSE,
                                     constant folding, stable forms, conv/matmul fusion, elementwise
                                     fusion, recompute); the user's graph is never changed
    place      placement.py          a device per op (requests, colocation, the cost model)
    kernels    kernel_choice.py      per op and device, a provider's kernel or the reference
    layouts    layouts.py            which tensors stay in a provider's memory layout
    schedule   schedule.py           the needed ops in ready-queue order
    memory     memory.py             a slot per tensor, its death, in-place steps
    partition  partition.py          per-device partitions joined by Send/Recv

``Session`` and ``ClusterSession`` both compile through :func:`compile_run`; what differs is given
as arguments: the devices, how a kernel is made (a cluster's tasks make their own from the plan's
ops), whether steps may run in place, and how the plan is partitioned. The result records every
stage's decisions and seconds for ``plan_info``.
"""

from __future__ import annotations

import dataclasses
import time

from .executor import build_plan

STAGES = ("resolve", "rewrite", "place", "kernels", "schedule", "memory", "partition")


@dataclasses.dataclass
class Compilation:
    """What :func:`compile_run` made: the resolved signature, the plan graph (None without
    rewrites), placement (plan op -> Device), the kernel choice, the plan, its partitioned form
    (None when not partitioned), ``where`` (op name -> device name, for the user's op names too)
    and ``info`` (a PlanInfo)."""

    feed_tensors: list
    fetch_tensors: list
    targets: list
    plan_graph: object
    placement: dict
    kernel_plan: object
    plan: object
    partitioned: object
    where: dict
    info: object


def compile_run(graph, elements, feed_keys, *, config, devices, rewrites, providers, make_kernel,
                inplace=None, partition=None, check_unfed=None):
    """Compile one run signature of ``graph``.

    ``make_kernel(op, device, kernel_plan)`` -> the op's kernel; ``inplace(op, kernel, p, device)``
    -> a kernel writing into input ``p`` or None (memory planning; None: no in-place steps);
    ``partition(plan, placement)`` -> a partitioned plan or None; ``check_unfed(op)`` raises for a
    needed placeholder that is not fed."""
    from .kernel_choice import KernelPlan
    from .plan_info import plan_info_of
    from .session import placer, resolve_run

    clock = time.perf_counter
    stage_s = dict.fromkeys(STAGES, 0.0)
    t0 = clock()
    feed_tensors, fetch_tensors, targets = resolve_run(graph, elements, feed_keys)
    t1 = clock()
    stage_s["resolve"] = t1 - t0
    pg = None
    plan_fetches, plan_targets = fetch_tensors, targets
    if rewrites.active:
        from .rewrite import rewrite_plan

        # NOTE: the rewrites work on a private copy of the needed ops (PlanOps); the user's
        # graph is never changed, and errors from plan ops are mapped back to user ops.
        pg = rewrite_plan(graph, fetch_tensors, targets, feed_tensors, rewrites)
        plan_fetches, plan_targets = pg.fetches, pg.targets
    t2 = clock()
    stage_s["rewrite"] = t2 - t1
    placement = {}
    place_ops = placer(config, devices, feed_tensors, placement)
    kplan = KernelPlan(providers)
    marks = {}

    def place(order):
        marks["scheduled"] = clock()
        place_ops(order)
        marks["placed"] = clock()
        kplan.choose(order, placement, plan_fetches)
        marks["chosen"] = clock()

    def kernel(op):
        return make_kernel(op, placement[op], kplan)

    inplace_step = None
    if inplace is not None:
        def inplace_step(op, k, p):
            return inplace(op, k, p, placement[op], kplan)

    plan = build_plan(plan_fetches, plan_targets, feed_tensors, kernel, check_unfed, place, inplace=inplace_step)
    t3 = clock()
    stage_s["schedule"] = marks["scheduled"] - t2
    stage_s["place"] = marks["placed"] - marks["scheduled"]
    stage_s["kernels"] = marks["chosen"] - marks["placed"]
    stage_s["memory"] = t3 - marks["chosen"]  # slots, frees, kernels made, in-place steps
    if pg is not None:
        for u in pg.user_needed:  # folded and merged ops count as run too
            u._ran = True
    partitioned = partition(plan, placement) if partition is not None else None
    stage_s["partition"] = clock() - t3
    where = _where(placement, pg)
    info = plan_info_of(pg, plan, kplan.info())
    info.stages = _stage_report(placement, kplan, partitioned, stage_s)
    return Compilation(feed_tensors, fetch_tensors, targets, pg, placement, kplan, plan, partitioned, where, info)


def _where(placement, pg):
    """{op name: device name} over the plan's ops and the user ops they stand for (fused, folded
    and merged ones included), so a user's op name always finds its device."""
    where = {}
    for op, dev in placement.items():
        where[op.name] = dev.name
        if pg is not None:
            for u in op.user_ops():
                where.setdefault(u.name, dev.name)
    if pg is not None:  # ops merged away by CSE run where the op that replaced them runs
        todo = dict(pg.aliases)
        while todo:
            done = [n for n, op in todo.items() if op.name in where]
            for n in done:
                where.setdefault(n, where[todo.pop(n).name])
            if not done:
                break
    return where


def _stage_report(placement, kplan, partitioned, seconds):
    """Each stage's decisions in a few numbers (PlanInfo.stages)."""
    per_device = {}
    for dev in placement.values():
        per_device[dev.name] = per_device.get(dev.name, 0) + 1
    k = kplan.info()
    report = {"place": {"ops_per_device": per_device},
              "kernels": {"provider_kernels": sum(k["kernels"].values())},
              "layouts": {"blocked_tensors": k["blocked_tensors"]}}
    if partitioned is not None:
        sends = sum(1 for part in partitioned.parts.values() for ps in part.steps if ps.kind == "send")
        report["partition"] = {"partitions": len(partitioned.parts), "sends": sends}
    report["seconds"] = dict(seconds)
    return report

