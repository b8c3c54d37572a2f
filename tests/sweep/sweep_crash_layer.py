"""A ``type: Python`` layer for the failure-isolation tests: y = x, unless ``mode`` says to die.

It only misbehaves inside a sweep trial (TFCONF_SWEEP_TRIAL is set), so the sweep process can
validate the config by building the net."""

import os
import signal

import tfconf as tc


class Crash(tc.PythonLayer):
    def __init__(self, mode="none"):
        self.mode = mode

    def build(self, bottoms):
        if os.environ.get("TFCONF_SWEEP_TRIAL"):
            if self.mode == "kill":  # as the kernel's OOM killer would
                os.kill(os.getpid(), signal.SIGKILL)
            if self.mode == "raise":
                raise RuntimeError("boom")
        return bottoms[0]
