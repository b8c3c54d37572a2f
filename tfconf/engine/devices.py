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
                raise ValueError(f"Invalid device name {spec!r}: cannot parse {part!r}.")
            key, val = m.groups()
            if key == "job":
                job = val
            elif key == "replica":
                replica = int(val)
            elif key == "task":
                task = int(val)
            else:
                kind, _, idx = val.partition(":")
                dtype = kind.upper()
                index = None if idx in ("", "*") else int(idx)
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


def canonical_name(spec: str) -> str:
    return DeviceSpec.from_string(spec).to_string()


def merge_device(outer: str, inner: str) -> str:
    if not inner:
        return outer
    if not outer:
        return canonical_name(inner)
    return DeviceSpec.from_string(outer).merge(DeviceSpec.from_string(inner)).to_string()


class Device:
    """A device that runs kernels; ``xp`` is its array module (numpy for CPU, cupy for GPU)."""

    def __init__(self, name: str, device_type: str, xp):
        self.name = name
        self.device_type = device_type
        self.xp = xp

    def __repr__(self):
        return f"<Device {self.name}>"


def cpu_device(index: int = 0) -> Device:
    import numpy

    return Device(f"/job:localhost/replica:0/task:0/device:CPU:{index}", "CPU", numpy)


def _meminfo_gb():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def measure_gflops(xp, n=512, reps=5):
    """float32 matmul throughput of an array module, in GFLOP/s (a few milliseconds)."""
    import time

    a = xp.ones((n, n), dtype=xp.float32)
    a @ a
    t = time.perf_counter()
    for _ in range(reps):
        a @ a
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def describe_devices():
    """The devices the engine sees, with memory and measured throughput (``tfconf devices``)."""
    cpu = cpu_device(0)
    return [{"name": cpu.name, "type": "CPU", "memory_gb": _meminfo_gb(), "gflops": measure_gflops(cpu.xp)}]
