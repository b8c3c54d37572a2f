"""tfconf's errors: ``tc.errors`` (TensorFlow 1's run-time error types, raised by ``Session.run``) and
``UserError``, the one base class of every error that is the user's to fix.

A leaf module (it imports nothing of tfconf's), so that every package, the engine included, can
raise its errors from it, and the command line catches one type for the user's mistakes
(tfconf/cli/errors.py, ``describe_error``: exit code 2, one line, no traceback). Each package's error
class derives from ``UserError`` and, where callers catch it as such, from the builtin it has
always been (``DataError(UserError, ValueError)``). The TF1 types are the TF1 API's: they name the
op they came from, as TensorFlow's do.
"""

from __future__ import annotations

import difflib

__all__ = ["FailedPreconditionError", "InternalError", "InvalidArgumentError", "OpError",
           "ResourceExhaustedError", "UserError", "did_you_mean", "suggest"]


class UserError(Exception):
    """A mistake of the user's (a config, data, a file, an option): printed as one line without a
    traceback, exit code 2."""

    def user_message(self) -> str:
        """What the command line prints. Subclasses whose messages carry their own location
        (a config's ``file:line:col: ...`` lines) print them as they are."""
        return f"error: {self}"


def suggest(name, choices, n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The closest of ``choices`` to ``name`` (case-insensitive first, then difflib)."""
    choices = [str(c) for c in choices]
    text = str(name)
    exact = [c for c in choices if c.lower() == text.lower()]
    if exact:
        return exact[:n]
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(text.lower(), list(lowered), n=n, cutoff=cutoff)
    return [lowered[c] for c in close]


def did_you_mean(name, choices, n: int = 1) -> str:
    """`` Did you mean 'conv1'?`` (several: ``'a', 'b'``), or ``""`` when nothing is close: the hint
    a message about an unknown name ends with."""
    best = suggest(name, choices, n)
    return f" Did you mean {', '.join(map(repr, best))}?" if best else ""


# ---------------------------------------------------------------------------- tf.errors
class OpError(Exception):
    """A run-time error of an op, named as in ``tf.errors``; ``op`` is the op it came from, if any."""

    def __init__(self, message, op=None):
        super().__init__(message)
        self.message = message
        self.op = op


class InvalidArgumentError(OpError):
    """A value given to an op (a feed, or data met by a kernel) is not valid for it."""


class FailedPreconditionError(OpError):
    """The state is not ready for the op, e.g. reading an uninitialized Variable."""


class InternalError(OpError):
    """A kernel failed for a reason other than its arguments."""


class ResourceExhaustedError(OpError):
    """Out of memory in a kernel."""
