"""Distributed mode on Ray: client, master and workers in different processes.

    import tfconf as tc
    from tfconf.distributed import ClusterSession, ClusterSpec

    cluster = ClusterSpec({"ps": 1, "worker": 2}, address="local")   # or "auto", "HOST:PORT"
    with tc.device("/job:ps/task:0"):
        w = tc.Variable(...)
    with tc.device("/job:worker/task:1"):
        y = tc.matmul(x, w)
    with ClusterSession(cluster) as sess:                 # tf.Session(target=...) for a Ray cluster
        sess.run(tc.global_variables_initializer())
        sess.run(y, {x: batch})

Each task is a Ray actor (:mod:`.worker`) holding its devices, its variables and an executor; the
session (:mod:`.session`) is the master: it places and partitions the graph with the engine's own
placement and Send/Recv partitioning, registers each task's partitions once and sends one run
request per task per step. Data-parallel training from a config (``distributed:``) is in
:mod:`tfconf.train.distributed`. Importing this package does not import Ray.
"""

from .cluster import (  # noqa: F401
    ClusterError, ClusterSpec, RayUnavailable, TaskFailedError, connect, usable_cores,
)
from .session import ClusterSession  # noqa: F401
from .sources import SourceFeed  # noqa: F401
