"""End-to-end video inference speed on the CPU: frames/s and where the wall time goes.

    python -m bench.bench_video [--size s] [--frames 60] [--people 1,3] [--batch-size 8] [--threads N]

Generates a 1280x720 clip per case (``--frames`` frames of 1 and of 3 walking stand-in SMPL-X bodies, rendered, with
their boxes in a JSON file; tests/video_fixtures.py), writes an official-format checkpoint of the given size with
random weights (common.engine.demo_assets; the speed does not depend on the weights) and runs
``main.video_inference`` on it through :func:`main.video_inference.run`, reading back the pipeline's stage timers:

* given boxes (BoxesFileDetector), multi-person, tracking, mesh overlay video (the default product path);
* the same with the torchvision detector when its weights are in pretrained_models/ or torchvision's cache, on the
  first ``--detector-frames`` frames (Faster R-CNN at 800 px is seconds per frame on a CPU). Without the weights,
  ``--random-detector`` times the detector with random weights instead: it then finds nobody, so that row measures
  decoding + detection only.

Shares are each stage's busy time over the pipeline's wall time (model loading excluded). Stages run in three
threads (decode + detect + crop | network | render + write), so shares can add up to more than 100 %. The render
time per 720p frame is measured twice: inside the pipeline (while the network competes for the CPU) and alone
(median over the clip's frames, 3 people, meshes + compositing).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import paths

STAGE_ORDER = ("decode", "detect", "crop", "network", "render", "write")


def body_model_dir(tmp: Path) -> tuple[Path, str]:
    """The real SMPL-X files if present, else synthetic stand-ins in ``tmp``."""
    from common.body_model import check_body_model_files, write_synthetic_body_models
    from common.errors import BodyModelFilesMissing

    try:
        check_body_model_files(paths.BODY_MODEL_DIR)
        return paths.BODY_MODEL_DIR, "real SMPL-X"
    except BodyModelFilesMissing:
        write_synthetic_body_models(tmp / "bm", smpl=False)
        return tmp / "bm", "synthetic stand-in SMPL-X"


def standalone_render_ms(clip, reps: int = 1) -> float:
    """Median ms to draw one 720p frame (meshes of the clip's GT people + composite), renderer alone."""
    from common.utils.render import MeshRenderer
    from main.video_inference import draw_frame

    class Rec:
        def __init__(self, v, f, c):
            self.vertices, self.focal, self.princpt = v, f, c

    times = []
    with MeshRenderer(clip.width, clip.height) as r:
        for _ in range(reps):
            for frame, people in zip(clip.frames, clip.people):
                recs = [Rec(p.vertices, clip.focal, clip.princpt) for p in people]
                t = time.perf_counter()
                draw_frame(frame, recs, clip.faces, r)
                times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times[1:] if len(times) > 1 else times))


def run_case(name: str, argv: list[str]) -> dict:
    from main import video_inference as vi

    rep = vi.run(vi.parse_args([*argv, "--no-progress"]))
    if rep.error:
        raise SystemExit(f"{name}: {rep.error}")
    sec, cnt = rep.timers.seconds(), rep.timers.counts()
    return {"case": name, "frames": rep.frames, "people": rep.people, "wall": rep.wall_s,
            "fps": rep.frames / rep.wall_s, "shares": {k: sec.get(k, 0.0) / rep.wall_s for k in STAGE_ORDER},
            "render_ms": 1000 * sec["render"] / max(cnt["render"], 1), "load": rep.load_s,
            "detect_ms": 1000 * sec["detect"] / max(rep.frames, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_video", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="s", help="model size of the random checkpoint (default s)")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--people", default="1,3", help="comma-separated people per clip (default 1,3)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--detector-frames", type=int, default=12, help="frames for the detector rows (default 12)")
    p.add_argument("--random-detector", action="store_true",
                   help="without detector weights, time the detector with random weights (finds nobody)")
    p.add_argument("--workdir", default=None, help="keep the generated files here (default: a temporary folder)")
    args = p.parse_args(argv)
    import torch

    from common.body_model import SMPLXLayer
    from common.engine.demo_assets import write_random_checkpoint
    from common.engine.detector import DEFAULT_DETECTOR
    from common.engine.weights import detector_weights_info, resolve_detector_weights
    from common.errors import CheckpointError
    from tests.video_fixtures import make_clip, write_clip

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp_ctx = tempfile.TemporaryDirectory(prefix="bench_video_") if args.workdir is None else None
    work = Path(args.workdir or tmp_ctx.name)
    work.mkdir(parents=True, exist_ok=True)
    bm_dir, bm_kind = body_model_dir(work)
    ckpt = write_random_checkpoint(work / f"smpler_x_{args.size}_random.pth.tar", size=args.size, seed=0)
    det_file = detector_weights_info(DEFAULT_DETECTOR).filename
    try:
        resolve_detector_weights(DEFAULT_DETECTOR)
        detector = "found"
    except CheckpointError:
        detector = "absent (detector rows skipped; --random-detector times it with random weights)"
        if args.random_detector:
            import torchvision.models.detection as tvd

            torch.hub.set_dir(str(work / "hub"))  # this process only: torchvision's cache -> the work folder
            (work / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)
            net = getattr(tvd, DEFAULT_DETECTOR)(weights=None, weights_backbone=None, num_classes=91)
            torch.save(net.state_dict(), work / "hub" / "checkpoints" / det_file)
            detector = "RANDOM weights (finds nobody: the detector rows time decoding + detection only)"
    have_detector = not detector.startswith("absent")
    layer = SMPLXLayer(bm_dir)
    rows, render_alone = [], {}
    for n in (int(v) for v in args.people.split(",")):
        t = time.perf_counter()
        clip = make_clip(layer, width=1280, height=720, num_frames=args.frames, num_people=n, fps=30.0,
                         spacing=0.9, depth=3.4, speed=0.02)
        video, boxes = write_clip(clip, work / f"walk{n}.mp4", work / f"walk{n}.json")
        print(f"[bench] generated {video.name}: {args.frames} frames 1280x720, {n} people "
              f"({time.perf_counter() - t:.1f} s)", file=sys.stderr)
        render_alone[n] = standalone_render_ms(clip)
        common = ["--ckpt", str(ckpt), "--input", str(video), "--body-model-dir", str(bm_dir), "--multi_person",
                  "--track", "--batch-size", str(args.batch_size)]
        rows.append(run_case(f"{n} person(s), given boxes",
                             [*common, "--boxes", str(boxes), "--output", str(work / f"out{n}_boxes")]))
        if have_detector:
            end = f"{args.detector_frames / clip.fps - 1e-3:.4f}"
            rows.append(run_case(f"{n} person(s), torchvision detector",
                                 [*common, "--detector", "torchvision", "--end", end,
                                  "--output", str(work / f"out{n}_det")]))
    cmd = "python -m bench.bench_video " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\ncommand: {cmd.strip()}")
    print(f"model: size {args.size}, random weights; body model: {bm_kind}; torch threads {torch.get_num_threads()}; "
          f"batch {args.batch_size}; detector weights {detector}")
    head = "| case | frames | person-frames | wall [s] | frames/s | " + " | ".join(
        f"{s} %" for s in STAGE_ORDER) + " | detect ms/frame | render ms/frame (in pipeline) |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        shares = " | ".join(f"{100 * r['shares'][s]:.1f}" for s in STAGE_ORDER)
        print(f"| {r['case']} | {r['frames']} | {r['people']} | {r['wall']:.1f} | {r['fps']:.2f} | {shares} | "
              f"{r['detect_ms']:.1f} | {r['render_ms']:.1f} |")
    print("render alone, 1280x720, meshes + compositing (median ms/frame): " +
          ", ".join(f"{n} person(s) {ms:.1f}" for n, ms in render_alone.items()))
    print(json.dumps({"rows": rows, "render_alone_ms": render_alone}))
    if tmp_ctx is not None:
        tmp_ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
