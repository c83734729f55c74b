"""Video inference speed on the CPU: each person detector's time per 720p frame, and end-to-end frames/s with the
time shares of the stages, detecting every frame (before the schedule) and on key frames only (after).

    python -m bench.bench_video [--size s] [--frames 60] [--people 1,3] [--every 1,16] [--threads N]
                                [--detectors all|name,name] [--schedule-every 4,8,16,24,32] [--batch-size 8]

* Detectors: every torchvision person detector of :data:`common.engine.detector.DETECTOR_ARCHS`, built by
  :class:`~common.engine.detector.TorchvisionDetector` from random weights put in a temporary torchvision cache (the
  time of a detector does not depend on its weights: fixed input size, a fixed number of proposals), timed on a
  1280x720 frame: median of ``--reps`` calls after one warm-up.
* Schedule accuracy: the detection schedule alone on each clip (and on one whose person walks 3x faster), the true
  boxes as its detector: how many frames it detects and how well the interpolated boxes of the other frames overlap
  the true ones, per ``--detect-every``.
* End to end: a generated 1280x720 clip (``--frames`` frames of 1 and of 3 walking stand-in SMPL-X bodies,
  tests/video_fixtures.py) through the pipeline's stages (:mod:`common.video`, via :func:`main.video_inference.run`)
  with an official-format checkpoint of ``--size`` with random weights, multi-person, tracking, the mesh overlay and
  the animation exports (the default product path). The detector is the default torchvision one running for real
  on every frame it is asked for (its time is real) but answering with the clip's true boxes (random weights find
  nobody, and the network's and the writer's time depend on the people), with the CLI's default detector settings
  at ``--every`` (1: every frame; the default 16: the detection schedule), and "before": the previous default,
  Faster R-CNN R50 at torchvision's settings (800 px, 1000 proposals) on every frame, on ``--before-frames``.

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
    """Median seconds per 1280x720 frame of each detector: torchvision's settings, and for the R-CNNs also the
    video pipeline's (shorter side DEFAULT_DETECTOR_SIZE, DEFAULT_PROPOSALS proposals before and after NMS)."""
    from common.engine.detector import DEFAULT_DETECTOR_SIZE, DEFAULT_PROPOSALS, DETECTOR_ARCHS, TorchvisionDetector

    rng = np.random.default_rng(0)
    frame = (rng.random((720, 1280, 3)) * 255).astype(np.uint8)
    rows = []
    for arch in archs:
        settings = [("torchvision's", {})]
        if DETECTOR_ARCHS[arch][0] == "box_score_thresh" and "_320_" not in arch:
            settings.append((f"{DEFAULT_DETECTOR_SIZE} px, {DEFAULT_PROPOSALS} proposals",
                             {"min_size": DEFAULT_DETECTOR_SIZE, "proposals": DEFAULT_PROPOSALS}))
        for label, kwargs in settings:
            det = TorchvisionDetector(arch=arch, **kwargs)
            det(frame)  # warm-up (allocations, oneDNN kernel choice)
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                det(frame)
                times.append(time.perf_counter() - t)
            rows.append({"arch": arch, "settings": label, "s_per_frame": float(np.median(times))})
            print(f"[bench] {arch} ({label}): {rows[-1]['s_per_frame'] * 1000:.0f} ms per 720p frame",
                  file=sys.stderr)
    return rows


def schedule_accuracy(video: Path, boxes: Path, truth: list[list], everies: list[int], min_iou: float) -> list[dict]:
    """The detection schedule alone on a clip with its true boxes as the detector: detector frames and the IoU of
    the interpolated boxes with the true ones on the frames it skipped."""
    from common.engine.detector import BoxesFileDetector, box_iou, xywh_to_xyxy
    from common.utils.video import FrameReader
    from common.video.schedule import DetectionSchedule

    det = BoxesFileDetector(boxes)
    frames = list(FrameReader(video))
    rows = []
    for every in everies:
        sch = DetectionSchedule(lambda fs: det.detect_batch([f.rgb for f in fs], [f.index for f in fs]),
                                lambda b, s, rgb: (b, s), every=every, min_iou=min_iou)
        ious = [box_iou(b[None], xywh_to_xyxy(np.array(truth[item.frame.index]))).max()
                for item in sch(frames) if not item.detected for b in item.boxes]
        rows.append({"every": every, "min_iou": min_iou, "frames": len(frames),
                     "detector_frames": sch.detector_frames, "iou_min": float(min(ious)) if ious else float("nan"),
                     "iou_mean": float(np.mean(ious)) if ious else float("nan")})
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


def run_case(name: str, argv: list[str], boxes: Path) -> dict:
    """One pipeline run through main.video_inference.run, its detector (the CLI's default) answering with the true
    boxes after doing its real work."""
    from main import video_inference as vi

    args = vi.parse_args([*argv, "--no-progress"])
    real = vi.make_detector
    vi.make_detector = lambda a: TimedOracle(real(a), boxes)
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
    p.add_argument("--every", default="1,16", help="--detect-every values end to end (default 1,16)")
    p.add_argument("--schedule-every", default="4,8,16,24,32", help="--detect-every values of the accuracy table")
    p.add_argument("--schedule-iou", type=float, default=0.5, help="min IoU of the schedule (default 0.5)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--video-args", default="", help="extra main.video_inference flags for the end-to-end runs")
    p.add_argument("--before-frames", type=int, default=12,
                   help="frames of the 'before' rows: the previous default, Faster R-CNN R50 at torchvision's "
                        "settings on every frame (seconds per frame; 0 skips them)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--detectors", default="all", help="detectors to time per frame: all, none or a comma list")
    p.add_argument("--reps", type=int, default=3, help="timed calls per detector (default 3)")
    p.add_argument("--workdir", default=None, help="keep the generated files here (default: a temporary folder)")
    args = p.parse_args(argv)
    import torch

    from common.body_model import SMPLXLayer
    from common.engine.demo_assets import write_random_checkpoint
    from tests.video_fixtures import make_clip, write_clip

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp_ctx = tempfile.TemporaryDirectory(prefix="bench_video_") if args.workdir is None else None
    work = Path(args.workdir or tmp_ctx.name)
    work.mkdir(parents=True, exist_ok=True)
    archs = {"all": list(DETECTOR_ARCHS), "none": []}.get(args.detectors, args.detectors.split(","))
    random_detector_cache(work, sorted({*archs, DEFAULT_DETECTOR, "fasterrcnn_resnet50_fpn"}))
    det_rows = time_detectors(archs, args.reps)
    bm_dir, bm_kind = body_model_dir(work)
    ckpt = write_random_checkpoint(work / f"smpler_x_{args.size}_random.pth.tar", size=args.size, seed=0)
    layer = SMPLXLayer(bm_dir)
    rows, sched = [], []
    cases = [(int(v), 0.02) for v in args.people.split(",")] + [(1, 0.06)]  # + a person walking 3x faster
    for n, speed in cases:
        t = time.perf_counter()
        clip = make_clip(layer, width=1280, height=720, num_frames=args.frames, num_people=n, fps=30.0,
                         spacing=0.9, depth=3.4, speed=speed)
        tag = f"walk{n}_{speed}"
        video, boxes = write_clip(clip, work / f"{tag}.mp4", work / f"{tag}.json")
        print(f"[bench] generated {video.name}: {args.frames} frames 1280x720, {n} people, {speed * 30:.1f} m/s "
              f"({time.perf_counter() - t:.1f} s)", file=sys.stderr)
        truth = [[list(p.box) for p in people] for people in clip.people]
        for r in schedule_accuracy(video, boxes, truth, [int(v) for v in args.schedule_every.split(",")],
                                   args.schedule_iou):
            sched.append({"clip": f"{n} person(s), {speed * 30:.1f} m/s", **r})
        if speed != 0.02:
            continue
        if args.before_frames:
            rows.append(run_case(f"{n} person(s), before: R50 800 px on every frame ({args.before_frames} frames)", [
                "--ckpt", str(ckpt), "--input", str(video), "--body-model-dir", str(bm_dir), "--multi_person",
                "--track", "--batch-size", str(args.batch_size), "--detect-every", "1", "--detector-model",
                "fasterrcnn_resnet50_fpn", "--detector-size", "800", "--detector-proposals", "1000",
                "--end", f"{args.before_frames / 30.0 - 1e-3:.4f}", "--output", str(work / f"out{n}_before")], boxes))
        for every in (int(v) for v in args.every.split(",")):
            rows.append(run_case(f"{n} person(s), detect every {every}", [
                "--ckpt", str(ckpt), "--input", str(video), "--body-model-dir", str(bm_dir), "--multi_person",
                "--track", "--batch-size", str(args.batch_size), "--detect-every", str(every),
                "--output", str(work / f"out{n}_{every}"), *args.video_args.split()], boxes))
    cmd = "python -m bench.bench_video " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\ncommand: {cmd.strip()}")
    print(f"torch threads {torch.get_num_threads()}; model: size {args.size}, random weights; body model: {bm_kind}; "
          f"batch {args.batch_size}; end-to-end detector: the CLI's default, {DEFAULT_DETECTOR} (real cost, true "
          "boxes)")
    print("\n| detector | settings | COCO box mAP | ms per 1280x720 frame |\n|---|---|---|---|")
    import torchvision.models as tvm

    for r in det_rows:
        m = tvm.get_model_weights(r["arch"]).DEFAULT.meta.get("_metrics", {}).get("COCO-val2017", {}).get("box_map")
        print(f"| {r['arch']} | {r['settings']} | {m} | {1000 * r['s_per_frame']:.0f} |")
    print("\n| clip (30 fps) | --detect-every | detector frames | IoU of interpolated boxes: min | mean |"
          "\n|---|---|---|---|---|")
    for r in sched:
        print(f"| {r['clip']} | {r['every']} | {r['detector_frames']} / {r['frames']} | {r['iou_min']:.3f} | "
              f"{r['iou_mean']:.3f} |")
    head = "| case | frames | detector frames | person-frames | wall [s] | frames/s | " + " | ".join(
        f"{s} %" for s in STAGE_ORDER) + " |"
    print("\n" + head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        shares = " | ".join(f"{100 * r['shares'][s]:.1f}" for s in STAGE_ORDER)
        print(f"| {r['case']} | {r['frames']} | {r['detector_frames']} | {r['people']} | {r['wall']:.1f} | "
              f"{r['fps']:.2f} | {shares} |")
    print(json.dumps({"detectors": det_rows, "schedule": sched, "rows": rows}))
    if tmp_ctx is not None:
        tmp_ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
