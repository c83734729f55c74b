"""MPII: 16 2D body keypoints with NeuralAnnot SMPL-X fits (a training set).

Files (under the data root)::

    MPII/data/annotations/train.json                        COCO-style: images {id, file_name, width, height};
                                                            annotations {id, image_id, bbox (xywh), keypoints (16 x 3:
                                                            x, y px, valid)}
    MPII/data/annotations/MPII_train_SMPLX_NeuralAnnot.json {"<annotation id>": {"smplx_param": {...}, "cam_param":
                                                            {focal, princpt}}}
    MPII/data/<file_name>

As the original: the body box is processed with ``bbox_ratio``; the keypoints named like the 137-set joints are
used (``Thorax`` and ``Head_top`` have no slot); the fit's ankle and wrist rotations and its foot joints are not
trusted (zero validity); no hand / face boxes; 2D only (``is_3D`` 0).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from common.body_model import joint_sets as js
from common.errors import ConfigError, InputError
from common.utils.image import process_bbox
from data.catalog import DatasetSpec, resolve_files, resolve_img_dir
from data.formats.base import EntryRecords, EvalContext, read_coco, read_json
from data.formats.coco_wholebody import neural_annot_fit

MPII_NAMES = ("R_Ankle", "R_Knee", "R_Hip", "L_Hip", "L_Knee", "L_Ankle", "Pelvis", "Thorax", "Neck", "Head_top",
              "R_Wrist", "R_Elbow", "R_Shoulder", "L_Shoulder", "L_Elbow", "L_Wrist")
_TO_137 = [(i, js.JOINTS_NAME.index(n)) for i, n in enumerate(MPII_NAMES) if n in js.JOINTS_NAME]
UNTRUSTED_ROTATIONS = ("L_Ankle", "R_Ankle", "L_Wrist", "R_Wrist")
UNTRUSTED_JOINTS = ("L_Big_toe", "L_Small_toe", "L_Heel", "R_Big_toe", "R_Small_toe", "R_Heel")


def load(spec: DatasetSpec, split: str, *, data_root=None, sample_interval: int = 1, bbox_ratio: float = 1.2,
         body_model_dir=None) -> EntryRecords:
    """MPII's training split as entries (module docstring); every ``sample_interval``-th annotation is kept."""
    annot_path, fit_path = resolve_files(spec, split, data_root)
    img_dir = resolve_img_dir(spec, data_root)
    images, anns = read_coco(annot_path, "MPII")
    fits = read_json(fit_path, "MPII")
    entries, skipped = [], Counter()
    for k, ann in enumerate(anns):
        if (k + 1) % max(1, sample_interval):
            continue
        try:
            img = images[int(ann["image_id"])]
            w, h = int(img["width"]), int(img["height"])
            bbox = process_bbox(np.asarray(ann["bbox"], np.float64), w, h, ratio=bbox_ratio)
            if bbox is None:
                skipped["invalid_bbox"] += 1
                continue
            kps = np.asarray(ann["keypoints"], np.float32).reshape(len(MPII_NAMES), 3)
            raw = fits.get(str(ann["id"]))
        except (KeyError, ValueError) as err:
            raise InputError(f"{annot_path} annotation {ann.get('id', k)}: {type(err).__name__} {err} (needs "
                             "image_id, bbox and 16 x 3 keypoints)") from err
        joint_img = np.zeros((js.JOINT_NUM, 3), np.float32)
        joint_valid = np.zeros((js.JOINT_NUM, 1), np.float32)
        for src, dst in _TO_137:
            joint_img[dst, :2] = kps[src, :2]
            joint_valid[dst, 0] = float(kps[src, 2] > 0)
        param, camera = (None, {})
        if raw is not None:
            param, camera = neural_annot_fit(raw, {}, f"{fit_path} entry {ann['id']}")
            param["invalid_rotations"], param["invalid_joints"] = UNTRUSTED_ROTATIONS, UNTRUSTED_JOINTS
        entries.append({
            "img_path": str(img_dir / str(img["file_name"])), "img_shape": (h, w), "bbox": bbox,
            "lhand_bbox": None, "rhand_bbox": None, "face_bbox": None, "joint_img": joint_img, "joint_cam": None,
            "joint_valid": joint_valid, "smplx_param": param, "camera": camera, "dataset": spec.name,
            "index": int(ann["id"]),
        })
    return EntryRecords(spec.name, split, entries, skipped)


def make_evaluator(split: str, ctx: EvalContext):
    raise ConfigError("MPII has no SMPL-X ground truth to evaluate against: it is a training set")


def write_synthetic_mpii(data_root: str | Path, body_model_dir: str | Path, n: int = 3, seed: int = 0,
                         img_size: tuple[int, int] = (480, 640)) -> dict[str, Any]:
    """``MPII/data/`` in the official layout: ``n`` rendered people (the last without a fit; R_Knee of the first
    marked invisible). Returns ``{'joints2d': {id: (144, 2)}}``."""
    import cv2

    from common.body_model import SMPLXLayer, load_eval_assets
    from common.utils.io import save_json
    from data import synthetic_humandata as sh
    from data.formats.coco_wholebody import synthetic_person

    root = Path(data_root) / "MPII" / "data"
    (root / "images").mkdir(parents=True, exist_ok=True)
    layer = SMPLXLayer(body_model_dir, "neutral")
    assets = load_eval_assets(body_model_dir)
    regions = sh._face_regions(layer)
    images, anns, fits, truth = [], [], {}, {}
    for i in range(n):
        img, wb_ann, fit, uv = synthetic_person(layer, assets, regions, np.random.default_rng([seed, i]), img_size,
                                                i, sh.synthetic_background(seed, i, img_size))
        name = f"images/{i:09d}.jpg"
        cv2.imwrite(str(root / name), img[:, :, ::-1])
        kps = np.zeros((len(MPII_NAMES), 3), np.float32)
        for j, joint in enumerate(MPII_NAMES):
            if joint in js.JOINTS_NAME:
                kps[j] = [*uv[js.JOINT_IDX[js.JOINTS_NAME.index(joint)]], 1.0]
        if i == 0:
            kps[MPII_NAMES.index("R_Knee"), 2] = 0
        images.append({"id": i, "file_name": name, "width": img_size[1], "height": img_size[0]})
        anns.append({"id": i, "image_id": i, "bbox": wb_ann["bbox"], "keypoints": kps.reshape(-1).tolist()})
        if i < n - 1:
            fits[str(i)] = fit
        truth[i] = uv
    save_json(root / "annotations" / "train.json", {"images": images, "annotations": anns})
    save_json(root / "annotations" / "MPII_train_SMPLX_NeuralAnnot.json", fits)
    return {"joints2d": truth}
