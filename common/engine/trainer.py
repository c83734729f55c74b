"""The training loop: optimisation, mixed precision, non-finite guard, exact resume, preemption, logging.

``Trainer(cfg, model, dataset, step_fn, run_dir, dist_info).fit()`` trains for ``cfg.train.end_epoch`` epochs.
``step_fn(model, batch, device) -> dict[str, Tensor]`` returns the weighted loss terms of one batch; their sum
is optimised. The model is wrapped in DDP when distributed (SyncBatchNorm on CUDA only).

Exact resume: checkpoints hold the model, optimiser, scheduler, grad scaler, epoch / iteration, the position in
the epoch, the RNG states and the resolved config. The sampler is deterministic from (seed, epoch), so a run
resumed from any checkpoint, including one written mid-epoch on SIGTERM / SIGUSR1 (SLURM preemption), sees the
same next batch and ends with the same weights as an uninterrupted run (tested). Data augmentation must draw its
randomness from (seed, epoch, sample index), not from worker-global state (see :func:`sample_rng`).

Run folder (the original's layout): ``model_dump/snapshot_<epoch>.pth.tar`` (+ ``snapshot_last.pth.tar`` on
preemption), ``log/train_logs.txt``, ``log/tb/`` (TensorBoard, if installed), ``result/``, ``config.json``,
``git_rev.txt``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import subprocess
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler

from common.config import Config, config_to_dict
from common.engine.checkpoint import network_checkpoint, network_state, read_checkpoint, save_checkpoint
from common.engine.optim import apply_fine_tune, build_optimizer, build_scheduler
from common.errors import CheckpointError, UserError
from common.utils.dist import DistInfo, reduce_dict

log = logging.getLogger(__name__)
PREEMPT_EXIT_CODE = 124  # exit status after a preemption checkpoint (SLURM can requeue on it)
INTERRUPT_EXIT_CODE = 130  # exit status after Ctrl-C (SIGINT) and its checkpoint, the shell's convention
# Config keys that may change when a run is resumed: they do not change what is trained or in which order.
RESUME_FREE_KEYS = ("name", "paths.", "test.", "data.testset", "train.num_workers", "train.print_iters",
                    "train.save_epoch", "train.max_nonfinite_steps", "model.activation_checkpointing")


def resume_differences(saved: dict[str, Any], cfg: Config, saved_world_size: int | None,
                       world_size: int) -> list[str]:
    """What differs between the config (and process count) a checkpoint was written with and this run's, as
    ``"key: saved -> now"`` lines; keys in :data:`RESUME_FREE_KEYS` are ignored. A difference changes the
    schedule, the data or their order, so the resumed run would not be the interrupted one."""

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "sample_interval"
                       else {f"{prefix}{k}": json.loads(json.dumps(v))})  # tuples and lists compare equal
        return out

    old, new = flat(saved), flat(config_to_dict(cfg))
    diffs = [f"{k}: {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}" for k in sorted(set(old) | set(new))
             if not k.startswith(RESUME_FREE_KEYS) and old.get(k) != new.get(k)]
    if saved_world_size is not None and saved_world_size != world_size:
        diffs.append(f"processes (world size): {saved_world_size} -> {world_size}")
    return diffs


def _numpy_state() -> dict[str, Any]:
    """NumPy's global RNG state as plain values and a tensor, so snapshots load with ``weights_only=True``."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_state(state: Any) -> None:
    if isinstance(state, dict):
        state = (state["name"], np.asarray(state["keys"], np.int64).astype(np.uint32), state["pos"],
                 state["has_gauss"], state["gauss"])
    np.random.set_state(state)  # a tuple: snapshots written before the plain layout


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation RNG of one sample: independent of workers and of where a run was resumed."""
    return np.random.default_rng([seed, epoch, index])


class ResumableSampler(Sampler[int]):
    """Shuffled (per epoch, from the seed), padded and split across ranks like ``DistributedSampler``, and able to
    start part-way through an epoch (``set_start``) without loading the skipped samples."""

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = True):
        self.length, self.num_replicas, self.rank = length, num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch, self.start = 0, 0
        self.num_samples = length // num_replicas if drop_last else math.ceil(length / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        dataset = getattr(self, "dataset", None)
        if dataset is not None and hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's share of the current epoch."""
        self.start = start

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        total = self.num_samples * self.num_replicas
        order = order[:total] if self.drop_last else (order * math.ceil(total / max(len(order), 1)))[:total]
        return order[self.rank: total: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


@dataclass
class TrainState:
    epoch: int = 0  # current epoch (0-based)
    iteration: int = 0  # optimiser steps taken (global)
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    skipped_steps: int = 0  # steps skipped for a non-finite loss (total)


class Trainer:
    def __init__(self, cfg: Config, model: nn.Module, dataset: Dataset, step_fn: Callable, run_dir: str | Path,
                 dist_info: DistInfo | None = None, collate_fn: Callable | None = None,
                 tensorboard: bool = True, progress: bool = True):
        self.cfg, self.dataset, self.step_fn = cfg, dataset, step_fn
        self.dist = dist_info or DistInfo()
        self.device = self.dist.device
        self.run_dir = Path(run_dir)
        self.progress = progress and self.dist.is_main
        tc = cfg.train
        apply_fine_tune(model, tc.fine_tune)
        model.to(self.device)
        if self.dist.distributed and tc.syncbn and self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.ddp = (nn.parallel.DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=False) if self.dist.distributed else None)
        self.sampler = ResumableSampler(len(dataset), self.dist.world_size, self.dist.rank, True, tc.seed)
        self.sampler.dataset = dataset
        self.loader = DataLoader(dataset, batch_size=tc.batch_size, sampler=self.sampler,
                                 num_workers=tc.num_workers, drop_last=True, collate_fn=collate_fn,
                                 worker_init_fn=_worker_ignores_stop_signals,
                                 pin_memory=self.device.type == "cuda", persistent_workers=False,
                                 # its own generator: creating an epoch's iterator must not consume the global
                                 # torch RNG (DropPath's), or a resumed run would diverge from an uninterrupted one
                                 generator=torch.Generator().manual_seed(tc.seed))
        self.iters_per_epoch = self.sampler.num_samples // tc.batch_size
        if self.iters_per_epoch == 0:
            raise UserError(f"the dataset has {len(dataset)} samples: fewer than one batch of {tc.batch_size} per "
                            f"process ({self.dist.world_size} processes); lower train.batch_size")
        self.total_iters = self.iters_per_epoch * tc.end_epoch
        self.optimizer = build_optimizer(self.model, tc)
        self.scheduler = build_scheduler(self.optimizer, tc, self.total_iters)
        self.amp = (tc.amp == "bf16") or (tc.amp == "auto" and self.device.type == "cuda")
        self.state = TrainState()
        self._nonfinite_in_a_row = 0
        self._preempt_signal: int | None = None
        self._setup_run_dir(tensorboard)

    # ----------------------------------------------------------------------------------------------------------
    def _setup_run_dir(self, tensorboard: bool) -> None:
        self.tb = None
        if not self.dist.is_main:
            return
        for sub in ("model_dump", "log", "result"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        from common.utils.io import atomic_open, remove_stale_temporaries

        stale = remove_stale_temporaries(self.run_dir / "model_dump")
        if stale:
            log.info("removed %d temporary file(s) of a checkpoint write that was killed", stale)

        with atomic_open(self.run_dir / "config.json", "w") as f:
            json.dump(config_to_dict(self.cfg), f, indent=2)
        with atomic_open(self.run_dir / "git_rev.txt", "w") as f:
            f.write(_git_revision() + "\n")
        handler = logging.FileHandler(self.run_dir / "log" / "train_logs.txt")
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        if log.getEffectiveLevel() > logging.INFO:  # the text log always gets the progress lines
            log.setLevel(logging.INFO)
        logging.getLogger().addHandler(handler)
        self._log_handler = handler
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "log" / "tb"))
            except ImportError:
                log.info("tensorboard is not installed: scalars go to the text log only")

    @property
    def train_model(self) -> nn.Module:
        return self.ddp if self.ddp is not None else self.model

    # ----------------------------------------------------------------------------------------------------------
    def checkpoint_dict(self) -> dict[str, Any]:
        rng = {"python": random.getstate(), "numpy": _numpy_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"epoch": self.state.epoch, "iteration": self.state.iteration,
                "batch_in_epoch": self.state.batch_in_epoch, "skipped_steps": self.state.skipped_steps,
                "network": network_checkpoint(self.model), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "config": config_to_dict(self.cfg), "rng": rng,
                "world_size": self.dist.world_size}

    def save(self, name: str) -> Path | None:
        """Rank 0 writes ``model_dump/<name>`` atomically; all ranks wait for it."""
        path = None
        if self.dist.is_main:
            path = save_checkpoint(self.checkpoint_dict(), self.run_dir / "model_dump" / name)
            log.info("saved %s (epoch %d, iteration %d)", path, self.state.epoch, self.state.iteration)
        if self.dist.distributed:
            torch.distributed.barrier()
        return path

    def resume(self, path: str | Path, ckpt: dict[str, Any] | None = None) -> None:
        """Continue exactly from a checkpoint written by :meth:`save` (``ckpt``: its contents, if already read)."""
        ckpt = read_checkpoint(path) if ckpt is None else ckpt
        check_resumable(ckpt, path)
        self.model.load_state_dict(network_state(ckpt, str(path)), strict=True)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.state = TrainState(ckpt["epoch"], ckpt["iteration"], ckpt.get("batch_in_epoch", 0),
                                ckpt.get("skipped_steps", 0))
        if self.state.batch_in_epoch >= self.iters_per_epoch:  # an end-of-epoch snapshot
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
        if ckpt.get("world_size", self.dist.world_size) != self.dist.world_size:
            log.warning("resuming a %s-process run with %d processes: the data order changes",
                        ckpt.get("world_size"), self.dist.world_size)
        rng = ckpt.get("rng", {})
        if "python" in rng:
            random.setstate(rng["python"])
            _set_numpy_state(rng["numpy"])
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
        log.info("resumed from %s at epoch %d, batch %d, iteration %d", path, self.state.epoch,
                 self.state.batch_in_epoch, self.state.iteration)

    # ----------------------------------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        if signum == signal.SIGINT and self._preempt_signal == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without the snapshot
        self._preempt_signal = signum
        name = signal.Signals(signum).name
        log.warning("received %s: will write model_dump/snapshot_last.pth.tar after the current step and exit%s",
                    name, " (Ctrl-C again to stop at once, without it)" if signum == signal.SIGINT else "")

    def fit(self) -> TrainState:
        """Train to ``end_epoch``. On SIGTERM / SIGUSR1 (a scheduler's stop or time-limit warning) or SIGINT (Ctrl-C)
        finish the current step, save ``snapshot_last.pth.tar`` and raise SystemExit(124) (SIGINT: 130); ``--resume
        auto`` continues from it exactly."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
        try:
            tc = self.cfg.train
            while self.state.epoch < tc.end_epoch:
                self._train_epoch()
                if self.state.batch_in_epoch < self.iters_per_epoch:  # stopped part-way by a signal
                    break
                if (self.state.epoch + 1) % tc.save_epoch == 0 or self.state.epoch + 1 == tc.end_epoch:
                    self.save(f"snapshot_{self.state.epoch}.pth.tar")
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
                if self._preempt_signal is not None:  # arrived during the epoch's last step
                    break
            if self._preempt_signal is not None:
                self.save("snapshot_last.pth.tar")
                raise SystemExit(INTERRUPT_EXIT_CODE if self._preempt_signal == signal.SIGINT else PREEMPT_EXIT_CODE)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if self.tb is not None:
                self.tb.flush()
        return self.state

    def _train_epoch(self) -> None:
        tc = self.cfg.train
        self.sampler.set_epoch(self.state.epoch)
        self.sampler.set_start(self.state.batch_in_epoch * tc.batch_size)
        self.train_model.train()
        sums: dict[str, float] = defaultdict(float)
        n_logged, t_data, t_step = 0, 0.0, 0.0
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.iters_per_epoch, initial=self.state.batch_in_epoch,
                       desc=f"epoch {self.state.epoch + 1}/{tc.end_epoch}", dynamic_ncols=True, leave=False)
        tick = time.perf_counter()
        for batch in self.loader:
            t0 = time.perf_counter()
            t_data += t0 - tick
            losses = self._step(batch)
            tick = time.perf_counter()
            t_step += tick - t0
            self.state.batch_in_epoch += 1
            if losses is not None:
                for k, v in losses.items():
                    sums[k] += float(v)
                n_logged += 1
            if bar is not None:
                bar.update(1)
                if losses is not None:
                    bar.set_postfix(loss=f"{float(losses['total']):.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            if self.state.iteration % tc.print_iters == 0 or self.state.batch_in_epoch == self.iters_per_epoch:
                self._log(sums, n_logged, t_data, t_step)
                sums, n_logged, t_data, t_step = defaultdict(float), 0, 0.0, 0.0
            if self._preempt_signal is not None:
                break
        if bar is not None:
            bar.close()

    def _step(self, batch) -> dict[str, torch.Tensor] | None:
        """One optimiser step; returns the rank-averaged loss terms, or None when the step was skipped."""
        tc = self.cfg.train
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            losses = self.step_fn(self.train_model, batch, self.device)
        total = sum(losses.values())
        # every rank must agree on skipping, or DDP's collectives would deadlock
        finite = torch.isfinite(total.detach()).float()
        if self.dist.distributed:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        self.optimizer.zero_grad(set_to_none=True)
        if finite.item() < 1:
            self._nonfinite_in_a_row += 1
            self.state.skipped_steps += 1
            log.warning("non-finite loss at iteration %d (%s): step skipped (%d in a row, limit %d)",
                        self.state.iteration, {k: float(v.detach()) for k, v in losses.items()},
                        self._nonfinite_in_a_row, tc.max_nonfinite_steps)
            if self._nonfinite_in_a_row >= tc.max_nonfinite_steps:
                raise UserError(f"{self._nonfinite_in_a_row} consecutive non-finite losses: training diverged. "
                                "Lower train.lr, enable train.grad_clip, or check the data (python -m "
                                "main.humandata_tool validate ...); the last good checkpoint is in model_dump/")
            with warnings.catch_warnings():  # the schedule advances with the iteration, even without a step
                warnings.simplefilter("ignore", UserWarning)
                self.scheduler.step()
            self.state.iteration += 1
            return None
        self._nonfinite_in_a_row = 0
        total.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.state.iteration += 1
        losses = {k: v.detach() for k, v in losses.items()}
        losses["total"] = total.detach()
        return reduce_dict(losses)

    def _log(self, sums: dict[str, float], n: int, t_data: float, t_step: float) -> None:
        if not self.dist.is_main or n == 0:
            return
        tc = self.cfg.train
        means = {k: v / n for k, v in sums.items()}
        lr = self.scheduler.get_last_lr()[0]
        ips = n * tc.batch_size * self.dist.world_size / max(t_data + t_step, 1e-9)
        terms = " ".join(f"{k}={v:.4f}" for k, v in sorted(means.items()) if k != "total")
        log.info("epoch %d/%d iter %d/%d | loss %.4f | lr %.3e | %.1f img/s | data %.0f%% | %s",
                 self.state.epoch + 1, tc.end_epoch, self.state.batch_in_epoch, self.iters_per_epoch,
                 means.get("total", float("nan")), lr, ips, 100 * t_data / max(t_data + t_step, 1e-9), terms)
        if self.tb is not None:
            for k, v in means.items():
                self.tb.add_scalar(f"loss/{k}", v, self.state.iteration)
            self.tb.add_scalar("lr", lr, self.state.iteration)
            self.tb.add_scalar("speed/images_per_s", ips, self.state.iteration)
            self.tb.add_scalar("speed/data_time_share", t_data / max(t_data + t_step, 1e-9), self.state.iteration)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        handler = getattr(self, "_log_handler", None)
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def check_resumable(ckpt: dict[str, Any], path: str | Path) -> None:
    """Raise CheckpointError unless ``ckpt`` holds the training state :meth:`Trainer.resume` needs."""
    missing = [k for k in ("optimizer", "scheduler", "epoch", "iteration") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} has no {', '.join(missing)}: it cannot be resumed (a released model or "
                              "an encoder checkpoint starts a new run with paths.pretrained_model instead)")


def _worker_ignores_stop_signals(worker_id: int) -> None:  # noqa: ARG001
    """Data-loader workers leave SIGINT / SIGTERM to the main process, which checkpoints and then shuts them down
    (a terminal's Ctrl-C reaches every process of the group; a worker dying first would abort the snapshot)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=5,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "") if out.returncode == 0 else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"
