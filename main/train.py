"""Train SMPLer-X: one process (CPU or GPU), ``torchrun``, or SLURM (``main/slurm_train.sh``).

    .venv/bin/python -m main.train --config smpler_x_h32 [--exp_name NAME] [--resume auto|PATH] [key=value ...]
    .venv/bin/torchrun --nproc_per_node 8 -m main.train --config smpler_x_h32 --exp_name h32
    bash main/slurm_train.sh h32 16 config_smpler_x_h32.py

Run folder: ``output/train_<exp_name>_<YYYYmmdd_HHMMSS>/`` (``--run-dir`` to choose it) with ``model_dump/``
(``snapshot_<epoch>.pth.tar``), ``log/train_logs.txt``, ``log/tb/`` (TensorBoard), ``config.json``,
``git_rev.txt``. ``--resume auto`` continues the newest run of the same name from its newest checkpoint (so a
requeued SLURM job resumes by itself); ``--resume PATH`` from a given checkpoint; either refuses a checkpoint
written with other settings (batch size, epochs, datasets, process count ...) unless ``--allow-config-change``.
SIGTERM / SIGUSR1 (SLURM) and Ctrl-C write ``model_dump/snapshot_last.pth.tar`` after the current step, then exit
(124, or 130 for Ctrl-C). Initialisation: the encoder from
``paths.encoder_pretrained`` (ViTPose) when set, or everything from ``paths.pretrained_model`` (a released SMPLer-X
checkpoint, for fine-tuning).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from common.errors import UserError

log = logging.getLogger("smplerx.train")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m main.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="config name or file (e.g. smpler_x_h32, config_smpler_x_h32.py)")
    p.add_argument("--exp_name", default=None, help="run name (default: the config name)")
    p.add_argument("--run-dir", default=None, help="run folder (default: output/train_<exp_name>_<time>)")
    p.add_argument("--resume", default=None, help="'auto' (newest checkpoint of the newest run of this name) or PATH")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume even though the config or the process count differ from the checkpoint's (the "
                        "schedule or the data order then differ from the interrupted run)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--num_gpus", type=int, default=None, help=argparse.SUPPRESS)  # accepted for the original's CLI
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-4")
    return p.parse_args(argv)


def find_resume(run_root: Path, exp_name: str, end_epoch: int) -> tuple[Path | None, Path | None]:
    """(run folder, checkpoint) of the newest *unfinished* run named ``exp_name``, else (None, None).

    A run is finished when its newest checkpoint is ``snapshot_<end_epoch - 1>``: resubmitting a finished job
    starts a new run instead of resuming nothing.
    """
    runs = sorted(run_root.glob(f"train_{exp_name}_*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for run in runs:
        ckpts = sorted((run / "model_dump").glob("snapshot_*.pth.tar"), key=_checkpoint_age)
        if ckpts:
            if ckpts[-1].name == f"snapshot_{end_epoch - 1}.pth.tar":
                log.info("newest run %s is finished: starting a new run", run)
                return None, None
            return run, ckpts[-1]
    return None, None


def _checkpoint_age(path: Path) -> tuple[float, int, int]:
    """Sort key, newest last: write time, then a preemption snapshot before epoch snapshots of the same time."""
    stem = path.name.split(".")[0].removeprefix("snapshot_")
    return (path.stat().st_mtime, int(stem == "last"), int(stem) if stem.isdigit() else -1)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        return run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before training started (during training Ctrl-C writes a snapshot first)
        print("error: interrupted", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    import torch

    from common import paths
    from common.config import load_config
    from common.engine.checkpoint import read_checkpoint
    from common.engine.trainer import Trainer, check_resumable, resume_differences
    from common.utils.dist import all_gather_object, cleanup, init_distributed

    cfg = load_config(args.config, args.overrides)
    dist_info = init_distributed(device=args.device)
    exp = args.exp_name or cfg.name
    torch.manual_seed(cfg.train.seed)

    run_dir, resume_ckpt = (Path(args.run_dir), None) if args.run_dir else (None, None)
    if args.resume == "auto":
        found_dir, found_ckpt = find_resume(paths.OUTPUT_DIR, exp, cfg.train.end_epoch) if run_dir is None else (
            run_dir, max((run_dir / "model_dump").glob("snapshot_*.pth.tar"), key=_checkpoint_age, default=None))
        run_dir, resume_ckpt = found_dir or run_dir, found_ckpt
    elif args.resume:
        resume_ckpt = Path(args.resume)
        run_dir = run_dir or resume_ckpt.resolve().parent.parent
    if run_dir is None:  # every rank must use rank 0's folder name (their clocks differ)
        name = f"train_{exp}_{time.strftime('%Y%m%d_%H%M%S')}"
        run_dir = paths.OUTPUT_DIR / all_gather_object(name)[0]
    resume_state = None
    if resume_ckpt is not None:  # checked before the model and the data are built
        resume_state = read_checkpoint(resume_ckpt)
        check_resumable(resume_state, resume_ckpt)
        diffs = resume_differences(resume_state.get("config") or {}, cfg, resume_state.get("world_size"),
                                   dist_info.world_size)
        if diffs and not args.allow_config_change:
            raise UserError(f"{resume_ckpt} was written with other settings, so resuming would not continue that "
                            f"run: {'; '.join(diffs)}. Use the same config, overrides and process count, start a new "
                            "run (another --exp_name or no --resume), or pass --allow-config-change to resume anyway")
        for d in diffs:
            log.warning("resuming with a changed setting (--allow-config-change): %s", d)

    from data.datasets import build_train_dataset, collate
    from main.steps import build_training_model, smplerx_step

    model, body_models = build_training_model(cfg, dist_info.device)
    dataset = build_train_dataset(cfg)
    log.info("training set: %d samples per epoch", len(dataset))
    step = smplerx_step(cfg, body_models)
    trainer = Trainer(cfg, model, dataset, step, run_dir, dist_info, collate_fn=collate,
                      progress=not args.no_progress)
    if resume_ckpt is not None:
        trainer.resume(resume_ckpt, resume_state)
        del resume_state
    try:
        trainer.fit()
        # every rank reports a checksum of its final weights: DDP keeps them identical (tests compare them)
        checksum = sum(float(p.detach().double().sum()) for p in trainer.model.parameters())
        log.warning("rank %d final weights checksum %.10e", dist_info.rank, checksum)
    finally:
        trainer.close()
        cleanup()
    log.info("done: %s", run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
