"""AGORA submission files (facts sheet section 6): one pickle per person in ``predictions/``.

Each file ``<image_stem>_personId_<k>.pkl`` holds ``{'params': {transl, global_orient, body_pose, left_hand_pose,
right_hand_pose, reye_pose, leye_pose, jaw_pose, expression, betas} (each (1, n)), 'joints': (1, 144, 2)}``: the
projected 144 SMPL-X layer joints in 3840x2160 pixels, ``transl`` the network's camera translation. The person
index counts the people of one image in the order they are evaluated (the original's validation path gave every
person index 0, so later people overwrote earlier ones; fixed).
"""

from __future__ import annotations

import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np

from common.utils.io import atomic_open

AGORA_RESOLUTION = (2160, 3840)  # (h, w) of the official images


def image_stem(img_path: str, split: str) -> str:
    """Crop file name -> the official image stem: cut at ``_pid`` (test) or ``_ann_id`` (val), 4K crops."""
    stem = Path(img_path).stem
    marker = "_pid" if split == "test" else "_ann_id"
    return stem.split(marker)[0] if marker in stem else stem.split("_1280x720")[0]


def joints_to_image(joint_proj_hm: np.ndarray, bb2img: np.ndarray, resolution=AGORA_RESOLUTION,
                    hm_shape=(16, 12), input_img_shape=(512, 384)) -> np.ndarray:
    """(144, 2) projected joints in body heat-map cells -> (144, 2) px of the 3840x2160 image."""
    x = joint_proj_hm[:, 0] / hm_shape[1] * input_img_shape[1]
    y = joint_proj_hm[:, 1] / hm_shape[0] * input_img_shape[0]
    homo = np.stack([x, y, np.ones_like(x)], 1)
    img = homo @ np.asarray(bb2img, dtype=np.float64).T
    return img * np.array([3840.0 / resolution[1], 2160.0 / resolution[0]])


def prediction_dict(out: dict[str, np.ndarray], joints_px: np.ndarray) -> dict:
    """The official per-person dict from one sample's network outputs (original test-mode keys)."""
    params = {"transl": out["cam_trans"], "global_orient": out["smplx_root_pose"], "body_pose": out["smplx_body_pose"],
              "left_hand_pose": out["smplx_lhand_pose"], "right_hand_pose": out["smplx_rhand_pose"],
              "reye_pose": np.zeros(3), "leye_pose": np.zeros(3), "jaw_pose": out["smplx_jaw_pose"],
              "expression": out["smplx_expr"], "betas": out["smplx_shape"]}
    return {"params": {k: np.asarray(v).reshape(1, -1) for k, v in params.items()},
            "joints": np.asarray(joints_px).reshape(1, -1, 2)}


class SubmissionWriter:
    """Writes ``predictions/<stem>_personId_<k>.pkl`` files, numbering the people of each image 0, 1, 2, ..."""

    def __init__(self, out_dir: str | Path, split: str):
        self.dir = Path(out_dir) / "predictions"
        self.split = split
        self.count: dict[str, int] = defaultdict(int)

    def add(self, img_path: str, out: dict[str, np.ndarray], joints_px: np.ndarray,
            person_idx: int | None = None) -> Path:
        stem = image_stem(img_path, self.split)
        if person_idx is None:
            person_idx = self.count[stem]
        self.count[stem] = max(self.count[stem], person_idx + 1)
        path = self.dir / f"{stem}_personId_{person_idx}.pkl"
        with atomic_open(path, "wb") as f:
            pickle.dump(prediction_dict(out, joints_px), f, protocol=2)
        return path


def read_prediction(path: str | Path) -> dict:
    """A submission file's dict (numpy arrays and numbers), read with the allow-list (no code from the file)."""
    from common.utils.safe_pickle import safe_load

    with open(path, "rb") as f:
        return safe_load(f)
