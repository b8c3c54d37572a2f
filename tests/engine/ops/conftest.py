"""The op tests' gradient coverage, declared and verified, in any order (tests/coverage.py):

- each op test module names in ``GRAD_CHECKS`` the op types whose gradients its tests check
  through the harness (tests/engine/harness.check_op);
- collecting this folder whole fails when a registered op type with a gradient rule is in no
  module's ``GRAD_CHECKS`` (a new op needs its case before anything runs);
- a module whose tests all ran and passed fails at its teardown when one of its declared op types
  was never differentiated by a passing check (the declaration cannot claim what is not tested).
"""

from pathlib import Path

import pytest

from tests import coverage
from tests.engine import harness

HERE = Path(__file__).parent


def _differentiable_op_types():
    import tfconf.engine.ops  # noqa: F401 - registers every op type of the library
    from tfconf.engine import registry

    return {n for n, d in registry.registered_ops().items()
            if d.__module__.startswith("tfconf.") and d.grad is not None and not d.nondifferentiable}


def pytest_collection_modifyitems(session, config, items):
    coverage.require_declared(items, HERE, "GRAD_CHECKS", _differentiable_op_types(),
                              "add the op's gradient check to its family's test module, and its name there")


@pytest.fixture(scope="module", autouse=True)
def _declared_gradients_are_checked(request):
    yield from coverage.verified(request, "GRAD_CHECKS", harness.GRADIENTS, "differentiated through check_op")
