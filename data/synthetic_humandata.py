"""A synthetic HumanData set: rendered SMPL-X bodies with exact annotations, for tests and the demo.

:func:`write_synthetic_humandata` poses the SMPL-X layer of a body-model folder (real files or the licence-free
stand-ins of :mod:`common.body_model.synthetic`) with random, plausible parameters, places one or more bodies in
front of a known pinhole camera, paints them onto a textured background and writes, under ``out_dir``::

    images/<split>_<i:06d>.jpg      the rendered images (RGB, JPEG quality 95)
    <name>.npz                      the annotations in the official mmhuman3d HumanData layout (one row per person)
    <name>_camera.json              the camera: {"focal": [fx, fy], "princpt": [cx, cy]} (px)

``<name>`` defaults to ``synthetic_<split>``; ``image_path`` entries are relative to ``out_dir`` (the image root).

Frames and units. The camera frame is OpenCV's: x right, y down, z forward (into the scene), metres; pixels
``u = fx * X / Z + cx``, ``v = fy * Y / Z + cy`` (the original's ``cam2pixel``; pixel centres at integer
coordinates). The body model is y-up, so every root orientation starts with a rotation of pi about x (the body
stands upright, facing the camera), followed by a random turn about the body's vertical axis (|yaw| <= 45 deg) and
a small tilt. The SMPL-X parameters are stored exactly as used: running ``SMPLXLayer(body_model_dir, 'neutral')``
with ``global_orient``, ``body_pose``, ``left/right_hand_pose`` (axis-angle offsets from the mean hand,
``flat_hand_mean=False``), ``jaw_pose``, ``betas``, ``expression`` and ``transl`` gives the camera-frame joints in
``keypoints3d_smplx`` (no extrinsics: the camera sits at the origin).

npz keys (N rows, float32 unless stated):

=============================  ================  =================================================================
``image_path``                 (N,) str          relative to ``out_dir``; two rows share an image when two persons
``bbox_xywh``                  (N, 5)            body box: extent of the projected vertices enlarged x1.2 about its
                                                 centre (the preprocessed-HumanData convention the original undoes
                                                 with ``bbox_ratio * 0.833``), not clipped; 5th value 1
``lhand_bbox_xywh`` ...        (N, 5)            ``rhand_``, ``face_``: tight extent of the projected MANO / FLAME
                                                 vertices (no enlargement: the reader applies ``bbox_ratio``); 5th =
                                                 1 if at least half of the box is inside the image, else 0
``keypoints2d_smplx``          (N, 144, 3)       projected layer joints: u, v px, confidence 1 (also off-image)
``keypoints3d_smplx``          (N, 144, 4)       layer joints: X, Y, Z m camera frame, confidence 1
``keypoints{2,3}d_smplx_mask`` (144,) uint8      1 = keypoint annotated (all, unless ``keypoint_mask`` is given)
``smplx``                      dict              global_orient (N, 3), body_pose (N, 21, 3), left_hand_pose /
                                                 right_hand_pose (N, 15, 3), jaw_pose (N, 3), leye_pose / reye_pose
                                                 (N, 3) zeros, betas (N, 10), expression (N, 10), transl (N, 3)
``meta``                       dict              height, width (N,) int lists (px); focal, princpt (N, 2) lists
                                                 (px, the same camera for every row); gender ['neutral'] * N
``__keypoints_compressed__``   bool              False, or True with ``compressed=True``: the keypoint arrays then
                                                 hold only the mask==1 columns (N, m, d), as mmhuman3d compresses
``__data_len__``, ``config``   int, str          N, 'synthetic_smplerx'
=============================  ================  =================================================================

With a ``keypoint_mask``, masked-out keypoints are zeros in the uncompressed file (as mmhuman3d's decompression
produces), so decompressing the compressed file gives exactly the uncompressed arrays.

Everything is a pure function of ``seed``: image ``i`` draws from ``np.random.default_rng([seed, i])`` (its
background from ``[seed, i, 1]``, see :func:`synthetic_background`), so the first ``k`` images' parameters do not
depend on ``n`` (their geometry only up to float32 rounding of the batched layer).

Command line: ``python -m data.synthetic_humandata OUT_DIR --body-model-dir DIR [--n N] [--seed S] [--split S]
[--height H] [--width W] [--max-persons K] [--compressed]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from common import paths
from common.utils.io import atomic_open, save_json

LAYER_JOINTS = 144
BODY_BOX_SCALE = 1.2  # the preprocessed-HumanData body-box enlargement (facts 4.2: the reader multiplies by 0.833)
FOCAL_PER_PX = 1.0  # focal length in units of the image's longer side (53 deg horizontal field of view at 4:3)
HEIGHT_FRACTION = (0.3, 0.8)  # projected body height / image height
MAX_YAW = math.radians(45.0)  # turn about the body's vertical axis, away from facing the camera
MAX_TILT = math.radians(8.0)  # forward/sideways lean of the whole body
BOX_MARGIN = 0.02  # keep projected bodies this fraction of the image size away from the border when they fit
JPEG_QUALITY = 95

# Uniform ranges (radians) of the body-pose axis-angle components per SMPL-X joint (1-21), in the joint's parent
# frame of the y-up body model (+x the subject's left, +z the front). Signs: hip flexion (leg forward) is -x, knee
# flexion +x, left-arm lowering -z (right +z), elbow flexion -y on the left (+y right). Unlisted joints stay 0.
_POSE_RANGES: dict[int, tuple[tuple[float, float], ...]] = {
    1: ((-0.7, 0.2), (-0.2, 0.2), (-0.1, 0.35)),  # L_Hip
    2: ((-0.7, 0.2), (-0.2, 0.2), (-0.35, 0.1)),  # R_Hip
    3: ((-0.1, 0.3), (-0.15, 0.15), (-0.1, 0.1)),  # Spine_1
    4: ((0.0, 1.2), (-0.05, 0.05), (-0.05, 0.05)),  # L_Knee
    5: ((0.0, 1.2), (-0.05, 0.05), (-0.05, 0.05)),  # R_Knee
    6: ((-0.1, 0.1), (-0.1, 0.1), (-0.1, 0.1)),  # Spine_2
    7: ((-0.3, 0.3), (-0.1, 0.1), (-0.1, 0.1)),  # L_Ankle
    8: ((-0.3, 0.3), (-0.1, 0.1), (-0.1, 0.1)),  # R_Ankle
    9: ((-0.1, 0.1), (-0.1, 0.1), (-0.1, 0.1)),  # Spine_3
    12: ((-0.2, 0.3), (-0.3, 0.3), (-0.15, 0.15)),  # Neck
    13: ((-0.1, 0.1), (-0.1, 0.1), (-0.1, 0.1)),  # L_Collar
    14: ((-0.1, 0.1), (-0.1, 0.1), (-0.1, 0.1)),  # R_Collar
    15: ((-0.2, 0.3), (-0.4, 0.4), (-0.2, 0.2)),  # Head
    16: ((-0.4, 0.4), (-0.6, 0.6), (-1.3, 0.3)),  # L_Shoulder
    17: ((-0.4, 0.4), (-0.6, 0.6), (-0.3, 1.3)),  # R_Shoulder
    18: ((0.0, 0.0), (-1.8, 0.0), (0.0, 0.0)),  # L_Elbow
    19: ((0.0, 0.0), (0.0, 1.8), (0.0, 0.0)),  # R_Elbow
    20: ((-0.4, 0.4), (-0.4, 0.4), (-0.4, 0.4)),  # L_Wrist
    21: ((-0.4, 0.4), (-0.4, 0.4), (-0.4, 0.4)),  # R_Wrist
}
HAND_POSE_STD, HAND_POSE_MAX = 0.15, 0.4  # finger offsets from the mean hand (rad)
JAW_OPEN = (0.0, 0.3)  # jaw x rotation (rad)
BETA_MAX, EXPR_MAX = 2.0, 2.0  # |betas| <= 2 (the sample pipeline zeroes shapes with any |beta| > 3)

# Clothing regions by the dominant skinning joint: legs/feet -> trousers, head/neck/jaw/eyes and hands -> skin.
_TROUSER_JOINTS = (0, 1, 2, 4, 5, 7, 8, 10, 11)
_SKIN_JOINTS = (12, 15, 22, 23, 24, 20, 21, *range(25, 55))
_SKIN_TONES = ((236, 192, 160), (214, 160, 120), (176, 122, 86), (128, 86, 60))
_LIGHT_DIR = np.array([-0.3, -0.5, -1.0]) / np.linalg.norm([-0.3, -0.5, -1.0])  # towards the light, camera frame
_AMBIENT = 0.4


def camera_for(img_size: tuple[int, int]) -> dict[str, list[float]]:
    """The pinhole camera of a ``(height, width)`` image: ``focal`` (fx, fy) and ``princpt`` (cx, cy), px."""
    h, w = img_size
    f = FOCAL_PER_PX * max(h, w)
    return {"focal": [float(f), float(f)], "princpt": [w / 2.0, h / 2.0]}


def project(points: np.ndarray, focal: Sequence[float], princpt: Sequence[float]) -> np.ndarray:
    """(..., 3) camera-frame points (m, Z > 0) -> (..., 2) pixels ``(f * X / Z + c)``."""
    p = np.asarray(points, dtype=np.float64)
    return p[..., :2] / p[..., 2:3] * np.asarray(focal, np.float64) + np.asarray(princpt, np.float64)


def synthetic_background(seed: int, index: int, img_size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB background of image ``index``: a muted cool-toned vertical gradient, a darker floor,
    low-frequency blotches and fine grain. Muted and cool so that saturated clothing and skin stand out."""
    h, w = img_size
    rng = np.random.default_rng([seed, index, 1])
    hue = rng.uniform(150.0, 260.0)  # green-cyan-blue: never skin-coloured
    top = _hsv_to_rgb(hue, rng.uniform(0.1, 0.3), rng.uniform(0.45, 0.62))
    bottom = _hsv_to_rgb(hue + rng.uniform(-20, 20), rng.uniform(0.1, 0.3), rng.uniform(0.35, 0.5))
    horizon = rng.uniform(0.55, 0.8) * h
    y = np.arange(h, dtype=np.float64)[:, None, None]
    wall = top * (1.0 - 0.15 * y / h)
    floor = bottom * (1.0 - 0.1 * (y - horizon) / h)
    img = np.where(y < horizon, wall, floor) * np.ones((1, w, 1))
    # blotches: mostly brightness (grey), a little colour, so the background stays muted
    blotches = rng.normal(0.0, 1.0, (6, 8, 3)).astype(np.float32) * [4.0, 4.0, 4.0] + rng.normal(0.0, 12.0, (6, 8, 1))
    img += cv2.resize(blotches.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0.0, 2.0, (h, w, 1))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _hsv_to_rgb(hue_deg: float, sat: float, val: float) -> np.ndarray:
    hsv = np.array([[[hue_deg % 360.0 / 2.0, sat * 255.0, val * 255.0]]], np.float32)  # OpenCV: H in [0, 180)
    return cv2.cvtColor(np.rint(hsv).astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)


def _rot(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _rotvec(r: np.ndarray) -> np.ndarray:
    """Rotation matrix -> axis-angle (3,), via OpenCV's Rodrigues (handles angles near pi)."""
    return cv2.Rodrigues(np.asarray(r, np.float64))[0][:, 0]


def sample_smplx_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One person's SMPL-X parameters (float64, HumanData names and shapes, ``transl`` not yet set).

    ``global_orient`` (3,) = rotvec(R_x(pi) R_y(yaw) R_z(roll) R_x(pitch)): upright and facing the camera, turned by
    ``|yaw| <= 45 deg``, leaning ``<= 8 deg``; body_pose (21, 3) uniform in the per-joint ranges; hand poses (15, 3)
    offsets from the mean hand; jaw (3,) opening only; betas, expression (10,) normal, clipped to +-2.
    """
    upright = _rot(0, math.pi)  # y-up body model -> y-down camera frame; the front (+z) then faces -z, the camera
    yaw = rng.uniform(-MAX_YAW, MAX_YAW)
    lean = _rot(2, rng.uniform(-MAX_TILT, MAX_TILT)) @ _rot(0, rng.uniform(-MAX_TILT, MAX_TILT))
    body_pose = np.zeros((21, 3))
    for joint, ranges in _POSE_RANGES.items():
        body_pose[joint - 1] = [rng.uniform(lo, hi) if hi > lo else lo for lo, hi in ranges]
    hands = np.clip(rng.normal(0.0, HAND_POSE_STD, (2, 15, 3)), -HAND_POSE_MAX, HAND_POSE_MAX)
    return {
        "global_orient": _rotvec(upright @ _rot(1, yaw) @ lean),
        "body_pose": body_pose,
        "left_hand_pose": hands[0],
        "right_hand_pose": hands[1],
        "jaw_pose": np.array([rng.uniform(*JAW_OPEN), 0.0, 0.0]),
        "betas": np.clip(rng.normal(0.0, 1.0, 10), -BETA_MAX, BETA_MAX),
        "expression": np.clip(rng.normal(0.0, 1.0, 10), -EXPR_MAX, EXPR_MAX),
    }


def _run_layer(layer: Any, params: list[dict[str, np.ndarray]], transl: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (B, V, 3), joints (B, 144, 3)) float32 numpy for a list of parameter dicts."""
    def t(key: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([p[key].reshape(-1) for p in params]).astype(np.float32))

    with torch.no_grad():
        v, j = layer(t("global_orient"), t("body_pose"), t("left_hand_pose"), t("right_hand_pose"), t("jaw_pose"),
                     t("betas"), t("expression"),
                     None if transl is None else torch.from_numpy(np.asarray(transl, np.float32)))
    return v.numpy(), j.numpy()


def _place(verts: np.ndarray, rng: np.random.Generator, camera: dict[str, list[float]], img_size: tuple[int, int],
           strip: tuple[float, float]) -> np.ndarray:
    """Translation (3,) m putting an oriented, untranslated body ``verts`` (V, 3) at a random depth where its
    projection is ``HEIGHT_FRACTION`` of the image height tall, horizontally inside ``strip`` (u range, px) and
    inside the image when it fits."""
    h, w = img_size
    f, c = camera["focal"], camera["princpt"]
    lo, hi = verts.min(0), verts.max(0)
    centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, verts[:, 2].mean()])
    target = rng.uniform(*HEIGHT_FRACTION) * h
    z = f[1] * (hi[1] - lo[1]) / target
    for _ in range(3):  # perspective: the projected height is only ~ f * height / z; rescale the depth
        uv = project(verts - centre + [0.0, 0.0, z], f, c)
        z *= np.ptp(uv[:, 1]) / target
    uv = project(verts - centre + [0.0, 0.0, z], f, c)
    size, mid = np.ptp(uv, axis=0), (uv.min(0) + uv.max(0)) / 2
    margin = BOX_MARGIN * np.array([w, h])
    goal = np.empty(2)
    for axis, (a, b) in enumerate((strip, (0.0, float(h)))):
        lo_c, hi_c = a + size[axis] / 2 + margin[axis], b - size[axis] / 2 - margin[axis]
        goal[axis] = rng.uniform(lo_c, hi_c) if hi_c > lo_c else (a + b) / 2
    shift = (goal - mid) * z / np.asarray(f)  # pixels -> metres at the body's depth
    return np.array([shift[0], shift[1], z]) - centre


def _paint(img: np.ndarray, verts: Sequence[np.ndarray], faces: np.ndarray, colours: Sequence[np.ndarray],
           camera: dict[str, list[float]]) -> np.ndarray:
    """Paint camera-frame meshes onto ``img`` (H, W, 3) uint8 RGB in place (and return it).

    Painter's algorithm over the front-facing triangles of all meshes together (sorted far to near by centroid
    depth, so bodies occlude each other), Lambert shading with ambient light. ``colours``: (F, 3) per-face RGB per
    mesh. Back faces are skipped: the meshes are closed with outward normals, so they are hidden anyway.
    """
    tris, cols = [], []
    for v, col in zip(verts, colours):
        tri = np.asarray(v, np.float64)[faces]  # (F, 3, 3)
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
        centroid = tri.mean(1)
        front = np.einsum("ij,ij->i", normal, centroid) < 0  # facing the camera at the origin
        light = np.clip(normal[front] @ _LIGHT_DIR, 0.0, 1.0)
        tris.append(tri[front])
        cols.append(col[front] * (_AMBIENT + (1 - _AMBIENT) * light)[:, None])
    tri, col = np.concatenate(tris), np.concatenate(cols)
    order = np.argsort(-tri[:, :, 2].mean(1), kind="stable")
    pts = np.round(project(tri, camera["focal"], camera["princpt"]) * 16).astype(np.int32)  # 4 sub-pixel bits
    col = np.clip(np.rint(col), 0, 255).astype(np.int64)
    for i in order:
        cv2.fillConvexPoly(img, pts[i], tuple(int(x) for x in col[i]), cv2.LINE_8, 4)
    return img


def _face_colours(part: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(F, 3) RGB per face from its region code (0 shirt, 1 trousers, 2 skin), random outfit and skin tone."""
    shirt = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.55, 0.9), rng.uniform(0.6, 0.95))
    trousers = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.5, 0.9), rng.uniform(0.35, 0.7))
    skin = np.asarray(_SKIN_TONES[rng.integers(len(_SKIN_TONES))], np.float64)
    return np.stack([shirt, trousers, skin])[part]


def _face_regions(layer: Any) -> np.ndarray:
    """(F,) region code of every face from the dominant skinning joint of its first vertex."""
    joint = layer.model.lbs_weights.detach().cpu().numpy().argmax(1)[layer.faces[:, 0]]
    region = np.zeros(len(joint), np.int64)
    region[np.isin(joint, _TROUSER_JOINTS)] = 1
    region[np.isin(joint, _SKIN_JOINTS)] = 2
    return region


def _extent_xywh(uv: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(4,) xywh of the extent of (K, 2) pixels, enlarged ``scale`` x about its centre."""
    lo, hi = uv.min(0), uv.max(0)
    mid, size = (lo + hi) / 2, (hi - lo) * scale
    return np.array([*(mid - size / 2), *size])


def _inside_fraction(xywh: np.ndarray, img_size: tuple[int, int]) -> float:
    x, y, w, h = xywh
    iw = max(0.0, min(x + w, img_size[1]) - max(x, 0.0))
    ih = max(0.0, min(y + h, img_size[0]) - max(y, 0.0))
    return iw * ih / (w * h) if w * h > 0 else 0.0


def write_synthetic_humandata(out_dir: str | Path, body_model_dir: str | Path, n: int = 16, seed: int = 0,
                              img_size: tuple[int, int] = (480, 640), split: str = "train", *,
                              max_persons: int = 1, compressed: bool = False,
                              keypoint_mask: np.ndarray | Sequence[int] | None = None,
                              name: str | None = None) -> Path:
    """Render ``n`` images and write the HumanData file (layout in the module docstring); returns the ``.npz`` path.

    ``body_model_dir``: folder with ``smplx/SMPLX_NEUTRAL.npz`` and the evaluation files (the hand / face vertex
    ids). ``img_size``: (height, width) px. ``max_persons`` (1-3): each image shows 1 to ``max_persons`` people,
    side by side in vertical strips (one row each). ``compressed``: store only the ``keypoint_mask``-ed columns,
    ``__keypoints_compressed__`` True. ``keypoint_mask``: (144,) 0/1, default all ones. Files are written atomically.
    """
    from common.body_model import SMPLXLayer, load_eval_assets

    if n < 1 or not 1 <= max_persons <= 3:
        raise ValueError(f"need n >= 1 and 1 <= max_persons <= 3, got n={n}, max_persons={max_persons}")
    mask = np.ones(LAYER_JOINTS, np.uint8) if keypoint_mask is None else np.asarray(keypoint_mask).astype(np.uint8)
    if mask.shape != (LAYER_JOINTS,) or not np.isin(mask, (0, 1)).all():
        raise ValueError(f"keypoint_mask must be ({LAYER_JOINTS},) zeros and ones")
    out_dir = Path(out_dir)
    name = name or f"synthetic_{split}"
    h, w = img_size
    camera = camera_for(img_size)
    layer = SMPLXLayer(body_model_dir, "neutral")
    assets = load_eval_assets(body_model_dir)
    regions = _face_regions(layer)

    # draw every image's people first (parameters from the image's own stream), then pose them in one batch
    rngs = [np.random.default_rng([seed, i]) for i in range(n)]
    counts = [int(r.integers(1, max_persons + 1)) for r in rngs]
    params = [sample_smplx_params(rngs[i]) for i in range(n) for _ in range(counts[i])]
    verts, _ = _run_layer(layer, params)
    transl, image_of, k = np.zeros((len(params), 3)), [], 0
    for i, count in enumerate(counts):
        for slot in range(count):
            strip = (w * slot / count, w * (slot + 1) / count)
            transl[k] = _place(verts[k].astype(np.float64), rngs[i], camera, img_size, strip)
            image_of.append(i)
            k += 1
    # the stored keypoints come from running the layer with the stored parameters, exactly as a reader would
    verts, joints = _run_layer(layer, params, transl.astype(np.float32))

    rows = len(params)
    image_path = np.array([f"images/{split}_{i:06d}.jpg" for i in image_of])
    boxes = {key: np.zeros((rows, 5), np.float32) for key in ("bbox_xywh", "lhand_bbox_xywh", "rhand_bbox_xywh",
                                                               "face_bbox_xywh")}
    vertex_sets = {"lhand_bbox_xywh": assets.hand_vertex_idx["left"],
                   "rhand_bbox_xywh": assets.hand_vertex_idx["right"], "face_bbox_xywh": assets.face_vertex_idx}
    for r in range(rows):
        uv = project(verts[r], camera["focal"], camera["princpt"])
        boxes["bbox_xywh"][r] = [*_extent_xywh(uv, BODY_BOX_SCALE), 1.0]
        for key, idx in vertex_sets.items():
            box = _extent_xywh(uv[idx])
            boxes[key][r] = [*box, float(_inside_fraction(box, img_size) >= 0.5)]

    for i in range(n):
        people = [r for r in range(rows) if image_of[r] == i]
        img = synthetic_background(seed, i, img_size)
        _paint(img, [verts[r] for r in people], layer.faces, [_face_colours(regions, rngs[i]) for _ in people],
               camera)
        with atomic_open(out_dir / image_path[people[0]], "wb") as fh:
            ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise OSError(f"cannot encode {image_path[people[0]]}")
            fh.write(buf.tobytes())

    kp3d = np.concatenate([joints, np.ones((rows, LAYER_JOINTS, 1), np.float32)], axis=2).astype(np.float32)
    kp2d = np.concatenate([project(joints, camera["focal"], camera["princpt"]),
                           np.ones((rows, LAYER_JOINTS, 1))], axis=2).astype(np.float32)
    kp3d[:, mask == 0] = 0.0
    kp2d[:, mask == 0] = 0.0
    if compressed:
        kp3d, kp2d = kp3d[:, mask == 1], kp2d[:, mask == 1]

    def stack(key: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.stack([p[key] for p in params]).reshape(rows, *shape).astype(np.float32)

    smplx = {"global_orient": stack("global_orient", (3,)), "body_pose": stack("body_pose", (21, 3)),
             "left_hand_pose": stack("left_hand_pose", (15, 3)), "right_hand_pose": stack("right_hand_pose", (15, 3)),
             "jaw_pose": stack("jaw_pose", (3,)), "leye_pose": np.zeros((rows, 3), np.float32),
             "reye_pose": np.zeros((rows, 3), np.float32), "betas": stack("betas", (10,)),
             "expression": stack("expression", (10,)), "transl": transl.astype(np.float32)}
    meta = {"height": [h] * rows, "width": [w] * rows, "focal": [list(camera["focal"])] * rows,
            "princpt": [list(camera["princpt"])] * rows, "gender": ["neutral"] * rows}
    content: dict[str, Any] = {
        "image_path": image_path, **boxes,
        "keypoints2d_smplx": kp2d, "keypoints2d_smplx_mask": mask.copy(),
        "keypoints3d_smplx": kp3d, "keypoints3d_smplx_mask": mask.copy(),
        "smplx": smplx, "meta": meta,
        "__keypoints_compressed__": np.bool_(compressed), "__data_len__": np.int64(rows),
        "config": np.array("synthetic_smplerx"),
    }
    npz_path = out_dir / f"{name}.npz"
    with atomic_open(npz_path, "wb") as fh:
        np.savez_compressed(fh, **content)
    save_json(out_dir / f"{name}_camera.json", camera)
    return npz_path


def prepare_synthetic_dataset(data_root: str | Path, body_model_dir: str | Path, n_train: int = 32, n_test: int = 8,
                              seed: int = 0) -> dict[str, Path]:
    """Write the catalog's ``Synthetic`` dataset under ``data_root`` in the usual layout: images in
    ``<data_root>/Synthetic/images/``, annotations ``<data_root>/preprocessed_datasets/synthetic_{train,test}.npz``.

    Splits use different seeds (different people). Existing files are kept (delete the folders to regenerate).
    """
    root = Path(data_root)
    out = {}
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        target = root / "preprocessed_datasets" / f"synthetic_{split}.npz"
        if not target.is_file():
            written = write_synthetic_humandata(root / "Synthetic", body_model_dir, n=n, seed=s, split=split)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(written, target)
        out[split] = target
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.synthetic_humandata", description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path, help="output folder (images/ and the .npz go there)")
    ap.add_argument("--body-model-dir", type=Path, default=paths.BODY_MODEL_DIR,
                    help="folder holding smplx/ (real files or `python -m common.body_model.synthetic DIR`)")
    ap.add_argument("--n", type=int, default=16, help="number of images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="train")
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--max-persons", type=int, default=1, help="1-3 people per image")
    ap.add_argument("--compressed", action="store_true", help="write compressed keypoints (with masks)")
    args = ap.parse_args(argv)
    from common.errors import UserError

    try:
        path = write_synthetic_humandata(args.out_dir, args.body_model_dir, n=args.n, seed=args.seed,
                                         img_size=(args.height, args.width), split=args.split,
                                         max_persons=args.max_persons, compressed=args.compressed)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with np.load(path, allow_pickle=True) as z:
        rows = len(z["image_path"])
    camera = json.loads(path.with_name(f"{path.stem}_camera.json").read_text())
    print(f"wrote {args.n} images to {args.out_dir / 'images'}, {rows} HumanData rows to {path} and the camera "
          f"{camera} to {path.with_name(path.stem + '_camera.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
