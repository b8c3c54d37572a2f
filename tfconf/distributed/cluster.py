"""Cluster descriptions and the connection to Ray, shared by distributed training and the sweeps'
``--backend ray``.

A cluster is a set of *jobs* (``ps``, ``worker``), each a number of *tasks*; every task becomes one
Ray actor, and its devices are named ``/job:JOB/replica:0/task:T/device:CPU:0``. Where the actors
run is Ray's business: ``address`` says which Ray cluster to use (``local`` starts one on this
machine, ``auto`` joins the one ``ray start --head`` started here, ``HOST:PORT`` a remote one).

Nothing here imports Ray at module level; :func:`connect` does, when called.
"""

from __future__ import annotations

import dataclasses
import os

from tfconf.errors import UserError

__all__ = ["ClusterError", "ClusterSpec", "RayUnavailable", "TaskFailedError", "connect", "usable_cores"]


class ClusterError(UserError, RuntimeError):
    """Something about the cluster rather than the graph: it cannot be reached, or a task died."""


class RayUnavailable(ClusterError):
    """Ray is not installed or cannot start/connect (printed as a user error)."""


class TaskFailedError(ClusterError):
    """A task of the cluster died or stopped answering; ``task`` names it (``/job:worker/task:1``).
    The step that met it was aborted; the session that ran it cannot run again."""

    def __init__(self, task: str, message: str):
        super().__init__(task, message)  # both in args: the error travels between processes
        self.task, self.message = task, message

    def __str__(self):
        return self.message

    @classmethod
    def from_ray(cls, task: str, e: BaseException, context: str = "") -> TaskFailedError | None:
        """The failure for a Ray error met while talking to ``task``: "task T died (...)" when the
        error says its actor is gone, whichever process saw it first (the driver waiting on it or
        a peer whose Send it did not take), so a dead task is reported the same way every time;
        None for any other error."""
        from ray import exceptions as rex

        if isinstance(e, (rex.RayActorError, rex.WorkerCrashedError, rex.ActorUnavailableError)):
            return cls(task, f"task {task} died ({type(e).__name__}){context}: the step was aborted")
        return None


def usable_cores() -> int:
    """The cores this process may run on (taskset/cgroup affinity), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def connect(address: str | None = None, *, num_cpus: int | None = None, what: str = "distributed mode") -> bool:
    """Connect this process to Ray. ``address`` ``None`` or ``"local"`` starts a local instance with
    ``num_cpus`` CPUs (default: the usable cores); ``"auto"`` or ``"HOST:PORT"`` joins a running
    cluster. Returns True when this call started or joined Ray (the caller then calls
    ``ray.shutdown()`` when done), False when the process was already connected.
    Raises :class:`RayUnavailable` with a one-line reason when Ray is missing (naming ``what``
    needs it) or unreachable."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"{what} needs Ray: pip install 'tfconf[ray]' (or pip install ray)") from None
    if ray.is_initialized():
        return False
    local = address in (None, "", "local")
    if not local and address != "auto":
        _probe(address)  # Ray itself retries an unreachable address for minutes
    kw = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        if local:
            ray.init(num_cpus=num_cpus or usable_cores(), **kw)
        else:
            ray.init(address=address, **kw)
    except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError...
        where = "start a local Ray instance" if local else f"join the Ray cluster at {address}"
        raise RayUnavailable(f"could not {where}: {' '.join(str(e).split())}") from None
    return True


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast, naming the address, when nothing accepts a TCP connection at HOST:PORT."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise RayUnavailable(f"cluster address {address!r}: expected local, auto or HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise RayUnavailable(f"could not join the Ray cluster at {address}: nothing answers there ({e}); "
                             "start one with `ray start --head` or use --cluster local") from None


def task_name(job: str, task: int) -> str:
    return f"/job:{job}/replica:0/task:{task}"


def short_task_name(job: str, task: int) -> str:
    return f"/job:{job}/task:{task}"


@dataclasses.dataclass
class ClusterSpec:
    """``ClusterSpec({"ps": 1, "worker": 2}, address="local")``: the jobs and their task counts.

    TensorFlow's ``tf.train.ClusterSpec`` lists a ``host:port`` per task; here Ray places the tasks,
    so a job is only a count. ``cpus_per_task`` is what each task's actor asks Ray for (default:
    one CPU, or an equal share of the cluster's CPUs when it has fewer than one per task);
    ``device_count`` is each task's ``{"CPU": n, "GPU": m}`` (as in ``SessionConfig``);
    ``link_gbps`` is the network speed the placement cost model assumes between tasks."""

    jobs: dict = dataclasses.field(default_factory=lambda: {"worker": 1})
    address: str = "local"
    backend: str = "ray"
    cpus_per_task: float | None = None
    device_count: dict | None = None
    link_gbps: float = 10.0

    def __post_init__(self):
        if self.backend != "ray":
            raise ValueError(f"cluster backend must be 'ray'. Received: {self.backend!r}")
        jobs = {}
        for job, n in dict(self.jobs or {}).items():
            if isinstance(n, (list, tuple)):
                raise ValueError(f"cluster job {job!r}: give a number of tasks, not addresses ({list(n)}); "
                                 "Ray decides where each task runs")
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise ValueError(f"cluster job {job!r} needs a whole number of tasks >= 0. Received: {n!r}")
            if not job or "/" in job or ":" in job:
                raise ValueError(f"invalid job name {job!r}")
            if n:
                jobs[job] = n
        if not jobs:
            raise ValueError("a cluster needs at least one task (e.g. jobs: {worker: 1})")
        self.jobs = jobs

    @classmethod
    def of(cls, target) -> "ClusterSpec":
        """A ClusterSpec from a ClusterSpec, a jobs dict (``{"ps": 1, "worker": 2}``) or an address."""
        if isinstance(target, cls):
            return target
        if isinstance(target, dict):
            return cls(jobs=target)
        if isinstance(target, str):
            return cls(address=target)
        raise TypeError(f"a cluster is a ClusterSpec, a dict of job sizes or a Ray address. Received: {target!r}")

    @property
    def tasks(self) -> list:
        """(job, task index) of every task: the worker job first (its task 0 is where unplaced work
        and feeds start, like TensorFlow's chief), then the other jobs in the order given."""
        order = sorted(self.jobs, key=lambda j: j != "worker")
        return [(job, t) for job in order for t in range(self.jobs[job])]

    @property
    def num_tasks(self) -> int:
        return sum(self.jobs.values())

    def as_dict(self) -> dict:
        return {"jobs": dict(self.jobs), "address": self.address, "backend": self.backend,
                "cpus_per_task": self.cpus_per_task, "device_count": self.device_count,
                "link_gbps": self.link_gbps}
