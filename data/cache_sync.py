"""One builder per node: local rank 0 builds a missing datalist cache, the other ranks wait for its marker.

:func:`open_or_build` is how every cache (HumanData files, own-format datasets) is obtained:

* a complete cache with the right key is opened (mapped) by anyone, at once;
* otherwise the **builder** (local rank 0 of the node by default, from :func:`common.utils.dist.get_local_rank`;
  also ``python -m main.humandata_tool cache``) writes a claim ``<cache>.builder`` (host, pid, local rank, job,
  start time), builds and commits the cache atomically (data/colstore.py), then removes the claim; a failed
  build leaves the claim with the error, so waiting ranks stop at once instead of timing out;
* every **other rank** polls the cache's ``COMPLETE`` marker until it carries the expected key. After
  ``timeout`` seconds (config ``data.cache_timeout``, default one hour) it raises :class:`CacheWaitTimeout`
  naming the builder (host, local rank, pid, how long ago it started) and what to do. A builder of the same job
  that died (its pid is gone on this host) or failed is reported straight away.

When the cache folder is not writable nobody can build a shared cache: every rank then reads the annotations
itself (the old behaviour, with a warning).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from common.errors import CacheWaitTimeout, InputError
from common.utils.io import atomic_open
from data.colstore import ColumnStore

log = logging.getLogger(__name__)
T = TypeVar("T")

BUILT: list[Path] = []  # the caches this process built (reported by main.humandata_tool cache)
DEFAULT_TIMEOUT = 3600.0  # s; the largest own-format sets (COCO-WholeBody json) take minutes to parse
POLL_SECONDS = 0.5


def get_local_rank() -> int:
    """:func:`common.utils.dist.get_local_rank` (imported on use: reading a cache must not import torch)."""
    from common.utils.dist import get_local_rank as local_rank

    return local_rank()


def _process_start() -> float:
    """When this process was launched (Linux /proc), else now: claims written earlier belong to an earlier run."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


_STARTED = _process_start()


def job_id() -> str:
    """The launcher's job id (SLURM job, torchrun run), '' outside a job: claims of other jobs are only waited on."""
    env = os.environ
    return env.get("SLURM_JOB_ID") or env.get("TORCHELASTIC_RUN_ID") or ""


def claim_path(final: str | Path) -> Path:
    final = Path(final)
    return final.with_name(final.name + ".builder")


def write_claim(final: str | Path, error: str | None = None) -> None:
    """Record that this process builds ``final`` (or, with ``error``, that its build failed)."""
    claim = {"host": socket.gethostname(), "pid": os.getpid(), "local_rank": get_local_rank(), "job": job_id(),
             "started": time.time(), "status": "failed" if error else "building", "error": error}
    try:
        with atomic_open(claim_path(final), "w") as f:
            json.dump(claim, f)
    except OSError as err:
        log.warning("cannot write the builder claim of %s (%s)", final, err)


def read_claim(final: str | Path) -> dict | None:
    try:
        claim = json.loads(claim_path(final).read_text())
        return claim if isinstance(claim, dict) else None
    except (OSError, ValueError):
        return None


def clear_claim(final: str | Path) -> None:
    claim_path(final).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def describe_builder(claim: dict | None) -> str:
    """Who builds (or should build) a cache, for messages."""
    if not claim:
        return (f"no builder has claimed it yet (expected: local rank 0 of host {socket.gethostname()}, or a "
                "`python -m main.humandata_tool cache` step)")
    ago = time.time() - float(claim.get("started", time.time()))
    return (f"the builder is local rank {claim.get('local_rank')} of host {claim.get('host')} (pid "
            f"{claim.get('pid')}, job {claim.get('job') or 'none'}), which started {ago:.0f} s ago")


def wait_for_store(final: str | Path, key: str, timeout: float = DEFAULT_TIMEOUT, poll: float = POLL_SECONDS
                   ) -> ColumnStore:
    """Poll until the store at ``final`` is complete with ``key``; raise naming the builder on timeout/failure."""
    final = Path(final)
    start = time.monotonic()
    logged = False
    while True:
        store = ColumnStore.open(final, key)
        if store is not None:
            return store
        claim = read_claim(final)
        # only a claim of this run can tell that the build failed (an older one is overwritten by the new builder)
        if claim and claim.get("job", "") == job_id() and float(claim.get("started", 0)) >= _STARTED - 1.0:
            if claim.get("status") == "failed":
                raise InputError(f"the build of datalist cache {final} failed: {claim.get('error')} "
                                 f"({describe_builder(claim)}); fix that and start again")
            if claim.get("host") == socket.gethostname() and not _alive(int(claim.get("pid", -1))):
                raise InputError(f"the builder of datalist cache {final} exited without finishing it "
                                 f"({describe_builder(claim)}); look at its log, then start again")
        waited = time.monotonic() - start
        if waited >= timeout:
            raise CacheWaitTimeout(
                f"local rank {get_local_rank()} (pid {os.getpid()}) waited {waited:.0f} s for datalist cache "
                f"{final} and gave up: {describe_builder(claim)}. Look at the builder's log; build the caches "
                "before training with `python -m main.humandata_tool cache --config NAME [key=value ...]`, or "
                "raise data.cache_timeout (seconds)")
        if not logged:
            log.info("waiting for datalist cache %s: %s", final, describe_builder(claim))
            logged = True
        time.sleep(min(poll, max(0.0, timeout - waited)))


def _writable(folder: Path) -> bool:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK)


def open_or_build(final: str | Path, key: str, build: Callable[[], T], open_: Callable[[ColumnStore], T], *,
                  builder: bool | None = None, timeout: float | None = None) -> T:
    """The cache at ``final`` (key ``key``) through ``open_``; missing or stale: ``build()`` it (builder) or wait
    for it (other ranks). ``builder`` None: this process builds iff its local rank is 0."""
    final = Path(final)
    store = ColumnStore.open(final, key)
    if store is not None:
        return open_(store)
    if builder is None:
        builder = get_local_rank() == 0
    if not builder:
        if _writable(final.parent):
            return open_(wait_for_store(final, key, DEFAULT_TIMEOUT if timeout is None else timeout))
        log.warning("datalist cache folder %s is not writable: reading the annotations in this process", final.parent)
        return build()
    write_claim(final)
    try:
        result = build()
    except BaseException as err:
        write_claim(final, error=f"{type(err).__name__}: {' '.join(str(err).split())}"[:2000])
        raise
    clear_claim(final)
    BUILT.append(final)
    return result
