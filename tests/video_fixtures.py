"""Synthetic clips for the video-inference tests and benchmark: people (the stand-in SMPL-X body) walking in front of
a pinhole camera, rendered with :class:`common.utils.render.MeshRenderer`, with their ground truth.

Every person of every frame has known SMPL-X parameters (npz layout, camera frame: x right, y down, z forward,
metres), vertices, box (xywh px of the projected mesh, unclipped) and silhouette. ``write_clip`` encodes the frames
as an H.264 MP4 and writes the boxes JSON that :class:`common.engine.detector.BoxesFileDetector` reads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

# 180 degrees about x: the body model is y-up, the camera frame y-down (the body faces the camera)
UPRIGHT = (math.pi, 0.0, 0.0)
L_SHOULDER, R_SHOULDER, L_HIP, R_HIP = 15, 16, 0, 1  # rows of body_pose (joint index - 1)


@dataclass
class GTPerson:
    """One person in one frame: ``person`` (0, 1, ... in the clip's order), SMPL-X ``params`` (npz layout),
    ``vertices`` (10475, 3) m camera frame, ``box`` xywh px (projected mesh extent), ``mask`` bool (H, W)."""

    person: int
    params: dict[str, np.ndarray]
    vertices: np.ndarray
    box: tuple[float, float, float, float]
    mask: np.ndarray


@dataclass
class Clip:
    """A generated clip: ``frames`` uint8 RGB (H, W, 3) as rendered (before encoding), ``people[i]`` the GT of
    frame i, ``silhouettes[i]`` bool (H, W) the union of its people's masks; one camera ``focal`` / ``princpt`` (px)."""

    width: int
    height: int
    fps: float
    focal: tuple[float, float]
    princpt: tuple[float, float]
    frames: list[np.ndarray] = field(default_factory=list)
    people: list[list[GTPerson]] = field(default_factory=list)
    silhouettes: list[np.ndarray] = field(default_factory=list)
    faces: np.ndarray | None = None


def _params(frame: int, person: int, x: float, z: float, betas: np.ndarray) -> dict[str, np.ndarray]:
    """A walking pose: arms down and swinging, legs alternating; ``x`` / ``z`` m of the pelvis in the camera frame."""
    phase = 0.5 * frame + 1.3 * person
    body = np.zeros((21, 3), np.float32)
    body[L_SHOULDER, 2] = -1.35 + 0.1 * math.sin(phase)
    body[R_SHOULDER, 2] = 1.35 + 0.1 * math.sin(phase)
    body[L_HIP, 0] = 0.3 * math.sin(phase)
    body[R_HIP, 0] = -0.3 * math.sin(phase)
    z3 = np.zeros((1, 3), np.float32)
    return {"global_orient": np.array([UPRIGHT], np.float32), "body_pose": body,
            "left_hand_pose": np.zeros((15, 3), np.float32), "right_hand_pose": np.zeros((15, 3), np.float32),
            "jaw_pose": z3.copy(), "leye_pose": z3.copy(), "reye_pose": z3.copy(),
            "betas": betas.reshape(1, 10).astype(np.float32), "expression": np.zeros((1, 10), np.float32),
            "transl": np.array([[x, 0.1, z]], np.float32)}


def smplx_vertices(layer, params: dict[str, np.ndarray]) -> np.ndarray:
    """(10475, 3) camera-frame vertices of npz-layout parameters through a SMPLXLayer (transl included)."""
    t = {k: torch.from_numpy(np.asarray(v, np.float32).reshape(1, -1)) for k, v in params.items()}
    with torch.no_grad():
        v, _ = layer(t["global_orient"], t["body_pose"], t["left_hand_pose"], t["right_hand_pose"], t["jaw_pose"],
                     t["betas"], t["expression"], t["transl"])
    return v[0].numpy().astype(np.float32)


def _background(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([90 + 60 * yy, 110 + 40 * xx, 140 - 30 * yy], axis=-1)
    noise = rng.normal(0, 6, (h // 8 + 1, w // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:h, :w]
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def make_clip(layer, width: int = 320, height: int = 240, num_frames: int = 12, num_people: int = 3,
              fps: float = 12.0, empty_frames: tuple[int, ...] = (), seed: int = 0,
              spacing: float = 0.8, depth: float = 3.4, speed: float = 0.03, exit_right: bool = False) -> Clip:
    """Render ``num_people`` people walking sideways (``speed`` m/frame, alternating directions) at ``depth`` m,
    ``spacing`` m apart; nobody in ``empty_frames``. ``exit_right``: the last person drifts out of the right border.
    ``layer`` is a :class:`common.body_model.SMPLXLayer`. Needs an OpenGL context (MeshRenderer)."""
    from common.utils.render import MeshRenderer, overlay

    rng = np.random.default_rng(seed)
    focal = (0.8 * height / 1.9 * depth,) * 2  # a 1.9 m tall extent fills 80 % of the height at ``depth``
    clip = Clip(width, height, fps, focal, (width / 2 - 0.3, height / 2 + 0.4), faces=np.asarray(layer.faces))
    betas = [rng.normal(0, 0.5, 10) for _ in range(num_people)]
    colors = [(0.9, 0.4, 0.3), (0.3, 0.8, 0.4), (0.4, 0.5, 0.95), (0.9, 0.8, 0.3)]
    bg = _background(width, height, seed)
    with MeshRenderer(width, height) as renderer:
        for i in range(num_frames):
            gt: list[GTPerson] = []
            if i not in empty_frames:
                for j in range(num_people):
                    x0 = (j - (num_people - 1) / 2) * spacing
                    dx = speed * i * (1 if j % 2 == 0 else -1)
                    if exit_right and j == num_people - 1:
                        dx = 3 * speed * i
                    params = _params(i, j, x0 + dx, depth + 0.3 * j, betas[j])
                    v = smplx_vertices(layer, params)
                    _, mask, _ = renderer.render([v], clip.faces, focal, clip.princpt)
                    uv = v[:, :2] / v[:, 2:3] * np.asarray(focal) + np.asarray(clip.princpt)
                    (x1, y1), (x2, y2) = uv.min(0), uv.max(0)
                    gt.append(GTPerson(j, params, v, (float(x1), float(y1), float(x2 - x1), float(y2 - y1)), mask))
            rgb, mask, _ = renderer.render([p.vertices for p in gt], clip.faces, focal, clip.princpt,
                                           colors=[colors[p.person % len(colors)] for p in gt])
            clip.frames.append(overlay(bg, rgb, mask))
            clip.people.append(gt)
            clip.silhouettes.append(mask)
    return clip


def box_score(frame: int, person: int) -> float:
    """Detection score written for a person's box: it rotates between people from frame to frame, so the
    score order (the order of boxes after NMS) changes while the people do not."""
    return 0.93 + 0.02 * ((frame + person) % 3)


def write_clip(clip: Clip, video_path: Path, boxes_path: Path | None = None,
               extra_boxes: dict[int, list[list[float]]] | None = None) -> tuple[Path, Path | None]:
    """Encode the frames (H.264 MP4 via VideoWriter) and write the boxes JSON ({frame: [[x, y, w, h, score]]}, scores
    from :func:`box_score`), adding ``extra_boxes`` (e.g. tiny boxes) per frame index."""
    from common.utils.video import VideoWriter

    with VideoWriter(video_path, clip.fps, (clip.width, clip.height), crf=12) as w:
        for f in clip.frames:
            w.write(f)
    if boxes_path is not None:
        data = {str(i): [[*p.box, box_score(i, p.person)] for p in people] + list((extra_boxes or {}).get(i, []))
                for i, people in enumerate(clip.people)}
        boxes_path.write_text(json.dumps(data))
    return video_path, boxes_path
