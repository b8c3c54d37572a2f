"""The ``tfconf export`` and ``tfconf plot`` commands (registered by tfconf/cli.py).

    tfconf export configs/lenet_mnist.yaml --weights runs/lenet/snapshots/lenet_iter_3000.safetensors -o lenet.onnx
    tfconf export zoo:lenet -o lenet.onnx --softmax
    tfconf plot runs/lenet runs/lenet-lr0.02 -o curves.png
"""

from __future__ import annotations

from typing import List, Optional

import typer


def _main_cli():
    from tfconf import cli as main_cli

    return main_cli


def export(
    config: str = typer.Argument(..., help="The config (YAML) or zoo:NAME."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Trained weights (.safetensors) or zoo:NAME "
                                          "(default for a zoo:NAME config: the entry's weights)."),
    fmt: str = typer.Option("onnx", "--format", help="Output format: onnx."),
    out: str = typer.Option(..., "-o", "--out", help="The file to write (e.g. model.onnx)."),
    softmax: bool = typer.Option(False, "--softmax", help="Replace SoftmaxWithLoss by a Softmax output named "
                                 "`prob` (probabilities) instead of returning the scores it reads."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config value: KEY=VALUE."),
):
    """Export the test-phase (deploy) net with its weights: losses and Accuracy are dropped, the data
    top becomes the input (batch size free), unconsumed tops the outputs. Example:
    tfconf export configs/lenet_mnist.yaml --weights runs/x/snapshots/lenet_iter_3000.safetensors -o lenet.onnx"""
    cli = _main_cli()

    def go():
        from .onnx_export import ExportError, ExportUnavailable, write_onnx

        if fmt.lower() != "onnx":
            raise cli.UserError(f"--format {fmt}: the only export format is onnx")
        w = cli._weights(weights, config)
        if w is None:
            raise cli.UserError("export needs --weights (a .safetensors file or zoo:NAME)")
        cfg = cli._load(config, set_)
        try:
            return write_onnx(cfg, w, out, softmax=softmax)
        except (ExportError, ExportUnavailable) as e:
            raise cli.UserError(str(e)) from None

    inputs, outputs = cli._run(go)

    def fmt_values(values):
        return ", ".join(f"{n} [{', '.join(map(str, d))}]" for n, d in values)

    typer.echo(f"wrote {out}: inputs {fmt_values(inputs)}; outputs {fmt_values(outputs)}")


def plot(
    run_dirs: List[str] = typer.Argument(..., help="Run folders of tfconf train (their metrics.jsonl)."),
    out: str = typer.Option(..., "-o", "--out", help="Image file (.png, .svg, .pdf)."),
    title: Optional[str] = typer.Option(None, "--title", help="A title above the panels."),
):
    """Draw the training loss and every test metric over iterations, one line per run (needs
    matplotlib). Example: tfconf plot runs/lenet-a runs/lenet-b -o curves.png"""
    cli = _main_cli()

    def go():
        from .plot import PlotError, PlotUnavailable, plot_runs, save_figure

        try:
            return save_figure(plot_runs(run_dirs, title=title), out)
        except (PlotError, PlotUnavailable) as e:
            raise cli.UserError(str(e)) from None

    typer.echo(f"wrote {cli._run(go)}")


def tensorboard_callbacks(enabled: bool):
    """The training callbacks ``--tensorboard`` asks for. A missing tensorboardX is a TrainError (a
    user error for every copy of the CLI module, also under ``python -m tfconf.cli``)."""
    if not enabled:
        return []
    from tfconf.train.runner import TrainError

    from .tensorboard_log import TensorBoardUnavailable, TensorBoardWriter

    try:
        return [TensorBoardWriter()]
    except TensorBoardUnavailable as e:
        raise TrainError(str(e)) from None
