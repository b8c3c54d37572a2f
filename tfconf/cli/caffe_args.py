"""Caffe's command line on tfconf's commands: what ``caffe train -solver``, ``caffe test -model
-weights -iterations``, ``caffe time -model``, ``-snapshot`` and ``-gpu`` mean here.

    tfconf train --solver lenet_solver.prototxt [-gpu 0] [-weights X.caffemodel | -snapshot X.solverstate]
    tfconf test -model lenet_train_test.prototxt -weights lenet_iter_10000.caffemodel -iterations 100
    tfconf time -model lenet_train_test.prototxt -iterations 50

Caffe's single-dash spellings (``-solver``, ``-model``, ``-weights``, ``-iterations``, ``-snapshot``,
``-gpu``) are declared as option names beside tfconf's ``--`` ones (click takes a multi-letter name
after one dash as a long option), and ``--solver=x`` / ``-solver=x`` work as click's ``=`` forms.

A Caffe net is converted on the fly by tfconf's importer (:func:`tfconf.interop.caffe_import.convert`)
and behaves as if ``tfconf import-caffe NET --solver S -o NET.yaml`` had written it and ``tfconf
train NET.yaml`` were run in the current folder:

* the solver's ``net:`` is found as Caffe finds it: relative to the current folder, else beside
  the solver file;
* relative data paths are resolved against the current folder (Caffe's working directory);
* the importer's notes are printed on stderr once; ``--set`` applies to the converted config;
* the converted YAML goes through the one config pipeline (``frontend.config.load``) from a
  temporary file, and every error, the converter's and those found later (validation, shapes that
  do not fit), is located at the prototxt's or the solver's ``file:line:col``: the config's source
  map is translated to the Caffe fields each value came from (``--set`` values keep theirs);
* a converted net counts as from elsewhere, as an imported config does (:mod:`tfconf.frontend.trust`):
  a net with a Python layer is refused without ``--trust-python`` before anything of it is built
  (the importer builds the net to judge its data);
* the run folder gets the converted YAML (``NET.yaml``, comments included) beside the resolved
  ``config.yaml``, so the run can be repeated without Caffe's files;
* a ``.caffemodel`` given to ``--weights`` is mapped to tfconf's parameter names by the importer
  (:mod:`tfconf.interop.caffe.weights`) and checked against the net before anything runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from pathlib import Path

import typer

from tfconf.errors import UserError

from . import common

__all__ = ["SolverOpt", "ModelOpt", "GpuOpt", "SnapshotOpt", "Source", "gpu_device", "resume_from",
           "solver_net", "load", "run_weights", "run_folder_callbacks", "is_caffemodel"]

SolverOpt = typer.Option(None, "--solver", "-solver", help="Caffe's solver (.prototxt) instead of a config: "
                         "its net: (a train_test .prototxt, found in the current folder or beside the solver) "
                         "is converted on the fly (`caffe train -solver`; see docs/cli.md).")
ModelOpt = typer.Option(None, "--model", "-model", help="A Caffe net (.prototxt) instead of a config, "
                        "converted on the fly (Caffe's -model; see docs/cli.md).")
GpuOpt = typer.Option(None, "--gpu", "-gpu", help="Caffe's -gpu: N is --device gpu:N, `all` any GPU.")
SnapshotOpt = typer.Option(None, "--snapshot", "-snapshot", help="Caffe's -snapshot: resume from "
                           "RUN/snapshots/NAME_iter_N.solverstate (tfconf's .solverstate.safetensors); "
                           "the same as --resume.")


def is_caffemodel(path) -> bool:
    return path is not None and str(path).lower().endswith(".caffemodel")


# ----------------------------------------------------------------------------------------- options
@dataclasses.dataclass
class Source:
    """What a command runs: a tfconf config (YAML or zoo:NAME), or a Caffe net (and solver)."""

    config: str | None = None
    net: str | None = None
    solver: str | None = None

    @classmethod
    def of(cls, config, solver=None, model=None) -> "Source":
        """The positional config or Caffe's ``--solver``/``--model``: exactly one of them."""
        caffe = [f"--{k} {v}" for k, v in (("solver", solver), ("model", model)) if v is not None]
        if config is not None and caffe:
            raise UserError(f"give a config or {' and '.join(caffe)}, not both. Received: the config {config} "
                            f"and {' and '.join(caffe)}")
        if solver is not None and model is not None:
            raise UserError(f"give --solver or --model, not both (a solver names its net). Received: "
                            f"--solver {solver} and --model {model}")
        if solver is not None:
            return cls(net=solver_net(solver), solver=solver)
        if model is not None:
            return cls(net=model)
        if config is None:
            raise UserError("missing the config: give a config (YAML or zoo:NAME), or Caffe's files "
                            "(--solver SOLVER.prototxt for train, --model NET.prototxt for test and time)")
        return cls(config=config)

    @property
    def is_caffe(self) -> bool:
        return self.net is not None


def gpu_device(gpu, device):
    """Caffe's ``-gpu`` as tfconf's ``--device`` value: ``0`` → ``gpu:0``, ``all`` → ``gpu``."""
    if gpu is None:
        return device
    if device is not None:
        raise UserError(f"give -gpu {gpu} or --device {device}, not both")
    value = str(gpu).strip().lower()
    if value.isdigit():
        return f"gpu:{int(value)}"
    if value == "all":
        return "gpu"
    if "," in value and all(p.strip().isdigit() for p in value.split(",")):
        raise UserError(f"-gpu {gpu}: tfconf trains a net on one process's devices, not Caffe's one solver per "
                        "GPU: give one GPU (-gpu 0), -gpu all (ops placed on any GPU), or --cluster for "
                        "data-parallel training (docs/distributed.md)")
    raise UserError(f"-gpu {gpu}: expected a GPU number (-gpu 0) or all")


def resume_from(resume, snapshot, weights=None):
    """``--snapshot`` (Caffe's ``-snapshot``) as ``--resume``'s value. Caffe's snapshot name
    ``NAME_iter_N.solverstate`` means tfconf's ``NAME_iter_N.solverstate.safetensors`` beside it."""
    if snapshot is None:
        return resume
    if resume is not None:
        raise UserError(f"give --snapshot {snapshot} or --resume {resume}, not both (the same option)")
    if weights is not None:  # Caffe's own refusal
        raise UserError("give a snapshot to resume training or weights to fine-tune from, not both. "
                        f"Received: --snapshot {snapshot} and --weights {weights}")
    path = str(snapshot)
    if path.endswith(".solverstate"):
        ours = path + ".safetensors"
        if os.path.exists(ours):
            return ours
        if os.path.isfile(path):
            raise UserError(f"--snapshot {path}: a Caffe solver state, which tfconf cannot continue (its "
                            "history blobs are Caffe's); start from the weights Caffe saved with it instead: "
                            "--weights NAME_iter_N.caffemodel")
        raise UserError(f"--snapshot {path}: no such snapshot (tfconf's are RUN/snapshots/"
                        "NAME_iter_N.solverstate.safetensors; a run folder works too)")
    return path


def solver_net(solver: str) -> str:
    """The net a Caffe solver names (``net:``, or ``train_net:``), found as Caffe finds it: relative
    to the current folder, else beside the solver file. Errors are located in the solver."""
    from tfconf.frontend.errors import ConfigError, Location
    from tfconf.interop.prototxt import parse_file

    msg = parse_file(solver)  # a missing or unreadable file: "SOLVER: no such file"
    field = msg.first("net") or msg.first("train_net")
    if field is None:
        inline = msg.first("net_param") or msg.first("train_net_param")
        where = inline.location if inline is not None else Location(str(solver), 1, 1)
        raise ConfigError.at(where, "the solver names no net file: tfconf needs net: \"NET.prototxt\" (Caffe's "
                             "train_test net; an inline net_param is not supported)", path=("net",))
    if not isinstance(field.value, str) or not field.value:
        raise ConfigError.at(field.location, "expects the net's file name (a quoted string)", path=(field.name,),
                             received=field.value)
    name = field.value
    beside = os.path.join(os.path.dirname(str(solver)), name)
    for candidate in ([name] if os.path.isabs(name) else [name, beside]):
        if os.path.isfile(candidate):
            return candidate
    looked = "" if os.path.isabs(name) else (f" (looked in the current folder {os.getcwd()} and beside the "
                                             f"solver in {os.path.dirname(os.path.abspath(str(solver)))})")
    raise ConfigError.at(field.location, f"no such net file{looked}", path=(field.name,), received=name)


# ----------------------------------------------------------------------------------------- loading
def load(source: Source, overrides=(), *, check=True, weights=None, timing=False):
    """The Config ``source`` names: a tfconf config as :func:`common.load_config` loads it, or a
    Caffe net converted on the fly (a :class:`CaffeConfig`; a ``.caffemodel`` in ``weights`` is
    converted with it). ``timing``: a net without a solver gets a minimal one (``tfconf time``)."""
    if not source.is_caffe:
        if is_caffemodel(weights):
            raise UserError(f"--weights {weights}: a .caffemodel is mapped to tfconf's parameters through the Caffe "
                            "net it belongs to: give that net (--solver or --model) instead of the config, or "
                            f"convert both once: tfconf import-caffe NET.prototxt --weights {weights} -o NET.yaml")
        return common.load_config(source.config, overrides, check=check)
    return _load_caffe(source, overrides, check, weights if is_caffemodel(weights) else None, timing)


@functools.lru_cache(maxsize=None)
def _config_class():
    from tfconf.frontend.config import Config

    @dataclasses.dataclass
    class CaffeConfig(Config):
        """A config converted from Caffe's files on the fly: relative data paths resolve against
        the folder the command ran in (Caffe's working directory), not a YAML file's folder."""

        cwd: str = ""
        conversion: object = None    # tfconf.interop.caffe_import.Conversion
        solver_file: str | None = None

        @property
        def root(self) -> str:
            return self.cwd

    return CaffeConfig


#: what ``tfconf time`` adds to a net converted without a solver (Caffe's ``time`` needs none)
_TIMING_SOLVER = "solver: {base_lr: 0.01, max_iter: 1}  # added by tfconf time: Caffe's time runs no solver\n"


def _load_caffe(source: Source, overrides, check, caffemodel, timing):
    import tempfile

    from tfconf.frontend import config as cfgmod
    from tfconf.frontend.errors import ConfigError
    from tfconf.frontend.loader import LoadedConfig, SourceMap, load_config_string
    from tfconf.interop.caffe_import import convert

    _check_prototxt_trust(source.net)  # before converting: the importer builds the net to judge its data
    conversion = convert(source.net, source.solver, caffemodel)  # located at the prototxt; exit code 2
    for note in conversion.notes:
        typer.echo(f"note: {note}", err=True)
    text = conversion.yaml
    if timing and not any(line.startswith("solver:") for line in text.splitlines()):
        text += _TIMING_SOLVER
    place = _caffe_places(source)
    # the converted YAML goes through the one config pipeline (frontend.config.load: validation and
    # every check of a config's structure), from a temporary file; what it locates there is then
    # translated to the Caffe fields. Only the check that reads data (check_net) waits for the
    # Config whose root is the current folder.
    with tempfile.TemporaryDirectory(prefix="tfconf-caffe-") as folder:
        yaml_path = os.path.join(folder, Path(str(source.net)).stem + ".yaml")
        Path(yaml_path).write_text(text)
        try:
            base = cfgmod.load(yaml_path, overrides or (), check=False)
        except ConfigError as e:
            at = {(loc.line, loc.column): path for path, loc in load_config_string(text, yaml_path).source_map.items()}
            raise ConfigError([_translated(issue, at, place) for issue in e.issues]) from None
    smap = SourceMap({path: loc if loc.is_override else place(path) for path, loc in base.loaded.source_map.items()})
    loaded = LoadedConfig(base.loaded.data, smap, [Path(p) for p in (source.net, source.solver) if p],
                          base.loaded.overrides)
    cfg = _config_class()(base.net, loaded, str(source.net), cwd=os.getcwd(), conversion=conversion,
                          solver_file=source.solver)
    _check_trust(cfg)  # a --set may add a Python layer
    if check:
        cfgmod.check_net(cfg)
    return cfg


def _translated(issue, at, place):
    """A ConfigIssue located in the temporary YAML, located at the Caffe field instead."""
    loc = issue.location
    if loc is None or loc.is_override:
        return issue
    return dataclasses.replace(issue, location=place(at.get((loc.line, loc.column), ())))


def _caffe_places(source):
    """path in the converted config → the Caffe field it came from: a layer's key → its field in
    the layer's block (its ``*_param``), else the block; a data key → its data layer's field; a
    solver key → the solver's field; anything else → the net file's start."""
    from tfconf.frontend.errors import Location
    from tfconf.interop.caffe_import import convert_net
    from tfconf.interop.prototxt import parse_file

    layers = convert_net(source.net)[1]  # the converter's layers again, now with their origins
    net_layers = [layer for layer in layers if not layer.data]
    data_layers = {}
    for layer in layers:
        for phase in layer.phases if layer.data else ():
            data_layers.setdefault(phase, layer)
    solver = parse_file(source.solver) if source.solver else None
    net_start = Location(str(source.net), 1, 1)

    def layer_place(layer, rest):
        origin = layer.origins.get(rest[0]) if rest else None
        return origin.location if origin is not None else layer.location

    def place(path):
        head, rest = (path[0], path[1:]) if path else (None, ())
        if head == "layers" and rest and isinstance(rest[0], int) and rest[0] < len(net_layers):
            return layer_place(net_layers[rest[0]], rest[1:])
        if head == "data" and rest and rest[0] in data_layers:
            return layer_place(data_layers[rest[0]], rest[1:])
        if head == "solver" and solver is not None:
            key = rest[0] if rest else None
            field = solver.first(key) if isinstance(key, str) else None
            if field is None and key == "type":
                field = solver.first("solver_type")
            return field.location if field is not None else Location(str(source.solver), 1, 1)
        return net_start

    return place


_TRUST_HINT = ("Read that module first; run it only if you trust it, with --trust-python (or "
               "TFCONF_TRUST_PYTHON=1)")


def _check_prototxt_trust(net):
    """The prototxt's first Python layer, refused at its ``python_param.module`` unless the user
    trusts Python layers: nothing of the net is built (so no module imported) before this."""
    from tfconf.frontend.errors import ConfigError, ConfigIssue
    from tfconf.frontend.trust import trusted_by_user
    from tfconf.interop.prototxt import parse_file

    if trusted_by_user():
        return
    msg = parse_file(net)
    for kind in ("layer", "layers"):
        for i, field in enumerate(msg.all(kind)):
            block = field.value
            if not field.is_message or str(getattr(block.first("type"), "value", "")).lower() != "python":
                continue
            param = block.first("python_param")
            module = param.value.first("module") if param is not None and param.is_message else None
            name = getattr(block.first("name"), "value", "?")
            where = module.location if module is not None else field.location
            raise ConfigError(ConfigIssue(where, f"{kind}[{i}] ({name}).python_param.module", (
                f"this net would import and run the Python module {getattr(module, 'value', '?')!r}, but it is "
                f"a Caffe net converted by tfconf, which counts as from elsewhere. {_TRUST_HINT}")))


def _check_trust(cfg):
    """A converted net is from elsewhere, as ``tfconf import-caffe`` marks the configs it writes:
    its Python layers' modules are imported only with --trust-python (tfconf.frontend.trust)."""
    from tfconf.frontend.trust import trusted_by_user

    layers = [(i, layer) for i, layer in enumerate(cfg.net.layers) if layer.type == "Python"]
    if not layers or trusted_by_user():
        return
    i, layer = layers[0]
    raise cfg.loaded.error(("layers", i, "module"), f"this net would import and run the Python module "
                           f"{layer.module!r}, but it is a Caffe net converted by tfconf, which counts as from "
                           f"elsewhere. {_TRUST_HINT}")


# ----------------------------------------------------------------------------------------- weights
@contextlib.contextmanager
def run_weights(cfg, weights, config=None, *, say=None):
    """The weights file the runner reads for ``--weights``: a .caffemodel converted with the net is
    written to a temporary .safetensors (checked against the net first: a blob of another shape is
    an error at the .caffemodel) and messages name the .caffemodel instead; anything else is
    :func:`common.resolve_weights`'s. Yields (path or None, rename: text → text)."""
    tensors = getattr(getattr(cfg, "conversion", None), "tensors", None)
    if tensors is None:
        yield common.resolve_weights(weights, config), (lambda text: text)
        return
    import tempfile

    from tfconf.frontend.errors import ConfigError, ConfigIssue, Location
    from tfconf.interop.caffe_import import check_weights
    from tfconf.train.errors import TrainError
    from tfconf.train.snapshot import save_tensors

    problems, missing = check_weights(cfg, tensors)
    if problems:
        raise ConfigError([ConfigIssue(Location(str(weights)), "", p) for p in problems])
    if missing and say is not None:
        say(f"note: parameters {weights} does not hold start from their fillers (as in Caffe): "
            + ", ".join(missing))
    with tempfile.TemporaryDirectory(prefix="tfconf-caffemodel-") as folder:
        path = os.path.join(folder, Path(str(weights)).stem + ".safetensors")
        save_tensors(path, tensors, {"format": "tfconf-weights", "source": Path(str(weights)).name})

        def rename(text):
            return str(text).replace(path, str(weights))

        try:
            yield path, rename
        except UserError as e:
            if path not in str(e):
                raise
            raise TrainError(rename(str(e))) from None


def run_folder_callbacks(cfg):
    """For a converted net: a callback writing the converted YAML into the run folder when the run
    starts (``NET.yaml``, beside the resolved config.yaml), marked as imported."""
    conversion = getattr(cfg, "conversion", None)
    if conversion is None:
        return []
    from tfconf.frontend.trust import mark_origin
    from tfconf.io.atomic import atomic_write_bytes
    from tfconf.train.runner import Callback

    sources = " --solver " + str(cfg.solver_file) if cfg.solver_file else " --model " + str(cfg.path)
    header = (f"# Converted on the fly by `tfconf train{sources}` in {cfg.cwd}\n"
              "# (relative data paths are relative to that folder); config.yaml beside this file is the\n"
              "# resolved config the run used (--set applied).\n")
    name = Path(str(cfg.path)).stem + ".yaml"

    class WriteConverted(Callback):
        def on_train_begin(self, solver, run_dir):
            path = os.path.join(run_dir, name)
            atomic_write_bytes(path, (header + conversion.yaml).encode())
            mark_origin(path, f"tfconf train{sources} (converted from {Path(str(cfg.path)).resolve()})")

    return [WriteConverted()]
