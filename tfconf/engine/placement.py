"""Placement: which device runs each op.

1. Colocation groups are merged with union-find: an op created under ``colocate_with(x)`` joins x's
   group, and an op that takes a ``resource`` input (a Variable's handle: assignments, updates)
   joins its producer's group, so a Variable's writes stay with its storage (the handle is
   itself colocated with the Variable).
2. Each group's feasible devices are the intersection, over its members, of the devices that match
   the member's requested (possibly partial) device name and have a kernel for its type.
   An empty set is an error naming the op, the request and the devices available, unless
   ``allow_soft_placement`` drops the name constraints (keeping the kernel constraint).
3. Groups with one feasible device go there. The rest are placed by a cost model, as TensorFlow's
   whitepaper describes: in topological order, each op's group goes to the device where the op
   would *finish* earliest in a simulation, counting the device's queue, the op's compute time
   (FLOPs and bytes from shapes over the device's measured throughput, plus a launch cost) and
   the time to bring each input from the device it was placed on.
"""

from __future__ import annotations

from . import errors
from .devices import DeviceSpec
from .dtypes import resource
from .shapes import estimate_numel as _numel

def op_cost(op):
    """(flops, bytes) estimated from static shapes: the op declaration's ``cost(op)`` (the heavy
    ops declare one); other ops count as elementwise over their largest output."""
    fn = op.op_def.cost
    nbytes = sum(_numel(t._shape) * t.dtype.np.itemsize for t in op.outputs) + sum(
        _numel(t._shape) * t.dtype.np.itemsize for t in op.inputs)
    if fn is not None:
        return fn(op), nbytes
    return max([_numel(t._shape) for t in op.outputs] + [0]), nbytes


def _tensor_bytes(t):
    return _numel(t._shape) * t.dtype.np.itemsize


class _UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        root = x
        while self.parent.get(root, root) is not root:
            root = self.parent[root]
        while self.parent.get(x, x) is not root:  # path compression
            nxt = self.parent[x]
            self.parent[x] = root
            x = nxt
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra is not rb:
            if ra._id < rb._id:
                ra, rb = rb, ra
            self.parent[ra] = rb


def _kernel_types(op):
    return op.op_def.device_types


def place(ops, devices, *, allow_soft_placement=True, fed=(), log=None):
    """Map each op in ``ops`` (a topological order) to one of ``devices``. Returns {op: Device}."""
    if len(devices) == 1:
        dev = devices[0]
        for op in ops:
            if op.device or dev.device_type not in _kernel_types(op):
                _check_single(op, dev, devices, allow_soft_placement)
        placement = {op: dev for op in ops}
        if log is not None:
            for op in ops:
                log(f"{op.name} ({op.type}): {dev.name}")
        return placement
    fed = set(fed)
    uf = _UnionFind()
    for op in ops:
        if op.colocated_with is not None:
            uf.union(op, op.colocated_with)
        for t in op.inputs:  # a reference edge (a Variable's handle) never crosses devices
            if t.dtype is resource:
                uf.union(op, t.op)
    groups = {}
    for op in ops:
        groups.setdefault(uf.find(op), []).append(op)
    # Feasible devices per group.
    feasible = {}
    for root, members in groups.items():
        cands = list(devices)
        for m in members:
            types = _kernel_types(m)
            cands = [d for d in cands if d.device_type in types]
        strict = cands
        for m in members:
            if m.device:
                spec = DeviceSpec.from_string(m.device)
                strict = [d for d in strict if d.matches(spec)]
        if not strict:
            asked = next((m for m in members if m.device), members[0])
            if not cands or not allow_soft_placement:
                names = ", ".join(d.name for d in devices)
                named = [d for d in devices
                         if all(d.matches(DeviceSpec.from_string(m.device)) for m in members if m.device)]
                if not cands:
                    kinds = sorted(set.intersection(*(set(_kernel_types(m)) for m in members)))
                    why = (f"no device has a kernel for every op of its colocation group (kernels for: "
                           f"{', '.join(kinds) or 'no common device type'})")
                elif named:
                    why = f"the devices it names have no kernel for {asked.type}"
                else:
                    why = "no such device"
                hint = "" if not cands else (" Pass SessionConfig(allow_soft_placement=True) to let the "
                                             "engine choose.")
                where = f" on '{asked.device}'" if asked.device else ""
                raise errors.InvalidArgumentError(
                    f"Cannot place {asked.describe()}{where}: {why} (colocation group of "
                    f"{len(members)} ops). Available devices: {names}.{hint}", asked)
            # Soft placement keeps what it can of the request: the device type (GPU:3 on a one-GPU
            # machine goes to GPU:0), then anything with a kernel.
            types = {DeviceSpec.from_string(m.device).device_type for m in members if m.device} - {None}
            strict = [d for d in cands if d.device_type in types] or cands
        feasible[root] = strict
    # Greedy earliest-finish simulation. A group whose first op has no inputs (a Variable, a
    # constant) is not placed when met: it follows the first op that consumes it, since it can
    # be computed anywhere and moving its output would only cost a transfer.
    placed_group = {}
    placement = {}
    free_at = {d.name: 0.0 for d in devices}
    ready = {}
    deferred = {}  # group root -> ops of that group met so far
    for op in ops:
        root = uf.find(op)
        cands = feasible[root]
        dev = placed_group.get(root)
        if dev is None and not op.inputs and len(cands) > 1:
            deferred.setdefault(root, []).append(op)
            continue
        flops, nbytes = op_cost(op)
        if dev is None:
            if len(cands) == 1:
                dev = cands[0]
            else:
                best = None
                for d in cands:
                    finish = _start(op, d, placement, ready, free_at, fed, devices[0]) + _compute(flops, nbytes, d)
                    if best is None or finish < best[0] - 1e-12:
                        best = (finish, d)
                dev = best[1]
            placed_group[root] = dev
        # Deferred sources this op reads are computed right here, on its device.
        for t in op.inputs:
            troot = uf.find(t.op)
            if troot in deferred and troot not in placed_group and dev in feasible[troot]:
                placed_group[troot] = dev
        for troot, waiting in list(deferred.items()):
            if troot in placed_group:
                for w in waiting:
                    placement[w] = placed_group[troot]
                    for t in w.outputs:
                        ready[t] = 0.0
                del deferred[troot]
        placement[op] = dev
        finish = _start(op, dev, placement, ready, free_at, fed, devices[0]) + _compute(flops, nbytes, dev)
        free_at[dev.name] = finish
        for t in op.outputs:
            ready[t] = finish
    for troot, waiting in deferred.items():  # sources nobody placed read: the first feasible device
        for w in waiting:
            placement[w] = feasible[troot][0]
    if log is not None:
        for op in ops:
            log(f"{op.name} ({op.type}): {placement[op].name}")
    return placement


def _start(op, d, placement, ready, free_at, fed, host):
    """When ``op`` could start on ``d``: the device is free and every input has arrived (a fed
    tensor is on the host device at time 0)."""
    start = free_at[d.name]
    for t in op.inputs:
        src = host if t in fed else placement.get(t.op)
        if src is None:  # a deferred source: it will be computed on d itself
            continue
        r = ready.get(t, 0.0)
        if src is not d:
            r += _transfer(t, src, d)
        start = max(start, r)
    return start


def _compute(flops, nbytes, d):
    return max(flops / (d.gflops * 1e9), nbytes / (d.bandwidth_gbs * 1e9)) + d.launch_us * 1e-6


def _transfer(t, src, dst):
    """Seconds to move tensor ``t`` between devices: the slower side's link bandwidth plus a
    latency (PCIe-like for CPU↔GPU, a memcpy for CPU↔CPU)."""
    gbs = min(src.link_gbs, dst.link_gbs)
    if "GPU" in (src.device_type, dst.device_type) and src.device_type != dst.device_type:
        gbs = min(gbs, 12.0)
    return _tensor_bytes(t) / (gbs * 1e9) + 20e-6


def _check_single(op, dev, devices, allow_soft):
    if dev.device_type not in _kernel_types(op):
        raise errors.InvalidArgumentError(
            f"Cannot place {op.describe()}: it has no kernel for {dev.device_type} (only for "
            f"{', '.join(_kernel_types(op))}). Available devices: {', '.join(d.name for d in devices)}.", op)
    spec = DeviceSpec.from_string(op.device)
    if not dev.matches(spec) and not allow_soft:
        raise errors.InvalidArgumentError(
            f"Cannot place {op.describe()} on '{op.device}': no such device. Available devices: "
            f"{', '.join(d.name for d in devices)}. Pass SessionConfig(allow_soft_placement=True) to let "
            "the engine choose.", op)

