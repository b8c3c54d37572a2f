"""``tfconf train``, ``test``, ``time`` and ``sample``: the commands that run a net."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from tfconf.errors import UserError

from . import common, errors


def train(
    config: str = typer.Argument(..., help="The training config (YAML)."),
    set_: Optional[List[str]] = common.SetOpt,
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
    trust_python: bool = common.TrustOpt,
):
    """Train a net. Example: tfconf train configs/lenet_mnist.yaml --set solver.max_iter=500"""
    common.trust(trust_python)
    overrides = list(set_ or [])
    if max_iter is not None:
        overrides.append(f"solver.max_iter={max_iter}")

    def go():
        from tfconf.train.runner import train as run_train

        if device is not None:
            overrides.append(f"device={device}")
        if cluster is not None:
            overrides.append(f"cluster.address={cluster}")
        cfg = common.load_config(config, overrides)
        if print_config:
            typer.echo(cfg.loaded.dump())
            return None
        if cfg.net.solver is None:
            raise cfg.loaded.error(("solver",), "training needs a solver section")
        if device is not None:
            common.check_device(device, cfg.net.device_count)
        from tfconf.interop.tensorboard_log import tensorboard_callbacks
        from tfconf.train.restarts import restarting

        run_train = restarting(run_train, max_restarts, echo=typer.echo)  # a no-op without a cluster
        return run_train(cfg, out=out, weights=common.resolve_weights(weights), reinit=tuple(reinit or ()), resume=resume,
                         quiet=quiet or as_json, echo=typer.echo, callbacks=tensorboard_callbacks(tensorboard),
                         force=force)

    result = errors.run(go)
    if result is not None and as_json:
        typer.echo(json.dumps(result))
    if result is not None and result.get("interrupted"):
        raise typer.Exit(errors.EXIT_SIGTERM if result.get("signal") == "SIGTERM" else errors.EXIT_SIGINT)


def test(
    config: str = typer.Argument(..., help="The config (YAML)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Weights file (.safetensors) or zoo:NAME "
                                          "(default for a zoo:NAME config: the entry's weights)."),
    iterations: Optional[int] = typer.Option(None, "--iterations", min=1, help="Test batches (default solver.test_iter, else one pass)."),
    set_: Optional[List[str]] = common.SetOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON line."),
    trust_python: bool = common.TrustOpt,
):
    """Run the test phase and print its metrics. Example: tfconf test configs/lenet_mnist.yaml --weights runs/x/final.safetensors"""
    common.trust(trust_python)

    def go():
        from tfconf.train.runner import test as run_test

        w = common.resolve_weights(weights, config)
        if w is None:
            raise UserError("test needs --weights (a .safetensors file or zoo:NAME)")
        return run_test(common.load_config(config, set_), w, iterations)

    metrics = errors.run(go)
    if as_json:
        typer.echo(json.dumps(metrics))
    else:
        for k, v in metrics.items():
            typer.echo(f"{k} = {v:.6g}")


def time_(
    config: str = typer.Argument(..., help="The config (YAML)."),
    iterations: int = typer.Option(10, "--iterations", min=1, help="Timed iterations (after one warm-up)."),
    set_: Optional[List[str]] = common.SetOpt,
    trust_python: bool = common.TrustOpt,
):
    """Caffe's `time`: per-layer forward and backward milliseconds of a training iteration, and
    which kernels ran each layer (onednn, reference; TFCONF_KERNELS=numpy for the reference only)."""
    common.trust(trust_python)

    def go():
        from tfconf.train.runner import time_layers

        return time_layers(common.load_config(config, set_), iterations)

    rows, total = errors.run(go)
    typer.echo(f"{'layer':<20} {'forward ms':>11} {'backward ms':>12}  kernels")
    for name, f, b, k in rows:
        typer.echo(f"{name:<20} {f:>11.3f} {b:>12.3f}  {k}")
    typer.echo(f"{'total':<20} {total:>11.3f} ms per iteration")


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
    set_: Optional[List[str]] = common.SetOpt,
    trust_python: bool = common.TrustOpt,
):
    """Generate text from a trained character model. Example: tfconf sample configs/char_lstm.yaml
    --weights runs/char_lstm/snapshots/char_lstm_iter_1500.safetensors --prime "def " --length 300"""
    common.trust(trust_python)

    def go():
        from tfconf.train.sample import sample as run_sample

        return run_sample(common.load_config(config, set_), common.resolve_weights(weights), prime=prime, length=length,
                          temperature=temperature, seed=seed, vocab=vocab)

    typer.echo(errors.run(go))
