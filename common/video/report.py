"""What flows between the video stages and what a run reports: options, per-frame jobs, stage timers, the report.

Frames and units: boxes are xywh px of the frame unless a name says xyxy; times in seconds on the stream's clock.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STAGES = ("decode", "detect", "crop", "network", "render", "write")  # timed pipeline stages (see StageTimers)
PARAM_KEYS = ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose", "leye_pose", "reye_pose",
              "betas", "expression", "transl")


@dataclass
class VideoOptions:
    """Every knob of the pipeline, with the CLI's defaults (``python -m main.video_inference --help``)."""

    score_thr: float = 0.5  # minimum detection score
    iou_thr: float = 0.5  # NMS IoU threshold (multi_person)
    bbox_thr: float = 50.0  # skip boxes narrower than this or lower than 3x this (px)
    multi_person: bool = False  # every person (NMS) instead of the largest box
    track: bool = False  # stable person ids across frames
    smooth: bool = False  # One-Euro smoothing of each track's parameters (needs track)
    detect_every: int = 1  # detector key frames at most this many frames apart (1: every frame)
    detect_iou: float = 0.5  # IoU two key frames' boxes of a person need for the frames between to be interpolated
    batch_size: int = 8  # crops per network forward
    render: bool = True  # overlay video / image
    show_verts: bool = False  # vertex dots instead of meshes
    show_bbox: bool = False  # draw the detected boxes
    save_frames: bool = False  # img/<frame>.jpg
    save_mesh: bool = False  # mesh/<frame>_<k>.obj (scene camera)
    glb: bool = False  # glb/<frame>.glb (scene camera)
    animation: bool = True  # <stem>.glb (animated) and bvh/ per track, when tracking
    scene_focal: float | None = None  # px of the scene camera; None: max(width, height) of the frame
    progress: bool = True


@dataclass
class PendingPerson:
    """A selected box waiting for the network: ``box_in`` / ``processed`` xywh px, ``crop`` (3, 512, 384) in [0,1]."""

    box_in: np.ndarray
    processed: np.ndarray
    crop: np.ndarray | None
    track_id: int
    score: float
    result: Any = None  # the PersonResult once predicted
    scene_shift: np.ndarray | None = None  # (3,) m added to the person's camera-frame points to place it in the scene


@dataclass
class FrameJob:
    """One frame through the pipeline: ``rgb`` uint8 (H, W, 3), its selected people, whether the detector ran on it
    (``detected``; else its boxes were interpolated between detector key frames)."""

    index: int
    time_s: float
    rgb: np.ndarray
    people: list[PendingPerson]
    boxes_xyxy: np.ndarray  # (P, 4) boxes of ``people`` (for --show_bbox)
    detected: bool = True

    @property
    def ready(self) -> bool:
        return all(p.result is not None for p in self.people)


def compute_lock(device_type: str) -> Any:
    """What the detector and the network hold while they compute: on the CPU one lock, so they take turns instead of
    running two multi-threaded kernels on the same cores (oversubscribed, both ran ~2x slower: docs/benchmarks.md);
    on a GPU nothing (they overlap on the device)."""
    return threading.Lock() if device_type == "cpu" else contextlib.nullcontext()


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


@dataclass
class RunReport:
    """What a run did. ``timers``: busy seconds per stage; ``wall_s``: the pipeline's wall time from the first decoded
    frame to the finalised outputs (model loading excluded, ``load_s``)."""

    out_dir: Path
    frames: int = 0
    people: int = 0
    empty_frames: int = 0
    detected_frames: int = 0  # frames the detector ran on (the others: interpolated boxes)
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
    outputs: list[Path] = field(default_factory=list)  # the stacked npz, the overlay, the animation exports

    def summary(self) -> str:
        fps = self.frames / self.wall_s if self.wall_s > 0 else 0.0
        parts = [f"{self.frames} frame(s) in {self.wall_s:.1f} s ({fps:.2f} frames/s)",
                 f"{self.people} person-frame(s)" + (f" in {len(self.track_ids)} track(s)" if self.track_ids else ""),
                 f"{self.empty_frames} frame(s) with nobody"]
        if 0 < self.detected_frames < self.frames:
            parts.append(f"detector on {self.detected_frames} frame(s), boxes interpolated on the others")
        for n, what in ((self.tiny_boxes, "box(es) skipped as too small"),
                        (self.outside_boxes, "box(es) outside the frame skipped"),
                        (self.border_boxes, "box(es) cut by the frame border (clipped)"),
                        (self.grey_frames, "grayscale frame(s) (processed as RGB)"),
                        (self.alpha_images, "image(s) with alpha (alpha dropped)")):
            if n:
                parts.append(f"{n} {what}")
        if self.input_problem:
            parts.append(f"INPUT PROBLEM: {self.input_problem}")
        if self.render_note:
            parts.append(self.render_note)
        parts += self.notes
        return "; ".join(parts) + f"; outputs in {self.out_dir}"
