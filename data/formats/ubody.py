"""UBody (upper-body scenes): COCO-WholeBody keypoints plus SMPL-X fits per scene; train / test split by video.

Files (under the data root)::

    UBody/images/<scene>/<video>/<frame>.jpg               one folder per scene (the catalog expands {scene})
    UBody/annotations/<scene>/keypoint_annotation.json     COCO-WholeBody: images {id, file_name (may start with
                                                           '/'), width, height}; annotations {id, image_id, bbox,
                                                           iscrowd, num_keypoints, valid_label, keypoints,
                                                           foot_kpts, lefthand_kpts, righthand_kpts, face_kpts,
                                                           lefthand_box, righthand_box (xywh), lefthand_valid,
                                                           righthand_valid, face_valid}
    UBody/annotations/<scene>/smplx_annotation.json        {"<annotation id>": {"smplx_param": {root_pose, body_pose,
                                                           lhand_pose, rhand_pose, jaw_pose, shape, expr, trans},
                                                           "cam_param": {focal, princpt}}}
    UBody/splits/intra_scene_test_list.npy                 the test videos (name before any "_Trim" suffix)

As the original: test = the listed videos, train = the others; crowd, keypoint-less and ``valid_label == 0``
annotations and those without a fit are skipped; every ``sample_interval``-th annotation per scene is kept (train
10, test 100 by default); the body box is processed with ratio 1.25; hand boxes are the annotated boxes shrunk to
0.65 about their centre, the face box the extent of the face keypoints x1.2 (no aspect change). Entries carry the
fit (with its camera) and the annotated 2D keypoints mapped into the 137-joint set (the original trained on the
projected fit joints only; here the fit supervises its joints and the annotations the 2D keypoints).

Evaluation (:func:`make_evaluator`): pseudo-GT mesh of the fit (neutral layer + GT translation), scored only where
its projection lands inside the image (facts sheet section 6), with the 8 numbers the original prints.
"""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from common.engine.evaluator import WholeBodyEvaluator
from common.errors import InputError
from common.utils.image import process_bbox
from common.utils.safe_pickle import read_npy_plain
from data.catalog import DatasetSpec, _scenes, resolve_files, resolve_img_dir
from data.formats.base import EntryRecords, EvalContext, read_coco, read_json
from data.formats.coco_wholebody import neural_annot_fit, resize_box, to_supervision_set, wholebody_joints

BODY_BOX_RATIO = 1.25  # the original's UBody loader used process_bbox's default, not bbox_ratio
HAND_BOX_SCALE, FACE_BOX_SCALE = 0.65, 1.2
UBODY_METRICS = ("pa_mpvpe_all", "pa_mpvpe_hand", "pa_mpvpe_face", "mpvpe_all", "mpvpe_hand", "mpvpe_face",
                 "pa_mpjpe_body", "pa_mpjpe_hand")


def video_name(file_name: str) -> str:
    """The video of an image path (its folder), without a ``_Trim...`` suffix, as listed in the split file."""
    name = Path(file_name.lstrip("/")).parent.name
    return name.split("_Trim")[0] if "Trim" in name else name


def load(spec: DatasetSpec, split: str, *, data_root=None, sample_interval: int = 1, bbox_ratio: float = 1.2,
         body_model_dir=None) -> EntryRecords:
    """UBody ``split`` ('train' or 'test') over every scene folder, as entries (module docstring)."""
    files = resolve_files(spec, split, data_root)  # checks every scene's files and the split list
    img_root = resolve_img_dir(spec, data_root)
    root = files[0].parents[2]  # <data_root>/UBody/splits/x.npy -> <data_root>
    try:
        test_videos = {str(v) for v in read_npy_plain(files[0]).tolist()}
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as err:
        raise InputError(f"{files[0]}: cannot read the test-video list ({err}); download UBody again") from err
    entries, skipped = [], Counter()
    interval = max(1, sample_interval)
    for scene in _scenes(root, spec):
        kp_path = root / "UBody" / "annotations" / scene / "keypoint_annotation.json"
        fit_path = kp_path.with_name("smplx_annotation.json")
        images, anns = read_coco(kp_path, "UBody")
        fits = read_json(fit_path, "UBody")
        for k, ann in enumerate(anns):
            if (k + 1) % interval:
                continue
            where = f"{kp_path} annotation {ann.get('id', k)}"
            try:
                img = images[int(ann["image_id"])]
                file_name = str(img["file_name"]).lstrip("/")
                in_test = video_name(file_name) in test_videos
                if in_test != (split == "test"):
                    continue
                if ann["iscrowd"] or ann["num_keypoints"] == 0:
                    skipped["crowd_or_no_keypoints"] += 1
                    continue
                if ann["valid_label"] == 0 or str(ann["id"]) not in fits:
                    skipped["no_valid_fit"] += 1
                    continue
                img_path = img_root / scene / file_name
                if not img_path.is_file():
                    skipped["missing_image"] += 1
                    continue
                w, h = int(img["width"]), int(img["height"])
                bbox = process_bbox(np.asarray(ann["bbox"], np.float64), w, h, ratio=BODY_BOX_RATIO)
                if bbox is None:
                    skipped["invalid_bbox"] += 1
                    continue
                joints = wholebody_joints(ann)
                boxes = {}
                for side, key in (("lhand", "lefthand"), ("rhand", "righthand")):
                    box = np.asarray(ann[f"{key}_box"], np.float32).reshape(4).copy()
                    box[2:] += box[:2]
                    boxes[side] = resize_box(box, HAND_BOX_SCALE) if ann[f"{key}_valid"] else None
                face = joints[-68:, :2]
                boxes["face"] = (resize_box(np.concatenate([face.min(0), face.max(0)]), FACE_BOX_SCALE)
                                 if ann["face_valid"] else None)
            except KeyError as err:
                raise InputError(f"{where} lacks {err}; see data/formats/ubody.py for the expected keys") from err
            param, camera = neural_annot_fit(fits[str(ann["id"])], ann, f"{fit_path} entry {ann['id']}")
            joint_img, joint_valid = to_supervision_set(joints)
            entries.append({
                "img_path": str(img_path), "img_shape": (h, w), "bbox": bbox, "lhand_bbox": boxes["lhand"],
                "rhand_bbox": boxes["rhand"], "face_bbox": boxes["face"], "joint_img": joint_img,
                "joint_cam": None, "joint_valid": joint_valid, "smplx_param": param, "camera": camera,
                "dataset": spec.name, "index": int(ann["id"]),
            })
    return EntryRecords(spec.name, split, entries, skipped, {"test_videos": len(test_videos)})


class UBodyEvaluator(WholeBodyEvaluator):
    """Pseudo-GT whole-body metrics restricted to in-image vertices / joints; the 8 numbers of the original."""

    def metrics(self, out, targets, meta):
        res = super().metrics(out, targets, meta)
        return {k: res[k] for k in UBODY_METRICS}


def make_evaluator(split: str, ctx: EvalContext) -> UBodyEvaluator:
    return UBodyEvaluator("UBody", ctx.assets, body_model=ctx.body_model, visibility=True)


# ----------------------------------------------------------------------------------------------------------------
# Synthetic UBody in the official layout (tests, demos)
def write_synthetic_ubody(data_root: str | Path, body_model_dir: str | Path, scenes: tuple[str, ...] = ("Talk", "Sing"),
                          videos_per_scene: int = 2, frames_per_video: int = 2, seed: int = 0,
                          img_size: tuple[int, int] = (480, 640)) -> dict[str, Any]:
    """Render one person per frame and write the UBody layout; the second video of every scene is a test video.

    Returns ``{'test_videos': [...], 'fits': {annotation id: (params, camera)}, 'joints2d': {id: (144, 2)}}``.
    """
    import cv2

    from common.body_model import SMPLXLayer, load_eval_assets
    from common.utils.io import save_json
    from data import synthetic_humandata as sh
    from data.formats.coco_wholebody import synthetic_person

    root = Path(data_root) / "UBody"
    layer = SMPLXLayer(body_model_dir, "neutral")
    assets = load_eval_assets(body_model_dir)
    regions = sh._face_regions(layer)
    test_videos, fits, joints2d, aid = [], {}, {}, 0
    for s, scene in enumerate(scenes):
        images, anns, smplx = [], [], {}
        for v in range(videos_per_scene):
            video = f"{scene}_video{v}" + ("_Trim1" if v == 0 else "")
            if v == videos_per_scene - 1:
                test_videos.append(video.split("_Trim")[0])
            for f in range(frames_per_video):
                rng = np.random.default_rng([seed, s, v, f])
                file_name = f"/{video}/{f:06d}.jpg"
                img, ann, fit, uv = synthetic_person(layer, assets, regions, rng, img_size, aid,
                                                     sh.synthetic_background(seed, aid, img_size))
                (root / "images" / scene / video).mkdir(parents=True, exist_ok=True)
                with open(root / "images" / scene / file_name.lstrip("/"), "wb") as fh:
                    fh.write(cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
                images.append({"id": aid, "file_name": file_name, "width": img_size[1], "height": img_size[0]})
                anns.append({**ann, "valid_label": 1})
                smplx[str(aid)] = fit
                fits[aid], joints2d[aid] = smplx[str(aid)], uv
                aid += 1
        save_json(root / "annotations" / scene / "keypoint_annotation.json",
                  {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]})
        save_json(root / "annotations" / scene / "smplx_annotation.json", smplx)
    (root / "splits").mkdir(parents=True, exist_ok=True)
    np.save(root / "splits" / "intra_scene_test_list.npy", np.array(test_videos))
    return {"test_videos": test_videos, "fits": fits, "joints2d": joints2d}
