"""Waiting for a long-running subprocess to reach a point before signalling it (the interruption tests)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


def wait_until(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120.0, poll: float = 0.1) -> None:
    """Return once ``ready()`` holds while ``proc`` still runs; fail with its output if it ended or timed out."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready():
            return
        time.sleep(poll)
    assert proc.poll() is None, proc.communicate()
    raise AssertionError(f"the process did not get there within {timeout} s")
