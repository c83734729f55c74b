"""The SLURM gate of the launch-script tests: skip without a usable cluster, fail when .ci/run made SLURM mandatory
(SMPLERX_REQUIRE_SLURM=1, after starting the single-node cluster with scripts/slurm_local.sh)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest


def slurm_problem() -> str | None:
    """Why the SLURM tests cannot run here, or None."""
    if shutil.which("srun") is None or shutil.which("sinfo") is None:
        return "SLURM is not installed (CI starts it with scripts/slurm_local.sh)"
    state = subprocess.run(["sinfo", "-h", "-o", "%a %T"], capture_output=True, text=True, timeout=30).stdout
    if "up" not in state or not re.search(r"idle|mix", state):
        return f"no idle SLURM node (sinfo: {state.strip()!r})"
    return None


def require_slurm() -> None:
    """Skip without a usable cluster, or fail when SLURM is mandatory (SMPLERX_REQUIRE_SLURM=1)."""
    why = slurm_problem()
    if why:
        if os.environ.get("SMPLERX_REQUIRE_SLURM") == "1":
            pytest.fail(why)
        pytest.skip(why)
