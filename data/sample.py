"""Datalist entry -> training / test sample (facts sheet 4.8): image crop, keypoint, parameter and box targets.

:func:`build_sample` does everything that does not need the SMPL-X layer, per sample in data-loader workers, and
puts what the batched body-model step (:func:`data.targets.build_model_targets`) needs into ``meta_info`` (keys
starting ``bm_`` and ``cam_``, plus ``do_flip``, ``rot``, ``img2bb_trans``, ``img_width``, ``kp_joint_img``).
Every value is a numpy array (float32 unless stated), a numpy scalar or a string with a fixed shape, so
``torch.utils.data.default_collate`` batches samples from any dataset; a missing annotation is zeros plus a zero
mask, never None. The full schema (keys, shapes, units, frames) is in docs/data.md.

Entry keys (the reader's datalist entry, see data/humandata.py): ``img_path``, ``img_shape``, ``bbox`` (xywh px),
``lhand_bbox`` / ``rhand_bbox`` / ``face_bbox`` (xyxy px or None), ``joint_img`` (137, 3) (x, y px, confidence),
``joint_cam`` (137, 3) m or None, ``joint_valid`` (137, 1), ``smplx_param`` (dict or None), ``camera`` (dict),
``dataset``, ``index``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.body_model import joint_sets as js
from common.config import ModelConfig
from common.utils.image import load_image, load_image_uint8
from data.transforms import (
    AugParams,
    TargetOptions,
    augment,
    augment_fast,
    box_targets,
    get_aug_config,
    keypoint_depth_bins,
    process_db_coord,
    smplx_param_targets,
)

GENDERS = ("neutral", "male", "female")  # index = meta_info['bm_gender']
POSE_DIM = js.ORIG_JOINT_NUM * 3  # 159
# Catalog quirk (data/catalog.py): the 3D joint targets of these sets come from the SMPL-X fit (original: RenBody).
MODEL_JOINTS_QUIRK = "renbody_model_joints"

Sample = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]


def _f32(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _scalar(x: float | bool) -> np.float32:
    # numpy scalars collate to float32 tensors; Python floats would become float64
    return np.float32(float(x))


def _uses_model_joints(dataset: str) -> bool:
    from data.catalog import CATALOG

    spec = CATALOG.get(dataset)
    return spec is not None and MODEL_JOINTS_QUIRK in spec.quirks


def _camera_meta(camera: dict[str, Any]) -> dict[str, Any]:
    """Fixed-size camera entries: focal / princpt (px), R (3, 3), t (3,) (m) with presence flags."""
    has_intr = "focal" in camera and "princpt" in camera
    has_r, has_t = "R" in camera, "t" in camera
    return {
        "cam_focal": _f32(camera["focal"]).reshape(2) if has_intr else np.ones(2, np.float32),
        "cam_princpt": _f32(camera["princpt"]).reshape(2) if has_intr else np.zeros(2, np.float32),
        "cam_has_intrinsics": _scalar(has_intr),
        "cam_R": _f32(camera["R"]).reshape(3, 3) if has_r else np.eye(3, dtype=np.float32),
        "cam_t": _f32(camera["t"]).reshape(3) if has_t else np.zeros(3, np.float32),
        "cam_has_R": _scalar(has_r),
        "cam_has_t": _scalar(has_t),
    }


def _gender_index(gender: Any) -> np.int64:
    g = str(gender).lower()
    g = {"n": "neutral", "m": "male", "f": "female"}.get(g, g)
    if g not in GENDERS:
        raise ValueError(f"unknown SMPL-X gender {gender!r}; expected one of {GENDERS}")
    return np.int64(GENDERS.index(g))


def build_sample(entry: dict[str, Any], rng: np.random.Generator, train: bool, model_cfg: ModelConfig,
                 no_aug: bool = False, options: TargetOptions = TargetOptions()) -> Sample:
    """(inputs, targets, meta_info) of one datalist entry; see docs/data.md for every key.

    Args:
        entry: datalist entry (module docstring).
        rng: the only source of randomness (augmentation draws); pass a per-sample generator for reproducibility.
        train: training sample (augmentation, all targets) or test sample (no augmentation, parameter targets).
        model_cfg: crop / heat-map shapes and depth ranges.
        no_aug: training targets without augmentation (the original's ``cfg.no_aug``).
        options: fixes vs original behaviour (data/transforms.py); give the same to build_model_targets.

    The image size used for flipping is that of the loaded image (the crop is flipped with it too, so keypoints
    and pixels stay aligned even when an annotation's ``img_shape`` is off).
    """
    # training: the cheaper uint8 crop (augment_fast); evaluation keeps the original's exact float path
    img = load_image_uint8(entry["img_path"]) if train else load_image(entry["img_path"])
    img_h, img_w = img.shape[:2]
    aug = get_aug_config(rng) if train and not no_aug else AugParams.identity()
    crop_fn = augment_fast if train else augment
    crop, img2bb, bb2img = crop_fn(img, np.asarray(entry["bbox"], np.float32), aug, model_cfg.input_img_shape)
    inputs = {"img": np.ascontiguousarray(crop.transpose(2, 0, 1) / 255.0, dtype=np.float32)}

    camera = entry.get("camera") or {}
    param = entry.get("smplx_param")
    has_smplx = param is not None
    p = smplx_param_targets(param, camera.get("R"), aug.do_flip, aug.rot) if param is not None else None
    if p is not None:
        pose, pose_valid, shape, expr = p.pose, p.pose_valid, p.shape, p.expr
        expr_valid, trans = p.expr_valid, _f32(param["trans"]).reshape(3)
    else:
        pose, pose_valid = np.zeros(POSE_DIM, np.float32), np.zeros(POSE_DIM, np.float32)
        shape, expr = np.zeros(js.SHAPE_PARAM_DIM, np.float32), np.zeros(js.EXPR_PARAM_DIM, np.float32)
        expr_valid, trans = 0.0, np.zeros(3, np.float32)
    shape_valid = bool(has_smplx and (shape != 0).any())

    if not train:
        targets = {"smplx_pose": pose, "smplx_shape": shape, "smplx_expr": expr, "smplx_cam_trans": trans}
        meta = {"img_path": str(entry["img_path"]), "bb2img_trans": bb2img, "img2bb_trans": img2bb,
                "bbox": _f32(entry["bbox"]), "gt_smplx_transl": trans.copy(), "has_smplx": _scalar(has_smplx),
                "smplx_pose_valid": pose_valid, "smplx_shape_valid": _scalar(shape_valid),
                "smplx_expr_valid": _scalar(expr_valid),
                "img_shape": np.array([img_h, img_w], np.float32)}
        # own-format test sets: extra ground truth (EHF / AGORA meshes, 3DPW SMPL parameters) and meta (data/formats)
        if entry.get("gt") or entry.get("meta"):
            from data.formats.base import materialize

            targets.update(materialize(entry.get("gt")))
            meta.update(materialize(entry.get("meta")))
        return inputs, targets, meta

    # keypoint targets
    kp3d = entry.get("joint_cam")
    has_3d = kp3d is not None
    if has_3d:
        joint_cam = _f32(kp3d) - _f32(kp3d)[js.ROOT_IDX, None]
        depth = keypoint_depth_bins(joint_cam, model_cfg, options)
    else:
        joint_cam = np.zeros((js.JOINT_NUM, 3), np.float32)
        depth = np.zeros(js.JOINT_NUM, np.float32)
    joint_img = np.concatenate((_f32(entry["joint_img"])[:, :2], depth[:, None]), 1)
    kp = process_db_coord(joint_img, joint_cam, entry["joint_valid"], aug.do_flip, img_w, img2bb, aug.rot, model_cfg,
                          has_depth=has_3d, options=options)

    # fit-derived joints: known here for samples with 3D keypoints (the original uses the keypoints then); for the
    # others build_model_targets fills image / camera coordinates and truncation from the SMPL-X layer
    zeros137 = np.zeros((js.JOINT_NUM, 1), np.float32)
    if has_3d:
        smplx_joint_cam, smplx_joint_valid, smplx_joint_trunc = kp.joint_cam_ra, kp.joint_valid, kp.joint_trunc
    else:
        smplx_joint_cam = np.zeros((js.JOINT_NUM, 3), np.float32)
        smplx_joint_valid = p.coord_valid if p is not None else zeros137
        smplx_joint_trunc = zeros137
    # the original pairs keypoint image targets with fit-derived truncation (harmless only while defect 12 zeroes it)
    use_kp_img = has_3d or not options.depth_trunc_needs_depth
    smplx_joint_img = kp.joint_img.copy() if use_kp_img else np.zeros((js.JOINT_NUM, 3), np.float32)

    boxes = box_targets(entry.get("lhand_bbox"), entry.get("rhand_bbox"), entry.get("face_bbox"), aug.do_flip, img_w,
                        img2bb, model_cfg)
    targets = {
        "joint_img": kp.joint_img, "smplx_joint_img": smplx_joint_img, "joint_cam": kp.joint_cam_wo_ra,
        "smplx_joint_cam": smplx_joint_cam, "smplx_pose": pose, "smplx_shape": shape, "smplx_expr": expr,
        **{k: v for k, v in boxes.items() if not k.endswith("_valid")},
    }
    meta = {
        "joint_valid": kp.joint_valid, "joint_trunc": kp.joint_trunc,
        "smplx_joint_valid": smplx_joint_valid, "smplx_joint_trunc": smplx_joint_trunc,
        "smplx_pose_valid": pose_valid, "smplx_shape_valid": _scalar(shape_valid),
        "smplx_expr_valid": _scalar(expr_valid), "is_3D": _scalar(has_3d),
        **{k: v for k, v in boxes.items() if k.endswith("_valid")},
        # inputs of the batched body-model step (data/targets.py)
        "has_smplx": _scalar(has_smplx),
        "bm_pose": p.model_pose if p is not None else np.zeros(POSE_DIM, np.float32),
        "bm_shape": p.model_shape if p is not None else np.zeros(js.SHAPE_PARAM_DIM, np.float32),
        "bm_expr": expr.copy(), "bm_trans": trans,
        "bm_gender": _gender_index(param.get("gender", "neutral")) if param is not None else np.int64(0),
        **_camera_meta(camera),
        "do_flip": _scalar(aug.do_flip), "rot": _scalar(aug.rot), "img2bb_trans": _f32(img2bb),
        "img_width": _scalar(img_w), "img_height": _scalar(img_h),
        "kp_joint_img": joint_img,
        "use_model_joint_cam": _scalar(has_smplx and _uses_model_joints(str(entry.get("dataset", "")))),
    }
    return inputs, targets, meta
