"""The main job on the bundled default: train -> evaluate -> video, end to end on CPU in a few minutes.

    python -m main.demo [--output output/demo] [--train-images 512] [--epochs 12] [--device cpu|cuda]

1. Body model: the real SMPL-X files from ``common/utils/human_model_files/`` if present, else licence-free
   synthetic stand-ins in the official format, written to ``OUTPUT/synthetic_human_model_files/``.
2. Data: the ``Synthetic`` HumanData set (rendered posed bodies with exact annotations) in ``OUTPUT/data/``.
3. Training: the tiny model (``config/smpler_x_synthetic.py``) through ``python -m main.train`` into
   ``OUTPUT/train/`` (a finished run there is reused; an interrupted one resumes).
4. Evaluation: ``python -m main.test`` on the synthetic test split, for the untrained and the trained weights.
5. Video: a synthetic clip of two moving people (``OUTPUT/clip/``) through ``python -m main.video_inference``
   with the trained model: ``OUTPUT/video/synthetic_clip_overlay.mp4`` shows the estimated meshes on the people and
   ``OUTPUT/video/synthetic_clip.glb`` animates them as skinned SMPL-X characters (BVH per person in ``bvh/``);
   the silhouette IoU of the estimated meshes with the true bodies is printed for the untrained and trained model.
6. With the released S32 checkpoint on the machine (``pretrained_models/smpler_x_s32.pth.tar`` or the Hugging Face
   cache; the demo never downloads it), single-image inference on ``demo/images/*`` as well.

The tiny model (~0.5M parameters) is a smoke-test model: it learns the synthetic bodies well enough for the
meshes to follow them, but it is no substitute for the released weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import paths

CONFIG = "smpler_x_synthetic"


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def body_model(out: Path) -> tuple[Path, bool]:
    """(folder holding smplx/, whether it holds the real files)."""
    from common.body_model import check_body_model_files, write_synthetic_body_models
    from common.errors import BodyModelFilesMissing

    try:
        check_body_model_files(paths.BODY_MODEL_DIR)
        say(f"body model: real SMPL-X files in {paths.BODY_MODEL_DIR}")
        return paths.BODY_MODEL_DIR, True
    except BodyModelFilesMissing:
        bm_dir = out / "synthetic_human_model_files"
        if not (bm_dir / "smplx" / "SMPLX_NEUTRAL.npz").is_file():
            write_synthetic_body_models(bm_dir, smpl=False)
        say(f"body model: no real SMPL-X files in {paths.BODY_MODEL_DIR}; using SYNTHETIC stand-ins in {bm_dir}")
        return bm_dir, False


def check_state(out: Path, state: dict) -> None:
    """The data and the run in ``out`` are reused only with the settings that made them (``demo_state.json``)."""
    from common.errors import UserError
    from common.utils.io import atomic_open

    path = out / "demo_state.json"
    if path.is_file():
        old = json.loads(path.read_text())
        changed = ", ".join(f"{k}: {old[k]} -> {v}" for k, v in state.items() if k in old and old[k] != v)
        if changed:  # (a key missing from an older demo's state is not a change)
            raise UserError(f"{out} holds a demo made with other settings ({changed}); delete that folder or pass "
                            "another --output")
    with atomic_open(path, "w") as f:
        json.dump(state, f, indent=2)


def train(out: Path, data_root: Path, bm_dir: Path, epochs: int, device: str, progress: bool) -> Path:
    """Train (or reuse / resume) the tiny model; returns the last snapshot."""
    from main import train as train_cmd

    run = out / "train"
    final = run / "model_dump" / f"snapshot_{epochs - 1}.pth.tar"
    if final.is_file():
        say(f"training: reusing the finished run {run} (delete it to train again)")
        return final
    say(f"training: {CONFIG} for {epochs} epochs into {run} (log: {run / 'log' / 'train_logs.txt'})")
    t0 = time.time()
    code = train_cmd.main(["--config", CONFIG, "--run-dir", str(run), "--resume", "auto", "--device", device,
                           *([] if progress else ["--no-progress"]), f"paths.data_root={data_root}",
                           f"paths.body_model_dir={bm_dir}", f"train.end_epoch={epochs}"])
    if code or not final.is_file():
        raise SystemExit(code or 1)
    say(f"training: done in {time.time() - t0:.0f} s")
    return final


def untrained_checkpoint(trained: Path, out: Path) -> Path:
    """The same network before training (its seeded initialisation), for the before/after comparison."""
    import torch

    from common.config import config_from_dict, config_to_dict
    from common.engine.checkpoint import network_checkpoint, read_checkpoint, save_checkpoint
    from common.nets import SMPLerX

    path = out / "untrained.pth.tar"
    if not path.is_file():
        cfg = config_from_dict(read_checkpoint(trained)["config"])
        torch.manual_seed(cfg.train.seed)
        model = SMPLerX(cfg.model)
        model.init_weights()
        save_checkpoint({"network": network_checkpoint(model), "config": config_to_dict(cfg)}, path)
    return path


def evaluate(ckpts: dict[str, Path], out: Path, data_root: Path, bm_dir: Path, device: str) -> dict[str, dict]:
    from main import test as test_cmd

    results = {}
    for tag, ckpt in ckpts.items():
        res_dir = out / "eval" / tag
        code = test_cmd.main(["--ckpt", str(ckpt), "--testset", "Synthetic", "--output", str(res_dir),
                              "--body-model-dir", str(bm_dir), "--device", device, f"paths.data_root={data_root}"])
        if code:
            raise SystemExit(code)
        results[tag] = json.loads((res_dir / "result.json").read_text())["metrics"]
    return results


def video(ckpts: dict[str, Path], out: Path, bm_dir: Path, frames: int, device: str, progress: bool
          ) -> tuple[Path, dict[str, float]]:
    """The synthetic clip through video inference with each checkpoint (the overlay video for 'trained' only);
    returns the overlay path and each checkpoint's mean silhouette IoU with the true bodies."""
    from data.synthetic_clip import silhouette_iou, write_synthetic_clip
    from main import video_inference

    clip = write_synthetic_clip(out / "clip", bm_dir, num_frames=frames)
    say(f"video: synthetic clip {clip['video']} ({frames} frames, 2 people; ground truth {clip['gt']})")
    ious = {}
    for tag, ckpt in ckpts.items():
        folder = out / "video" if tag == "trained" else out / f"video_{tag}"
        code = video_inference.main(["--ckpt", str(ckpt), "--input", str(clip["video"]), "--boxes",
                                     str(clip["boxes"]), "--multi_person", "--track", "--output", str(folder),
                                     "--body-model-dir", str(bm_dir), "--device", device,
                                     *([] if progress else ["--no-progress"]),
                                     *([] if tag == "trained" else ["--no-render", "--no-animation"])])
        if code:
            raise SystemExit(code)
        ious[tag] = silhouette_iou(clip["gt"], folder / f"{clip['video'].stem}.npz", bm_dir)["mean"]
    return out / "video" / f"{clip['video'].stem}_overlay.mp4", ious


def released_checkpoint_images(out: Path, bm_dir: Path, device: str) -> None:
    from common.engine.weights import cached_checkpoint
    from main import inference

    ckpt = cached_checkpoint("smpler_x_s32")  # pretrained_models/ or the Hugging Face cache; the demo never downloads
    images = sorted(q for q in (paths.REPO_ROOT / "demo" / "images").glob("*")
                    if q.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp"))
    if ckpt is None or not images:
        say("single-image inference with released weights: skipped (needs smpler_x_s32 in pretrained_models/ or "
            "the Hugging Face cache: python -m common.engine.weights smpler_x_s32; and images in demo/images/)")
        return
    for img in images:
        code = inference.main(["--input", str(img), "--ckpt", str(ckpt), "--output", str(out / "released"),
                               "--body-model-dir", str(bm_dir), "--device", device])
        if code:
            raise SystemExit(code)
    say(f"single-image inference with {ckpt}: {out / 'released'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m main.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=str(paths.OUTPUT_DIR / "demo"), help="output folder (default: output/demo)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--train-images", type=int, default=512, help="synthetic training images (default 512)")
    p.add_argument("--test-images", type=int, default=16, help="synthetic test images (default 16)")
    p.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    p.add_argument("--frames", type=int, default=48, help="frames of the synthetic clip (default 48)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    args = p.parse_args(argv)
    from common.config import load_config

    batch = load_config(CONFIG).train.batch_size
    for flag, value, low, why in (("--train-images", args.train_images, batch, f" (one training batch is {batch})"),
                                  ("--test-images", args.test_images, 1, ""), ("--epochs", args.epochs, 1, ""),
                                  ("--frames", args.frames, 1, "")):
        if value < low:
            p.error(f"{flag} {value}: must be at least {low}{why}")
    out = Path(args.output).absolute()
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    from common.errors import UserError

    try:
        t0 = time.time()
        bm_dir, real = body_model(out)
        from data.synthetic_humandata import prepare_synthetic_dataset

        check_state(out, {"body_model_dir": str(Path(bm_dir).absolute()), "train_images": args.train_images,
                          "test_images": args.test_images, "epochs": args.epochs})
        data_root = out / "data"
        say(f"data: synthetic HumanData set ({args.train_images} training, {args.test_images} test images) in "
            f"{data_root}")
        prepare_synthetic_dataset(data_root, bm_dir, n_train=args.train_images, n_test=args.test_images)
        trained = train(out, data_root, bm_dir, args.epochs, args.device, progress)
        results = evaluate({"untrained": untrained_checkpoint(trained, out), "trained": trained}, out, data_root,
                           bm_dir, args.device)
        overlay, ious = video({"untrained": untrained_checkpoint(trained, out), "trained": trained}, out, bm_dir,
                              args.frames, args.device, progress)
        released_checkpoint_images(out, bm_dir, args.device)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    before, after = results["untrained"], results["trained"]
    say("evaluation on the synthetic test split (mm): " + ", ".join(
        f"{k} {before[k]:.0f} -> {after[k]:.0f}" for k in ("mpvpe_all", "pa_mpvpe_all", "pa_mpjpe_body")))
    say(f"video: mean silhouette IoU of the estimated meshes with the true bodies {ious['untrained']:.2f} "
        f"(untrained) -> {ious['trained']:.2f} (trained)")
    say(f"done in {time.time() - t0:.0f} s. Look at {overlay} (the estimated meshes on the moving people) and "
        f"{overlay.with_name(overlay.name.replace('_overlay.mp4', '.glb'))} (the people as animated SMPL-X "
        f"characters: open it in Blender or any glTF viewer); training run {out / 'train'}, evaluation "
        f"{out / 'eval'}, video outputs {out / 'video'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
