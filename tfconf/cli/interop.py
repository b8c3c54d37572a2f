"""``tfconf import-caffe``, ``export`` and ``plot``: tfconf's files to and from other tools (the work
is in :mod:`tfconf.interop`).

    tfconf import-caffe lenet_train_test.prototxt --solver lenet_solver.prototxt -o lenet.yaml
    tfconf export configs/lenet_mnist.yaml --weights runs/lenet/snapshots/lenet_iter_3000.safetensors -o lenet.onnx
    tfconf export zoo:lenet -o lenet.onnx --softmax
    tfconf export zoo:lenet --format caffe -o deploy.prototxt    # and deploy.caffemodel
    tfconf plot runs/lenet runs/lenet-lr0.02 -o curves.png
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from tfconf.errors import UserError

from . import common, configs, errors

__all__ = ["export", "import_caffe", "plot"]


def import_caffe(
    net: str = typer.Argument(..., help="The Caffe net (.prototxt): a train_test net or a deploy net."),
    solver: Optional[str] = typer.Option(None, "--solver", help="Caffe's solver (.prototxt) for the "
                                         "config's solver: section."),
    weights: Optional[str] = typer.Option(None, "--weights", help="A .caffemodel: its blobs are written "
                                          "to OUT.safetensors under tfconf's parameter names (needs -o)."),
    out: Optional[str] = typer.Option(None, "-o", "--out", help="The tfconf config to write (default: "
                                      "print it)."),
):
    """Convert a Caffe net (and its solver and .caffemodel) into a tfconf config. Example:
    tfconf import-caffe lenet_train_test.prototxt --solver lenet_solver.prototxt
    --weights lenet.caffemodel -o lenet.yaml"""
    weights_out = str(Path(out).with_suffix(".safetensors")) if out else None

    def go():
        from tfconf.interop.caffe_import import convert

        if weights is not None and out is None:
            raise UserError("--weights needs -o OUT.yaml (the weights go to OUT.safetensors beside it)")
        return convert(net, solver, weights, weights_name=Path(weights_out).name if weights_out else None,
                       out_dir=str(Path(out).parent) if out else None)

    result = errors.run(go)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    if out is None:
        typer.echo(result.yaml, nl=False)
        return

    def write():
        from tfconf.frontend.trust import mark_origin
        from tfconf.train.snapshot import save_tensors

        Path(out).write_text(result.yaml)
        # an imported net is from elsewhere: its Python layers need --trust-python (docs/cli.md)
        mark_origin(out, f"tfconf import-caffe {Path(net).resolve()}")
        if result.tensors is not None:
            save_tensors(weights_out, result.tensors, {"format": "tfconf-weights", "source": Path(weights).name})

    errors.run(write)
    typer.echo(f"wrote {out}")
    if result.tensors is not None:
        typer.echo(f"wrote {weights_out} ({len(result.tensors)} parameters)")
    _check(out, result.tensors, weights, weights_out)


def export(
    config: str = typer.Argument(..., help="The config (YAML) or zoo:NAME."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Trained weights (.safetensors) or zoo:NAME "
                                          "(default for a zoo:NAME config: the entry's weights)."),
    fmt: str = typer.Option("onnx", "--format", help="Output format: onnx (one .onnx file) or caffe (a deploy "
                            "prototxt, -o OUT.prototxt, and its weights beside it as OUT.caffemodel)."),
    out: str = typer.Option(..., "-o", "--out", help="The file to write (e.g. model.onnx, or deploy.prototxt "
                            "for caffe)."),
    softmax: bool = typer.Option(False, "--softmax", help="Replace SoftmaxWithLoss by a Softmax output named "
                                 "`prob` (probabilities) instead of returning the scores it reads."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="caffe only: the batch size written in "
                                             "the inputs' shapes (default 1; Caffe reshapes a deploy net at run "
                                             "time). ONNX's batch dimension is free."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config value: KEY=VALUE."),
):
    """Export the test-phase (deploy) net with its weights: losses and Accuracy are dropped, the data
    top becomes the input (batch size free), unconsumed tops the outputs. Examples:
    tfconf export configs/lenet_mnist.yaml --weights runs/x/snapshots/lenet_iter_3000.safetensors -o lenet.onnx;
    tfconf export configs/lenet_mnist.yaml --weights W.safetensors --format caffe -o lenet.prototxt
    (writes lenet.prototxt and lenet.caffemodel)"""
    kind = fmt.lower()

    def go():
        if kind not in ("onnx", "caffe"):
            raise UserError(f"--format {fmt}: export writes onnx or caffe")
        if batch_size is not None and kind != "caffe":
            raise UserError("--batch-size applies to --format caffe (an ONNX graph's batch dimension is free)")
        w = common.resolve_weights(weights, config)
        if w is None:
            raise UserError("export needs --weights (a .safetensors file or zoo:NAME)")
        cfg = common.load_config(config, set_)
        if kind == "caffe":
            from tfconf.interop.caffe_export import write_caffe

            result, model_path = write_caffe(cfg, w, out, softmax=softmax,
                                             batch=1 if batch_size is None else batch_size, config_name=config)
            return result.inputs, result.outputs, (model_path, result.layers)
        from tfconf.interop.onnx_export import write_onnx

        return (*write_onnx(cfg, w, out, softmax=softmax), None)

    inputs, outputs, caffemodel = errors.run(go)

    def fmt_values(values):
        return ", ".join(f"{n} [{', '.join(map(str, d))}]" for n, d in values)

    typer.echo(f"wrote {out}: inputs {fmt_values(inputs)}; outputs {fmt_values(outputs)}")
    if caffemodel is not None:
        path, layers = caffemodel
        blobs = sum(len(arrays) for _, _, arrays in layers)
        typer.echo(f"wrote {path}: {blobs} blobs of {sum(1 for _, _, a in layers if a)} layers")


def plot(
    run_dirs: List[str] = typer.Argument(..., help="Run folders of tfconf train (their metrics.jsonl)."),
    out: str = typer.Option(..., "-o", "--out", help="Image file (.png, .svg, .pdf)."),
    title: Optional[str] = typer.Option(None, "--title", help="A title above the panels."),
):
    """Draw the training loss and every test metric over iterations, one line per run (needs
    matplotlib). Example: tfconf plot runs/lenet-a runs/lenet-b -o curves.png"""

    def go():
        from tfconf.interop.plot import plot_runs, save_figure

        return save_figure(plot_runs(run_dirs, title=title), out)

    typer.echo(f"wrote {errors.run(go)}")


def _check(out: str, tensors, weights=None, weights_out=None) -> None:
    """Load the written config as `tfconf validate` does and say whether it is ready; with weights,
    check them against the net's parameters (a mismatch is an error: exit code 2)."""
    from tfconf.frontend import config as cfgmod

    try:
        cfg = cfgmod.load(out, check=False)
        if tensors is None:
            cfgmod.check_net(cfg, absent_data=True)
            typer.echo(f"{out}: ok: it validates and builds" + configs.absent_note(cfg))
            return
        from tfconf.interop.caffe_import import check_weights

        problems, missing = check_weights(cfg, tensors)
    except Exception as e:  # noqa: BLE001 - only the user's kind is reported this way
        if not isinstance(e, UserError):
            raise
        typer.echo(f"note: {out} does not validate yet (see the TODO comments in it):\n{e}", err=True)
        return
    if problems:
        errors.fail(f"error: {weights} does not fit the net (both files were written; fix the net or the "
              f"weights and rerun):\n" + "\n".join(f"{weights_out}: {p}" for p in problems))
    typer.echo(f"{out}: ok: it validates and builds; the weights fit the net")
    if missing:
        typer.echo("note: parameters the .caffemodel does not hold start from their fillers: "
                   + ", ".join(missing), err=True)

