"""The ``tfconf`` command line (typer). Every mistake a user can make ends in a located message on
stderr and exit code 2, never a traceback.

    tfconf train configs/lenet_mnist.yaml
    tfconf validate configs/lenet_mnist.yaml --set layers.conv1.num_output=32
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from tfconf.errors import UserError

app = typer.Typer(
    name="tfconf",
    help="Train nets written as YAML configs on a TensorFlow-1-style dataflow engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SetOpt = typer.Option(None, "--set", help="Override a config value: KEY=VALUE (dotted path; "
                      "layers by name: layers.conv1.num_output=32; the value is parsed as YAML).")

TrustOpt = typer.Option(False, "--trust-python", help="Let a config from elsewhere (a zoo entry, a downloaded or "
                        "imported file) import the modules its `type: Python` layers name: that runs their code. "
                        "Your own configs need no flag (docs/cli.md).")


def _trust(flag: bool):
    if flag:
        from tfconf.frontend.trust import trust_python

        trust_python()


def _fail(message: str, code: int = 2):
    typer.echo(message, err=True)
    raise typer.Exit(code)


#: click's base of usage errors (typer.BadParameter, unknown options...): exit code 2, one line in main()
_CLICK_ERROR = typer.BadParameter.__mro__[2]
#: typer's own control flow and usage errors: passed through to typer
_CLICK = (typer.Exit, typer.Abort, _CLICK_ERROR)


def _run(fn):
    """Call ``fn``; whatever it raises ends in one line on stderr and an exit code (:func:`describe_error`).
    numpy's floating-point warnings (overflow in tfconf's kernels...) are not shown: what they mean
    is reported by tfconf itself (divergence names the op and the layer)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"(tfconf|numpy)(\..*)?$")
            return fn()
    except (SystemExit, *_CLICK):
        raise
    except BaseException as e:  # noqa: BLE001 - every error class is mapped in one place
        message, code = describe_error(e)
        _fail(message, code)


#: exit codes (docs/cli.md): 0 done, 1 a bug in tfconf, 2 the user's input, 130/143 interrupted by
#: SIGINT/SIGTERM (a snapshot was saved; --resume continues)
EXIT_OK, EXIT_BUG, EXIT_USER, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143

_OS_HINTS = {
    "ENOSPC": "the disk is full",
    "EROFS": "the file system is read-only",
    "EDQUOT": "the disk quota is exceeded",
    "ENAMETOOLONG": "the file name is too long",
}


def describe_error(e: BaseException) -> tuple[str, int]:
    """The one place that maps an error class to what the user reads and the exit code. The user's
    mistakes (a config, data, a file, an option) are exit code 2; anything else is a bug of tfconf's
    (exit code 1), still one line: TFCONF_TRACEBACK=1 prints the traceback."""
    import errno

    if isinstance(e, KeyboardInterrupt):
        return "interrupted", EXIT_SIGINT
    if isinstance(e, OSError):
        if e.filename is None and e.strerror is None:
            return f"error: {e}", EXIT_USER  # raised by tfconf with its own message
        name = errno.errorcode.get(e.errno or 0, "")
        what = _OS_HINTS.get(name) or (e.strerror or str(e)).rstrip(".").lower()
        files = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        return f"error: {files + ': ' if files else ''}{what}", EXIT_USER
    if isinstance(e, UserError):  # every package's user errors derive from it (tfconf/errors.py)
        return e.user_message(), EXIT_USER
    if isinstance(e, MemoryError):
        detail = str(e) or "an allocation failed"
        return (f"error: out of memory: {detail}. Lower the batch size or the layer sizes "
                "(tfconf validate estimates a net's memory)"), EXIT_USER
    if isinstance(e, RecursionError):
        return "error: the input is nested too deeply to be read", EXIT_USER
    if isinstance(e, UnicodeError):
        return f"error: a file is not valid text: {e}", EXIT_USER
    if os.environ.get("TFCONF_TRACEBACK"):
        import traceback

        traceback.print_exception(e)
    return (f"internal error: {type(e).__name__}: {' '.join(str(e).split())[:500]}. This is a bug in "
            "tfconf; please report it with the command (TFCONF_TRACEBACK=1 prints the traceback)"), EXIT_BUG


def _load(config: str, overrides, check=True):
    from tfconf.frontend import config as cfgmod
    from tfconf.zoo.registry import config_for

    return cfgmod.load(config_for(config), overrides or (), check=check)


def _weights(weights, config=None):
    """``--weights zoo:NAME`` → that entry's verified weights; no --weights with a ``zoo:`` config →
    the entry's own."""
    from tfconf.zoo.registry import weights_for

    if weights is None and config is not None and config.startswith("zoo:"):
        weights = config
    return weights_for(weights) if weights is not None else None


def _check_device(device, device_count):
    """An explicitly requested device must exist (a config's own `device` is placed softly)."""
    from tfconf.engine.devices import DeviceSpec, local_devices
    from tfconf.frontend.compiler import device_name

    name = device_name(device)
    if name is None:
        return
    try:
        spec = DeviceSpec.from_string(name)
    except ValueError as e:
        raise UserError(f"--device {device}: {e}") from None
    devices = local_devices(device_count)
    if not any(d.matches(spec) for d in devices):
        raise UserError(f"--device {device}: no such device here. Available: "
                        + ", ".join(d.name for d in devices))


# ----------------------------------------------------------------------------- train
@app.command()
def train(
    config: str = typer.Argument(..., help="The training config (YAML)."),
    set_: Optional[List[str]] = SetOpt,
    weights: Optional[str] = typer.Option(None, "--weights", help="Initialize from these weights "
                                          "(.safetensors or zoo:NAME), copied by layer name (fine-tuning)."),
    reinit: Optional[List[str]] = typer.Option(None, "--reinit", help="With --weights: layers to "
                                               "initialize afresh instead (e.g. a new head)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue a run: its folder or a "
                                         "*.solverstate.safetensors snapshot."),
    out: Optional[str] = typer.Option(None, "--out", help="Run folder (default runs/NAME-TIMESTAMP)."),
    max_iter: Optional[int] = typer.Option(None, "--max-iter", min=0, help="Override solver.max_iter."),
    device: Optional[str] = typer.Option(None, "--device", help="Device to train on: auto, cpu, gpu, "
                                         "gpu:1 or a full name (sets the config's `device`)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line: run_dir, iterations, "
                                 "train_loss, test metrics, wall_time."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or display lines."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also write TensorBoard event files (losses, "
                                     "test metrics, lr, the graph) into the run folder (needs tensorboardX)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Train on a Ray cluster: local (start one "
                                          "here), auto (join `ray start --head`) or HOST:PORT; sets "
                                          "cluster.address (see docs/distributed.md)."),
    max_restarts: int = typer.Option(0, "--max-restarts", min=0, help="With a cluster: when a task dies, resume "
                                     "from the last snapshot, at most this many times."),
    force: bool = typer.Option(False, "--force", help="Replace the run the --out folder already holds (its "
                               "snapshots and metrics are deleted; without --force such a folder is refused)."),
    trust_python: bool = TrustOpt,
):
    """Train a net. Example: tfconf train configs/lenet_mnist.yaml --set solver.max_iter=500"""
    _trust(trust_python)
    overrides = list(set_ or [])
    if max_iter is not None:
        overrides.append(f"solver.max_iter={max_iter}")

    def go():
        from tfconf.train.runner import train as run_train

        if device is not None:
            overrides.append(f"device={device}")
        if cluster is not None:
            overrides.append(f"cluster.address={cluster}")
        cfg = _load(config, overrides)
        if print_config:
            typer.echo(cfg.loaded.dump())
            return None
        if cfg.net.solver is None:
            raise cfg.loaded.error(("solver",), "training needs a solver section")
        if device is not None:
            _check_device(device, cfg.net.device_count)
        from tfconf.distributed.restarts import restarting
        from tfconf.interop.cli_export import tensorboard_callbacks

        run_train = restarting(run_train, max_restarts, echo=typer.echo)  # a no-op without a cluster
        return run_train(cfg, out=out, weights=_weights(weights), reinit=tuple(reinit or ()), resume=resume,
                         quiet=quiet or as_json, echo=typer.echo, callbacks=tensorboard_callbacks(tensorboard),
                         force=force)

    result = _run(go)
    if result is not None and as_json:
        typer.echo(json.dumps(result))
    if result is not None and result.get("interrupted"):
        raise typer.Exit(EXIT_SIGTERM if result.get("signal") == "SIGTERM" else EXIT_SIGINT)


# ----------------------------------------------------------------------------- test
@app.command()
def test(
    config: str = typer.Argument(..., help="The config (YAML)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Weights file (.safetensors) or zoo:NAME "
                                          "(default for a zoo:NAME config: the entry's weights)."),
    iterations: Optional[int] = typer.Option(None, "--iterations", min=1, help="Test batches (default solver.test_iter, else one pass)."),
    set_: Optional[List[str]] = SetOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON line."),
    trust_python: bool = TrustOpt,
):
    """Run the test phase and print its metrics. Example: tfconf test configs/lenet_mnist.yaml --weights runs/x/final.safetensors"""
    _trust(trust_python)

    def go():
        from tfconf.train.runner import test as run_test

        w = _weights(weights, config)
        if w is None:
            raise UserError("test needs --weights (a .safetensors file or zoo:NAME)")
        return run_test(_load(config, set_), w, iterations)

    metrics = _run(go)
    if as_json:
        typer.echo(json.dumps(metrics))
    else:
        for k, v in metrics.items():
            typer.echo(f"{k} = {v:.6g}")


# ----------------------------------------------------------------------------- time
@app.command("time")
def time_(
    config: str = typer.Argument(..., help="The config (YAML)."),
    iterations: int = typer.Option(10, "--iterations", min=1, help="Timed iterations (after one warm-up)."),
    set_: Optional[List[str]] = SetOpt,
    trust_python: bool = TrustOpt,
):
    """Caffe's `time`: per-layer forward and backward milliseconds of a training iteration, and
    which kernels ran each layer (onednn, reference; TFCONF_KERNELS=numpy for the reference only)."""
    _trust(trust_python)

    def go():
        from tfconf.train.runner import time_layers

        return time_layers(_load(config, set_), iterations)

    rows, total = _run(go)
    typer.echo(f"{'layer':<20} {'forward ms':>11} {'backward ms':>12}  kernels")
    for name, f, b, k in rows:
        typer.echo(f"{name:<20} {f:>11.3f} {b:>12.3f}  {k}")
    typer.echo(f"{'total':<20} {total:>11.3f} ms per iteration")


# ----------------------------------------------------------------------------- sample
@app.command()
def sample(
    config: str = typer.Argument(..., help="The config of a character model (data source text or pystdlib)."),
    weights: str = typer.Option(..., "--weights", help="Trained weights (.safetensors or zoo:NAME); "
                                "vocab.json is read from beside them or their run folder."),
    prime: str = typer.Option("", "--prime", help="Text to start from (fed before sampling)."),
    length: int = typer.Option(500, "--length", help="Characters to generate."),
    temperature: float = typer.Option(1.0, "--temperature", help="Softmax temperature: below 1 is more "
                                      "conservative, above 1 more varied."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the sampling."),
    vocab: Optional[str] = typer.Option(None, "--vocab", help="vocab.json (default: the weights' run folder)."),
    set_: Optional[List[str]] = SetOpt,
    trust_python: bool = TrustOpt,
):
    """Generate text from a trained character model. Example: tfconf sample configs/char_lstm.yaml
    --weights runs/char_lstm/snapshots/char_lstm_iter_1500.safetensors --prime "def " --length 300"""
    _trust(trust_python)

    def go():
        from tfconf.train.sample import sample as run_sample

        return run_sample(_load(config, set_), _weights(weights), prime=prime, length=length,
                          temperature=temperature, seed=seed, vocab=vocab)

    typer.echo(_run(go))


# ----------------------------------------------------------------------------- validate / schema
@app.command()
def validate(
    config: str = typer.Argument(..., help="The config (YAML)."),
    set_: Optional[List[str]] = SetOpt,
    print_config: bool = typer.Option(False, "--print-config", help="Also print the resolved config."),
    trust_python: bool = TrustOpt,
):
    """Check a config: prints a one-line summary or the located errors (exit code 2)."""
    _trust(trust_python)

    def go():
        from tfconf.frontend import config as cfgmod

        cfg = _load(config, set_, check=False)
        nets, params = cfgmod.check_net(cfg)
        return cfg, nets, params

    cfg, nets, params = _run(go)
    if print_config:
        typer.echo(cfg.loaded.dump())
    n_params = sum(int(__import__("numpy").prod(v.shape.as_list())) for v in params.values()
                   if v.trainable)
    outs = ", ".join(f"{k} {t.shape.as_list()}" for k, t in nets["test"].outputs.items())
    typer.echo(f"{cfg.path}: ok: {cfg.net.name}, {len(cfg.net.layers)} layers, {n_params:,} parameters; "
               f"test outputs: {outs or 'none'}")


@app.command()
def schema(out: Optional[str] = typer.Option(None, "-o", "--out", help="Write to this file instead of stdout.")):
    """Write the JSON Schema of configs (for editor completion)."""
    from tfconf.frontend.net_schema import NetConfig

    text = json.dumps(NetConfig.model_json_schema(), indent=2)
    if out:
        Path(out).write_text(text + "\n")
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text)


# ----------------------------------------------------------------------------- devices / draw
@app.command()
def devices(
    device_count: Optional[List[str]] = typer.Option(
        None, "--device-count", help="TYPE=N, e.g. CPU=4 for four virtual CPU devices (repeatable)."),
):
    """List the devices the engine sees, with memory and a measured throughput."""
    from tfconf.engine.devices import describe_devices

    def go():
        counts = {}
        for item in device_count or ():
            kind, sep, n = item.partition("=")
            if not sep or not n.strip().isdigit():
                raise UserError(f"--device-count {item}: expected TYPE=N, e.g. CPU=4.")
            counts[kind.strip().upper()] = int(n)
        try:
            return describe_devices(counts)
        except ValueError as e:
            raise UserError(f"--device-count: {e}") from None

    for d in _run(go):
        typer.echo(f"{d['name']}  {d['type']}  memory {d['memory_gb']:.1f} GiB  "
                   f"float32 matmul {d['gflops']:.0f} GFLOP/s")
    from tfconf.engine.kernel_choice import describe_providers

    for line in describe_providers():
        typer.echo(line)


@app.command()
def draw(
    config: str = typer.Argument(..., help="The config (YAML)."),
    out: str = typer.Option(..., "-o", "--out", help="Output file: .dot always; .svg/.png need graphviz's `dot`."),
    phase: str = typer.Option("train", "--phase", help="train or test."),
    set_: Optional[List[str]] = SetOpt,
    trust_python: bool = TrustOpt,
):
    """Draw the net as a graph of layers and blobs (Caffe's draw_net)."""
    _trust(trust_python)

    def go():
        from tfconf.frontend.draw import draw_net

        if phase not in ("train", "test"):
            raise UserError(f"--phase must be train or test. Received: {phase}")
        return draw_net(_load(config, set_, check=False), out, phase)

    typer.echo(f"wrote {_run(go)}")


from tfconf.sweep.cli import app as _sweep_app  # noqa: E402

app.add_typer(_sweep_app, name="sweep")

from tfconf.zoo.cli import app as _zoo_app  # noqa: E402

app.add_typer(_zoo_app, name="zoo")

from tfconf.interop.cli_export import export as _export_cmd, plot as _plot_cmd  # noqa: E402

app.command("export")(_export_cmd)
app.command("plot")(_plot_cmd)

from tfconf.interop.cli import import_caffe as _import_caffe_cmd  # noqa: E402

app.command("import-caffe")(_import_caffe_cmd)


def main():
    """The ``tfconf`` script: typer's non-standalone mode, so that a usage error (an unknown option,
    ``--iterations 0``) is one line too, and anything a command lets escape goes through
    :func:`describe_error`."""
    try:
        code = app(standalone_mode=False)
    except _CLICK_ERROR as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()  # `tfconf` alone prints the help
            sys.exit(e.exit_code)
        ctx = getattr(e, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None and type(e).__name__ != "ClickException" else ""
        typer.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_SIGINT)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - outside a command's own _run (typer, a command's epilogue)
        message, code = describe_error(e)
        typer.echo(message, err=True)
        sys.exit(code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
