"""tfconf's op tests on the shipped kit (tfconf/testing/ops.py), recording which op types each
passing gradient check exercised: the registry sweep (ops/test_registry_sweep.py, run last)
compares that record with the registry."""

import functools
import os

from tfconf.testing import ops as _kit
from tfconf.testing.ops import away_from, distinct, ops_between, run  # noqa: F401

#: op type -> id of the first test whose gradient check exercised it (filled as tests pass)
GRAD_CHECKED: dict[str, str] = {}


def _record(ops):
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
    for op in ops:
        GRAD_CHECKED.setdefault(op.type, test)


check_op = functools.partial(_kit.check_op, checked=_record)
