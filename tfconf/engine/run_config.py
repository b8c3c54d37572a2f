"""What a session and a run are asked to do, and what a traced run reports: SessionConfig (TF's
ConfigProto, flattened), RunOptions, RunMetadata."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class SessionConfig:
    """Options for a Session (TensorFlow's ConfigProto, flattened)."""

    inter_op_threads: int = 1
    device_count: dict = dataclasses.field(default_factory=dict)
    log_device_placement: bool = False
    allow_soft_placement: bool = True
    #: plan rewrites (TF's RewriterConfig): True (all), False (none), a dict of RewriteConfig
    #: fields ({"fusion": False}) or a RewriteConfig
    graph_rewrites: object = True
    #: "default" or "recompute" (drop forward activations, recompute them in the backward pass)
    memory: str = "default"
    #: buffer reuse and in-place elementwise updates in the serial executor
    memory_planning: bool = True
    #: kernel providers (engine/kernel_choice.py): "auto" (every one whose library loads, or the
    #: TFCONF_KERNELS environment variable), "numpy" (the reference kernels only), "onednn"
    kernels: object = "auto"


@dataclasses.dataclass
class RunOptions:
    """Per-run options: ``check_numerics`` raises at the first op that outputs NaN/Inf;
    ``trace`` records each op's wall time into ``RunMetadata.step_stats``. Either runs serially."""

    check_numerics: bool = False
    trace: bool = False

    @classmethod
    def of(cls, value):
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise TypeError(f"options must be a RunOptions or a dict, received {type(value).__name__}")


@dataclasses.dataclass
class RunMetadata:
    """Filled by a traced run: ``step_stats`` is a list of NodeStats (name, type, seconds, device,
    start, kernel), start in seconds from the beginning of the run, kernel the provider that ran
    the op ("onednn", or "reference" for the op's own kernel)."""

    step_stats: list = dataclasses.field(default_factory=list)

    def chrome_trace(self, path=None) -> str:
        """The run as Chrome/Perfetto trace JSON (one track per device); written to ``path`` if given."""
        import json

        devices = sorted({s.device for s in self.step_stats})
        events = [{"name": "thread_name", "ph": "M", "pid": 0, "tid": i, "args": {"name": d}}
                  for i, d in enumerate(devices)]
        for s in self.step_stats:
            events.append({"name": s.name, "cat": s.type, "ph": "X", "pid": 0, "tid": devices.index(s.device),
                           "ts": s.start * 1e6, "dur": s.seconds * 1e6, "args": {"op": s.type}})
        text = json.dumps({"traceEvents": events, "displayTimeUnit": "ms"})
        if path is not None:
            with open(path, "w") as f:
                f.write(text)
        return text
