"""``tfconf import-caffe``: the command (registered by :mod:`tfconf.cli`); the work is in
:mod:`tfconf.interop.caffe_import`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tfconf.errors import UserError

__all__ = ["import_caffe"]


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
    from tfconf.cli import _run

    weights_out = str(Path(out).with_suffix(".safetensors")) if out else None

    def go():
        from tfconf.interop.caffe_import import convert
        from tfconf.interop.caffemodel import CaffemodelError

        if weights is not None and out is None:
            raise UserError("--weights needs -o OUT.yaml (the weights go to OUT.safetensors beside it)")
        try:
            return convert(net, solver, weights, weights_name=Path(weights_out).name if weights_out else None)
        except CaffemodelError as e:
            raise UserError(str(e)) from None

    result = _run(go)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    if out is None:
        typer.echo(result.yaml, nl=False)
        return

    def write():
        from tfconf.frontend.trust import mark_origin

        Path(out).write_text(result.yaml)
        # an imported net is from elsewhere: its Python layers need --trust-python (docs/cli.md)
        mark_origin(out, f"tfconf import-caffe {Path(net).resolve()}")
        if result.tensors is not None:
            _save(weights_out, result.tensors, {"format": "tfconf-weights", "source": Path(weights).name})

    _run(write)
    typer.echo(f"wrote {out}")
    if result.tensors is not None:
        typer.echo(f"wrote {weights_out} ({len(result.tensors)} parameters)")
    _check(out, result.tensors, weights, weights_out)


def _save(path: str, tensors: dict, metadata: dict) -> None:
    import numpy as np
    from safetensors.numpy import save

    from tfconf.train.snapshot import atomic_write_bytes

    # NOTE: np.require keeps 0-d arrays 0-d (BatchNorm's scale_factor); np.ascontiguousarray would not
    arrays = {k: np.require(v, requirements="C") for k, v in tensors.items()}
    atomic_write_bytes(path, save(arrays, metadata=metadata))


def _check(out: str, tensors, weights=None, weights_out=None) -> None:
    """Load the written config as `tfconf validate` does and say whether it is ready; with weights,
    check them against the net's parameters (a mismatch is an error: exit code 2)."""
    from tfconf.cli import _fail
    from tfconf.frontend import config as cfgmod

    try:
        cfg = cfgmod.load(out, check=False)
        if tensors is None:
            cfgmod.check_net(cfg)
            typer.echo(f"{out}: ok: it validates and builds")
            return
        from tfconf.interop.caffe_import import check_weights

        problems, missing = check_weights(cfg, tensors)
    except Exception as e:  # noqa: BLE001 - only the user's kind is reported this way
        if not isinstance(e, UserError):
            raise
        typer.echo(f"note: {out} does not validate yet (see the TODO comments in it):\n{e}", err=True)
        return
    if problems:
        _fail(f"error: {weights} does not fit the net (both files were written; fix the net or the "
              f"weights and rerun):\n" + "\n".join(f"{weights_out}: {p}" for p in problems))
    typer.echo(f"{out}: ok: it validates and builds; the weights fit the net")
    if missing:
        typer.echo("note: parameters the .caffemodel does not hold start from their fillers: "
                   + ", ".join(missing), err=True)
