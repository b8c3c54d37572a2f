"""From a config file to a validated, compiled net: the single entry point the CLI uses.

``load(path, overrides)`` reads the YAML (with ``base:`` and ``--set``), validates it, checks the
net's structure (unique names, bottoms that exist, shapes that fit) by building it into a scratch
graph, and returns everything located errors need. Every mistake raises a ConfigError whose lines
read ``file:line:col: path: message. Received: value``."""

from __future__ import annotations

import dataclasses
import os

from . import trust
from .errors import MISSING, ConfigError
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
    _check_test_nets(cfg)
    _check_names(cfg)
    trust.check(cfg)  # before any Python layer's module is imported
    if check:
        check_net(cfg)
    return cfg


def net_states(net) -> list:
    """(name, NetState) of every net a config builds, in order: ``train``, then each test net
    (solver.test_phases: its stages and level in the test phase)."""
    from .layers.base import NetState
    from .solver_schema import test_phases

    states = [("train", NetState(phase="train"))]
    for t in test_phases(net.solver, net.data):
        states.append((t.name, NetState(phase="test", level=t.level, stages=list(t.stages))))
    return states


def _check_names(cfg: Config):
    """Layer names are unique within each net a config builds (Caffe's rule): two layers may share
    a name when their include/exclude rules keep them out of each other's nets (they share their
    parameters then, as every layer of one name does)."""
    states = net_states(cfg.net)
    layers = cfg.net.layers
    member = [[name for name, state in states if layer.included(state)] for layer in layers]
    everywhere = [name for name, _ in states]
    first: dict = {}  # (net, layer name) → index
    issues = []
    for i, layer in enumerate(layers):
        clash = {}
        for net in member[i]:
            j = first.setdefault((net, layer.name), i)
            if j != i:
                clash.setdefault(j, []).append(net)
        for j, nets in clash.items():
            where = "" if nets == everywhere else (f"; both are in the {', '.join(nets)} net"
                                                   f"{'s' if len(nets) > 1 else ''}, and names are unique "
                                                   "within each net")
            issues.append(cfg.loaded.issue(("layers", i, "name"), f"duplicate layer name (also layers[{j}]){where}",
                                           layer.name))
    if issues:
        raise ConfigError(issues)


def _check_test_nets(cfg: Config):
    """Each test net reads a data source the data section has, and each named source is read by a
    test net (so that a misspelt ``tset:`` is not a source nobody reads)."""
    from tfconf.errors import did_you_mean

    from .solver_schema import test_phases

    data, solver = cfg.net.data, cfg.net.solver
    phases = test_phases(solver, data)
    named = data.sources() if data is not None else {}
    have = [k for k in ("train", "test") if data is not None and getattr(data, k) is not None] + list(named)
    issues = []
    for t in phases:
        if t.index is None or (data is not None and data.source(t.data) is not None):
            continue
        written = solver.test_nets[t.index].data is not None
        path = ("solver", "test_nets", t.index) + (("data",) if written else ())
        why = "" if written else (f" (a test net reads data.{t.name} where the data section has that source, "
                                  "else data.test; data: NAME chooses another)")
        sources = f"the data section has {', '.join(have)}" if have else "the config has no data section"
        hint = did_you_mean(t.data, have)
        issues.append(cfg.loaded.issue(path, f"test net {t.name!r} reads data.{t.data}{why}, but {sources}"
                                       + (f".{hint}" if hint else ""), t.data if written else MISSING))
    read = {t.data for t in phases}
    for key in named:
        if key not in read:
            nets = [t.name for t in phases if t.index is not None]
            said = (f"solver.test_nets reads {', '.join(sorted(read))}" if nets
                    else "the config declares no solver.test_nets")
            hint = did_you_mean(key, ["train", "test", *nets])
            issues.append(cfg.loaded.issue(("data", key), f"no test net reads this source ({said}); a data "
                                           "section holds train, test and the sources of solver.test_nets"
                                           + (f".{hint}" if hint else "")))
    if issues:
        raise ConfigError(issues)


def input_shapes(cfg: Config, absent_data: bool = False):
    """The sample shape of the train data (else the test data), read from the data source itself.
    Every source is opened (train, test and the named sources of further test nets), so that a
    missing file or a transform that does not fit the data is reported (at its config key) before
    anything runs, and so is a test source whose samples differ from the train data's (every net
    reads the same inputs). With ``absent_data``, a source that is not here but declares its
    ``shape:`` counts with that shape (validate --shapes)."""
    data = cfg.net.data
    if data is None:
        return None
    specs = {"train": data.train, "test": data.test, **data.sources()}
    shapes = {key: _spec_shape(cfg, key, spec, absent_data) for key, spec in specs.items() if spec is not None}
    first = "train" if "train" in shapes else "test"
    shape = shapes.get(first)
    for key in data.sources():
        if shape is not None and shapes[key] is not None and tuple(shapes[key]) != tuple(shape):
            raise cfg.loaded.error(("data", key), f"gives samples of shape {list(shapes[key])}, but the nets are "
                                   f"built for data.{first}'s {list(shape)} (every net reads the same inputs)")
    return shape


def _spec_shape(cfg: Config, key: str, spec, absent_data: bool = False):
    """The shape of one sample of ``data.<key>`` as the nets get it (None for text streams)."""
    from tfconf.data import DataError, sample_shape
    from tfconf.data.sources import declared, seen_shape

    if absent_data and declared(spec, cfg.root):
        return tuple(seen_shape(spec, spec.shape))
    try:
        if spec.is_text:  # streams characters; its tops come from data_tops()
            from tfconf.data.text import corpus_for

            corpus_for(spec, cfg.root)
            return None
        return tuple(sample_shape(spec, "train" if key == "train" else "test", cfg.root))
    except DataError as e:
        message = str(e)
        if spec.shape is None and not spec.is_builtin and not spec.is_text and "not found" in message:
            message += ("; to check the net before the data is here, declare the samples' shape (shape: [C, H, W]) "
                        "and run tfconf validate --shapes")
        raise cfg.loaded.error(("data", key, _data_key(cfg, key, str(e))), message) from None


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


def build_phase(cfg: Config, phase: str, graph=None, params=None, meta=None, inputs=None, sample_shape=None,
                state=None, net=None):
    """Build one phase of the net (``state``: its NetState, default just the phase; ``net``: the
    test net's name, said in errors); a NetBuildError becomes a located ConfigError."""
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
        return build_net(cfg.net.layers, state or NetState(phase=phase), g, params if params is not None else {},
                         meta if meta is not None else {}, inputs, device=cfg.net.device)
    except NetBuildError as e:
        path = ("layers", e.index) + ((e.field,) if e.field else ())
        said = f" (in the test net {net!r})" if net not in (None, "train", "test") else ""
        raise cfg.loaded.error(path, e.message + said) from None


def check_net(cfg: Config, sample_shape=None, absent_data: bool = False):
    """Build both phases into a scratch graph: catches dangling bottoms and shapes that do not fit.
    ``absent_data``: data that is not here is taken at its declared ``shape:``."""
    from tfconf.engine import api as tc

    if sample_shape is None and cfg.net.data is not None:
        sample_shape = input_shapes(cfg, absent_data)
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
    # (nets: train, each test net by name, and "test": the only or the first test net)
    nets = {name: build_phase(cfg, state.phase, g, params, meta, inputs, state=state, net=name)
            for name, state in net_states(cfg.net)}
    nets.setdefault("test", next(net for name, net in nets.items() if name != "train"))
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
    from .solver_schema import test_phases

    training = cfg.net.solver is not None
    data = cfg.net.data
    # each net that runs: (its name, the data key it reads, activation factor)
    runs = [("train", "train", 2 if training else 1)]
    runs += [(t.name, t.data, 1) for t in test_phases(cfg.net.solver, data)]
    batch = {key: (getattr(data.source(key), "batch_size", None) or 1) if data is not None else 1
             for _, key, _ in runs}
    # layer name → [bytes, the biggest item's description, its bytes], for the parameters and for
    # each net's activations (the nets do not run at once: the largest one counts)
    parts: dict[str, dict[str, list]] = {"/params": {}, **{name: {} for name, _, _ in runs}}  # ("/": no net's name)
    source = {name: key for name, key, _ in runs}

    def add(part, layer, nbytes, what):
        rec = parts[part].setdefault(layer, [0, "", 0])
        rec[0] += nbytes
        if nbytes > rec[2]:
            rec[1], rec[2] = what, nbytes

    for key, var in params.items():
        got = _nbytes(var, 1)
        if got is not None:
            layer = meta.get(key, {}).get("layer", key.split("/")[0])
            add("/params", layer, got[0] * (3 if training else 1), f"parameter {key} {got[1]} {var.dtype.name}")
    for phase, key, factor in runs:
        net = nets.get(phase)
        if net is None or (data is not None and data.source(key) is None):
            continue  # a net without data does not run
        for layer, outs in net.layer_tops.items():
            for t in outs:
                got = _nbytes(t, batch[key])
                if got is not None:
                    add(phase, layer, got[0] * factor, f"{phase} top {got[1]} {t.dtype.name}")
        for name, t in net.tops.items():  # the data a batch feeds
            if name in net.layer_tops or t.op.type != "Placeholder":
                continue
            got = _nbytes(t, batch[key])
            if got is not None:
                add(phase, f"data.{key}", got[0], f"the {name} batch {got[1]} {t.dtype.name}")
    sums = {k: sum(rec[0] for rec in v.values()) for k, v in parts.items()}
    phase = max((name for name, _, _ in runs), key=lambda name: sums[name])  # (the first of equals: train)
    total = sums["/params"] + sums[phase]
    if total <= limit:
        return
    per_layer = {}
    for part in ("/params", phase):
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
    raise cfg.loaded.error(("data", source[phase], "batch_size") if data is not None else ("layers",),
                           message.format(who=f"the data.{source[phase]} batch"))
