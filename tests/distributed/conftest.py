"""One local Ray instance (2 CPUs) for the tests of this package that run a cluster in-process; it is
started by the first test that asks for it and shut down after the package's last test."""

import pytest


@pytest.fixture(scope="package")
def ray_local():
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized(), "another test left Ray running"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield ray
    finally:
        ray.shutdown()
