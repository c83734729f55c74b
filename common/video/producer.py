"""The first stage: decode frames, find the people (detector on key frames, :mod:`common.video.schedule`), select
boxes as the original demo, give them track ids and cut the network crops.

Box selection (:func:`select_people`, on the detector's output of a key frame): boxes with no area inside the frame
are dropped and counted; then the original's post-processing (score >= ``score_thr``; single person: the largest box,
``multi_person``: NMS at ``iou_thr``) and size rule (boxes narrower than ``bbox_thr`` or lower than 3x that are
skipped and counted). Boxes cut by the frame border are clipped later by the crop, as the original.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from common.video.report import FrameJob, PendingPerson, RunReport, VideoOptions
from common.video.schedule import DetectionSchedule, Scheduled

TRACK_IOU = 0.3  # IoU needed to continue a track
TRACK_MAX_AGE = 30  # frames a track survives without a match


def is_grey(rgb: np.ndarray) -> bool:
    """True if all three channels are equal (a grayscale source); checks a sparse grid first."""
    s = rgb[::8, ::8]
    if not (np.array_equal(s[..., 0], s[..., 1]) and np.array_equal(s[..., 1], s[..., 2])):
        return False
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def select_people(boxes: np.ndarray, scores: np.ndarray, width: int, height: int, opts: VideoOptions,
                  report: RunReport) -> tuple[np.ndarray, np.ndarray]:
    """The people kept from one frame's detections (module docstring): (boxes xyxy (P, 4) float64, scores (P,))."""
    from common.engine.detector import postprocess, size_filter, xyxy_to_xywh
    from common.utils.image import box_overlaps_image

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    inside = np.array([box_overlaps_image(b, width, height) for b in xyxy_to_xywh(boxes)], dtype=bool)
    report.outside_boxes += int((~inside & (scores >= opts.score_thr)).sum())
    boxes, scores = boxes[inside], scores[inside]
    idx = postprocess(boxes, scores, score_thr=opts.score_thr, multi_person=opts.multi_person, iou_thr=opts.iou_thr,
                      bbox_thr=0.0)
    keep = idx[size_filter(boxes[idx], opts.bbox_thr)]
    report.tiny_boxes += len(idx) - len(keep)
    return boxes[keep], scores[keep]


class FrameSource:
    """Decoded frames -> :class:`FrameJob` s with their people's crops (iterate :meth:`jobs`).

    ``reader``: a :class:`common.utils.video.FrameReader`; ``detector``: a
    :class:`common.engine.detector.Detector`; ``predictor``: the :class:`common.engine.predictor.Predictor` whose
    ``crop`` cuts the network input. Times go to ``report.timers`` (decode, detect, crop)."""

    def __init__(self, reader: Any, detector: Any, predictor: Any, opts: VideoOptions, report: RunReport,
                 lock: Any = None):
        self.reader, self.detector, self.predictor, self.opts, self.report = reader, detector, predictor, opts, report
        self.timers = report.timers
        self.lock = lock if lock is not None else contextlib.nullcontext()  # see report.compute_lock
        self.schedule = DetectionSchedule(self._detect, self._select, every=opts.detect_every,
                                          min_iou=opts.detect_iou)
        self.tracker = None
        if opts.track:
            from common.engine.tracking import IoUTracker

            self.tracker = IoUTracker(TRACK_IOU, TRACK_MAX_AGE)

    def _frames(self) -> Iterator[Any]:
        it = iter(self.reader)
        while True:
            t0 = time.perf_counter()
            frame = next(it, None)
            self.timers.add("decode", time.perf_counter() - t0)
            if frame is None:
                return
            yield frame

    def _detect(self, frames: list[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        with self.lock, self.timers("detect"):
            return self.detector.detect_batch([f.rgb for f in frames], [f.index for f in frames])

    def _select(self, boxes: np.ndarray, scores: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self.timers("detect"):
            return select_people(boxes, scores, rgb.shape[1], rgb.shape[0], self.opts, self.report)

    def jobs(self) -> Iterator[FrameJob]:
        """One job per decoded frame, in order; the reader's problems (damaged input) end up in the report."""
        if self.tracker is not None:
            import scipy.optimize  # noqa: F401 - imported by the tracker's first update; not detection time
        for item in self.schedule(self._frames()):
            yield self._job(item)
        self.report.detected_frames = self.schedule.detector_frames
        self.report.input_problem = self.reader.problem

    def _job(self, item: Scheduled) -> FrameJob:
        rgb, boxes, scores = item.frame.rgb, item.boxes, item.scores
        h, w = rgb.shape[:2]
        with self.timers("detect"):
            if is_grey(rgb):
                self.report.grey_frames += 1
            cut = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > w) | (boxes[:, 3] > h)
            self.report.border_boxes += int(cut.sum())
            ids = self.tracker.update(boxes, scores) if self.tracker is not None else np.arange(len(boxes))
        people = []
        if len(boxes):
            from common.engine.detector import xyxy_to_xywh

            with self.timers("crop"):
                img = rgb.astype(np.float32)
                for b, s, tid in zip(xyxy_to_xywh(boxes), scores, ids):
                    crop, processed = self.predictor.crop(img, b)
                    people.append(PendingPerson(b.astype(np.float64), np.asarray(processed),
                                                np.asarray(crop, np.float32), int(tid), float(s)))
        return FrameJob(item.frame.index, item.frame.time_s, rgb, people, boxes.astype(np.float32), item.detected)
