"""Video inference: SMPL-X parameters of every person in every frame of a video, an image or a folder of images,
with the overlay video and exports in one camera per frame and, with tracking, an animation of the clip.

    python -m main.video_inference --ckpt smpler_x_s32 --input clip.mp4 --output results/clip \\
        [--multi_person --track] [--boxes boxes.json] [--fps 24] [--start 2 --end 10] [--glb] [--save_mesh]

``--ckpt`` is a released model by name (``smpler_x_{s,b,l,h}32``: from ``pretrained_models/`` or the Hugging Face
cache, downloaded once; :mod:`common.engine.weights`) or a checkpoint file. The stages live in :mod:`common.video`:
frames are decoded in memory (PyAV); people come from a torchvision detector run on key frames at most
``--detect-every`` frames apart with the boxes in between interpolated (bisection where people enter, leave or move
fast: :mod:`common.video.schedule`), from a ``--boxes`` file, or the whole frame; boxes are selected as the
original demo (score >= ``--score_thr``; single person: the largest box, ``--multi_person``: NMS at ``--iou_thr``;
boxes narrower than ``--bbox_thr`` or lower than 3x that are skipped and counted), tracked (``--track``), cropped,
and run through the network in batches of ``--batch-size`` across frames and people; ``--smooth`` smooths each
track (One-Euro on rotation matrices; implies ``--track``).

Cameras. The network predicts each person in their own crop camera (focal / princpt from the box, as the
original). The *scene camera* is one camera for the frame: principal point at the image centre, focal
``--scene-focal`` (default ``max(width, height)`` px). Exports place every person rigidly in it (centroid on the
same pixel, apparent size kept: :mod:`common.video.scene`); the overlay maps each mesh into it exactly.

Outputs in OUTPUT (``<frame>`` = the frame index, 6 digits; ``<k>`` = the person's id, see below):

* ``smplx/<frame>_<k>.npz``: the original demo's layout, float32: global_orient (1,3), body_pose (21,3),
  left_hand_pose (15,3), right_hand_pose (15,3), jaw_pose (1,3), leye_pose (1,3), reye_pose (1,3) (zeros),
  betas (1,10), expression (1,10), transl (1,3). Axis-angle (rad); metres; neutral SMPL-X with
  ``flat_hand_mean=False``; fed to the SMPL-X layer with ``transl`` they give the mesh in the person's crop camera
  (OpenCV: x right, y down, z forward).
* ``meta/<frame>_<k>.json``: focal [fx, fy] and princpt [cx, cy] (px of the frame: ``u = fx x / z + cx``) of the crop
  camera, bbox (the processed crop box, xywh px), bbox_input (the detected / interpolated / given box, xywh px),
  track_id, frame_index, time_s, score, detected (whether the detector ran on this frame), image_size [width,
  height], scene {focal, princpt, transl: the person's translation in the scene camera (m)}, input.
* ``mesh/<frame>_<k>.obj`` with ``--save_mesh``: the mesh in the scene camera frame (m), faces 1-based.
* ``glb/<frame>.glb`` with ``--glb``: every person of the frame, placed in the scene camera, and that camera (glTF:
  y up, looking down -z; camera-frame points stored as (x, -y, -z)); see docs/exports.md.
* ``<stem>.npz``: everything above stacked over the N person-frames of the input, in processing order (frame
  order, then the order of the boxes in the frame): each parameter above with a leading N axis (global_orient
  (N,1,3), body_pose (N,21,3), ... transl (N,1,3)), frame_index (N,) int64, time_s (N,) float64 (s from the start of
  the stream), track_id (N,) int64, score (N,), detected (N,) bool, bbox (N,4), bbox_input (N,4), focal (N,2),
  princpt (N,2) (float64, px), scene_transl (N,3) (m), image_size (2,) int64 = (width, height) of the first frame,
  fps () float64 of the output video, scene_focal () and scene_princpt (2,) px. ``<stem>`` is the video / image
  file's stem or the folder's name.
* with ``--track`` (video or folder): ``<stem>.glb``, one animated glTF with a skinned SMPL-X character per track and
  the scene camera, keyed at the video's times (time 0 = the overlay's first frame), and ``bvh/<stem>_track<k>.bvh``
  per track (``--no-animation`` to skip); formats, frames and the skinning approximation in docs/exports.md.
* ``<stem>_overlay.mp4`` (H.264; ``<stem>_overlay.jpg`` for a single image): every frame with the meshes drawn
  (``--show_verts``: vertex dots as the original; ``--show_bbox``: the boxes in red), frames with nobody unchanged;
  with ``--save_frames`` also ``img/<frame>.jpg``. ``--no-render`` skips both (parameters only).

Frame index: 0-based decode position (with ``--fps F``: the slot k of the resampled grid t = k / F, see
common/utils/video.py); the original numbered extracted images from 1. ``--start`` / ``--end`` are seconds on the
stream's clock (end exclusive). Person id ``<k>``: with ``--track`` the track id (stable while a person is followed,
never reused); without it the box's rank in its frame (0 = the largest box, or the best score with
``--multi_person``), as the original's ``bbox_id``.

Robustness: frames with nobody are written unchanged; boxes cut by the frame border are clipped as the original;
boxes with no area inside the frame and tiny boxes are skipped and counted; grayscale / alpha inputs become RGB; a
truncated or corrupt video is processed as far as it decodes; unreadable images of a folder are skipped and named.
Every file is written atomically as its frame completes; the stacked npz, the video and the animation are finalised
with the completed frames when decoding fails, an error stops the run, or on Ctrl-C / SIGTERM (exit 2, 130, 143;
an unexpected error's traceback goes to ``OUTPUT/error.log``). Problems found before the model loads (missing
input, bad checkpoint, boxes file or output folder) exit with code 2 and write nothing. A final summary line counts
frames, people, detector frames, empty frames, skipped boxes and input problems; nothing decoded exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from common.errors import InputError, UserError
from common.video.report import RunReport, VideoOptions
from main.inference import add_model_arguments

log = logging.getLogger("smplerx.video_inference")

# detector key frames at most this many frames apart by default (chosen by measurement: docs/benchmarks.md);
# given boxes and the whole frame cost nothing to "detect", so they are used on every frame
DEFAULT_DETECT_EVERY = 16


# ------------------------------------------------------------------------------------------------------ CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from common.engine.detector import DEFAULT_DETECTOR, DEFAULT_DETECTOR_SIZE, DEFAULT_PROPOSALS, DETECTOR_ARCHS

    p = argparse.ArgumentParser(prog="python -m main.video_inference", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, "video file, image, or folder of images")
    p.add_argument("--fps", type=float, default=None,
                   help="resample to this frame rate (default: every frame of the source; folders: 30)")
    p.add_argument("--start", type=float, default=0.0, help="first time to process, seconds (default 0)")
    p.add_argument("--end", type=float, default=None, help="stop before this time, seconds (default: the end)")
    p.add_argument("--detector", choices=("torchvision", "boxes", "whole"), default=None,
                   help="person boxes: a torchvision detector, a --boxes file, or the whole frame "
                        "(default: boxes with --boxes, else torchvision)")
    p.add_argument("--detector-model", default=DEFAULT_DETECTOR, choices=tuple(DETECTOR_ARCHS),
                   help=f"torchvision detector (default {DEFAULT_DETECTOR}; fasterrcnn_resnet50_fpn is the "
                        "original's architecture, ~20x slower on a CPU)")
    p.add_argument("--detector-size", type=int, default=DEFAULT_DETECTOR_SIZE, metavar="PX",
                   help=f"shorter side the detector sees (default {DEFAULT_DETECTOR_SIZE}; torchvision's R-CNNs use "
                        "800: raise it for small, distant people)")
    p.add_argument("--detector-proposals", type=int, default=DEFAULT_PROPOSALS, metavar="N",
                   help=f"R-CNN region proposals per frame (default {DEFAULT_PROPOSALS}; torchvision's 1000: raise it "
                        "for crowds)")
    p.add_argument("--detect-every", type=int, default=None, metavar="N",
                   help=f"run the detector on key frames at most N frames apart and interpolate the boxes between "
                        f"(more key frames where people enter, leave or move fast); 1 = every frame (default "
                        f"{DEFAULT_DETECT_EVERY} with the torchvision detector, 1 with --boxes / whole)")
    p.add_argument("--detect-iou", type=float, default=0.5, metavar="IOU",
                   help="IoU a person's boxes on two key frames need for the frames between to be interpolated "
                        "(lower: fewer detector runs, rougher boxes; default 0.5)")
    p.add_argument("--boxes", default=None, metavar="JSON",
                   help='boxes per frame index: {"0": [[x, y, w, h, score?], ...], ...} (px)')
    p.add_argument("--bbox_thr", "--bbox-thr", type=float, default=50.0,
                   help="skip boxes narrower than this or lower than 3x this (px; default 50, the original's)")
    p.add_argument("--iou_thr", "--iou-thr", type=float, default=0.5, help="NMS IoU threshold (--multi_person)")
    p.add_argument("--score_thr", "--score-thr", type=float, default=0.5, help="minimum detection score")
    p.add_argument("--multi_person", "--multi-person", action="store_true",
                   help="every person (NMS) instead of the largest box only")
    p.add_argument("--track", action="store_true", help="stable person ids across frames (file suffix = track id); "
                                                        "also writes the animation exports")
    p.add_argument("--smooth", action="store_true", help="One-Euro smoothing of each track's parameters (implies "
                                                         "--track)")
    p.add_argument("--scene-focal", type=float, default=None, metavar="PX",
                   help="focal length of the frame's scene camera for the exports (default: max(width, height))")
    p.add_argument("--show_verts", "--show-verts", action="store_true", help="draw vertex dots instead of meshes")
    p.add_argument("--show_bbox", "--show-bbox", action="store_true", help="draw the detected boxes")
    p.add_argument("--no-render", action="store_true", help="write parameters only (no overlay video or images)")
    p.add_argument("--save_frames", "--save-frames", action="store_true", help="also write img/<frame>.jpg")
    p.add_argument("--save_mesh", "--save-mesh", action="store_true", help="also write mesh/<frame>_<k>.obj")
    p.add_argument("--glb", action="store_true", help="also write glb/<frame>.glb")
    p.add_argument("--no-animation", action="store_true", help="with --track: skip <stem>.glb and bvh/")
    p.add_argument("--batch-size", type=int, default=8, help="crops per network forward (default 8)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. model.upscale=4")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    if args.detect_every is not None and args.detect_every < 1:
        p.error("--detect-every must be >= 1 (1 = every frame)")
    if not 0.0 < args.detect_iou <= 1.0:
        p.error("--detect-iou must be in (0, 1]")
    if args.detector_size < 64:
        p.error("--detector-size must be at least 64 px")
    if args.detector_proposals < 1:
        p.error("--detector-proposals must be >= 1")
    if args.scene_focal is not None and not args.scene_focal > 0:
        p.error("--scene-focal must be > 0 px")
    if args.smooth:
        args.track = True
    if args.detector is None:
        args.detector = "boxes" if args.boxes else "torchvision"
    if args.detector == "boxes" and not args.boxes:
        p.error("--detector boxes needs --boxes FILE")
    if args.boxes and args.detector != "boxes":
        p.error(f"--boxes is read only with --detector boxes (got --detector {args.detector}); drop one of them")
    if args.detect_every is None:
        args.detect_every = DEFAULT_DETECT_EVERY if args.detector == "torchvision" else 1
    return args


def options(args: argparse.Namespace) -> VideoOptions:
    """The pipeline's options from the parsed arguments."""
    return VideoOptions(score_thr=args.score_thr, iou_thr=args.iou_thr, bbox_thr=args.bbox_thr,
                        multi_person=args.multi_person, track=args.track, smooth=args.smooth,
                        detect_every=args.detect_every, detect_iou=args.detect_iou, batch_size=args.batch_size,
                        render=not args.no_render,
                        show_verts=args.show_verts, show_bbox=args.show_bbox, save_frames=args.save_frames,
                        save_mesh=args.save_mesh, glb=args.glb, animation=not args.no_animation,
                        scene_focal=args.scene_focal, progress=not args.no_progress)


def make_detector(args: argparse.Namespace) -> Any:
    """The person detector chosen by ``--detector`` (weights / boxes file checked now, before any work)."""
    from common.engine.detector import BoxesFileDetector, TorchvisionDetector, WholeFrameDetector

    if args.detector == "boxes":
        return BoxesFileDetector(args.boxes)
    if args.detector == "whole":
        return WholeFrameDetector()
    return TorchvisionDetector(arch=args.detector_model, device=str(args.device), min_size=args.detector_size,
                               proposals=args.detector_proposals)


def _stem(path: Path) -> str:
    return path.name if path.is_dir() else path.stem


def _count_alpha(path: Path, kind: str) -> int:
    from common.utils.image import image_has_alpha
    from common.utils.video import list_images

    files = [path] if kind == "image" else list_images(path) if kind == "folder" else []
    return sum(image_has_alpha(f) for f in files)


# ------------------------------------------------------------------------------------------------------ run
def run(args: argparse.Namespace) -> RunReport:
    """Validate the inputs, load the model, run the pipeline; returns the :class:`RunReport` (``error`` set when the
    run stopped mid-way; UserError raised for problems found before anything is written)."""
    import numpy as np
    import torch

    from common.engine.predictor import Predictor, load_model, resolve_device
    from common.nets import body_model_dir
    from common.utils.io import check_output_dir, remove_stale_temporaries
    from common.utils.video import DEFAULT_IMAGE_FPS, FrameReader
    from common.video.network import NetworkStage
    from common.video.pipeline import VideoPipeline
    from common.video.producer import FrameSource
    from common.video.report import compute_lock
    from common.video.writers import OutputWriter

    if args.threads:
        torch.set_num_threads(args.threads)
    reader = FrameReader(args.input, fps=args.fps, start=args.start, end=args.end)
    device = resolve_device(args.device)
    args.device = str(device)
    detector = make_detector(args)
    out = Path(args.output)
    check_output_dir(out, ("smplx", "meta", "mesh", "glb", "img", "bvh"))  # before the model loads
    t0 = time.perf_counter()
    model, cfg = load_model(args.ckpt, args.config, tuple(args.overrides), args.body_model_dir, device,
                            args.precision)
    predictor = Predictor(model, cfg, batch_size=args.batch_size)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the output folder {out}: {err}; choose a writable --output") from err
    report = RunReport(out_dir=out, load_s=time.perf_counter() - t0)
    kind = reader.info.kind
    report.alpha_images = _count_alpha(Path(args.input), kind)
    stale = remove_stale_temporaries(out, recursive=True)
    if stale:
        log.info("removed %d temporary file(s) left in %s by a run that was killed", stale, out)
    opts = options(args)
    fps = float(args.fps or reader.info.fps or DEFAULT_IMAGE_FPS)
    writer = OutputWriter(opts, report, Path(args.input), _stem(Path(args.input)), kind,
                          np.asarray(model.body_model.faces), fps, body_model_dir(cfg))
    lock = compute_lock(device.type)  # the detector and the network take turns on a CPU
    source = FrameSource(reader, detector, predictor, opts, report, lock)
    total = reader.estimated_length() if kind != "image" else 1
    VideoPipeline(source, NetworkStage(model, predictor, opts, report.timers, lock), writer, report,
                  queue_size=args.batch_size + 2, progress_total=total).run()
    if report.frames == 0 and not report.input_problem and report.error is None:
        report.input_problem = (f"no frame decoded between --start {args.start} s and --end {args.end} s of "
                                f"{args.input}; check the time range")
    unused = sorted(k for k, (b, _) in getattr(detector, "boxes", {}).items() if k > report.last_index and len(b))
    if unused and report.error is None:
        report.notes.append(f"WARNING: {args.boxes} has boxes for {len(unused)} frame(s) after the last processed "
                            f"frame {report.last_index} (from frame {unused[0]}); they were not used: check --fps / "
                            "--start / --end and the file's frame numbering (0-based processed frame indices)")
        log.warning(report.notes[-1])
    return report


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``docker stop``, SLURM's time limit) as an orderly stop, like Ctrl-C: the completed
    frames, the stacked npz and the video so far are finalised and temporary files removed."""


@contextlib.contextmanager
def _sigterm_stops_orderly() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a repeated SIGTERM must not cut the finalising short
        raise Terminated("terminated (SIGTERM)")

    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread only
        yield
        return
    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _interrupt_code(err: BaseException | str | None) -> int:
    terminated = isinstance(err, Terminated) or (isinstance(err, str) and err.startswith("terminated"))
    return 143 if terminated else 130  # 128 + the signal number, the shell's convention


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        with _sigterm_stops_orderly():
            report = run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # before the pipeline started: nothing to keep
        print(f"error: {err or 'interrupted'} before any frame was processed", file=sys.stderr)
        return _interrupt_code(err)
    print(f"video_inference: {report.summary()}")
    if report.error is not None:
        print(f"error: stopped after {report.frames} frame(s): {report.error}; the completed frames, the stacked npz "
              f"and the video so far are kept in {report.out_dir}", file=sys.stderr)
        return _interrupt_code(report.error) if report.error.startswith(("interrupted", "terminated")) else 2
    if report.frames == 0:
        print(f"error: no frame was processed: {report.input_problem or 'the input holds no decodable frame'}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
