"""Evaluate a SMPLer-X checkpoint on benchmark test sets.

    .venv/bin/python -m main.test --ckpt output/train_x/model_dump/snapshot_9.pth.tar --testset EgoBody_Egocentric
    .venv/bin/python -m main.test --run-dir output/train_x --epoch 9 --testset ARCTIC RenBody_HiRes [--vis]

The model is rebuilt from the checkpoint (its saved config, or the size detected from released weights). Results go
to ``output/test_<name>_ep<epoch>_<testset>_<time>/`` (or ``--output``): ``result.json`` (every metric, mm),
``per_sample.csv``, and with ``--vis`` one ``vis/<n>.npz`` of predicted SMPL-X parameters per sample; a table is
printed. HumanData test sets (EgoBody_Egocentric, ARCTIC, RenBody_HiRes, Behave, SPEC, Synthetic, ...) are scored
against pseudo-GT meshes from their SMPL-X fits with the 14 whole-body metrics of the original; EHF, AGORA, UBody
and 3DPW (own annotation formats, data/formats/) with their benchmark's protocol (facts sheet section 6).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from common import paths
from common.errors import UserError

log = logging.getLogger("smplerx.test")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m main.test", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=None, help="checkpoint to evaluate: a file or a released name (smpler_x_h32 ...)")
    p.add_argument("--run-dir", default=None, help="a training run folder (with --epoch), as the original")
    p.add_argument("--epoch", type=int, default=None, help="snapshot epoch in --run-dir (default: the newest)")
    p.add_argument("--testset", nargs="+", required=True,
                   help="test set name(s) from data/catalog.py, NAME or NAME:split (AGORA = AGORA:val; AGORA:test "
                        "writes the submission files)")
    p.add_argument("--output", default=None, help="result folder (default: output/test_<name>_ep<N>_<set>_<time>)")
    p.add_argument("--body-model-dir", default=None, help="folder holding smplx/ (default: the checkpoint's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="fp32 (default, the benchmark numbers), bf16 or int8 (faster; see docs/benchmarks.md)")
    p.add_argument("--batch-size", type=int, default=None, help="default: test.batch_size of the config")
    p.add_argument("--vis", action="store_true", help="also save each sample's predicted parameters")
    p.add_argument("--sample-interval", type=int, default=None,
                   help="evaluate every N-th sample (default: the benchmark's, e.g. 100 for UBody, 1 for EHF)")
    p.add_argument("--keep-going", action="store_true",
                   help="with several test sets: evaluate the others when one fails (exit code 2 at the end)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. paths.data_root=...")
    return p.parse_args(argv)


def default_split(name: str) -> str:
    """The split a bare test-set name evaluates: AGORA's validation set (its test split has no ground truth, only
    submission files), otherwise 'test'."""
    return "val" if name == "AGORA" else "test"


def parse_testset(item: str) -> tuple[str, str]:
    """``NAME`` or ``NAME:split`` (e.g. ``AGORA:test`` writes the AGORA test submission) -> (name, split)."""
    from data.catalog import get_spec

    name, _, split = item.partition(":")
    spec = get_spec(name)
    split = split or default_split(spec.name)
    if split not in spec.files:
        raise UserError(f"test set {spec.name} has no '{split}' split (it has: {', '.join(spec.splits)})")
    return spec.name, split


def resolve_checkpoint(args: argparse.Namespace) -> Path:
    if args.ckpt:
        return Path(args.ckpt)
    if not args.run_dir:
        raise UserError("give --ckpt PATH, or --run-dir DIR [--epoch N]")
    dump = Path(args.run_dir) / "model_dump"
    if args.epoch is not None:
        return dump / f"snapshot_{args.epoch}.pth.tar"
    snaps = sorted(dump.glob("snapshot_[0-9]*.pth.tar"), key=lambda p: int(p.name.split("_")[1].split(".")[0]))
    if not snaps:
        raise UserError(f"no snapshot_<epoch>.pth.tar in {dump}")
    return snaps[-1]


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from common.utils.dist import cleanup, get_rank

    try:
        run(args)
    except UserError as err:
        if get_rank() == 0:  # every rank fails alike; one message is enough
            print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        cleanup()
    return 0


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Evaluate every test set; with several tasks (torchrun / srun) each takes a contiguous share of the samples
    and rank 0 writes the gathered results. Raises UserError if any test set failed (after trying the others)."""
    from common.body_model import load_eval_assets
    from common.engine.evaluator import mpe
    from common.engine.predictor import load_model, resolve_device
    from common.nets import body_model_dir
    from common.utils.dist import all_gather_object, barrier, init_distributed
    from common.utils.io import atomic_open, check_output_dir

    dist = init_distributed(device=args.device)
    ckpt = resolve_checkpoint(args)
    check_output_dir(args.output or paths.OUTPUT_DIR)  # before the model loads: a bad folder costs nothing
    device = dist.device if dist.world_size > 1 else resolve_device(args.device)
    model, cfg = load_model(ckpt, None, tuple(args.overrides), args.body_model_dir, device, args.precision)
    assets = load_eval_assets(body_model_dir(cfg))
    epoch = ckpt.name.split("_")[1].split(".")[0] if ckpt.name.startswith("snapshot_") else "x"
    stamp = all_gather_object(time.strftime("%Y%m%d_%H%M%S"))[0]  # every rank uses rank 0's folder names
    results: dict[str, dict[str, float]] = {}
    failed: dict[str, str] = {}
    for item in args.testset:
        try:
            name, split = parse_testset(item)
            label = name if split == default_split(name) else f"{name}_{split}"
            out_dir = Path(args.output) / label if args.output and len(args.testset) > 1 else (
                Path(args.output) if args.output else
                paths.OUTPUT_DIR / f"test_{cfg.name}_ep{epoch}_{label}_{stamp}")
            results[label] = evaluate_set(args, cfg, model, assets, name, split, label, out_dir, ckpt, device, dist)
        except UserError as err:
            if not args.keep_going:
                raise
            failed[item] = str(err)
            if dist.is_main:
                log.error("%s failed: %s", item, err)
    value = mpe(results)
    if dist.is_main:
        if value is not None:
            print(f"MPE (AGORA, EgoBody, UBody, 3DPW, EHF): {value:.2f} mm")
        if args.output and len(args.testset) > 1:
            with atomic_open(Path(args.output) / "summary.json", "w") as f:
                json.dump({"checkpoint": str(ckpt), "results": results, "mpe": value, "failed": failed}, f, indent=2)
            print(f"summary: {Path(args.output) / 'summary.json'}")
    # every rank leaves together, after rank 0 wrote the summary (main/slurm_test.sh ends the step shortly after
    # the first task exits)
    barrier()
    if failed:
        raise UserError(f"{len(failed)} of {len(args.testset)} test set(s) failed: " +
                        "; ".join(f"{k}: {v.splitlines()[0]}" for k, v in failed.items()))
    return results


def evaluate_set(args, cfg, model, assets, name, split, label, out_dir, ckpt, device, dist) -> dict[str, float]:
    """One test set: this rank's share of the samples through the model and the evaluator; rank 0 writes."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from common.engine.evaluator import format_table
    from common.nets import body_model_dir
    from common.utils.io import save_npz
    from data.datasets import collate, load_split
    from data.formats import EvalContext, evaluator_for

    dataset = load_split(cfg, name, split, train=False, sample_interval=args.sample_interval)
    n_all = len(dataset)
    lo, hi = n_all * dist.rank // dist.world_size, n_all * (dist.rank + 1) // dist.world_size
    loader = DataLoader(Subset(dataset, range(lo, hi)), batch_size=args.batch_size or cfg.test.batch_size,
                        shuffle=False, num_workers=cfg.train.num_workers, collate_fn=collate)
    evaluator = evaluator_for(name, split, EvalContext(assets, model.body_model, body_model_dir(cfg), out_dir, device))
    n = lo
    with torch.no_grad():
        for inputs, targets, meta in tqdm(loader, desc=label, unit="batch", disable=not dist.is_main or
                                          args.no_progress):
            out = {k: v.cpu().numpy() for k, v in model(inputs["img"].to(device)).to_dict().items()}
            evaluator.process(out, targets, meta)
            if args.vis:
                for i in range(len(out["smplx_root_pose"])):
                    save_npz(out_dir / "vis" / f"{n}.npz", **_vis_params(out, i, targets),
                             img_path=np.array(meta["img_path"][i]))
                    n += 1
    summary = evaluator.evaluate()  # gathers every rank's samples
    if dist.is_main:
        evaluator.write(out_dir, summary)
        print(format_table(f"{label} ({len(evaluator.records)} samples, {ckpt})", summary))
        print(f"results: {out_dir / 'result.json'}")
    return summary


def _vis_params(out, i, targets):
    """One sample's predicted SMPL-X parameters in the npz layout of the original's --vis (transl = GT)."""
    import numpy as np

    pick = {"global_orient": "smplx_root_pose", "body_pose": "smplx_body_pose", "left_hand_pose": "smplx_lhand_pose",
            "right_hand_pose": "smplx_rhand_pose", "jaw_pose": "smplx_jaw_pose"}
    params = {k: out[v][i].reshape(-1, 3) for k, v in pick.items()}
    params.update(leye_pose=np.zeros((1, 3)), reye_pose=np.zeros((1, 3)), betas=out["smplx_shape"][i].reshape(1, -1),
                  expression=out["smplx_expr"][i].reshape(1, -1),
                  transl=np.asarray(targets["smplx_cam_trans"][i]).reshape(1, 3))
    return params


if __name__ == "__main__":
    sys.exit(main())
