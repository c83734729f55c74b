"""MSCOCO: COCO-WholeBody 2D keypoints with the NeuralAnnot SMPL-X fits (a training set; 2D keypoints only).

Files (under the data root)::

    MSCOCO/annotations/coco_wholebody_train_v1.0.json          COCO-WholeBody (keys as in data/formats/ubody.py,
                                                              plus ``face_box``)
    MSCOCO/annotations/MSCOCO_train_SMPLX_all_NeuralAnnot.json {"<annotation id>": {"smplx_param": {...},
                                                              "cam_param": {focal, princpt}}}
    MSCOCO/annotations/coco_wholebody_val_v1.0.json            (test split: keypoints only, no fits)
    MSCOCO/images/{train2017,val2017}/<file_name>

As the original: crowd and keypoint-less annotations are skipped; the body box is processed with ``bbox_ratio``,
hand / face boxes with the aspect 0.75 and ``bbox_ratio``; joint validity = visibility > 0 with the hand-wrist /
face-18 fill rule; an annotation without a fit still trains its 2D keypoints. There is no SMPL-X ground truth to
evaluate against, so MSCOCO has no benchmark evaluator.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import ConfigError, InputError
from common.utils.image import process_bbox
from data.catalog import DatasetSpec, resolve_files, resolve_img_dir
from data.formats.base import EntryRecords, EvalContext, read_coco, read_json
from data.formats.coco_wholebody import neural_annot_fit, to_supervision_set, wholebody_joints


def _part_box(ann: dict[str, Any], key: str, w: int, h: int, ratio: float) -> np.ndarray | None:
    if not ann[f"{key}_valid"]:
        return None
    box = process_bbox(np.asarray(ann[f"{key}_box"], np.float64).reshape(4), w, h, ratio=ratio)
    if box is None:
        return None
    box = box.astype(np.float32)
    box[2:] += box[:2]
    return box


def load(spec: DatasetSpec, split: str, *, data_root=None, sample_interval: int = 1, bbox_ratio: float = 1.2,
         body_model_dir=None) -> EntryRecords:
    """MSCOCO ``split`` as entries (module docstring); every ``sample_interval``-th annotation is kept."""
    files = resolve_files(spec, split, data_root)
    img_dir = resolve_img_dir(spec, data_root) / ("train2017" if split == "train" else "val2017")
    images, anns = read_coco(files[0], "MSCOCO")
    fits = read_json(files[1], "MSCOCO") if split == "train" else {}
    entries, skipped = [], Counter()
    for k, ann in enumerate(anns):
        if (k + 1) % max(1, sample_interval):
            continue
        where = f"{files[0]} annotation {ann.get('id', k)}"
        try:
            if ann["iscrowd"] or ann["num_keypoints"] == 0:
                skipped["crowd_or_no_keypoints"] += 1
                continue
            img = images[int(ann["image_id"])]
            w, h = int(img["width"]), int(img["height"])
            bbox = process_bbox(np.asarray(ann["bbox"], np.float64), w, h, ratio=bbox_ratio)
            if bbox is None:
                skipped["invalid_bbox"] += 1
                continue
            joint_img, joint_valid = to_supervision_set(wholebody_joints(ann))
            boxes = {part: _part_box(ann, key, w, h, bbox_ratio)
                     for part, key in (("lhand", "lefthand"), ("rhand", "righthand"), ("face", "face"))}
            raw = fits.get(str(ann["id"]))
            param, camera = neural_annot_fit(raw, ann, f"{files[1]} entry {ann['id']}") if raw else (None, {})
        except KeyError as err:
            raise InputError(f"{where} lacks {err}; see data/formats/mscoco.py for the expected keys") from err
        entries.append({
            "img_path": str(img_dir / str(img["file_name"])), "img_shape": (h, w), "bbox": bbox,
            "lhand_bbox": boxes["lhand"], "rhand_bbox": boxes["rhand"], "face_bbox": boxes["face"],
            "joint_img": joint_img, "joint_cam": None, "joint_valid": joint_valid, "smplx_param": param,
            "camera": camera, "dataset": spec.name, "index": int(ann["id"]),
        })
    with_fit = sum(e["smplx_param"] is not None for e in entries)
    return EntryRecords(spec.name, split, entries, skipped,
                        {"with_fit": with_fit, "without_fit (2D keypoints only)": len(entries) - with_fit})


def make_evaluator(split: str, ctx: EvalContext):
    raise ConfigError("MSCOCO has no SMPL-X ground truth to evaluate against: it is a training set (benchmarks: "
                      "EHF, AGORA, UBody, PW3D, EgoBody_Egocentric, ARCTIC, RenBody_HiRes)")


def write_synthetic_mscoco(data_root: str | Path, body_model_dir: str | Path, n: int = 4, seed: int = 0,
                           img_size: tuple[int, int] = (480, 640)) -> dict[str, Any]:
    """Write ``MSCOCO/`` in the official layout: ``n`` train images with one person each (annotation 0 is a crowd
    annotation, annotation 1 has no fit), their NeuralAnnot fits, and a val file. Returns ``{'joints2d': {id: (144,
    2)}, 'fits': {id: fit}}``."""
    import cv2

    from common.body_model import SMPLXLayer, load_eval_assets
    from common.utils.io import save_json
    from data import synthetic_humandata as sh
    from data.formats.coco_wholebody import synthetic_person

    root = Path(data_root) / "MSCOCO"
    layer = SMPLXLayer(body_model_dir, "neutral")
    assets = load_eval_assets(body_model_dir)
    regions = sh._face_regions(layer)
    truth: dict[str, dict] = {"joints2d": {}, "fits": {}}
    for split, folder in (("train", "train2017"), ("val", "val2017")):
        images, anns, fits = [], [], {}
        (root / "images" / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n if split == "train" else 1):
            rng = np.random.default_rng([seed, i, split == "val"])
            img, ann, fit, uv = synthetic_person(layer, assets, regions, rng, img_size, i,
                                                 sh.synthetic_background(seed, i, img_size))
            name = f"{i:012d}.jpg"
            cv2.imwrite(str(root / "images" / folder / name), img[:, :, ::-1])
            images.append({"id": i, "file_name": name, "width": img_size[1], "height": img_size[0]})
            anns.append({**ann, "iscrowd": int(split == "train" and i == 0)})
            if split == "train" and i != 1:
                fits[str(i)] = fit
            if split == "train":
                truth["joints2d"][i], truth["fits"][i] = uv, fit
        save_json(root / "annotations" / f"coco_wholebody_{split}_v1.0.json", {"images": images, "annotations": anns})
        if split == "train":
            save_json(root / "annotations" / "MSCOCO_train_SMPLX_all_NeuralAnnot.json", fits)
    return truth
