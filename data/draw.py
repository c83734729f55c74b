"""Pictures of datalist entries, to see that a dataset is read right (``python -m main.humandata_tool draw``).

* :func:`draw_entry`: the original image with the entry's valid 2D keypoints (body green, hands yellow, face
  magenta), the body box (red, xywh) and hand / face boxes (blue, xyxy), and the SMPL-X fit posed with its gender,
  taken to the camera like the training targets (R merged into the root; the pelvis moved to ``R pelvis + t``) and
  projected with the entry's ``focal`` / ``princpt`` (vertices as cyan dots). Entries without a fit or without
  intrinsics get no mesh, and the notes say why.
* :func:`draw_training_sample`: what the network is trained on: the augmented 512x384 crop with the keypoint targets
  (hm cells -> crop px; green where valid and inside the crop), the fit's projected joints (cyan) and the hand /
  face box targets (blue).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from common.body_model import joint_sets as js

BODY, HAND, FACE = (40, 220, 40), (250, 210, 0), (230, 40, 230)
BOX_BODY, BOX_PART, MESH, FIT = (230, 30, 30), (40, 90, 250), (0, 200, 230), (0, 200, 230)


class Layers(dict):
    """Gendered SMPL-X layers of one body-model folder, built on first use."""

    def __init__(self, body_model_dir):
        super().__init__()
        self.dir = body_model_dir

    def __missing__(self, gender: str):
        from common.body_model import SMPLXLayer

        self[gender] = SMPLXLayer(self.dir, gender)
        return self[gender]


def _part_colour(j: int) -> tuple[int, int, int]:
    return HAND if j in js.JOINT_PART["hand"] else FACE if j in js.JOINT_PART["face"] else BODY


@torch.no_grad()
def fit_in_camera(entry: dict[str, Any], layers: Layers) -> tuple[np.ndarray, np.ndarray] | None:
    """(vertices (10475, 3), layer joints (144, 3)) of the entry's fit in the camera frame (m), or None."""
    from data.transforms import apply_camera_rotation

    p, cam = entry.get("smplx_param"), entry.get("camera") or {}
    if p is None:
        return None
    r = np.asarray(cam["R"], np.float64).reshape(3, 3) if "R" in cam else None
    t = {k: torch.as_tensor(np.asarray(v, np.float32).reshape(1, -1)) for k, v in (
        ("root", apply_camera_rotation(p["root_pose"], r)), ("body", p["body_pose"]), ("lhand", p["lhand_pose"]),
        ("rhand", p["rhand_pose"]), ("jaw", p["jaw_pose"]), ("shape", p["shape"]), ("expr", p["expr"]),
        ("trans", p["trans"]))}
    v, j = layers[str(p.get("gender", "neutral"))](t["root"], t["body"], t["lhand"], t["rhand"], t["jaw"], t["shape"],
                                                   t["expr"], t["trans"])
    v, j = v[0].double().numpy(), j[0].double().numpy()
    if r is not None and "t" in cam:  # the layer rotated about its own pelvis: move the pelvis as the targets do
        pelvis = j[js.JOINT_IDX[js.ROOT_IDX]]
        shift = r @ pelvis + np.asarray(cam["t"], np.float64).reshape(3) - pelvis
        v, j = v + shift, j + shift
    return v, j


def project(points: np.ndarray, camera: dict[str, Any]) -> np.ndarray:
    """(N, 3) camera-frame m -> (N, 2) px with the entry camera's focal / princpt."""
    f, c = np.asarray(camera["focal"], np.float64).reshape(2), np.asarray(camera["princpt"], np.float64).reshape(2)
    return points[:, :2] / points[:, 2:3] * f + c


def _dots(img: np.ndarray, uv: np.ndarray, colour, radius: int = 3) -> None:
    for x, y in uv:
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(img, (int(round(x)), int(round(y))), radius, colour, -1, cv2.LINE_AA)


def _rect(img: np.ndarray, xyxy, colour, thickness: int = 2) -> None:
    x1, y1, x2, y2 = (int(round(float(v))) for v in xyxy)
    cv2.rectangle(img, (x1, y1), (x2, y2), colour, thickness)


def draw_entry(entry: dict[str, Any], layers: Layers | None) -> tuple[np.ndarray, list[str]]:
    """(RGB uint8 image with the annotations, notes on what was drawn / left out)."""
    from common.utils.image import load_image_uint8

    img = np.ascontiguousarray(load_image_uint8(entry["img_path"]))
    notes = []
    cam = entry.get("camera") or {}
    fit = None
    if entry.get("smplx_param") is None:
        notes.append("no SMPL-X fit: mesh skipped")
    elif not ("focal" in cam and "princpt" in cam):
        notes.append("no camera intrinsics: mesh skipped (the fit's joints are trained through the keypoints)")
    elif layers is None:
        notes.append("no body model: mesh skipped")
    else:
        fit = fit_in_camera(entry, layers)
        verts = fit[0][::4]  # every 4th vertex is plenty for a picture
        _dots(img, project(verts[verts[:, 2] > 1e-6], cam), MESH, 1)
        notes.append("mesh")
    valid = np.asarray(entry["joint_valid"]).reshape(-1) > 0
    for j in np.flatnonzero(valid):
        _dots(img, entry["joint_img"][j:j + 1, :2], _part_colour(j), 3)
    notes.append(f"{int(valid.sum())} keypoints")
    x, y, w, h = (float(v) for v in entry["bbox"])
    _rect(img, (x, y, x + w, y + h), BOX_BODY)
    for part in ("lhand", "rhand", "face"):
        box = entry.get(f"{part}_bbox")
        if box is not None:
            _rect(img, box, BOX_PART)
            notes.append(f"{part} box")
    return img, notes


def draw_training_sample(entry: dict[str, Any], rng: np.random.Generator, model_cfg, layers: Layers
                         ) -> tuple[np.ndarray, list[str]]:
    """(RGB uint8 512x384 crop with the training targets, notes). Needs the body model (targets of the fit)."""
    from data.datasets import collate
    from data.sample import build_sample
    from data.targets import build_model_targets

    inputs, targets, meta = collate([build_sample(entry, rng, True, model_cfg)])
    from data.sample import GENDERS

    needed = {"neutral", GENDERS[int(meta["bm_gender"][0])]}
    targets, meta = build_model_targets(targets, meta, {g: layers[g] for g in needed}, model_cfg)
    img = np.ascontiguousarray((inputs["img"][0].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8))
    h, w = model_cfg.input_img_shape
    cells = np.array([w / model_cfg.output_hm_shape[2], h / model_cfg.output_hm_shape[1]])
    notes = [f"flip {bool(meta['do_flip'][0])}, rotation {float(meta['rot'][0]):.1f} deg"]
    fit_valid = meta["smplx_joint_trunc"][0, :, 0].numpy() > 0
    _dots(img, targets["smplx_joint_img"][0, fit_valid, :2].numpy() * cells, FIT, 2)
    kp_valid = meta["joint_trunc"][0, :, 0].numpy() > 0
    for j in np.flatnonzero(kp_valid):
        _dots(img, targets["joint_img"][0, j:j + 1, :2].numpy() * cells, _part_colour(j), 3)
    notes.append(f"{int(kp_valid.sum())} keypoint targets, {int(fit_valid.sum())} fit joints")
    for part in ("lhand", "rhand", "face"):
        if float(meta[f"{part}_bbox_valid"][0]) > 0:
            c = targets[f"{part}_bbox_center"][0].numpy() * cells
            s = targets[f"{part}_bbox_size"][0].numpy() * cells
            _rect(img, (*(c - s / 2), *(c + s / 2)), BOX_PART)
            notes.append(f"{part} box")
    return img, notes
