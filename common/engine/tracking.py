"""Multi-person tracking across video frames and optional temporal smoothing of per-person parameters.

:class:`IoUTracker` gives every detection a track id that stays the same while the person is followed: each frame,
the tracks' boxes (moved by their recent velocity, so people crossing each other keep their ids) are matched to the
new detections by the Hungarian algorithm on ``1 - IoU``; pairs with IoU below ``iou_threshold`` are not matched.
Unmatched detections start new tracks (ids count up from 0 and are never reused); a track without a match is kept
for ``max_age`` frames (so a person hidden briefly keeps the id) and then dropped.

:class:`OneEuroFilter` (Casiez et al., CHI 2012) smooths a time-stamped array signal: a low-pass filter whose cut-off
rises with the signal's speed, so still poses lose their jitter while fast motion keeps little lag.
:class:`ParamSmoother` applies it per track to SMPL-X parameter dicts. Smoothing is off unless a caller creates one.

Rotations must be smoothed in a continuous representation: averaging axis-angle vectors is wrong near the pi
wrap-around (``pi - e`` and ``-(pi - e)`` are nearly the same rotation but average to zero) and the axis-angle
chart is not linear. :class:`ParamSmoother` therefore filters the 3x3 rotation matrices of the pose parameters
(element-wise) and projects the result back onto SO(3) (nearest rotation, via SVD) before returning axis-angle;
filtering a 6D representation and re-orthonormalising by Gram-Schmidt would do as well.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from common.engine.detector import box_iou

# SMPL-X parameters (the npz layout of common.engine.predictor.PARAM_SHAPES) holding axis-angle rotations (..., 3).
ROTATION_KEYS = frozenset({"global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose", "leye_pose",
                           "reye_pose"})


@dataclass
class Track:
    """One followed person. ``box`` xyxy px of the last matched detection; ``velocity`` px/frame per box coordinate;
    ``misses`` frames since the last match; ``hits`` matched frames; ``last_frame`` tracker frame of the last match."""

    track_id: int
    box: np.ndarray
    score: float
    last_frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    misses: int = 0
    hits: int = 1

    def predicted_box(self, frame: int) -> np.ndarray:
        """The box moved by the velocity to ``frame`` (xyxy px)."""
        return self.box + self.velocity * (frame - self.last_frame)


class IoUTracker:
    """Frame-by-frame multi-object tracker on boxes.

    Args:
        iou_threshold: minimum IoU between a (predicted) track box and a detection for them to be matched.
        max_age: frames a track survives without a match (0: dropped at its first miss).
        velocity_smoothing: weight of the previous velocity in its running average (0: last displacement only;
            1: no motion model, boxes stay where they were last seen).
    """

    def __init__(self, iou_threshold: float = 0.3, max_age: int = 30, velocity_smoothing: float = 0.5):
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.velocity_smoothing = velocity_smoothing
        self.tracks: list[Track] = []
        self.frame = -1
        self._next_id = 0

    def reset(self) -> None:
        """Forget every track (ids restart at 0)."""
        self.tracks, self.frame, self._next_id = [], -1, 0

    def update(self, boxes: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """Advance one frame with its detections (N, 4) xyxy px; returns their track ids (N,) int64, in input order.

        Call once per processed frame, also with an empty array when nobody was detected (tracks then age).
        """
        from scipy.optimize import linear_sum_assignment

        self.frame += 1
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        ids = np.full(len(boxes), -1, dtype=np.int64)
        matched_tracks: set[int] = set()
        if self.tracks and len(boxes):
            predicted = np.stack([t.predicted_box(self.frame) for t in self.tracks])
            iou = box_iou(predicted, boxes)
            rows, cols = linear_sum_assignment(1.0 - iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= self.iou_threshold and iou[r, c] > 0:
                    self._match(self.tracks[r], boxes[c], scores[c])
                    ids[c] = self.tracks[r].track_id
                    matched_tracks.add(r)
        for r, track in enumerate(self.tracks):
            if r not in matched_tracks:
                track.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= self.max_age]
        for c in np.flatnonzero(ids < 0):
            self.tracks.append(Track(self._next_id, boxes[c].copy(), float(scores[c]), self.frame))
            ids[c] = self._next_id
            self._next_id += 1
        return ids

    def _match(self, track: Track, box: np.ndarray, score: float) -> None:
        gap = self.frame - track.last_frame
        step = (box - track.box) / gap
        a = self.velocity_smoothing
        track.velocity = step if track.hits == 1 else a * track.velocity + (1.0 - a) * step
        track.box, track.score, track.last_frame = box.copy(), float(score), self.frame
        track.misses, track.hits = 0, track.hits + 1

    @property
    def active_ids(self) -> list[int]:
        """Ids of the tracks still kept (matched within ``max_age`` frames)."""
        return [t.track_id for t in self.tracks]


def _smoothing_factor(dt: float, cutoff: np.ndarray | float) -> np.ndarray | float:
    """Exponential-smoothing weight of a first-order low-pass with ``cutoff`` Hz sampled every ``dt`` s."""
    r = 2.0 * math.pi * np.asarray(cutoff) * dt
    return r / (r + 1.0)


class OneEuroFilter:
    """One-Euro filter on arrays (any fixed shape), element-wise.

    Args:
        min_cutoff: cut-off frequency (Hz) when the signal is still; lower = smoother, more lag at rest.
        beta: speed coefficient; the cut-off grows by ``beta * |speed|`` (speed in signal units per second), so
            larger = less lag during fast motion.
        d_cutoff: cut-off (Hz) of the low-pass applied to the speed estimate.

    ``f(x, t)`` takes the raw value and its time stamp in seconds (strictly increasing) and returns the filtered
    value. The first call returns ``x`` unchanged. A call with ``t`` not after the previous one returns the
    previous output without updating (e.g. a repeated frame).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("min_cutoff and d_cutoff must be > 0 and beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        if x.shape != self._x.shape:
            raise ValueError(f"shape changed from {self._x.shape} to {x.shape}")
        dt = float(t) - self._t
        if dt <= 0:
            return self._x.copy()
        a_d = _smoothing_factor(dt, self.d_cutoff)
        dx = a_d * (x - self._x) / dt + (1.0 - a_d) * self._dx
        a = _smoothing_factor(dt, self.min_cutoff + self.beta * np.abs(dx))
        self._x = a * x + (1.0 - a) * self._x
        self._dx, self._t = dx, float(t)
        return self._x.copy()


def _axis_angle_to_matrix(aa: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix()


def _matrix_to_axis_angle(mats: np.ndarray) -> np.ndarray:
    """Nearest rotations (SVD projection onto SO(3)) of (N, 3, 3) matrices, as (N, 3) axis-angle."""
    from scipy.spatial.transform import Rotation

    u, _, vt = np.linalg.svd(mats)
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, -1] *= d[:, None]  # keep det = +1 (no reflection)
    return Rotation.from_matrix(u @ vt).as_rotvec()


class ParamSmoother:
    """Per-track One-Euro smoothing of parameter dicts (e.g. the SMPL-X npz layout).

    ``smoother(track_id, params, t)`` returns a new dict with the same keys, shapes and dtypes. Keys in
    ``rotation_keys`` hold axis-angle rotations (..., 3) and are filtered as rotation matrices (see the module
    docstring); every other key is filtered as-is (betas, expression, transl in m). Call :meth:`prune` with the
    tracker's active ids so filters of lost people are freed; a reappearing id starts fresh.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0,
                 rotation_keys: Iterable[str] = ROTATION_KEYS):
        self.args = (min_cutoff, beta, d_cutoff)
        self.rotation_keys = frozenset(rotation_keys)
        self._filters: dict[int, dict[str, OneEuroFilter]] = {}

    def __call__(self, track_id: int, params: Mapping[str, np.ndarray], t: float) -> dict[str, np.ndarray]:
        filters = self._filters.setdefault(int(track_id), {})
        out = {}
        for key, value in params.items():
            value = np.asarray(value)
            f = filters.setdefault(key, OneEuroFilter(*self.args))
            if key in self.rotation_keys:
                mats = f(_axis_angle_to_matrix(value), t)
                out[key] = _matrix_to_axis_angle(mats).reshape(value.shape).astype(value.dtype)
            else:
                out[key] = f(value, t).astype(value.dtype)
        return out

    def prune(self, active_ids: Iterable[int]) -> None:
        """Drop the filters of tracks not in ``active_ids``."""
        keep = {int(i) for i in active_ids}
        for tid in list(self._filters):
            if tid not in keep:
                del self._filters[tid]
