"""The network stage: crops of many frames and people in batches through SMPLer-X, optional per-track smoothing,
and each person's place in the frame's scene camera; finished frames come out in order.

``add(job)`` takes a :class:`FrameJob` (frames arrive in order); ``finish()`` flushes the last partial batch. Both
return the frames that are complete, in order. A batch is ``batch_size`` crops taken across frames and people, so
the network always runs full batches until the end of the input.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import numpy as np

from common.video.report import PARAM_KEYS, FrameJob, PendingPerson, StageTimers, VideoOptions
from common.video.scene import scene_camera, scene_shift

SMOOTH_MIN_CUTOFF = 1.0  # One-Euro cut-off at rest (Hz): lower = smoother still poses, more lag
SMOOTH_BETA = 0.5  # One-Euro speed coefficient: higher = less lag in fast motion
SMOOTH_FORGET = 30  # frames after which a gone track's filter is dropped


class NetworkStage:
    """Batched prediction (:class:`common.engine.predictor.Predictor` conversions), smoothing, scene placement."""

    def __init__(self, model: Any, predictor: Any, opts: VideoOptions, timers: StageTimers, lock: Any = None):
        self.model, self.predictor, self.opts, self.timers = model, predictor, opts, timers
        self.lock = lock if lock is not None else contextlib.nullcontext()  # see report.compute_lock
        self.pending: list[FrameJob] = []
        self.waiting: list[PendingPerson] = []  # crops not yet predicted, in frame order
        self.smoother = None
        self._last_seen: dict[int, int] = {}  # track id -> last frame index (to prune the smoother's filters)
        if opts.smooth:
            from common.engine.tracking import ParamSmoother

            self.smoother = ParamSmoother(min_cutoff=SMOOTH_MIN_CUTOFF, beta=SMOOTH_BETA)

    def add(self, job: FrameJob) -> list[FrameJob]:
        self.pending.append(job)
        self.waiting.extend(job.people)
        while len(self.waiting) >= self.opts.batch_size:
            self._predict_waiting()
        return self._completed()

    def finish(self) -> list[FrameJob]:
        while self.waiting:
            self._predict_waiting()
        return self._completed()

    def _predict_waiting(self) -> None:
        batch, self.waiting = self.waiting[: self.opts.batch_size], self.waiting[self.opts.batch_size:]
        self.predict(batch)

    def _completed(self) -> list[FrameJob]:
        done = []
        while self.pending and self.pending[0].ready:
            job = self.pending.pop(0)
            self._smooth(job)
            self._place(job)
            done.append(job)
        return done

    def predict(self, people: list[PendingPerson]) -> None:
        """Run the network on the crops of ``people`` (<= batch size) and attach their PersonResults."""
        import torch

        pred = self.predictor
        with self.lock, self.timers("network"):
            batch = torch.from_numpy(np.stack([p.crop for p in people])).to(pred.device)
            with torch.no_grad():
                out = self.model(batch)  # in the model's precision (common.nets.precision)
            outs = {k: v.float().cpu().numpy() for k, v in out.to_dict().items() if v is not None}
            for i, p in enumerate(people):
                # Predictor's own conversion of one output row (camera in image px, npz layout)
                p.result = pred.person_result(p.box_in, p.processed, {k: v[i] for k, v in outs.items()})
                p.crop = None  # free the crop memory early

    def _place(self, job: FrameJob) -> None:
        """Each person's shift into the frame's scene camera (:func:`common.video.scene.scene_shift`)."""
        h, w = job.rgb.shape[:2]
        cam = scene_camera(w, h, self.opts.scene_focal)
        for p in job.people:
            p.scene_shift = scene_shift(p.result.vertices, p.result.focal, p.result.princpt, cam)

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
            if len(self._last_seen) > 4 * SMOOTH_FORGET:  # free the filters of tracks gone for good
                self._last_seen = {t: i for t, i in self._last_seen.items() if job.index - i <= SMOOTH_FORGET}
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
