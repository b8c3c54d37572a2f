"""``tfconf train``, ``test``, ``time`` and ``sample``: the commands that run a net."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from tfconf.errors import UserError

from . import caffe_args, common, errors


def train(
    config: Optional[str] = typer.Argument(None, help="The training config (YAML) or zoo:NAME; Caffe's solver "
                                           "goes to --solver instead."),
    solver: Optional[str] = caffe_args.SolverOpt,
    set_: Optional[List[str]] = common.SetOpt,
    weights: Optional[str] = typer.Option(None, "--weights", "-weights", help="Initialize from these weights "
                                          "(.safetensors, zoo:NAME, or with --solver a .caffemodel), copied by "
                                          "layer name (fine-tuning)."),
    reinit: Optional[List[str]] = typer.Option(None, "--reinit", help="With --weights: layers to "
                                               "initialize afresh instead (e.g. a new head)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue a run: its folder or a "
                                         "*.solverstate.safetensors snapshot."),
    snapshot: Optional[str] = caffe_args.SnapshotOpt,
    out: Optional[str] = typer.Option(None, "--out", help="Run folder (default runs/NAME-TIMESTAMP)."),
    max_iter: Optional[int] = typer.Option(None, "--max-iter", min=0, help="Override solver.max_iter."),
    device: Optional[str] = typer.Option(None, "--device", help="Device to train on: auto, cpu, gpu, "
                                         "gpu:1 or a full name (sets the config's `device`)."),
    gpu: Optional[str] = caffe_args.GpuOpt,
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
    """Train a net. Example: tfconf train configs/lenet_mnist.yaml --set solver.max_iter=500;
    Caffe's files directly: tfconf train --solver lenet_solver.prototxt [-gpu 0] [-weights X.caffemodel]"""
    common.trust(trust_python)
    overrides = list(set_ or [])
    if max_iter is not None:
        overrides.append(f"solver.max_iter={max_iter}")

    def go():
        from tfconf.train.runner import train as run_train

        source = caffe_args.Source.of(config, solver=solver)
        dev = caffe_args.gpu_device(gpu, device)
        resume_at = caffe_args.resume_from(resume, snapshot, weights)
        if dev is not None:
            overrides.append(f"device={dev}")
        if cluster is not None:
            overrides.append(f"cluster.address={cluster}")
        cfg = caffe_args.load(source, overrides, weights=weights)
        if print_config:
            typer.echo(cfg.loaded.dump())
            return None
        if cfg.net.solver is None:
            raise cfg.loaded.error(("solver",), "training needs a solver section")
        if dev is not None:
            common.check_device(dev, cfg.net.device_count, None if gpu is None else f"-gpu {gpu}")
        from tfconf.interop.tensorboard_log import tensorboard_callbacks
        from tfconf.train.restarts import restarting

        callbacks = [*tensorboard_callbacks(tensorboard), *caffe_args.run_folder_callbacks(cfg)]
        with caffe_args.run_weights(cfg, weights, say=lambda m: typer.echo(m, err=True)) as (w, rename):
            run = restarting(run_train, max_restarts, echo=typer.echo)  # a no-op without a cluster
            return run(cfg, out=out, weights=w, reinit=tuple(reinit or ()), resume=resume_at,
                       quiet=quiet or as_json, echo=lambda m: typer.echo(rename(m)), callbacks=callbacks,
                       force=force)

    result = errors.run(go)
    if result is not None and as_json:
        typer.echo(json.dumps(result))
    if result is not None and result.get("interrupted"):
        raise typer.Exit(errors.EXIT_SIGTERM if result.get("signal") == "SIGTERM" else errors.EXIT_SIGINT)


def test(
    config: Optional[str] = typer.Argument(None, help="The config (YAML) or zoo:NAME; a Caffe net goes to "
                                           "--model instead."),
    model: Optional[str] = caffe_args.ModelOpt,
    weights: Optional[str] = typer.Option(None, "--weights", "-weights", help="Weights file (.safetensors), "
                                          "zoo:NAME (default for a zoo:NAME config: the entry's weights), or with "
                                          "--model a .caffemodel."),
    iterations: Optional[int] = typer.Option(None, "--iterations", "-iterations", min=1,
                                             help="Test batches (default solver.test_iter, else one pass)."),
    net: Optional[str] = typer.Option(None, "--net", help="Only this test net (solver.test_nets), e.g. "
                                      "test-on-test; default every test net."),
    set_: Optional[List[str]] = common.SetOpt,
    device: Optional[str] = typer.Option(None, "--device", help="Device to test on: auto, cpu, gpu, gpu:1 or "
                                         "a full name (sets the config's `device`)."),
    gpu: Optional[str] = caffe_args.GpuOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON line."),
    trust_python: bool = common.TrustOpt,
):
    """Run the test phase and print its metrics. Example: tfconf test configs/lenet_mnist.yaml --weights
    runs/x/final.safetensors; Caffe's: tfconf test -model lenet_train_test.prototxt -weights X.caffemodel
    -iterations 10"""
    common.trust(trust_python)

    def go():
        from tfconf.train.runner import test as run_test

        source = caffe_args.Source.of(config, model=model)
        dev = caffe_args.gpu_device(gpu, device)
        overrides = [*(set_ or ()), *([f"device={dev}"] if dev is not None else [])]
        if weights is None and not (config or "").startswith("zoo:"):
            raise UserError("test needs --weights (a .safetensors file, zoo:NAME, or with --model a .caffemodel)")
        cfg = caffe_args.load(source, overrides, weights=weights)
        if dev is not None:
            common.check_device(dev, cfg.net.device_count, None if gpu is None else f"-gpu {gpu}")
        with caffe_args.run_weights(cfg, weights, config) as (w, _):
            return run_test(cfg, w, iterations, net=net)

    metrics = errors.run(go)
    if as_json:
        typer.echo(json.dumps(metrics))
    else:
        for k, v in metrics.items():
            typer.echo(f"{k} = {v:.6g}")


def time_(
    config: Optional[str] = typer.Argument(None, help="The config (YAML); a Caffe net goes to --model instead."),
    model: Optional[str] = caffe_args.ModelOpt,
    iterations: int = typer.Option(10, "--iterations", "-iterations", min=1,
                                   help="Timed iterations (after one warm-up)."),
    set_: Optional[List[str]] = common.SetOpt,
    device: Optional[str] = typer.Option(None, "--device", help="Device to time on: auto, cpu, gpu, gpu:1 or "
                                         "a full name (sets the config's `device`)."),
    gpu: Optional[str] = caffe_args.GpuOpt,
    trust_python: bool = common.TrustOpt,
):
    """Caffe's `time`: per-layer forward and backward milliseconds of a training iteration, and
    which kernels ran each layer (onednn, reference; TFCONF_KERNELS=numpy for the reference only).
    Example: tfconf time configs/lenet_mnist.yaml; Caffe's: tfconf time -model lenet_train_test.prototxt"""
    common.trust(trust_python)

    def go():
        from tfconf.train.runner import time_layers

        source = caffe_args.Source.of(config, model=model)
        dev = caffe_args.gpu_device(gpu, device)
        overrides = [*(set_ or ()), *([f"device={dev}"] if dev is not None else [])]
        cfg = caffe_args.load(source, overrides, timing=True)
        if dev is not None:
            common.check_device(dev, cfg.net.device_count, None if gpu is None else f"-gpu {gpu}")
        return time_layers(cfg, iterations)

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
