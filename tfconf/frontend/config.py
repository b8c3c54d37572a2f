"""From a config file to a validated, compiled net: the single entry point the CLI uses.

``load(path, overrides)`` reads the YAML (with ``base:`` and ``--set``), validates it, checks the
net's structure (unique names, bottoms that exist, shapes that fit) by building it into a scratch
graph, and returns everything located errors need. Every mistake raises a ConfigError whose lines
read ``file:line:col: path: message. Received: value``."""

from __future__ import annotations

import dataclasses
import os

from . import trust
from .errors import ConfigError
from .loader import LoadedConfig, load_config
from .schema_base import validate_section


@dataclasses.dataclass
class Config:
    net: object            # NetConfig
    loaded: LoadedConfig
    path: str

    @property
    def root(self) -> str:
        """The folder relative data paths are resolved against (the config's own folder)."""
        return os.path.dirname(os.path.abspath(self.path))


def load(path, overrides=(), *, check=True) -> Config:
    from .net_schema import NetConfig

    loaded = load_config(path, overrides)
    net = validate_section(NetConfig, loaded)
    cfg = Config(net, loaded, str(path))
    _check_names(cfg)
    trust.check(cfg)  # before any Python layer's module is imported
    if check:
        check_net(cfg)
    return cfg


def _check_names(cfg: Config):
    seen = {}
    issues = []
    for i, layer in enumerate(cfg.net.layers):
        if layer.name in seen:
            issues.append(cfg.loaded.issue(("layers", i, "name"),
                                           f"duplicate layer name (also layers[{seen[layer.name]}])",
                                           layer.name))
        else:
            seen[layer.name] = i
    if issues:
        raise ConfigError(issues)


def input_shapes(cfg: Config):
    """(sample shape, num classes) of the train data, read from the data source itself. Both the
    train and the test source are opened, so that a missing file or a transform that does not fit
    the data is reported (at its config key) before anything runs."""
    data = cfg.net.data
    if data is None:
        return None
    shapes = {}
    for phase in ("train", "test"):
        spec = getattr(data, phase)
        if spec is not None:
            shapes[phase] = _spec_shape(cfg, phase, spec)
    return shapes.get("train", shapes.get("test"))


def _spec_shape(cfg: Config, phase: str, spec):
    from tfconf.data import DataError, load_source, make_transform

    try:
        if spec.is_text:  # streams characters; its tops come from data_tops()
            from tfconf.data.text import corpus_for

            corpus_for(spec, cfg.root)
            return None
        x, _ = load_source(spec, spec.split or phase, root=cfg.root, seed=0)
        return make_transform(spec, x.shape[1:], phase, cfg.root).output_shape
    except DataError as e:
        raise cfg.loaded.error(("data", phase, _data_key(cfg, phase, str(e))), str(e)) from None


def _data_key(cfg: Config, phase: str, message: str) -> str:
    """The key of ``data.<phase>`` a data error is about: the first key written there that the
    message names (``crop_size``, ``mean_value``...), else ``source``."""
    import re

    written = cfg.loaded.data.get("data", {}).get(phase, {}) if isinstance(cfg.loaded.data, dict) else {}
    for key in (written if isinstance(written, dict) else {}):
        if key != "source" and re.search(rf"\b{re.escape(str(key))}\b", message):
            return key
    return "source"


def data_tops(cfg: Config):
    """name → (shape, dtype) of the inputs when the data declares them (text sources), else None."""
    from tfconf.data import input_tops

    data = cfg.net.data
    spec = (data.train or data.test) if data is not None else None
    return input_tops(spec) if spec is not None else None


def build_phase(cfg: Config, phase: str, graph=None, params=None, meta=None, inputs=None, sample_shape=None):
    """Build one phase of the net; a NetBuildError becomes a located ConfigError."""
    from tfconf.engine import api as tc

    from .compiler import NetBuildError, build_net
    from .layers.base import NetState

    g = graph or tc.Graph()
    if inputs is None:
        inputs = {}
        if sample_shape is not None:
            with g.as_default():
                inputs = {"data": tc.placeholder(tc.float32, [None, *sample_shape], name="data"),
                          "label": tc.placeholder(tc.int64, [None], name="label")}
    try:
        return build_net(cfg.net.layers, NetState(phase=phase), g, params if params is not None else {},
                         meta if meta is not None else {}, inputs, device=cfg.net.device)
    except NetBuildError as e:
        path = ("layers", e.index) + ((e.field,) if e.field else ())
        raise cfg.loaded.error(path, e.message) from None


def check_net(cfg: Config, sample_shape=None):
    """Build both phases into a scratch graph: catches dangling bottoms and shapes that do not fit."""
    from tfconf.engine import api as tc

    if sample_shape is None and cfg.net.data is not None:
        sample_shape = input_shapes(cfg)
    g = tc.Graph()
    params, meta, inputs = {}, {}, {}
    tops = data_tops(cfg)
    if tops is not None:
        with g.as_default():
            inputs = {n: tc.placeholder(tc.as_dtype(dt), shape, name=n) for n, (shape, dt) in tops.items()}
    elif sample_shape is not None:
        with g.as_default():
            inputs = {"data": tc.placeholder(tc.float32, [None, *sample_shape], name="data"),
                      "label": tc.placeholder(tc.int64, [None], name="label")}
    nets = {phase: build_phase(cfg, phase, g, params, meta, inputs) for phase in ("train", "test")}
    check_memory(cfg, nets, params, meta)
    return nets, params


def _memory_limit() -> int | None:
    """Bytes of memory this machine has (RAM and swap), or None where that cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            info = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in f if ln.split()[1:2] and ln.split()[1].isdigit()}
        return info["MemTotal"] + info.get("SwapTotal", 0)
    except (OSError, KeyError, ValueError, IndexError):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def _nbytes(t, batch: int) -> tuple[int, list] | None:
    """(bytes, shape with the batch filled in) of a tensor, None when its shape is not known."""
    dims = t.shape.as_list() if t.shape.ndims is not None else None
    if dims is None:
        return None
    dims = [batch if (d is None and i == 0) else d for i, d in enumerate(dims)]
    if any(d is None for d in dims):
        return None
    n = 1
    for d in dims:
        n *= int(d)
    return n * t.dtype.size, dims


def check_memory(cfg: Config, nets, params, meta, limit=None):
    """A lower bound of the memory training (or testing) the net takes, refused at the layer that
    needs the most when it is more than this machine has: said before anything is allocated.

    Counted: each parameter three times when training (value, gradient, one solver slot), once
    otherwise; each layer's tops of the train net twice (the activation and its gradient) at the
    train batch size, of the test net once at the test batch size. In-place layers and kernels'
    scratch memory are not counted, so the bound is low: a net it passes may still not fit."""
    if getattr(cfg.net, "cluster", None) is not None or getattr(cfg.net, "distributed", None) is not None:
        return  # its memory is the cluster's machines', not this one's
    limit = _memory_limit() if limit is None else limit
    if not limit:
        return
    training = cfg.net.solver is not None
    data = cfg.net.data
    batch = {ph: (getattr(getattr(data, ph, None), "batch_size", None) or 1) if data is not None else 1
             for ph in ("train", "test")}
    # layer name → [bytes, the biggest item's description, its bytes], for the parameters and for
    # each phase's activations (the phases do not run at once: the larger one counts)
    parts: dict[str, dict[str, list]] = {"params": {}, "train": {}, "test": {}}

    def add(part, layer, nbytes, what):
        rec = parts[part].setdefault(layer, [0, "", 0])
        rec[0] += nbytes
        if nbytes > rec[2]:
            rec[1], rec[2] = what, nbytes

    for key, var in params.items():
        got = _nbytes(var, 1)
        if got is not None:
            layer = meta.get(key, {}).get("layer", key.split("/")[0])
            add("params", layer, got[0] * (3 if training else 1), f"parameter {key} {got[1]} {var.dtype.name}")
    for phase, factor in (("train", 2 if training else 1), ("test", 1)):
        net = nets.get(phase)
        if net is None or (data is not None and getattr(data, phase, None) is None):
            continue  # a phase without data does not run
        for layer, outs in net.layer_tops.items():
            for t in outs:
                got = _nbytes(t, batch[phase])
                if got is not None:
                    add(phase, layer, got[0] * factor, f"{phase} top {got[1]} {t.dtype.name}")
        for name, t in net.tops.items():  # the data a batch feeds
            if name in net.layer_tops or t.op.type != "Placeholder":
                continue
            got = _nbytes(t, batch[phase])
            if got is not None:
                add(phase, f"data.{phase}", got[0], f"the {name} batch {got[1]} {t.dtype.name}")
    sums = {k: sum(rec[0] for rec in v.values()) for k, v in parts.items()}
    phase = "train" if sums["train"] >= sums["test"] else "test"
    total = sums["params"] + sums[phase]
    if total <= limit:
        return
    per_layer = {}
    for part in ("params", phase):
        for layer, (n, what, big) in parts[part].items():
            rec = per_layer.setdefault(layer, [0, "", 0])
            rec[0] += n
            if big > rec[2]:
                rec[1], rec[2] = what, big
    worst = max(per_layer, key=lambda k: per_layer[k][0])
    need, what, _ = per_layer[worst]
    message = (f"{'training' if training else 'running'} the net needs at least {_gib(total)} of memory and this "
               f"machine has {_gib(limit)}; {{who}} needs the most, {_gib(need)} (the largest part: {what}). "
               "Lower the batch size or the layer sizes")
    names = [layer.name for layer in cfg.net.layers]
    if worst in names:
        raise cfg.loaded.error(("layers", names.index(worst)), message.format(who=f"layer {worst!r}"))
    raise cfg.loaded.error(("data", phase, "batch_size") if data is not None else ("layers",),
                           message.format(who=f"the data.{phase} batch"))
