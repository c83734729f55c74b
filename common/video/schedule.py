"""Detection schedule: run the person detector on key frames only and interpolate the people's boxes in between.

On a CPU a detector costs far more than SMPLer-X per frame (Faster R-CNN R50 at 720p: seconds), so detecting every
frame makes detection most of the wall time. The input is a file, so the schedule can look ahead: it reads
``every`` frames, detects on the last one, and compares the people found there with those of the previous key frame:

* same number of people, and every person's boxes matched one-to-one (Hungarian on IoU) with IoU >= ``min_iou``:
  nobody entered, left or moved far, so the boxes of the frames in between are interpolated linearly in time
  between the matched pairs (exact for constant velocity, which is what a person's box does over a fraction of a
  second);
* otherwise the detector runs on the middle frame and both halves are checked the same way, down to neighbouring
  frames (bisection): a person entering is found on the frame where the detector first sees them, a fast motion gets
  as many key frames as it needs. Mid-frames of one level are detected in one batch (one forward pass on a GPU).

``every=1`` detects every frame (the original's behaviour). The boxes are the *selected* people of each key frame
(``select``: score threshold, single / multi-person choice, size rule), so interpolated frames carry exactly the
people that would have been processed. Known limit: someone visible only between two key frames that both show the
same people (fewer than ``every`` frames, and not overlapping a matched box) is missed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.engine.detector import box_iou

DETECT_CHUNK = 4  # frames per detector call when every frame is a key frame (batched by the torchvision detector)
# select(boxes xyxy (N, 4), scores (N,), frame (H, W, 3)) -> (boxes (M, 4) float64, scores (M,)) of the people kept
Select = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Scheduled:
    """One frame out of the schedule: the people's boxes (xyxy px, float64 (P, 4)) and scores (P,); ``detected``
    tells whether the detector ran on this frame (else the boxes are interpolated)."""

    frame: Any  # common.utils.video.Frame: index, time_s, rgb
    boxes: np.ndarray
    scores: np.ndarray
    detected: bool


def match_people(a: np.ndarray, b: np.ndarray, min_iou: float) -> list[tuple[int, int]] | None:
    """One-to-one matches (i in a, j in b) of two frames' boxes (xyxy), or None when the frames do not hold the same
    people: different counts, or a best assignment (Hungarian on IoU) with a pair below ``min_iou``."""
    if len(a) != len(b):
        return None
    if len(a) == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    iou = box_iou(a, b)
    rows, cols = linear_sum_assignment(-iou)
    if np.any(iou[rows, cols] < min_iou):
        return None
    return [(int(i), int(j)) for i, j in zip(rows, cols)]


def interpolate(a: Scheduled, b: Scheduled, pairs: list[tuple[int, int]], frame: Any) -> Scheduled:
    """``frame``'s boxes between key frames ``a`` and ``b``: each matched pair moved linearly in time (the frames'
    ``time_s``; their order if the times are equal); score = the lower of the pair's."""
    span = b.frame.time_s - a.frame.time_s
    alpha = (frame.time_s - a.frame.time_s) / span if span > 0 else 0.5
    boxes = np.array([a.boxes[i] + (b.boxes[j] - a.boxes[i]) * alpha for i, j in pairs], np.float64).reshape(-1, 4)
    scores = np.array([min(a.scores[i], b.scores[j]) for i, j in pairs], np.float64)
    return Scheduled(frame, boxes, scores, detected=False)


class DetectionSchedule:
    """Boxes for every frame from detections on key frames (module docstring).

    Args:
        detect: ``detect(frames) -> [(boxes xyxy, scores), ...]`` for a list of frames (``Frame`` objects; e.g. a
            :class:`common.engine.detector.Detector`'s ``detect_batch`` on their rgb and indices).
        select: the people kept from one frame's detections (see :data:`Select`).
        every: largest distance between key frames (frames); 1 detects every frame.
        min_iou: IoU a person's boxes on two key frames need for the frames between to be interpolated.
        chunk: with ``every=1``, frames per detector call.
    """

    def __init__(self, detect: Callable[[list[Any]], list[tuple[np.ndarray, np.ndarray]]], select: Select,
                 every: int = 1, min_iou: float = 0.5, chunk: int = DETECT_CHUNK):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        self.detect, self.select, self.every, self.min_iou = detect, select, every, min_iou
        self.chunk = max(1, chunk)  # with every=1: frames per detector call (batched on a GPU)
        self.detector_frames = 0  # frames the detector ran on

    def _detect(self, frames: list[Any]) -> list[Scheduled]:
        if not frames:
            return []
        self.detector_frames += len(frames)
        out = []
        for frame, (boxes, scores) in zip(frames, self.detect(frames)):
            b, s = self.select(np.asarray(boxes, np.float64).reshape(-1, 4),
                               np.asarray(scores, np.float64).reshape(-1), frame.rgb)
            out.append(Scheduled(frame, np.asarray(b, np.float64).reshape(-1, 4), np.asarray(s, np.float64), True))
        return out

    def __call__(self, frames: Iterable[Any]) -> Iterator[Scheduled]:
        """Frames in order, each with its people's boxes; reads up to ``every`` frames ahead."""
        it = iter(frames)
        if self.every == 1:  # every frame is a key frame
            while chunk := [f for _, f in zip(range(self.chunk), it)]:
                yield from self._detect(chunk)
            return
        first = next(it, None)
        if first is None:
            return
        key = self._detect([first])[0]
        yield key
        while True:
            seg = [key.frame]
            for frame in it:
                seg.append(frame)
                if len(seg) > self.every:
                    break
            if len(seg) == 1:
                return
            known: dict[int, Scheduled] = {0: key, len(seg) - 1: self._detect([seg[-1]])[0]}
            pending = [(0, len(seg) - 1)]
            while pending:
                mids, deeper = [], []
                for a, b in pending:
                    if b - a <= 1:
                        continue
                    pairs = match_people(known[a].boxes, known[b].boxes, self.min_iou)
                    if pairs is not None:
                        for k in range(a + 1, b):
                            known[k] = interpolate(known[a], known[b], pairs, seg[k])
                        continue
                    m = (a + b) // 2
                    mids.append(m)
                    deeper += [(a, m), (m, b)]
                for m, res in zip(mids, self._detect([seg[m] for m in mids])):
                    known[m] = res
                pending = deeper
            for k in range(1, len(seg)):
                yield known[k]
            key = known[len(seg) - 1]
