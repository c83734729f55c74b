"""Video inference speed on the CPU: each person detector's time per 720p frame, and end-to-end frames/s with the
time shares of the stages, detecting every frame (before the schedule) and on key frames only (after).

    python -m bench.bench_video [--size s] [--frames 60] [--people 1,3] [--every 1,8] [--threads N]
                                [--detectors all|name,name] [--batch-size 8]

* Detectors: every torchvision person detector of :data:`common.engine.detector.DETECTOR_ARCHS`, built by
  :class:`~common.engine.detector.TorchvisionDetector` from random weights put in a temporary torchvision cache (the
  time of a detector does not depend on its weights: fixed input size, a fixed number of proposals), timed on a
  1280x720 frame: median of ``--reps`` calls after one warm-up.
* End to end: a generated 1280x720 clip (``--frames`` frames of 1 and of 3 walking stand-in SMPL-X bodies,
  tests/video_fixtures.py) through the pipeline's stages (:mod:`common.video`, via :func:`main.video_inference.run`)
  with an official-format checkpoint of ``--size`` with random weights, multi-person, tracking, the mesh overlay and
  the animation exports (the default product path). The detector is the default torchvision one running for real
  on every frame it is asked for (its time is real) but answering with the clip's true boxes (random weights find
  nobody, and the network's and the writer's time depend on the people): "every 1" is the old behaviour, the larger
  value the detection schedule.

Shares are each stage's busy time over the pipeline's wall time (model loading excluded). Stages run in three
threads (decode + detect + crop | network | render + write), so shares can add up to more than 100 %.
"""

from __future__ import annotations

import argparse
import json
import os
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


def random_detector_cache(work: Path, archs: list[str]) -> None:
    """Random COCO-shaped weights of ``archs`` in a torchvision cache under ``work`` (TORCH_HOME for this process)."""
    import torch
    import torchvision.models.detection as tvd

    from common.engine.weights import detector_weights_info

    os.environ["TORCH_HOME"] = str(work / "torch_home")
    os.environ["SMPLERX_OFFLINE"] = "1"
    folder = work / "torch_home" / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for arch in archs:
        path = folder / detector_weights_info(arch).filename
        if not path.is_file():
            classes = 2 if arch.startswith("keypointrcnn") else 91
            torch.manual_seed(0)
            torch.save(getattr(tvd, arch)(weights=None, weights_backbone=None, num_classes=classes).state_dict(), path)


def time_detectors(archs: list[str], reps: int) -> list[dict]:
    """Median seconds per 1280x720 frame of each detector (TorchvisionDetector with its default settings)."""
    from common.engine.detector import TorchvisionDetector

    rng = np.random.default_rng(0)
    frame = (rng.random((720, 1280, 3)) * 255).astype(np.uint8)
    rows = []
    for arch in archs:
        det = TorchvisionDetector(arch=arch)
        det(frame)  # warm-up (allocations, oneDNN kernel choice)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            det(frame)
            times.append(time.perf_counter() - t)
        rows.append({"arch": arch, "s_per_frame": float(np.median(times))})
        print(f"[bench] {arch}: {rows[-1]['s_per_frame'] * 1000:.0f} ms per 720p frame", file=sys.stderr)
    return rows


class TimedOracle:
    """A real torchvision detector's cost, the clip's true boxes as its answer (see the module docstring)."""

    def __init__(self, detector, boxes_file: Path):
        from common.engine.detector import BoxesFileDetector

        self.detector, self.truth = detector, BoxesFileDetector(boxes_file)
        self.boxes = {}  # main.video_inference reads a file detector's keys; this one is not "unused"
        self.calls = 0

    def detect_batch(self, frames, frame_indices=None):
        self.calls += len(frames)
        self.detector.detect_batch(frames, frame_indices)
        return self.truth.detect_batch(frames, frame_indices)


def run_case(name: str, argv: list[str], detector) -> dict:
    from main import video_inference as vi

    args = vi.parse_args([*argv, "--no-progress"])
    real = vi.make_detector
    vi.make_detector = lambda a: detector
    try:
        rep = vi.run(args)
    finally:
        vi.make_detector = real
    if rep.error:
        raise SystemExit(f"{name}: {rep.error}")
    sec = rep.timers.seconds()
    return {"case": name, "frames": rep.frames, "people": rep.people, "wall": rep.wall_s,
            "fps": rep.frames / rep.wall_s, "shares": {k: sec.get(k, 0.0) / rep.wall_s for k in STAGE_ORDER},
            "detector_frames": rep.detected_frames, "load": rep.load_s}


def main(argv=None) -> int:
    from common.engine.detector import DEFAULT_DETECTOR, DETECTOR_ARCHS

    p = argparse.ArgumentParser(prog="python -m bench.bench_video", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="s", help="model size of the random checkpoint (default s)")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--people", default="1,3", help="comma-separated people per clip (default 1,3)")
    p.add_argument("--every", default="1,8", help="--detect-every values to compare (default 1,8)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--detectors", default="all", help="detectors to time per frame: all, none or a comma list")
    p.add_argument("--reps", type=int, default=3, help="timed calls per detector (default 3)")
    p.add_argument("--workdir", default=None, help="keep the generated files here (default: a temporary folder)")
    args = p.parse_args(argv)
    import torch

    from common.body_model import SMPLXLayer
    from common.engine.demo_assets import write_random_checkpoint
    from common.engine.detector import TorchvisionDetector
    from tests.video_fixtures import make_clip, write_clip

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp_ctx = tempfile.TemporaryDirectory(prefix="bench_video_") if args.workdir is None else None
    work = Path(args.workdir or tmp_ctx.name)
    work.mkdir(parents=True, exist_ok=True)
    archs = {"all": list(DETECTOR_ARCHS), "none": []}.get(args.detectors, args.detectors.split(","))
    random_detector_cache(work, sorted({*archs, DEFAULT_DETECTOR}))
    det_rows = time_detectors(archs, args.reps)
    bm_dir, bm_kind = body_model_dir(work)
    ckpt = write_random_checkpoint(work / f"smpler_x_{args.size}_random.pth.tar", size=args.size, seed=0)
    layer = SMPLXLayer(bm_dir)
    rows = []
    for n in (int(v) for v in args.people.split(",")):
        t = time.perf_counter()
        clip = make_clip(layer, width=1280, height=720, num_frames=args.frames, num_people=n, fps=30.0,
                         spacing=0.9, depth=3.4, speed=0.02)
        video, boxes = write_clip(clip, work / f"walk{n}.mp4", work / f"walk{n}.json")
        print(f"[bench] generated {video.name}: {args.frames} frames 1280x720, {n} people "
              f"({time.perf_counter() - t:.1f} s)", file=sys.stderr)
        for every in (int(v) for v in args.every.split(",")):
            detector = TimedOracle(TorchvisionDetector(arch=DEFAULT_DETECTOR), boxes)
            rows.append(run_case(f"{n} person(s), detect every {every}", [
                "--ckpt", str(ckpt), "--input", str(video), "--body-model-dir", str(bm_dir), "--multi_person",
                "--track", "--batch-size", str(args.batch_size), "--detect-every", str(every),
                "--output", str(work / f"out{n}_{every}")], detector))
    cmd = "python -m bench.bench_video " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\ncommand: {cmd.strip()}")
    print(f"torch threads {torch.get_num_threads()}; model: size {args.size}, random weights; body model: {bm_kind}; "
          f"batch {args.batch_size}; end-to-end detector: {DEFAULT_DETECTOR} (real cost, true boxes)")
    print("\n| detector | COCO box mAP | ms per 1280x720 frame |\n|---|---|---|")
    import torchvision.models as tvm

    for r in det_rows:
        m = tvm.get_model_weights(r["arch"]).DEFAULT.meta.get("_metrics", {}).get("COCO-val2017", {}).get("box_map")
        print(f"| {r['arch']} | {m} | {1000 * r['s_per_frame']:.0f} |")
    head = "| case | frames | detector frames | person-frames | wall [s] | frames/s | " + " | ".join(
        f"{s} %" for s in STAGE_ORDER) + " |"
    print("\n" + head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        shares = " | ".join(f"{100 * r['shares'][s]:.1f}" for s in STAGE_ORDER)
        print(f"| {r['case']} | {r['frames']} | {r['detector_frames']} | {r['people']} | {r['wall']:.1f} | "
              f"{r['fps']:.2f} | {shares} |")
    print(json.dumps({"detectors": det_rows, "rows": rows}))
    if tmp_ctx is not None:
        tmp_ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
