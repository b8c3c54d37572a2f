"""The user's mistakes: ``UserError``, the one base class of every error that is the user's to fix.

A leaf module (it imports nothing of tfconf's), so that every package can raise its own kind of
user error and the command line catches one type (tfconf/cli/errors.py: exit code 2, one line, no
traceback). Each package's error class derives from ``UserError`` and, where callers catch it as
such, from the builtin it has always been (``DataError(UserError, ValueError)``).
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """A mistake of the user's (a config, data, a file, an option): printed as one line without a
    traceback, exit code 2."""

    def user_message(self) -> str:
        """What the command line prints. Subclasses whose messages carry their own location
        (a config's ``file:line:col: ...`` lines) print them as they are."""
        return f"error: {self}"
