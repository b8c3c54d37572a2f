"""Errors of the data layer. Both carry a short, user-facing message; the config loader adds the
file and line of the ``data:`` key that caused them."""

from __future__ import annotations

from tfconf.errors import UserError


class DataError(UserError, ValueError):
    """A data source the user named cannot be read: a missing file, a bad format, mismatched labels."""


class DataUnavailableError(UserError, RuntimeError):
    """A data source needs a package or file that is not installed (the message names the extra)."""


def missing_extra(package: str, extra: str, what: str) -> DataUnavailableError:
    return DataUnavailableError(
        f"{what} needs the '{package}' package, which is not installed. "
        f'Install it with: pip install "tfconf[{extra}]"'
    )
