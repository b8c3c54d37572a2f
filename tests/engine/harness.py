"""tfconf's op tests on the shipped kit (tfconf/testing/ops.py), telling the module being run which
op types each passing gradient check differentiated (tests/engine/ops/conftest.py compares that
with the module's declared GRAD_CHECKS)."""

import functools

from tests.coverage import Collector
from tfconf.testing import ops as _kit
from tfconf.testing.ops import away_from, distinct, ops_between, run  # noqa: F401

#: the op types of passing gradient checks, collected for the running test module
GRADIENTS = Collector("grad_checks")

check_op = functools.partial(_kit.check_op, checked=lambda ops: GRADIENTS.record(op.type for op in ops))
