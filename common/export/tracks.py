"""Inputs of the exporters: the scene camera of a clip and the motion of one tracked person.

Frames and units. The *scene camera* is one pinhole camera for the whole frame, in the OpenCV camera frame (x right,
y down, z forward, metres) with the focal length ``focal`` (px, fx = fy) and the principal point at the image centre
(width / 2, height / 2): a camera-frame point (x, y, z) projects to ``u = focal x / z + width / 2``,
``v = focal y / z + height / 2``. A :class:`TrackMotion` holds one person's SMPL-X parameters over the clip with
``transl`` expressed in that scene camera (the SMPL-X layer fed with them gives the mesh in the scene camera frame).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from common.errors import InputError

# name -> per-frame shape of the pose / shape arrays of a TrackMotion (axis-angle in rad, coefficients, metres)
PARAM_SHAPES: dict[str, tuple[int, ...]] = {
    "global_orient": (3,), "body_pose": (21, 3), "left_hand_pose": (15, 3), "right_hand_pose": (15, 3),
    "jaw_pose": (3,), "betas": (10,), "expression": (10,), "transl": (3,),
}


@dataclass(frozen=True)
class SceneCamera:
    """One pinhole camera for the whole frame: ``focal`` px (fx = fy), image ``width`` x ``height`` px, principal
    point at the image centre; OpenCV camera frame (x right, y down, z forward, metres)."""

    focal: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.focal) and self.focal > 0 and self.width > 0 and self.height > 0):
            raise InputError(f"scene camera needs focal > 0 px and a positive image size, got focal {self.focal}, "
                             f"size {self.width}x{self.height}; pass the frame's focal length and size")

    @property
    def yfov(self) -> float:
        """Vertical field of view (rad): ``2 atan(height / (2 focal))``."""
        return 2.0 * math.atan(self.height / (2.0 * self.focal))

    @property
    def aspect_ratio(self) -> float:
        """width / height."""
        return self.width / self.height

    def project(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) camera-frame points (m, z > 0) -> (..., 2) pixel coordinates (u, v)."""
        p = np.asarray(points, np.float64)
        return self.focal * p[..., :2] / p[..., 2:3] + np.array([self.width / 2.0, self.height / 2.0])


@dataclass
class TrackMotion:
    """One tracked person over the clip (T frames, T >= 1).

    track_id: the tracker's id; frame_index (T,) int64, strictly increasing; time_s (T,) float64 seconds (the
    stream's clock); global_orient (T, 3), body_pose (T, 21, 3), left_hand_pose / right_hand_pose (T, 15, 3) (offsets
    from the model's mean hand: ``flat_hand_mean=False``), jaw_pose (T, 3): axis-angle, radians; betas (T, 10),
    expression (T, 10); transl (T, 3) metres in the scene camera frame. Arrays are converted to these dtypes
    (float32 for the parameters) and checked by :meth:`validate`, which the constructor calls.
    """

    track_id: int
    frame_index: np.ndarray
    time_s: np.ndarray
    global_orient: np.ndarray
    body_pose: np.ndarray
    left_hand_pose: np.ndarray
    right_hand_pose: np.ndarray
    jaw_pose: np.ndarray
    betas: np.ndarray
    expression: np.ndarray
    transl: np.ndarray

    def __post_init__(self) -> None:
        self.track_id = int(self.track_id)
        self.frame_index = np.asarray(self.frame_index, np.int64).reshape(-1)
        self.time_s = np.asarray(self.time_s, np.float64).reshape(-1)
        n = len(self.frame_index)
        for key, shape in PARAM_SHAPES.items():
            a = np.asarray(getattr(self, key), np.float32)
            if a.size != n * int(np.prod(shape)) or (a.ndim and a.shape[0] != n):
                raise InputError(f"track {self.track_id}: {key} has shape {a.shape}, expected ({n}, "
                                 f"{', '.join(map(str, shape))}) for its {n} frames; pass one row per frame")
            setattr(self, key, a.reshape(n, *shape))
        self.validate()

    def __len__(self) -> int:
        return len(self.frame_index)

    def validate(self) -> None:
        """Raise :class:`InputError` for an empty track, mismatched lengths, unordered frames or non-finite values."""
        n = len(self.frame_index)
        if n == 0:
            raise InputError(f"track {self.track_id} has no frames; drop empty tracks before exporting")
        if self.time_s.shape != (n,):
            raise InputError(f"track {self.track_id}: time_s has {self.time_s.size} entries for {n} frames")
        if n > 1 and (np.any(np.diff(self.frame_index) <= 0) or np.any(np.diff(self.time_s) <= 0)):
            raise InputError(f"track {self.track_id}: frame_index and time_s must strictly increase (one row per "
                             "frame, sorted by time); sort the rows and drop duplicates")
        for key in ("time_s", *PARAM_SHAPES):
            if not np.all(np.isfinite(getattr(self, key))):
                raise InputError(f"track {self.track_id}: {key} has NaN or infinite values; fix or drop those frames")

    def baked_betas(self) -> np.ndarray:
        """(10,) float32 shape used for the whole track: the per-coefficient median over its frames."""
        return np.median(self.betas, axis=0).astype(np.float32)

    def baked_expression(self) -> np.ndarray:
        """(10,) float32 expression whose joints are baked into the bind pose: the median over the frames."""
        return np.median(self.expression, axis=0).astype(np.float32)


def tracks_from_stacked(arrays: Mapping[str, np.ndarray], transl_key: str = "scene_transl") -> list[TrackMotion]:
    """Split the stacked ``<video>.npz`` rows of :mod:`main.video_inference` into one :class:`TrackMotion` per
    ``track_id`` (sorted by id; rows of a track sorted by frame_index).

    ``arrays``: the npz's keys with a leading N axis (global_orient (N, 1, 3), body_pose (N, 21, 3), ... betas
    (N, 1, 10), frame_index (N,), time_s (N,), track_id (N,)); ``transl_key`` names the (N, 3) or (N, 1, 3)
    translation in the scene camera, falling back to ``transl`` (each person's own crop camera) when absent. A
    track with two rows for one frame (an id reused within a frame) is an error.
    """
    need = [k for k in (*PARAM_SHAPES, "frame_index", "time_s", "track_id") if k != "transl"]
    missing = [k for k in need if k not in arrays]
    key_t = transl_key if transl_key in arrays else "transl"
    if key_t not in arrays:
        missing.append(f"{transl_key} (or transl)")
    if missing:
        raise InputError(f"stacked arrays lack {', '.join(missing)}; pass the <video>.npz written by "
                         "main.video_inference (run it with --track for stable ids)")
    track_id = np.asarray(arrays["track_id"]).reshape(-1).astype(np.int64)
    n = len(track_id)
    if n == 0:
        raise InputError("the stacked arrays hold no person-frames (nobody was detected); nothing to export")
    cols = {k: np.asarray(arrays[k]) for k in need if k != "track_id"}
    cols["transl"] = np.asarray(arrays[key_t])
    for key, a in cols.items():
        if a.shape[:1] != (n,):
            raise InputError(f"stacked array {key} has {a.shape[0] if a.ndim else 0} rows, track_id has {n}; "
                             "the arrays must come from one stacked npz")
    tracks = []
    for tid in np.unique(track_id):
        rows = np.flatnonzero(track_id == tid)
        rows = rows[np.argsort(cols["frame_index"][rows], kind="stable")]
        if np.any(np.diff(cols["frame_index"][rows]) == 0):
            raise InputError(f"track {tid} has two people in one frame (ids are not track ids); run "
                             "main.video_inference with --track")
        tracks.append(TrackMotion(track_id=int(tid), **{k: a[rows] for k, a in cols.items()}))
    return tracks
