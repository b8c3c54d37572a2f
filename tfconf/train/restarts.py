"""``tfconf train --max-restarts N``: a training whose task died starts again from its last snapshot.

As the TensorFlow whitepaper describes fault tolerance: a failed Send/Recv or health check aborts
the step (:class:`TaskFailedError` naming the task), and the run restarts from its latest complete
snapshot with fresh tasks. The run folder is fixed before the first attempt, so every attempt
writes to it, and each resumed attempt truncates what the failed one logged after its snapshot.
One connection to Ray serves every attempt.
"""

from __future__ import annotations

import os

from tfconf.distributed.cluster import TaskFailedError, connect

from . import snapshot
from .resume import choose_run_dir


def _is_distributed(cfg) -> bool:
    net = cfg.net
    return getattr(net, "distributed", None) is not None or getattr(net, "cluster", None) is not None


def restarting(train_fn, max_restarts: int = 0, echo=print):
    """Wrap ``runner.train``: a distributed run that loses a task is resumed from the newest
    complete snapshot in its run folder, at most ``max_restarts`` times (from the beginning when no
    snapshot was written yet). Other runs pass straight through."""

    def run(cfg, *, out=None, resume=None, **kw):
        if not _is_distributed(cfg):
            return train_fn(cfg, out=out, resume=resume, **kw)
        import ray

        run_dir = choose_run_dir(cfg, out, resume)
        started = connect(cfg.net.cluster.address if cfg.net.cluster is not None else "local")
        try:
            attempt = 0
            while True:
                try:
                    # a restart without a snapshot starts again, replacing the first attempt's files
                    return train_fn(cfg, out=run_dir, resume=resume, **(dict(kw, force=True) if attempt and not resume else kw))
                except TaskFailedError as e:
                    if attempt >= max_restarts:
                        if max_restarts:
                            raise TaskFailedError(e.task, f"{e} (after {attempt} restart"
                                                          f"{'s' if attempt != 1 else ''})") from None
                        raise
                    attempt += 1
                    found = snapshot.latest_snapshot(os.path.join(run_dir, "snapshots"))
                    resume = found or resume
                    echo(f"{e}; restarting ({attempt} of {max_restarts}) from "
                         f"{found or resume or 'the beginning'}")
        finally:
            if started:
                ray.shutdown()

    return run
