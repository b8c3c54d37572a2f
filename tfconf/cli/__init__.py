"""The ``tfconf`` command line (typer). Every mistake a user can make ends in a located message on
stderr and exit code 2, never a traceback.

    tfconf train configs/lenet_mnist.yaml
    tfconf validate configs/lenet_mnist.yaml --set layers.conv1.num_output=32

One module per command group: :mod:`.training` (train, test, time, sample), :mod:`.configs`
(validate, schema, devices, draw), :mod:`.sweep`, :mod:`.zoo`, :mod:`.interop` (import-caffe,
export, plot), :mod:`.data` (convert-data); what they share is in :mod:`.common` and :mod:`.errors` (the one map from an error
to its message and exit code). Only this module assembles them; no command imports it.
"""

from __future__ import annotations

import sys

import typer

from . import configs, data, errors, interop, sweep, training, zoo
from .errors import EXIT_BUG, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USER, describe_error  # noqa: F401

app = typer.Typer(
    name="tfconf",
    help="Train nets written as YAML configs on a TensorFlow-1-style dataflow engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _name, _command in [("train", training.train), ("test", training.test), ("time", training.time_),
                        ("sample", training.sample), ("validate", configs.validate), ("schema", configs.schema),
                        ("devices", configs.devices), ("draw", configs.draw)]:
    app.command(_name)(_command)
app.add_typer(sweep.app, name="sweep")
app.add_typer(zoo.app, name="zoo")
for _name, _command in [("export", interop.export), ("plot", interop.plot), ("import-caffe", interop.import_caffe),
                        ("convert-data", data.convert_data)]:
    app.command(_name)(_command)


def main():
    """The ``tfconf`` script: typer's non-standalone mode, so that a usage error (an unknown option,
    ``--iterations 0``) is one line too, and anything a command lets escape goes through
    :func:`describe_error`."""
    try:
        code = app(standalone_mode=False)
    except errors.CLICK_ERROR as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()  # `tfconf` alone prints the help
            sys.exit(e.exit_code)
        ctx = getattr(e, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None and type(e).__name__ != "ClickException" else ""
        typer.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(errors.EXIT_SIGINT)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - outside a command's own _run (typer, a command's epilogue)
        message, code = errors.describe_error(e)
        typer.echo(message, err=True)
        sys.exit(code)
    sys.exit(code if isinstance(code, int) else 0)
