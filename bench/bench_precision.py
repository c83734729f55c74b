"""Accuracy of ``--precision bf16`` / ``int8`` on a trained model: deviation from fp32 and the benchmark metrics.

    .venv/bin/python -m bench.bench_precision [--ckpt output/demo/train/model_dump/snapshot_11.pth.tar]
        [--data-root output/demo/data] [--body-model-dir output/demo/synthetic_human_model_files] [--testset Synthetic]

Defaults are what the main job (``bash scripts/demo.sh``) leaves behind: the trained tiny model and the synthetic
test split. Every precision runs the same batches (the test split through the evaluation data path, as
``main.test``); reported per precision: the deviation from fp32 of the poses (rotation angle, rad, every joint: mean,
max), the vertices (mm, mean distance in the camera frame, translation included; how much of it is the depth of the
translation; and with each mesh centred, i.e. pose and shape alone), the projected 2D joints (px of the 512x384
crop), the hand / face boxes (px of the crop, max), and the test set's metrics (MPVPE, PA-MPVPE, PA-MPJPE, mm) next
to fp32's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from bench.bench_forward import rotation_angles
from common import paths

DEMO = paths.OUTPUT_DIR / "demo"


def run_precision(ckpt: Path, body_model_dir: Path, data_root: Path, testset: str, precision: str,
                  batch_size: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """(every output of the test split, concatenated; the evaluator's summary) at ``precision``."""
    from torch.utils.data import DataLoader

    from common.body_model import load_eval_assets
    from common.config import apply_overrides
    from common.engine.predictor import load_model
    from common.nets import body_model_dir as bm_dir
    from data.datasets import collate, load_split
    from data.formats import EvalContext, evaluator_for

    model, cfg = load_model(ckpt, None, (), body_model_dir, "cpu", precision)
    apply_overrides(cfg, [f"paths.data_root={data_root}"])
    dataset = load_split(cfg, testset, "test", train=False)
    evaluator = evaluator_for(testset, "test", EvalContext(load_eval_assets(bm_dir(cfg)), model.body_model,
                                                           bm_dir(cfg), None, torch.device("cpu")))
    outs: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for inputs, targets, meta in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
            out = {k: v.numpy() for k, v in model(inputs["img"]).to_dict().items()}
            evaluator.process(out, targets, meta)
            for k, v in out.items():
                outs.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in outs.items()}, evaluator.evaluate()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", default=str(DEMO / "train" / "model_dump" / "snapshot_11.pth.tar"))
    p.add_argument("--data-root", default=str(DEMO / "data"))
    p.add_argument("--body-model-dir", default=str(DEMO / "synthetic_human_model_files"))
    p.add_argument("--testset", default="Synthetic")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not Path(args.ckpt).is_file():
        print(f"error: {args.ckpt} not found: run the main job first (bash scripts/demo.sh) or pass --ckpt",
              file=sys.stderr)
        return 2
    res = {pr: run_precision(Path(args.ckpt), Path(args.body_model_dir), Path(args.data_root), args.testset, pr,
                             args.batch_size) for pr in ("fp32", "bf16", "int8")}
    ref, ref_metrics = res["fp32"]
    keys = ("mpvpe_all", "pa_mpvpe_all", "pa_mpjpe_body")
    print(f"\ncommand: python -m bench.bench_precision {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"model {args.ckpt}, test set {args.testset} ({len(ref['smplx_root_pose'])} samples), "
          f"{args.threads} threads\n")
    print("| precision | pose dev mean / max [rad] | vertex dev mean / max [mm] | of which depth (mean) [mm] | "
          "centred vertex dev mean [mm] | 2D joint dev mean / max [px] | box dev max [px] | " +
          " | ".join(f"{k} [mm]" for k in keys) + " |\n|---|---|---|---|---|---|---|" + "---|" * len(keys))
    rows = []
    for pr, (out, metrics) in res.items():
        pose = torch.cat([rotation_angles(torch.from_numpy(out[k]), torch.from_numpy(ref[k])) for k in ref
                          if k.endswith("_pose")], 1).numpy()
        verts = np.linalg.norm(out["smplx_mesh_cam"] - ref["smplx_mesh_cam"], axis=-1) * 1000
        boxes = max(np.abs(out[k] - ref[k]).max() for k in ("lhand_bbox", "rhand_bbox", "face_bbox"))
        depth = np.abs(out["cam_trans"][:, 2] - ref["cam_trans"][:, 2]) * 1000
        v, r = out["smplx_mesh_cam"], ref["smplx_mesh_cam"]
        centred = np.linalg.norm((v - v.mean(1, keepdims=True)) - (r - r.mean(1, keepdims=True)), axis=-1) * 1000
        # smplx_joint_proj is in heat-map cells (16 x 12 over the 512 x 384 crop): 32 crop px per cell
        joints_2d = np.linalg.norm(out["smplx_joint_proj"] - ref["smplx_joint_proj"], axis=-1) * 32
        row = {"precision": pr, "pose_mean": float(pose.mean()), "pose_max": float(pose.max()),
               "vert_mean_mm": float(verts.mean()), "vert_max_mm": float(verts.max()),
               "depth_mean_mm": float(depth.mean()), "centred_vert_mean_mm": float(centred.mean()),
               "joint2d_mean_px": float(joints_2d.mean()), "joint2d_max_px": float(joints_2d.max()),
               "box_max_px": float(boxes), "depth_m": float(ref["cam_trans"][:, 2].mean()),
               **{k: float(metrics[k]) for k in keys}}
        rows.append(row)
        print(f"| {pr} | {row['pose_mean']:.1e} / {row['pose_max']:.1e} | {row['vert_mean_mm']:.2f} / "
              f"{row['vert_max_mm']:.2f} | {row['depth_mean_mm']:.2f} | {row['centred_vert_mean_mm']:.2f} | "
              f"{row['joint2d_mean_px']:.3f} / {row['joint2d_max_px']:.3f} | {row['box_max_px']:.3f} | " +
              " | ".join(f"{row[k]:.1f}" for k in keys) + " |")
    print(f"(mean depth of the people in the network's virtual camera: {rows[0]['depth_m']:.1f} m)")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
