"""Video inference: SMPL-X parameters of every person in every frame of a video, an image or a folder of images.

    python -m main.video_inference --ckpt pretrained_models/smpler_x_s32.pth.tar --input demo/videos/clip.mp4 \\
        --output demo/results/clip [--multi_person --track] [--boxes boxes.json] [--fps 24] [--start 2 --end 10]

Pipeline. A producer thread decodes frames (:class:`common.utils.video.FrameReader`: PyAV, no frames on disk),
detects people (:mod:`common.engine.detector`: torchvision Faster R-CNN, a boxes JSON file, or the whole frame),
selects boxes as the original demo (score >= ``--score_thr``; single person: the largest box, ``--multi_person``: NMS
at ``--iou_thr``; boxes narrower than ``--bbox_thr`` or lower than 3x that are skipped and counted), assigns track
ids (``--track``: :class:`~common.engine.tracking.IoUTracker`) and cuts the 512x384 network crops. The main thread
runs the network on batches of ``--batch-size`` crops taken across frames and people, optionally smooths each track
(``--smooth``, One-Euro on rotation matrices; implies ``--track``), and hands finished frames to a writer thread
that writes the per-frame files, renders the overlay (its OpenGL context lives in that thread) and encodes the
video. Queues between the threads are bounded, so memory stays flat on long videos.

Outputs in OUTPUT (``<frame>`` = the frame index, 6 digits; ``<k>`` = the person's id, see below):

* ``smplx/<frame>_<k>.npz``: the original demo's layout, float32: global_orient (1,3), body_pose (21,3),
  left_hand_pose (15,3), right_hand_pose (15,3), jaw_pose (1,3), leye_pose (1,3), reye_pose (1,3) (zeros),
  betas (1,10), expression (1,10), transl (1,3). Axis-angle (rad); metres; neutral SMPL-X with
  ``flat_hand_mean=False``; fed to the SMPL-X layer with ``transl`` they give the mesh in the camera frame
  (OpenCV: x right, y down, z forward).
* ``meta/<frame>_<k>.json``: focal [fx, fy] and princpt [cx, cy] (px of the frame: ``u = fx x / z + cx``),
  bbox (the processed crop box, xywh px), bbox_input (the detected / given box, xywh px), track_id, frame_index,
  time_s, score (detection score), image_size [width, height], input (the input path).
* ``mesh/<frame>_<k>.obj`` with ``--save_mesh``: the camera-frame mesh (m), faces 1-based.
* ``glb/<frame>.glb`` with ``--glb``: every person of the frame as one glTF 2.0 mesh (node ``track_<k>``);
  glTF is y-up with the viewer looking down -z, so camera-frame vertices are stored as (x, -y, -z) (a 180 degree
  rotation about x, as the original's renderer applied): seen from the origin the scene matches the frame.
* ``<stem>.npz``: everything above stacked over the N person-frames of the input, in processing order (frame
  order, then the order of the boxes in the frame): each parameter above with a leading N axis (global_orient
  (N,1,3), body_pose (N,21,3), ... transl (N,1,3)), frame_index (N,) int64, time_s (N,) float64 (s from the start of
  the stream), track_id (N,) int64, score (N,), bbox (N,4), bbox_input (N,4), focal (N,2), princpt (N,2) (float64,
  px), image_size (2,) int64 = (width, height) of the first frame, fps () float64 of the output video.
  ``<stem>`` is the video / image file's stem or the folder's name.
* ``<stem>_overlay.mp4`` (H.264; ``<stem>_overlay.jpg`` for a single image): every frame with the meshes drawn
  (``--show_verts``: vertex dots as the original; ``--show_bbox``: the detected boxes in red), frames with nobody
  unchanged; with ``--save_frames`` also ``img/<frame>.jpg``. ``--no-render`` skips both (parameters only).

Frame index: 0-based decode position (with ``--fps F``: the slot k of the resampled grid t = k / F, see
common/utils/video.py); the original numbered extracted images from 1. ``--start`` / ``--end`` are seconds on the
stream's clock (end exclusive). Person id ``<k>``: with ``--track`` the track id (stable while a person is followed,
never reused); without it the box's rank in its frame (0 = the largest box, or the best score with
``--multi_person``), as the original's ``bbox_id``. Each person has its own camera (focal / princpt from its box, as
the original); the overlay renders everybody in one pass by mapping each person's mesh into a shared camera with
an exact, projection-preserving linear map (:func:`to_reference_camera`); people occlude each other by depth over
focal length, the ordering the original's offline renderer used.

Robustness: frames with nobody are written unchanged; boxes cut by the frame border are clipped as the original;
tiny boxes are skipped; grayscale / alpha inputs become RGB; a truncated or corrupt video is processed as far as it
decodes. Every file is written atomically as its frame completes; the stacked npz and the video are finalised even
when decoding fails or an error stops the run mid-way (then the error is printed in one line and the exit code
is 2; an unexpected error's traceback goes to ``OUTPUT/error.log``). Problems before anything is written (missing
input, bad checkpoint or boxes file) exit with code 2 too.
A final summary line counts frames, people, empty frames, skipped boxes and input problems.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import queue
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InputError, UserError
from main.inference import add_model_arguments

log = logging.getLogger("smplerx.video_inference")

STAGES = ("decode", "detect", "crop", "network", "render", "write")  # timed pipeline stages (see StageTimers)
PARAM_KEYS = ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose", "leye_pose", "reye_pose",
              "betas", "expression", "transl")
DETECT_CHUNK = 4  # frames per detector call (batched by the torchvision detector)
SMOOTH_MIN_CUTOFF = 1.0  # One-Euro cut-off at rest (Hz): lower = smoother still poses, more lag
SMOOTH_BETA = 0.5  # One-Euro speed coefficient: higher = less lag in fast motion
TRACK_IOU = 0.3  # IoU needed to continue a track
TRACK_MAX_AGE = 30  # frames a track survives without a match
GLTF_ARRAY_BUFFER, GLTF_ELEMENT_ARRAY_BUFFER = 34962, 34963
GLTF_FLOAT, GLTF_UINT32, GLTF_TRIANGLES = 5126, 5125, 4


# ------------------------------------------------------------------------------------------------------ CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m main.video_inference", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, "video file, image, or folder of images")
    p.add_argument("--fps", type=float, default=None,
                   help="resample to this frame rate (default: every frame of the source; folders: 30)")
    p.add_argument("--start", type=float, default=0.0, help="first time to process, seconds (default 0)")
    p.add_argument("--end", type=float, default=None, help="stop before this time, seconds (default: the end)")
    p.add_argument("--detector", choices=("torchvision", "boxes", "whole"), default=None,
                   help="person boxes: torchvision Faster R-CNN, a --boxes file, or the whole frame "
                        "(default: boxes with --boxes, else torchvision)")
    p.add_argument("--boxes", default=None, metavar="JSON",
                   help='boxes per frame index: {"0": [[x, y, w, h, score?], ...], ...} (px)')
    p.add_argument("--bbox_thr", "--bbox-thr", type=float, default=50.0,
                   help="skip boxes narrower than this or lower than 3x this (px; default 50, the original's)")
    p.add_argument("--iou_thr", "--iou-thr", type=float, default=0.5, help="NMS IoU threshold (--multi_person)")
    p.add_argument("--score_thr", "--score-thr", type=float, default=0.5, help="minimum detection score")
    p.add_argument("--multi_person", "--multi-person", action="store_true",
                   help="every person (NMS) instead of the largest box only")
    p.add_argument("--track", action="store_true", help="stable person ids across frames (file suffix = track id)")
    p.add_argument("--smooth", action="store_true", help="One-Euro smoothing of each track's parameters (implies "
                                                         "--track)")
    p.add_argument("--show_verts", "--show-verts", action="store_true", help="draw vertex dots instead of meshes")
    p.add_argument("--show_bbox", "--show-bbox", action="store_true", help="draw the detected boxes")
    p.add_argument("--no-render", action="store_true", help="write parameters only (no overlay video or images)")
    p.add_argument("--save_frames", "--save-frames", action="store_true", help="also write img/<frame>.jpg")
    p.add_argument("--save_mesh", "--save-mesh", action="store_true", help="also write mesh/<frame>_<k>.obj")
    p.add_argument("--glb", action="store_true", help="also write glb/<frame>.glb")
    p.add_argument("--batch-size", type=int, default=8, help="crops per network forward (default 8)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. model.upscale=4")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    if args.smooth:
        args.track = True
    if args.detector is None:
        args.detector = "boxes" if args.boxes else "torchvision"
    if args.detector == "boxes" and not args.boxes:
        p.error("--detector boxes needs --boxes FILE")
    if args.boxes and args.detector != "boxes":
        p.error(f"--boxes is read only with --detector boxes (got --detector {args.detector}); drop one of them")
    return args


# ------------------------------------------------------------------------------------------------------ timers
class StageTimers:
    """Thread-safe busy time per pipeline stage: ``with timers('network'): ...``; :meth:`seconds` reads them back.

    Stages run in different threads and overlap, so their times can add up to more than the wall time; the share
    of a stage is its busy time divided by the wall time.
    """

    def __init__(self, stages: Sequence[str] = STAGES):
        self._lock = threading.Lock()
        self._s = dict.fromkeys(stages, 0.0)
        self._n = dict.fromkeys(stages, 0)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0)

    def add(self, stage: str, seconds: float, count: int = 1) -> None:
        with self._lock:
            self._s[stage] = self._s.get(stage, 0.0) + seconds
            self._n[stage] = self._n.get(stage, 0) + count

    def seconds(self) -> dict[str, float]:
        """Busy seconds per stage."""
        with self._lock:
            return dict(self._s)

    def counts(self) -> dict[str, int]:
        """Number of timed sections per stage."""
        with self._lock:
            return dict(self._n)


# ------------------------------------------------------------------------------------------------------ records
@dataclass
class PendingPerson:
    """A selected box waiting for the network: ``box_in`` / ``processed`` xywh px, ``crop`` (3, 512, 384) in [0,1]."""

    box_in: np.ndarray
    processed: np.ndarray
    crop: np.ndarray | None
    track_id: int
    score: float
    result: Any = None  # the PersonResult once predicted


@dataclass
class FrameJob:
    """One frame through the pipeline: ``rgb`` uint8 (H, W, 3), its selected people, and the boxes it skipped."""

    index: int
    time_s: float
    rgb: np.ndarray
    people: list[PendingPerson]
    boxes_xyxy: np.ndarray  # (P, 4) detected boxes of ``people`` (for --show_bbox)

    @property
    def ready(self) -> bool:
        return all(p.result is not None for p in self.people)


@dataclass
class RunReport:
    """What a run did (returned by :func:`run`; ``timers`` give the busy seconds per stage, ``wall_s`` the pipeline's
    wall time from the first decoded frame to the finalised outputs, model loading excluded)."""

    out_dir: Path
    frames: int = 0
    people: int = 0
    empty_frames: int = 0
    tiny_boxes: int = 0
    outside_boxes: int = 0
    border_boxes: int = 0
    grey_frames: int = 0
    alpha_images: int = 0
    track_ids: set[int] = field(default_factory=set)
    input_problem: str | None = None
    render_note: str | None = None
    notes: list[str] = field(default_factory=list)  # warnings for the summary (e.g. unused boxes)
    last_index: int = -1  # frame index of the last completed frame
    error: str | None = None
    wall_s: float = 0.0
    load_s: float = 0.0
    timers: StageTimers = field(default_factory=StageTimers)
    outputs: list[Path] = field(default_factory=list)  # the stacked npz and the overlay video / image

    def summary(self) -> str:
        fps = self.frames / self.wall_s if self.wall_s > 0 else 0.0
        parts = [f"{self.frames} frame(s) in {self.wall_s:.1f} s ({fps:.2f} frames/s)",
                 f"{self.people} person-frame(s)" + (f" in {len(self.track_ids)} track(s)" if self.track_ids else ""),
                 f"{self.empty_frames} frame(s) with nobody"]
        if self.tiny_boxes:
            parts.append(f"{self.tiny_boxes} box(es) skipped as too small")
        if self.outside_boxes:
            parts.append(f"{self.outside_boxes} box(es) outside the frame skipped")
        if self.border_boxes:
            parts.append(f"{self.border_boxes} box(es) cut by the frame border (clipped)")
        if self.grey_frames:
            parts.append(f"{self.grey_frames} grayscale frame(s) (processed as RGB)")
        if self.alpha_images:
            parts.append(f"{self.alpha_images} image(s) with alpha (alpha dropped)")
        if self.input_problem:
            parts.append(f"INPUT PROBLEM: {self.input_problem}")
        if self.render_note:
            parts.append(self.render_note)
        parts += self.notes
        return "; ".join(parts) + f"; outputs in {self.out_dir}"


class _Stop(Exception):
    """Raised inside a pipeline thread when another thread asked everybody to stop."""


_END = object()


@dataclass
class _Failure:
    error: BaseException
    trace: str


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    while True:
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            if stop.is_set():
                raise _Stop from None


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                raise _Stop from None


# ------------------------------------------------------------------------------------------------------ rendering
def to_reference_camera(vertices: np.ndarray, focal: Sequence[float], princpt: Sequence[float],
                        ref_focal: Sequence[float], ref_princpt: Sequence[float], scale: float = 1.0) -> np.ndarray:
    """Map camera-frame points (V, 3) seen with (focal, princpt) to points that the camera (ref_focal, ref_princpt)
    projects onto the same pixels: ``z' = s z``, ``x' = s (fx x + (cx - Cx) z) / Fx``, ``y' = s (fy y + (cy - Cy) z)
    / Fy`` with ``s = scale * Fx / fx``. The map is linear (a shear and scale), so meshes stay meshes; depth is
    ``z / fx`` up to a common factor, the ordering the original's offline renderer used between people.
    Returns float32 (V, 3)."""
    fx, fy = (float(v) for v in focal)
    cx, cy = (float(v) for v in princpt)
    rfx, rfy = (float(v) for v in ref_focal)
    rcx, rcy = (float(v) for v in ref_princpt)
    s = scale * rfx / fx
    a = s * np.array([[fx / rfx, 0.0, (cx - rcx) / rfx], [0.0, fy / rfy, (cy - rcy) / rfy], [0.0, 0.0, 1.0]])
    return (np.asarray(vertices, dtype=np.float64) @ a.T).astype(np.float32)


def render_people(renderer: Any, people: Sequence[Any], faces: np.ndarray,
                  colors: Sequence[Sequence[float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render several people, each with its own camera, into one image of the renderer's size.

    ``people``: objects with ``vertices`` (V, 3) m in their camera frame and ``focal`` / ``princpt`` (px of the
    image), e.g. :class:`common.engine.predictor.PersonResult`. Every mesh is mapped into the first person's camera
    with :func:`to_reference_camera` (exact projections, consistent depth), scaled so the nearest person's median
    depth is 2 m (projections do not change under a common scale; it keeps depth precision and the clipping planes
    comfortable). Returns rgb float32 (H, W, 3) in [0, 1] and the silhouette mask bool (H, W).
    """
    if not people:
        h, w = renderer.height, renderer.width
        return np.zeros((h, w, 3), np.float32), np.zeros((h, w), bool)
    ref_f, ref_c = people[0].focal, people[0].princpt
    mapped = [to_reference_camera(p.vertices, p.focal, p.princpt, ref_f, ref_c) for p in people]
    depths = [float(np.median(v[:, 2])) for v in mapped]
    positive = [d for d in depths if d > 0]
    scale = 2.0 / min(positive) if positive else 1.0
    rgb, mask, _ = renderer.render([v * np.float32(scale) for v in mapped], faces, ref_f, ref_c, colors=colors)
    return rgb, mask


def draw_frame(frame_rgb: np.ndarray, people: Sequence[Any], faces: np.ndarray, renderer: Any | None,
               show_verts: bool = False, boxes_xyxy: np.ndarray | None = None, labels: Sequence[str] | None = None,
               colors: Sequence[Sequence[float]] | None = None) -> np.ndarray:
    """The overlay of one frame: meshes (``renderer`` a MeshRenderer of the frame's size) or, with ``show_verts``
    or no renderer, the original's vertex dots (far people first); then ``boxes_xyxy`` (N, 4) px in red when given.
    ``people`` as in :func:`render_people`. Returns uint8 RGB (H, W, 3); the input is not modified."""
    from common.utils.render import draw_boxes, draw_vertices, overlay

    out = np.ascontiguousarray(frame_rgb, dtype=np.uint8)
    if people:
        if renderer is not None and not show_verts:
            rgb, mask = render_people(renderer, people, faces, colors)
            out = overlay(out, rgb, mask)
        else:
            depth = [float(np.median(p.vertices[:, 2])) / float(p.focal[0]) for p in people]
            for i in np.argsort(depth)[::-1]:
                out = draw_vertices(out, people[i].vertices, people[i].focal, people[i].princpt)
    if boxes_xyxy is not None and len(boxes_xyxy):
        out = draw_boxes(out, boxes_xyxy, labels=labels)
    return out if out is not frame_rgb else out.copy()


# ------------------------------------------------------------------------------------------------------ glTF
def glb_bytes(meshes: Sequence[tuple[str, np.ndarray]], faces: np.ndarray) -> bytes:
    """A minimal glTF 2.0 binary: one node + mesh per ``(name, vertices (V, 3))`` sharing the triangle list
    ``faces`` (F, 3) 0-based; positions float32 written as given (convert frames before), indices uint32."""
    faces = np.ascontiguousarray(faces, dtype=np.uint32)
    blobs: list[bytes] = []
    views: list[dict] = []
    accessors: list[dict] = []

    def add_view(data: bytes, target: int) -> int:
        offset = sum(len(b) for b in blobs)
        blobs.append(data + b"\0" * (-len(data) % 4))
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(data), "target": target})
        return len(views) - 1

    accessors.append({"bufferView": add_view(faces.tobytes(), GLTF_ELEMENT_ARRAY_BUFFER),
                      "componentType": GLTF_UINT32, "count": int(faces.size), "type": "SCALAR"})
    nodes, gl_meshes = [], []
    for name, verts in meshes:
        v = np.ascontiguousarray(verts, dtype=np.float32).reshape(-1, 3)
        accessors.append({"bufferView": add_view(v.tobytes(), GLTF_ARRAY_BUFFER), "componentType": GLTF_FLOAT,
                          "count": int(len(v)), "type": "VEC3", "min": v.min(0).tolist() if len(v) else [0] * 3,
                          "max": v.max(0).tolist() if len(v) else [0] * 3})
        gl_meshes.append({"name": name, "primitives": [{"attributes": {"POSITION": len(accessors) - 1},
                                                        "indices": 0, "mode": GLTF_TRIANGLES}]})
        nodes.append({"name": name, "mesh": len(gl_meshes) - 1})
    binary = b"".join(blobs)
    doc = {"asset": {"version": "2.0", "generator": "SMPLer-X main.video_inference"}, "scene": 0,
           "scenes": [{"nodes": list(range(len(nodes)))}], "nodes": nodes, "meshes": gl_meshes,
           "accessors": accessors, "bufferViews": views, "buffers": [{"byteLength": len(binary)}]}
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return b"".join([struct.pack("<4sII", b"glTF", 2, total), struct.pack("<I4s", len(js), b"JSON"), js,
                     struct.pack("<I4s", len(binary), b"BIN\0"), binary])


def camera_to_gltf(vertices: np.ndarray) -> np.ndarray:
    """OpenCV camera frame (x right, y down, z forward) -> glTF (y up, viewer looking down -z): (x, -y, -z)."""
    return np.asarray(vertices, dtype=np.float32) * np.array([1.0, -1.0, -1.0], np.float32)


# ------------------------------------------------------------------------------------------------------ inputs
def _is_grey(rgb: np.ndarray) -> bool:
    """True if all three channels are equal (a grayscale source); checks a sparse grid first."""
    s = rgb[::8, ::8]
    if not (np.array_equal(s[..., 0], s[..., 1]) and np.array_equal(s[..., 1], s[..., 2])):
        return False
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def image_has_alpha(path: Path) -> bool:
    """Whether an image file carries an alpha channel, from its header (PNG, WebP) or by decoding (TIFF, BMP)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".png":
            with open(path, "rb") as f:
                head = f.read(26)
            return head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 and head[25] in (4, 6)
        if suffix == ".webp":
            with open(path, "rb") as f:
                head = f.read(30)
            if head[:4] != b"RIFF" or head[8:12] != b"WEBP" or len(head) < 25:
                return False
            if head[12:16] == b"VP8X":
                return bool(head[20] & 0x10)
            if head[12:16] == b"VP8L":
                return bool((int.from_bytes(head[21:25], "little") >> 28) & 1)
            return False
        if suffix in (".tif", ".tiff", ".bmp"):
            import cv2

            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            return img is not None and img.ndim == 3 and img.shape[2] == 4
    except OSError:
        return False
    return False


def make_detector(args: argparse.Namespace) -> Any:
    """The person detector chosen by ``--detector`` (weights / boxes file checked now, before any work)."""
    from common.engine.detector import BoxesFileDetector, TorchvisionDetector, WholeFrameDetector

    if args.detector == "boxes":
        return BoxesFileDetector(args.boxes)
    if args.detector == "whole":
        return WholeFrameDetector()
    return TorchvisionDetector(device=str(args.device))


def _stem(path: Path) -> str:
    return path.name if path.is_dir() else path.stem


# ------------------------------------------------------------------------------------------------------ pipeline
class _Pipeline:
    """Producer (decode, detect, track, crop) -> network (this thread) -> writer (files, render, video)."""

    def __init__(self, args: argparse.Namespace, reader: Any, detector: Any, predictor: Any, model: Any,
                 report: RunReport):
        self.args, self.reader, self.detector, self.predictor = args, reader, detector, predictor
        self.model = model
        self.faces = np.asarray(model.body_model.faces)
        self.report = report
        self.timers = report.timers
        self.out = report.out_dir
        self.input = Path(args.input)
        self.stem = _stem(self.input)
        self.kind = reader.info.kind
        self.render = not args.no_render
        self.q_in: queue.Queue = queue.Queue(maxsize=args.batch_size + 2)
        self.q_out: queue.Queue = queue.Queue(maxsize=args.batch_size + 2)
        self.stop_producer = threading.Event()
        self.stop_all = threading.Event()
        self.writer_error: _Failure | None = None
        self.records: list[dict[str, Any]] = []  # per completed person-frame: what the stacked npz holds
        self.first_size: tuple[int, int] | None = None
        self.video: Any = None
        self.progress: Any = None
        self.smoother = None
        self._last_seen: dict[int, int] = {}  # track id -> last frame index (to prune the smoother's filters)
        if args.smooth:
            from common.engine.tracking import ParamSmoother

            self.smoother = ParamSmoother(min_cutoff=SMOOTH_MIN_CUTOFF, beta=SMOOTH_BETA)

    # -- producer thread ------------------------------------------------------------------------------------
    def _produce(self) -> None:
        try:
            from common.engine.tracking import IoUTracker

            tracker = IoUTracker(TRACK_IOU, TRACK_MAX_AGE) if self.args.track else None
            if tracker is not None:
                import scipy.optimize  # noqa: F401 - imported by the tracker's first update; not detection time
            it = iter(self.reader)
            done = False
            while not done and not self.stop_producer.is_set():
                chunk = []
                while len(chunk) < DETECT_CHUNK:
                    t0 = time.perf_counter()
                    frame = next(it, None)
                    self.timers.add("decode", time.perf_counter() - t0)
                    if frame is None:
                        done = True
                        break
                    chunk.append(frame)
                if not chunk:
                    break
                with self.timers("detect"):
                    dets = self.detector.detect_batch([f.rgb for f in chunk], [f.index for f in chunk])
                for frame, (boxes, scores) in zip(chunk, dets):
                    _put(self.q_in, self._select(frame, boxes, scores, tracker), self.stop_producer)
            self.report.input_problem = self.reader.problem
            _put(self.q_in, _END, self.stop_producer)
        except _Stop:
            return
        except BaseException as err:  # noqa: BLE001 - handed to the main thread, which reports it
            with contextlib.suppress(_Stop):
                _put(self.q_in, _Failure(err, traceback.format_exc()), self.stop_producer)

    def _select(self, frame: Any, boxes: np.ndarray, scores: np.ndarray, tracker: Any) -> FrameJob:
        """Box selection as the original demo, track ids, crops: one :class:`FrameJob`."""
        from common.engine.detector import postprocess, size_filter, xyxy_to_xywh
        from common.utils.image import box_overlaps_image

        a, rep = self.args, self.report
        rgb = frame.rgb
        h, w = rgb.shape[:2]
        with self.timers("detect"):
            if _is_grey(rgb):
                rep.grey_frames += 1
            boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
            scores = np.asarray(scores, dtype=np.float64).reshape(-1)
            inside = np.array([box_overlaps_image(b, w, h) for b in xyxy_to_xywh(boxes)], dtype=bool)
            rep.outside_boxes += int((~inside & (scores >= a.score_thr)).sum())
            boxes, scores = boxes[inside], scores[inside]
            idx = postprocess(boxes, scores, score_thr=a.score_thr, multi_person=a.multi_person, iou_thr=a.iou_thr,
                              bbox_thr=0.0)
            keep = idx[size_filter(boxes[idx], a.bbox_thr)]
            rep.tiny_boxes += len(idx) - len(keep)
            boxes, scores = boxes[keep], scores[keep]
            cut = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > w) | (boxes[:, 3] > h)
            rep.border_boxes += int(cut.sum())
            ids = tracker.update(boxes, scores) if tracker is not None else np.arange(len(boxes))
        people = []
        if len(boxes):
            with self.timers("crop"):
                img = rgb.astype(np.float32)
                for b, s, tid in zip(xyxy_to_xywh(boxes), scores, ids):
                    crop, processed = self.predictor.crop(img, b)
                    people.append(PendingPerson(b.astype(np.float64), np.asarray(processed),
                                                np.asarray(crop, np.float32), int(tid), float(s)))
        return FrameJob(frame.index, frame.time_s, rgb, people, boxes.astype(np.float32))

    # -- network (main thread) ------------------------------------------------------------------------------
    def _predict(self, people: list[PendingPerson]) -> None:
        """Run the network on the crops of ``people`` (<= batch size) and attach their PersonResults."""
        import torch

        pred = self.predictor
        with self.timers("network"):
            batch = torch.from_numpy(np.stack([p.crop for p in people])).to(pred.device)
            with torch.no_grad(), torch.autocast(pred.device.type, dtype=torch.bfloat16, enabled=pred.bf16):
                out = self.model(batch)
            outs = {k: v.float().cpu().numpy() for k, v in out.to_dict().items() if v is not None}
            for i, p in enumerate(people):
                # Predictor's own conversion of one output row (camera in image px, npz layout)
                p.result = pred.person_result(p.box_in, p.processed, {k: v[i] for k, v in outs.items()})
                p.crop = None  # free the crop memory early

    def _smooth(self, job: FrameJob) -> None:
        """Per-track One-Euro smoothing; the meshes are rebuilt from the smoothed parameters (one batched call)."""
        import torch

        if self.smoother is None or not job.people:
            return
        with self.timers("network"):
            for p in job.people:
                p.result = dataclasses.replace(p.result, params=self.smoother(p.track_id, p.result.params,
                                                                              job.time_s))
                self._last_seen[p.track_id] = job.index
            if len(self._last_seen) > 4 * TRACK_MAX_AGE:  # free the filters of tracks gone for good
                self._last_seen = {t: i for t, i in self._last_seen.items() if job.index - i <= TRACK_MAX_AGE}
                self.smoother.prune(self._last_seen)
            dev = self.predictor.device
            t = {k: torch.from_numpy(np.stack([p.result.params[k].reshape(-1) for p in job.people])).to(dev)
                 for k in PARAM_KEYS}
            with torch.no_grad():
                verts, _ = self.model.body_model(t["global_orient"], t["body_pose"], t["left_hand_pose"],
                                                 t["right_hand_pose"], t["jaw_pose"], t["betas"], t["expression"],
                                                 t["transl"])
            for p, v in zip(job.people, verts.float().cpu().numpy()):
                p.result = dataclasses.replace(p.result, vertices=v.astype(np.float32))

    def _network_loop(self) -> _Failure | None:
        """Batch crops across frames, predict, hand finished frames to the writer in order. Returns the
        producer's failure, if any (frames received before it are still processed)."""
        pending: list[FrameJob] = []
        waiting: list[PendingPerson] = []  # crops not yet predicted, in frame order
        failure: _Failure | None = None
        while True:
            item = _get(self.q_in, self.stop_all)
            final = item is _END or isinstance(item, _Failure)
            if isinstance(item, _Failure):
                failure = item
            if not final:
                pending.append(item)
                waiting.extend(item.people)
            while waiting and (len(waiting) >= self.args.batch_size or final):
                batch, waiting = waiting[: self.args.batch_size], waiting[self.args.batch_size:]
                self._predict(batch)
            while pending and pending[0].ready:
                job = pending.pop(0)
                self._smooth(job)
                self._send(job)
            if final:
                return failure

    def _send(self, item: Any) -> None:
        if self.writer_error is not None:
            raise _Stop
        _put(self.q_out, item, self.stop_all)

    # -- writer thread --------------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        renderers: dict[tuple[int, int], Any] = {}
        try:
            while True:
                job = _get(self.q_out, self.stop_all)
                if job is _END:
                    break
                self._write_frame(job, renderers)
        except _Stop:
            pass
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            self.writer_error = _Failure(err, traceback.format_exc())
            self.stop_all.set()
            self.stop_producer.set()
        finally:
            for r in renderers.values():
                with contextlib.suppress(Exception):
                    r.release()
            self._close_video()

    def _renderer(self, renderers: dict, w: int, h: int) -> Any | None:
        """A MeshRenderer for this frame size (made in this thread), or None for vertex dots."""
        if self.args.show_verts or self.report.render_note is not None:
            return None
        if (w, h) not in renderers:
            from common.utils.render import MeshRenderer, RendererUnavailable

            try:
                renderers[(w, h)] = MeshRenderer(w, h)
            except RendererUnavailable as err:
                self.report.render_note = f"no mesh renderer ({err}); drew vertex dots instead"
                log.warning(self.report.render_note)
                return None
        return renderers[(w, h)]

    def _write_frame(self, job: FrameJob, renderers: dict) -> None:
        from common.utils.io import atomic_open, save_image, save_json, save_npz, save_obj
        from common.utils.render import DEFAULT_COLOR, track_color

        a, rep = self.args, self.report
        h, w = job.rgb.shape[:2]
        if self.first_size is None:
            self.first_size = (w, h)
        name = f"{job.index:06d}"
        with self.timers("write"):
            for p in job.people:
                r = p.result
                stem = f"{name}_{p.track_id}"
                save_npz(self.out / "smplx" / f"{stem}.npz", **r.params)
                meta = {"focal": [float(v) for v in r.focal], "princpt": [float(v) for v in r.princpt],
                        "bbox": [float(v) for v in r.bbox], "bbox_input": [float(v) for v in r.bbox_input],
                        "track_id": p.track_id, "frame_index": job.index, "time_s": float(job.time_s),
                        "score": float(p.score), "image_size": [w, h], "input": str(self.input)}
                save_json(self.out / "meta" / f"{stem}.json", meta)
                if a.save_mesh:
                    save_obj(self.out / "mesh" / f"{stem}.obj", r.vertices, self.faces)
            if a.glb and job.people:
                data = glb_bytes([(f"track_{p.track_id}", camera_to_gltf(p.result.vertices)) for p in job.people],
                                 self.faces)
                with atomic_open(self.out / "glb" / f"{name}.glb", "wb") as f:
                    f.write(data)
        if self.render:
            with self.timers("render"):
                colors = [track_color(p.track_id) if a.track else DEFAULT_COLOR for p in job.people]
                labels = [str(p.track_id) for p in job.people] if a.track else None
                vis = draw_frame(job.rgb, [p.result for p in job.people], self.faces, self._renderer(renderers, w, h),
                                 a.show_verts, job.boxes_xyxy if a.show_bbox else None, labels, colors)
            with self.timers("write"):
                if a.save_frames:
                    save_image(self.out / "img" / f"{name}.jpg", vis)
                if self.kind == "image":
                    rep.outputs.append(save_image(self.out / f"{self.stem}_overlay.jpg", vis))
                else:
                    self._write_video(vis)
        # the frame is complete: count it and keep its records for the stacked file
        for p in job.people:  # only the small arrays: meshes and raw outputs would grow without bound
            r = p.result
            self.records.append({**r.params, "frame_index": job.index, "time_s": job.time_s, "track_id": p.track_id,
                                 "score": p.score, "bbox": r.bbox, "bbox_input": r.bbox_input, "focal": r.focal,
                                 "princpt": r.princpt})
            if a.track:
                rep.track_ids.add(p.track_id)
        rep.frames += 1
        rep.last_index = max(rep.last_index, job.index)
        rep.people += len(job.people)
        rep.empty_frames += not job.people
        if self.progress is not None:
            self.progress.update(1)

    def _write_video(self, vis: np.ndarray) -> None:
        from common.utils.video import VideoWriter

        if self.video is None:
            w, h = self.first_size
            self.video = VideoWriter(self.out / f"{self.stem}_overlay.mp4", self.out_fps(), (w, h))
        w, h = self.video.size
        if vis.shape[:2] != (h, w):  # a folder of images of different sizes: fit to the first frame's size
            import cv2

            vis = cv2.resize(vis, (w, h), interpolation=cv2.INTER_AREA)
        self.video.write(vis)

    def out_fps(self) -> float:
        """Frame rate of the overlay video: --fps, else the source's (30 for folders and unknown rates)."""
        from common.utils.video import DEFAULT_IMAGE_FPS

        return float(self.args.fps or self.reader.info.fps or DEFAULT_IMAGE_FPS)

    def _close_video(self) -> None:
        if self.video is None:
            return
        try:
            with self.timers("write"):
                self.report.outputs.append(self.video.close())
        except Exception as err:  # noqa: BLE001 - keep the other outputs; say what happened
            self.video.abort()
            msg = f"the overlay video could not be finalised ({type(err).__name__}: {err})"
            self.report.render_note = f"{self.report.render_note}; {msg}" if self.report.render_note else msg

    # -- run ------------------------------------------------------------------------------------------------
    def run(self) -> None:
        rep = self.report
        if not self.args.no_progress:
            from tqdm import tqdm

            total = self.reader.estimated_length() if self.kind != "image" else 1
            self.progress = tqdm(total=total or None, unit="frame", desc=self.stem, mininterval=0.5,
                                 dynamic_ncols=True, file=sys.stderr)
        producer = threading.Thread(target=self._produce, name="video-decode-detect", daemon=True)
        writer = threading.Thread(target=self._write_loop, name="video-render-write", daemon=True)
        t0 = time.perf_counter()
        producer.start()
        writer.start()
        failure: _Failure | None = None
        try:
            failure = self._network_loop()
        except _Stop:
            pass
        except BaseException as err:  # noqa: BLE001 - keep what was completed, then report
            failure = _Failure(err, traceback.format_exc())
        finally:
            self.stop_producer.set()
            with contextlib.suppress(_Stop):
                if self.writer_error is None:
                    _put(self.q_out, _END, self.stop_all)
            writer.join()
            producer.join(timeout=30)
            if self.writer_error is not None and failure is None:
                failure = self.writer_error
            try:
                with self.timers("write"):
                    self._write_stacked()
            except Exception as err:  # noqa: BLE001 - e.g. a full disk: report it with the rest
                failure = failure or _Failure(err, traceback.format_exc())
            rep.wall_s = time.perf_counter() - t0
            if self.progress is not None:
                self.progress.close()
        if failure is not None:
            rep.error = self._describe(failure)
        elif rep.frames == 0 and not rep.input_problem:
            rep.input_problem = (f"no frame decoded between --start {self.args.start} s and --end {self.args.end} s "
                                 f"of {self.input}; check the time range")

    def _describe(self, failure: _Failure) -> str:
        err = failure.error
        if isinstance(err, KeyboardInterrupt):
            return str(err) or "interrupted"
        if isinstance(err, UserError):
            return str(err)
        log_path = self.out / "error.log"
        with contextlib.suppress(OSError):
            log_path.write_text(failure.trace)
        return f"{type(err).__name__}: {err} (traceback in {log_path})"

    def _write_stacked(self) -> None:
        """``<stem>.npz`` from the completed person-frames (see the module docstring for keys and shapes)."""
        from common.engine.predictor import PARAM_SHAPES
        from common.utils.io import save_npz

        rec = self.records
        n = len(rec)
        arrays: dict[str, np.ndarray] = {}
        for k in PARAM_KEYS:
            arrays[k] = np.array([r[k] for r in rec], dtype=np.float32).reshape(n, *PARAM_SHAPES[k])
        for key, dtype in (("frame_index", np.int64), ("time_s", np.float64), ("track_id", np.int64),
                           ("score", np.float64)):
            arrays[key] = np.array([r[key] for r in rec], dtype=dtype).reshape(n)
        for key, dim in (("bbox", 4), ("bbox_input", 4), ("focal", 2), ("princpt", 2)):
            arrays[key] = np.array([[float(v) for v in r[key]] for r in rec], dtype=np.float64).reshape(n, dim)
        size = self.first_size or (self.reader.info.width, self.reader.info.height)
        arrays["image_size"] = np.array(size, dtype=np.int64)
        arrays["fps"] = np.array(self.out_fps(), dtype=np.float64)
        self.report.outputs.append(save_npz(self.out / f"{self.stem}.npz", **arrays))


def _count_alpha(path: Path, kind: str) -> int:
    from common.utils.video import list_images

    files = [path] if kind == "image" else list_images(path) if kind == "folder" else []
    return sum(image_has_alpha(f) for f in files)


def run(args: argparse.Namespace) -> RunReport:
    """Validate the inputs, load the model, run the pipeline; returns the :class:`RunReport` (``error`` set when the
    run stopped mid-way; UserError raised for problems found before anything is written)."""
    import torch

    from common.engine.predictor import Predictor, load_model, resolve_device
    from common.utils.io import check_output_dir, remove_stale_temporaries
    from common.utils.video import FrameReader

    if args.threads:
        torch.set_num_threads(args.threads)
    reader = FrameReader(args.input, fps=args.fps, start=args.start, end=args.end)
    device = resolve_device(args.device)
    args.device = str(device)
    detector = make_detector(args)
    out = Path(args.output)
    check_output_dir(out, ("smplx", "meta", "mesh", "glb", "img"))  # before the model loads
    t0 = time.perf_counter()
    model, cfg = load_model(args.ckpt, args.config, tuple(args.overrides), args.body_model_dir, device)
    predictor = Predictor(model, cfg, batch_size=args.batch_size, bf16=args.bf16)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the output folder {out}: {err}; choose a writable --output") from err
    report = RunReport(out_dir=out, load_s=time.perf_counter() - t0)
    report.alpha_images = _count_alpha(Path(args.input), reader.info.kind)
    stale = remove_stale_temporaries(out, recursive=True)
    if stale:
        log.info("removed %d temporary file(s) left in %s by a run that was killed", stale, out)
    _Pipeline(args, reader, detector, predictor, model, report).run()
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
