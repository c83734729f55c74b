"""The last stage: every output of a run, written atomically as frames complete and finalised at the end.

Per frame (``<frame>`` 6 digits, ``<k>`` the person id): ``smplx/<frame>_<k>.npz`` and ``meta/<frame>_<k>.json`` (the
original's files), ``mesh/<frame>_<k>.obj`` and ``glb/<frame>.glb`` (scene camera), the overlay frame (video,
image, ``img/<frame>.jpg``). At the end: the stacked ``<stem>.npz`` and, with tracking, the animation exports
(``<stem>.glb``, ``bvh/<stem>_track<k>.bvh``). The OpenGL context of the overlay lives in the thread that calls
:meth:`OutputWriter.write` (the writer thread).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from common.video.report import PARAM_KEYS, FrameJob, RunReport, VideoOptions
from common.video.scene import draw_frame, scene_camera

log = logging.getLogger("smplerx.video_inference")


class OutputWriter:
    """Writes one run's outputs into ``report.out_dir`` (module docstring); ``stem`` names the per-input files,
    ``kind`` is the reader's ('video', 'image' or 'folder'), ``fps`` the overlay video's frame rate."""

    def __init__(self, opts: VideoOptions, report: RunReport, input_path: Path, stem: str, kind: str,
                 faces: np.ndarray, fps: float, body_model_dir: Path):
        self.opts, self.report, self.input, self.stem, self.kind = opts, report, input_path, stem, kind
        self.faces, self.fps, self.body_model_dir = faces, fps, body_model_dir
        self.out = report.out_dir
        self.timers = report.timers
        self.records: list[dict[str, Any]] = []  # per completed person-frame: what the stacked npz holds
        self.first_size: tuple[int, int] | None = None
        self.first_time: float | None = None  # time of the first completed frame: time 0 of the animation
        self.video: Any = None
        self.renderers: dict[tuple[int, int], Any] = {}
        self.progress: Any = None

    # -- per frame ------------------------------------------------------------------------------------------------
    def write(self, job: FrameJob) -> None:
        from common.export import static_glb
        from common.utils.io import save_json, save_npz, save_obj

        o, rep = self.opts, self.report
        h, w = job.rgb.shape[:2]
        if self.first_size is None:
            self.first_size, self.first_time = (w, h), float(job.time_s)
        cam = scene_camera(w, h, o.scene_focal)
        name = f"{job.index:06d}"
        with self.timers("write"):
            for p in job.people:
                r = p.result
                stem = f"{name}_{p.track_id}"
                save_npz(self.out / "smplx" / f"{stem}.npz", **r.params)
                meta = {"focal": [float(v) for v in r.focal], "princpt": [float(v) for v in r.princpt],
                        "bbox": [float(v) for v in r.bbox], "bbox_input": [float(v) for v in r.bbox_input],
                        "track_id": p.track_id, "frame_index": job.index, "time_s": float(job.time_s),
                        "score": float(p.score), "detected": job.detected, "image_size": [w, h],
                        "scene": {"focal": cam.focal, "princpt": [w / 2.0, h / 2.0],
                                  "transl": [float(v) for v in r.params["transl"].reshape(3) + p.scene_shift]},
                        "input": str(self.input)}
                save_json(self.out / "meta" / f"{stem}.json", meta)
                if o.save_mesh:
                    save_obj(self.out / "mesh" / f"{stem}.obj", r.vertices + p.scene_shift, self.faces)
            if o.glb and job.people:
                static_glb(self.out / "glb" / f"{name}.glb",
                           [(f"track_{p.track_id}", p.result.vertices + p.scene_shift) for p in job.people],
                           self.faces, cam)
        if o.render:
            self._render(job, w, h, name)
        for p in job.people:  # only the small arrays: meshes and raw outputs would grow without bound
            r = p.result
            self.records.append({**r.params, "frame_index": job.index, "time_s": job.time_s, "track_id": p.track_id,
                                 "score": p.score, "bbox": r.bbox, "bbox_input": r.bbox_input, "focal": r.focal,
                                 "princpt": r.princpt, "scene_transl": r.params["transl"].reshape(3) + p.scene_shift,
                                 "detected": job.detected})
            if o.track:
                rep.track_ids.add(p.track_id)
        rep.frames += 1
        rep.last_index = max(rep.last_index, job.index)
        rep.people += len(job.people)
        rep.empty_frames += not job.people
        if self.progress is not None:
            self.progress.update(1)

    def _render(self, job: FrameJob, w: int, h: int, name: str) -> None:
        from common.utils.io import save_image
        from common.utils.render import DEFAULT_COLOR, track_color

        o = self.opts
        with self.timers("render"):
            colors = [track_color(p.track_id) if o.track else DEFAULT_COLOR for p in job.people]
            labels = [str(p.track_id) for p in job.people] if o.track else None
            vis = draw_frame(job.rgb, [p.result for p in job.people], self.faces, self._renderer(w, h),
                             o.show_verts, job.boxes_xyxy if o.show_bbox else None, labels, colors)
        with self.timers("write"):
            if o.save_frames:
                save_image(self.out / "img" / f"{name}.jpg", vis)
            if self.kind == "image":
                self.report.outputs.append(save_image(self.out / f"{self.stem}_overlay.jpg", vis))
            else:
                self._write_video(vis)

    def _renderer(self, w: int, h: int) -> Any | None:
        """A MeshRenderer for this frame size (made in this thread), or None for vertex dots."""
        if self.opts.show_verts or self.report.render_note is not None:
            return None
        if (w, h) not in self.renderers:
            from common.utils.render import MeshRenderer, RendererUnavailable

            try:
                self.renderers[(w, h)] = MeshRenderer(w, h)
            except RendererUnavailable as err:
                self.report.render_note = f"no mesh renderer ({err}); drew vertex dots instead"
                log.warning(self.report.render_note)
                return None
        return self.renderers[(w, h)]

    def _write_video(self, vis: np.ndarray) -> None:
        from common.utils.video import VideoWriter

        if self.video is None:
            w, h = self.first_size
            self.video = VideoWriter(self.out / f"{self.stem}_overlay.mp4", self.fps, (w, h))
        w, h = self.video.size
        if vis.shape[:2] != (h, w):  # a folder of images of different sizes: fit to the first frame's size
            import cv2

            vis = cv2.resize(vis, (w, h), interpolation=cv2.INTER_AREA)
        self.video.write(vis)

    def close_frames(self) -> None:
        """Release the renderers and finalise the overlay video (in the writer thread)."""
        for r in self.renderers.values():
            with contextlib.suppress(Exception):
                r.release()
        self.renderers.clear()
        if self.video is None:
            return
        try:
            with self.timers("write"):
                self.report.outputs.append(self.video.close())
        except Exception as err:  # noqa: BLE001 - keep the other outputs; say what happened
            self.video.abort()
            msg = f"the overlay video could not be finalised ({type(err).__name__}: {err})"
            self.report.render_note = f"{self.report.render_note}; {msg}" if self.report.render_note else msg
        self.video = None

    # -- at the end -----------------------------------------------------------------------------------------------
    def stacked_arrays(self) -> dict[str, np.ndarray]:
        """The completed person-frames stacked (see main/video_inference.py for keys and shapes)."""
        from common.engine.predictor import PARAM_SHAPES

        rec = self.records
        n = len(rec)
        arrays: dict[str, np.ndarray] = {}
        for k in PARAM_KEYS:
            arrays[k] = np.array([r[k] for r in rec], dtype=np.float32).reshape(n, *PARAM_SHAPES[k])
        for key, dtype in (("frame_index", np.int64), ("time_s", np.float64), ("track_id", np.int64),
                           ("score", np.float64), ("detected", bool)):
            arrays[key] = np.array([r[key] for r in rec], dtype=dtype).reshape(n)
        for key, dim in (("bbox", 4), ("bbox_input", 4), ("focal", 2), ("princpt", 2), ("scene_transl", 3)):
            arrays[key] = np.array([[float(v) for v in r[key]] for r in rec], dtype=np.float64).reshape(n, dim)
        w, h = self.first_size or (0, 0)
        arrays["image_size"] = np.array((w, h), dtype=np.int64)
        arrays["fps"] = np.array(self.fps, dtype=np.float64)
        cam = scene_camera(max(w, 1), max(h, 1), self.opts.scene_focal)
        arrays["scene_focal"] = np.array(cam.focal, dtype=np.float64)
        arrays["scene_princpt"] = np.array((w / 2.0, h / 2.0), dtype=np.float64)
        return arrays

    def finalise(self) -> None:
        """The stacked npz, then (tracking, a video or folder, people found) the animation exports, whose time 0 is
        the first frame of the overlay video."""
        from common.utils.io import save_npz

        with self.timers("write"):
            arrays = self.stacked_arrays()
            self.report.outputs.append(save_npz(self.out / f"{self.stem}.npz", **arrays))
            if self.opts.track and self.opts.animation and self.kind != "image" and self.records:
                self._animation(arrays, self.first_time or 0.0)

    def _animation(self, arrays: dict[str, np.ndarray], start_time_s: float) -> None:
        from common.export import tracks_from_stacked, write_animated_glb, write_bvh

        w, h = (int(v) for v in arrays["image_size"])
        cam = scene_camera(w, h, self.opts.scene_focal)
        tracks = tracks_from_stacked(arrays)
        self.report.outputs.append(write_animated_glb(self.out / f"{self.stem}.glb", tracks, self.body_model_dir,
                                                      cam, fps=self.fps, start_time_s=start_time_s))
        for t in tracks:
            write_bvh(self.out / "bvh" / f"{self.stem}_track{t.track_id}.bvh", t, self.body_model_dir, self.fps)
        self.report.outputs.append(self.out / "bvh")
