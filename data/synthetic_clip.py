"""A synthetic video for the demo: people of the synthetic HumanData distribution moving in front of its camera.

Every person is drawn like a :mod:`data.synthetic_humandata` training image (same pose ranges, outfits, painter,
background style and pinhole camera), so a model trained on the ``Synthetic`` set sees in-distribution frames.
Over the clip each person blends from one random pose to another (body, hands, jaw and the yaw of the whole body),
walks sideways and keeps its shape; each person starts centred in its own vertical strip of the frame.

:func:`write_synthetic_clip` writes::

    <stem>.mp4            H.264 video, ``fps`` frames/s, (height, width) px
    <stem>_boxes.json     {"<frame>": [[x, y, w, h, score], ...]}: the extent of each projected mesh (px, xywh),
                          the ``--boxes`` input of ``python -m main.video_inference``
    <stem>_gt.npz         ground truth: per SMPL-X key (F, P, ...) parameters (camera frame: x right, y down,
                          z forward, metres; the npz layout of the inference outputs), ``boxes`` (F, P, 4) xywh px,
                          ``focal`` / ``princpt`` (2,) px

Frames are a pure function of ``seed``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common.utils.io import atomic_open
from data import synthetic_humandata as sh

BLEND_KEYS = ("body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose", "expression")


def _smooth(t: float) -> float:
    return t * t * (3.0 - 2.0 * t)  # ease in and out: no jump in speed at the ends


def write_synthetic_clip(out_dir: str | Path, body_model_dir: str | Path, stem: str = "synthetic_clip",
                         num_frames: int = 48, num_people: int = 2, img_size: tuple[int, int] = (480, 640),
                         fps: float = 12.0, walk: float = 0.2, seed: int = 7) -> dict[str, Path]:
    """Render the clip and write the three files of the module docstring; returns {'video', 'boxes', 'gt'}.

    ``img_size``: (height, width) px; ``walk``: sideways distance per person over the clip (m, alternating sides).
    """
    from common.body_model import SMPLXLayer
    from common.utils.video import VideoWriter

    if num_frames < 2 or not 1 <= num_people <= 3:
        raise ValueError(f"need num_frames >= 2 and 1 <= num_people <= 3, got {num_frames}, {num_people}")
    out_dir = Path(out_dir)
    h, w = img_size
    camera = sh.camera_for(img_size)
    layer = SMPLXLayer(body_model_dir, "neutral")
    regions = sh._face_regions(layer)
    rng = np.random.default_rng([seed, 0])
    starts = [sh.sample_smplx_params(rng) for _ in range(num_people)]
    ends = [sh.sample_smplx_params(rng) for _ in range(num_people)]
    for s, e in zip(starts, ends):  # one person keeps one shape and one outfit
        e["betas"] = s["betas"]
    colours = [sh._face_colours(regions, rng) for _ in range(num_people)]
    verts0, _ = sh._run_layer(layer, starts)
    base = np.stack([sh._place(verts0[j].astype(np.float64), rng, camera, img_size,
                               (w * j / num_people, w * (j + 1) / num_people)) for j in range(num_people)])
    for j in range(num_people):  # centre each person in its strip, so the walk stays inside the frame
        v = verts0[j].astype(np.float64) + base[j]
        u = sh.project(v, camera["focal"], camera["princpt"])[:, 0]
        base[j, 0] += (w * (j + 0.5) / num_people - (u.min() + u.max()) / 2) * v[:, 2].mean() / camera["focal"][0]

    frames_params: list[list[dict[str, np.ndarray]]] = []
    transl = np.zeros((num_frames, num_people, 3))
    for i in range(num_frames):
        t = _smooth(i / (num_frames - 1))
        people = []
        for j in range(num_people):
            p = {k: (1 - t) * starts[j][k] + t * ends[j][k] for k in BLEND_KEYS}
            # orientation: the start's, turned about the camera's vertical axis by a fraction of the yaw change
            p["global_orient"] = _blend_orient(starts[j]["global_orient"], ends[j]["global_orient"], t)
            p["betas"] = starts[j]["betas"]
            people.append(p)
            side = 1.0 if j % 2 == 0 else -1.0
            transl[i, j] = base[j] + [side * walk * (t - 0.5), 0.0, 0.0]
        frames_params.append(people)

    flat = [p for people in frames_params for p in people]
    verts, _ = sh._run_layer(layer, flat, transl.reshape(-1, 3).astype(np.float32))
    verts = verts.reshape(num_frames, num_people, -1, 3)
    boxes = np.zeros((num_frames, num_people, 4), np.float32)
    video = out_dir / f"{stem}.mp4"
    with VideoWriter(video, fps, (w, h), crf=16) as writer:
        for i in range(num_frames):
            img = sh.synthetic_background(seed, 0, img_size)  # a static scene
            sh._paint(img, list(verts[i]), layer.faces, colours, camera)
            writer.write(img)
            for j in range(num_people):
                boxes[i, j] = sh._extent_xywh(sh.project(verts[i, j], camera["focal"], camera["princpt"]))

    boxes_path = out_dir / f"{stem}_boxes.json"
    with atomic_open(boxes_path, "w") as f:
        json.dump({str(i): [[*map(float, boxes[i, j]), 1.0] for j in range(num_people)] for i in range(num_frames)}, f)
    gt: dict[str, Any] = {k: np.stack([np.stack([p[k] for p in people]) for people in frames_params]).astype(np.float32)
                          for k in ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose",
                                    "betas", "expression")}
    gt_path = out_dir / f"{stem}_gt.npz"
    with atomic_open(gt_path, "wb") as f:
        np.savez(f, **gt, transl=transl.astype(np.float32), boxes=boxes,
                 focal=np.asarray(camera["focal"], np.float32), princpt=np.asarray(camera["princpt"], np.float32))
    return {"video": video, "boxes": boxes_path, "gt": gt_path}


def _blend_orient(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Axis-angle (3,) on the geodesic from rotation ``a`` to ``b`` at fraction ``t``."""
    ra, rb = _matrix(a), _matrix(b)
    rel = sh._rotvec(rb @ ra.T)
    return sh._rotvec(_matrix(rel * t) @ ra)


def _matrix(rotvec: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(rotvec, np.float64).reshape(3, 1))[0]


PARAM_KEYS = ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose", "betas", "expression",
              "transl")


def silhouette_iou(gt_path: str | Path, stacked_path: str | Path, body_model_dir: str | Path) -> dict[str, float]:
    """How well estimated meshes cover the clip's true bodies: per person-frame IoU of silhouettes (rendered with
    :class:`common.utils.render.MeshRenderer` at the clip's size).

    ``stacked_path``: the ``<video>.npz`` of ``python -m main.video_inference`` (each row has its own camera
    ``focal`` / ``princpt`` for its ``transl``); each row is matched to the true person whose box centre is nearest.
    Returns ``{'mean': ..., 'min': ..., 'count': ...}``.
    """
    import torch

    from common.body_model import SMPLXLayer
    from common.utils.render import MeshRenderer

    gt, est = np.load(gt_path), np.load(stacked_path)
    layer = SMPLXLayer(body_model_dir, "neutral")
    w, h = (int(x) for x in est["image_size"])

    def mesh(params: dict[str, np.ndarray]) -> np.ndarray:
        t = {k: torch.from_numpy(np.asarray(params[k], np.float32).reshape(1, -1)) for k in PARAM_KEYS}
        with torch.no_grad():
            v, _ = layer(*(t[k] for k in PARAM_KEYS))
        return v[0].numpy()

    ious = []
    with MeshRenderer(w, h) as renderer:
        for r in range(len(est["frame_index"])):
            f = int(est["frame_index"][r])
            box = est["bbox_input"][r]
            centres = gt["boxes"][f, :, :2] + gt["boxes"][f, :, 2:] / 2
            j = int(np.argmin(np.linalg.norm(centres - (box[:2] + box[2:] / 2), axis=1)))
            _, true_mask, _ = renderer.render([mesh({k: gt[k][f, j] for k in PARAM_KEYS})], layer.faces,
                                              gt["focal"], gt["princpt"])
            _, est_mask, _ = renderer.render([mesh({k: est[k][r] for k in PARAM_KEYS})], layer.faces,
                                             est["focal"][r], est["princpt"][r])
            union = np.logical_or(true_mask, est_mask).sum()
            ious.append(np.logical_and(true_mask, est_mask).sum() / union if union else 0.0)
    return {"mean": float(np.mean(ious)) if ious else 0.0, "min": float(np.min(ious)) if ious else 0.0,
            "count": len(ious)}
