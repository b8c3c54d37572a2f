"""The one place that maps an error to what the user reads and the exit code, and the wrapper
every command's work runs in (:func:`run`): whatever it raises ends in one line on stderr."""

from __future__ import annotations

import os

import typer

from tfconf.errors import UserError

#: click's base of usage errors (typer.BadParameter, unknown options...): exit code 2, one line in main()
CLICK_ERROR = typer.BadParameter.__mro__[2]
#: typer's own control flow and usage errors: passed through to typer
CLICK = (typer.Exit, typer.Abort, CLICK_ERROR)


def run(fn):
    """Call ``fn``; whatever it raises ends in one line on stderr and an exit code (:func:`describe_error`).
    numpy's floating-point warnings (overflow in tfconf's kernels...) are not shown: what they mean
    is reported by tfconf itself (divergence names the op and the layer)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"(tfconf|numpy)(\..*)?$")
            return fn()
    except (SystemExit, *CLICK):
        raise
    except BaseException as e:  # noqa: BLE001 - every error class is mapped in one place
        message, code = describe_error(e)
        fail(message, code)


def fail(message: str, code: int = 2):
    """Print ``message`` on stderr and end the command with ``code``."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


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
