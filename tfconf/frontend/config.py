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
    import tfconf as tc

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
    import tfconf as tc

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
    return nets, params
