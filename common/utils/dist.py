"""Distributed set-up for single process, ``torchrun`` and SLURM ``srun``, with small collective helpers.

``init_distributed()`` looks, in order, for torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT), then SLURM's (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODELIST, SLURM_JOB_ID: the master is
the first host of the node list and the port is derived from the job id, so every task of a job agrees without a
random port), else runs as one process. NCCL on CUDA, gloo on CPU. Logging from other ranks than 0 is quieted.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""  # '' when not distributed
    device: torch.device = torch.device("cpu")
    launcher: str = "none"  # 'none', 'torchrun' or 'slurm'

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def first_slurm_host(nodelist: str) -> str:
    """First host name of a SLURM node list: 'gpu[03-05,7],cpu1' -> 'gpu03', 'node1,node2' -> 'node1'."""
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise ValueError(f"cannot parse SLURM_NODELIST '{nodelist}'")
    prefix, ranges = m.group(1), m.group(2)
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def slurm_port(job_id: str | None, base: int = 20000, span: int = 20000) -> int:
    """A port every task of a SLURM job derives identically from the job id (no random port collisions)."""
    return base + (int(job_id) % span if job_id and job_id.isdigit() else 0)


def init_distributed(backend: str | None = None, device: str | None = None) -> DistInfo:
    """Initialise the process group from torchrun or SLURM variables, or return single-process info."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        launcher = "torchrun"
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    elif "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        launcher = "slurm"
        rank, world, local = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
        env.setdefault("MASTER_ADDR", _slurm_master(env.get("SLURM_NODELIST", env.get("SLURM_JOB_NODELIST", ""))))
        env.setdefault("MASTER_PORT", str(slurm_port(env.get("SLURM_JOB_ID"))))
        env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"] = str(rank), str(world), str(local)
    else:
        dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistInfo(device=dev)
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(local % torch.cuda.device_count())
        dev = torch.device("cuda", local % torch.cuda.device_count())
    else:
        dev = torch.device("cpu")
    backend = backend or ("nccl" if use_cuda else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    if rank != 0:  # readable logs: only rank 0 speaks below WARNING
        logging.getLogger().setLevel(logging.WARNING)
    log.info("distributed: %s, rank %d/%d, local rank %d, backend %s, master %s:%s", launcher, rank, world, local,
             backend, env.get("MASTER_ADDR"), env.get("MASTER_PORT"))
    return DistInfo(rank=rank, world_size=world, local_rank=local, backend=backend, device=dev, launcher=launcher)


def _slurm_master(nodelist: str) -> str:
    if not nodelist:
        return "127.0.0.1"
    try:  # scontrol knows every node-list syntax; the parser covers the common ones when it is absent
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return first_slurm_host(nodelist)


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_local_rank() -> int:
    """Rank of this process on its node: torchrun's LOCAL_RANK, else SLURM_LOCALID, else 0 (one process)."""
    env = os.environ
    value = env.get("LOCAL_RANK", env.get("SLURM_LOCALID", "0"))
    return int(value) if value.strip().isdigit() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` without a process group."""
    if get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def reduce_dict(values: dict[str, torch.Tensor], average: bool = True) -> dict[str, torch.Tensor]:
    """All-reduce a dict of scalar tensors (same keys on every rank); mean over ranks by default."""
    if get_world_size() == 1 or not values:
        return values
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float() for k in keys])
    dist.all_reduce(stacked)
    if average:
        stacked /= get_world_size()
    return dict(zip(keys, stacked))


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
