"""tfconf's op tests on the shipped kit (tfconf/testing/ops.py), telling the module being run which
op types each passing gradient check differentiated (tests/engine/ops/conftest.py compares that
with the module's declared GRAD_CHECKS)."""

import contextlib
import contextvars
import functools

from tfconf.testing import ops as _kit
from tfconf.testing.ops import away_from, distinct, ops_between, run  # noqa: F401

#: the set the running test module collects into (None: nothing is collecting)
_collecting: contextvars.ContextVar = contextvars.ContextVar("grad_checks", default=None)


@contextlib.contextmanager
def collecting(into: set):
    """Collect the op types of passing gradient checks into ``into`` while the block runs."""
    token = _collecting.set(into)
    try:
        yield into
    finally:
        _collecting.reset(token)


def _record(ops):
    into = _collecting.get()
    if into is not None:
        into.update(op.type for op in ops)


check_op = functools.partial(_kit.check_op, checked=_record)
