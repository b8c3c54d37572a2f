"""``tc.nn``: neural-network ops (NCHW); defined in :mod:`tfconf.engine.api_nn`."""

from .engine.api_nn import *  # noqa: F401,F403
