"""Device names and the devices that run kernels.

A device name has optional fields ``/job:J/replica:R/task:T/device:TYPE:N``; legacy forms
``/cpu:0``, ``gpu:1`` and ``/device:GPU:0`` are accepted. Nested ``tc.device`` scopes merge field by
field with the innermost winning (TensorFlow's rule).
"""

from __future__ import annotations

import dataclasses
import re

_FIELD = re.compile(r"^(job|replica|task|device):(.+)$")
_LEGACY = re.compile(r"^(cpu|gpu|CPU|GPU):(\d+|\*)$")


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    job: str | None = None
    replica: int | None = None
    task: int | None = None
    device_type: str | None = None
    device_index: int | None = None

    @classmethod
    def from_string(cls, spec: str) -> "DeviceSpec":
        job = replica = task = dtype = index = None
        for part in (spec or "").strip("/").split("/"):
            if not part:
                continue
            m = _LEGACY.match(part)
            if m:
                dtype = m.group(1).upper()
                index = None if m.group(2) == "*" else int(m.group(2))
                continue
            m = _FIELD.match(part)
            if not m:
                raise ValueError(f"Invalid device name {spec!r}: cannot parse {part!r}. Names look like "
                                 "/job:localhost/replica:0/task:0/device:CPU:0, /device:GPU:1 or cpu:0.")
            key, val = m.groups()
            if key == "job":
                job = val
            elif key == "replica":
                replica = _int_field(spec, part, val)
            elif key == "task":
                task = _int_field(spec, part, val)
            else:
                kind, _, idx = val.partition(":")
                if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", kind):
                    raise ValueError(f"Invalid device name {spec!r}: {part!r} needs a device type such as "
                                     "CPU or GPU (device:TYPE:INDEX).")
                dtype = kind.upper()
                index = None if idx in ("", "*") else _int_field(spec, part, idx)
        return cls(job, replica, task, dtype, index)

    def merge(self, other: "DeviceSpec") -> "DeviceSpec":
        """Fields set in ``other`` win; unset fields keep this spec's values."""
        pick = lambda a, b: b if b is not None else a  # noqa: E731
        return DeviceSpec(
            pick(self.job, other.job), pick(self.replica, other.replica), pick(self.task, other.task),
            pick(self.device_type, other.device_type), pick(self.device_index, other.device_index),
        )

    def to_string(self) -> str:
        out = ""
        if self.job is not None:
            out += f"/job:{self.job}"
        if self.replica is not None:
            out += f"/replica:{self.replica}"
        if self.task is not None:
            out += f"/task:{self.task}"
        if self.device_type is not None:
            idx = "*" if self.device_index is None else self.device_index
            out += f"/device:{self.device_type}:{idx}"
        return out


def _int_field(spec, part, val):
    if not val.isdigit():
        raise ValueError(f"Invalid device name {spec!r}: {part!r} needs a non-negative integer, got {val!r}. "
                         "Names look like /job:localhost/replica:0/task:0/device:CPU:0, /device:GPU:1 or cpu:0.")
    return int(val)


def canonical_name(spec: str) -> str:
    return DeviceSpec.from_string(spec).to_string()


def merge_device(outer: str, inner: str) -> str:
    if not inner:
        return outer
    if not outer:
        return canonical_name(inner)
    return DeviceSpec.from_string(outer).merge(DeviceSpec.from_string(inner)).to_string()


class Device:
    """A device that runs kernels; ``xp`` is its array module (numpy for CPU, cupy for GPU).

    ``gflops`` and ``bandwidth_gbs`` (memory bandwidth) feed the placement cost model's compute
    time; ``link_gbs`` is the speed of copies to and from other devices (default: the memory
    bandwidth); ``launch_us`` is the fixed cost of running one op there."""

    def __init__(self, name: str, device_type: str, xp, index: int = 0, memory_bytes: int = 0,
                 gflops: float = 50.0, bandwidth_gbs: float = 10.0, launch_us: float = 2.0,
                 link_gbs: float | None = None):
        self.name = name
        self.device_type = device_type
        self.xp = xp
        self.index = index
        self.memory_bytes = memory_bytes
        self.gflops = gflops
        self.bandwidth_gbs = bandwidth_gbs
        self.link_gbs = bandwidth_gbs if link_gbs is None else link_gbs
        self.launch_us = launch_us
        self.spec = DeviceSpec.from_string(name)

    def matches(self, spec: DeviceSpec) -> bool:
        """True when every field the (partial) spec sets agrees with this device."""
        mine = self.spec
        if spec.job is not None and spec.job != mine.job:
            return False
        if spec.replica is not None and spec.replica != mine.replica:
            return False
        if spec.task is not None and spec.task != mine.task:
            return False
        if spec.device_type is not None and spec.device_type != mine.device_type:
            return False
        if spec.device_index is not None and spec.device_index != mine.device_index:
            return False
        return True

    def from_other(self, value):
        """Bring an array from another device (or the host) onto this one."""
        if self.device_type == "GPU":
            return self.xp.asarray(value)
        return host_value(value)

    def __repr__(self):
        return f"<Device {self.name}>"


def on_device(a) -> bool:
    """Whether ``a`` is an accelerator's array (CuPy's: it has ``get``), not a numpy one."""
    import numpy as np

    return hasattr(a, "get") and not isinstance(a, (np.ndarray, np.generic))


def host_value(a):
    """``a`` copied back to numpy if it lives on an accelerator, else ``a`` itself."""
    return a.get() if on_device(a) else a


def to_host(a):
    """A numpy array of ``a`` (a GPU array is copied back)."""
    import numpy as np

    return np.asarray(host_value(a))


def like(existing, value):
    """``value`` (numpy) on the device where ``existing`` lives: a variable keeps its device when
    it is overwritten from the host (restore, fine-tuning, ``Variable.load``)."""
    if not on_device(existing):
        return value
    import cupy

    with existing.device:
        return cupy.asarray(value)


def const_on_host(op, consumers=None):
    """Whether a Const on an accelerator keeps its value as numpy: every consumer reads it as a
    host input (a shape, a size), so it never needs to be on the device. ``consumers``: {tensor:
    [ops]} of the plan (default: the graph's own consumer lists)."""
    uses = [(c, i) for t in op.outputs for c in (consumers.get(t, ()) if consumers is not None else t._consumers)
            for i, u in enumerate(c.inputs) if u is t]
    return bool(uses) and all(i in c.op_def.host_inputs for c, i in uses)


def _host_produced(t, consumers):
    p = t.op
    return p.op_def.host_outputs or (p.type == "Const" and const_on_host(p, consumers))


def accelerator_kernel(op, kernel, xp, consumers=None):
    """``kernel`` of ``op`` placed on an accelerator (array module ``xp``), wrapped so that its
    host inputs arrive as numpy (one device wait instead of one per element) and numpy values from
    host-memory producers (Shape, Size, Rank, shape constants) move to the device where the op
    reads them as data. Unwrapped when neither can happen. A shape constant itself stays numpy."""
    import numpy as np

    if op.type == "Const" and const_on_host(op, consumers):
        value = op.attrs["value"]
        return lambda: value
    host = tuple(op.op_def.host_inputs)
    to_device = tuple(i for i, t in enumerate(op.inputs) if i not in host and _host_produced(t, consumers))
    if not host and not to_device:
        return kernel

    def run(*args):
        args = list(args)
        for i in host:
            args[i] = host_value(args[i])
        for i in to_device:
            if isinstance(args[i], (np.ndarray, np.generic)):
                args[i] = xp.asarray(args[i])
        return kernel(*args)

    return run


LOCAL = "/job:localhost/replica:0/task:0"
_THROUGHPUT = {}


def _throughput(kind, xp):
    """Measured once per device kind and process: float32 matmul GFLOP/s and copy GB/s."""
    if kind not in _THROUGHPUT:
        import time

        gf = measure_gflops(xp, n=256, reps=3)
        a = xp.ones(1 << 21, dtype=xp.float32)
        t = time.perf_counter()
        for _ in range(5):
            a.copy()
        bw = 5 * a.nbytes * 2 / max(time.perf_counter() - t, 1e-9) / 1e9
        _THROUGHPUT[kind] = (gf, bw)
    return _THROUGHPUT[kind]


def cpu_device(index: int = 0) -> Device:
    import numpy

    gf, bw = _THROUGHPUT.get("CPU", (50.0, 10.0))
    return Device(f"{LOCAL}/device:CPU:{index}", "CPU", numpy, index, int(_meminfo_gb() * 2**30),
                  gf, bw, 2.0)


def _cupy():
    """cupy when it imports and CUDA reports at least one device, else None (never raises)."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
    except Exception:  # noqa: BLE001 - no CUDA, no driver, no cupy: no GPU devices
        return None
    return None


def local_devices(device_count=None, measure=False):
    """The devices of this process: ``device_count={"CPU": n}`` makes n virtual CPU devices
    (numpy, sharing the machine's cores) so multi-device behaviour is testable anywhere; GPUs are
    those CUDA reports through CuPy (``device_count={"GPU": 0}`` hides them)."""
    import numpy

    device_count = dict(device_count or {})
    n_cpu = int(device_count.get("CPU", 1))
    if n_cpu < 1:
        raise ValueError(f"device_count CPU must be >= 1. Received: {n_cpu}")
    if measure:
        _throughput("CPU", numpy)
    devices = [cpu_device(i) for i in range(n_cpu)]
    cp = _cupy() if device_count.get("GPU", 1) else None
    if cp is not None:
        n_gpu = min(int(device_count.get("GPU", cp.cuda.runtime.getDeviceCount())),
                    cp.cuda.runtime.getDeviceCount())
        for i in range(n_gpu):
            with cp.cuda.Device(i):
                free, total = cp.cuda.runtime.memGetInfo()
                gf, bw = _throughput(f"GPU:{i}", cp) if measure else (10000.0, 500.0)
            devices.append(Device(f"{LOCAL}/device:GPU:{i}", "GPU", cp, i, total, gf, bw, 10.0))
    return devices


def _meminfo_gb():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def measure_gflops(xp, n=512, reps=5):
    """float32 matmul throughput of an array module, in GFLOP/s (a few milliseconds)."""
    import time

    a = xp.ones((n, n), dtype=xp.float32)
    a @ a
    t = time.perf_counter()
    for _ in range(reps):
        a @ a
    if hasattr(xp, "cuda"):
        xp.cuda.Device().synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


class DeviceAttributes:
    """What ``tc.list_devices()`` reports (TF's DeviceAttributes)."""

    def __init__(self, device: Device):
        self.name = device.name
        self.device_type = device.device_type
        self.memory_limit_bytes = device.memory_bytes
        self.gflops = device.gflops

    def __repr__(self):
        return (f"_DeviceAttributes({self.name}, {self.device_type}, {self.memory_limit_bytes}, "
                f"{self.gflops:.0f} GFLOP/s)")


def list_devices(config=None):
    """``tc.list_devices(config=None)``: every device a Session with ``config`` would have."""
    counts = getattr(config, "device_count", None) if config is not None else None
    return [DeviceAttributes(d) for d in local_devices(counts, measure=True)]


def describe_devices(device_count=None):
    """The devices the engine sees, with memory and measured throughput (``tfconf devices``)."""
    return [{"name": d.name, "type": d.device_type, "memory_gb": d.memory_bytes / 2**30, "gflops": d.gflops}
            for d in local_devices(device_count, measure=True)]
