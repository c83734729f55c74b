"""COCO-WholeBody keypoints (MSCOCO, UBody): the 134-joint annotation set and its mapping into the 137-joint set.

An annotation holds ``keypoints`` (17 x 3: x, y px, visibility), ``foot_kpts`` (6 x 3), ``lefthand_kpts`` /
``righthand_kpts`` (21 x 3) and ``face_kpts`` (68 x 3). :func:`wholebody_joints` stacks them with a pelvis (mean of
the hips, valid when both are) into the 134-joint order of :data:`WHOLEBODY_NAMES`; :func:`to_supervision_set` maps
them by name into the model's 137 joints (``L_Wrist_Hand`` / ``R_Wrist_Hand`` have no slot there) after the
original's fill rule: a missing hand wrist or face point 18 takes the body wrist / nose.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.body_model import joint_sets as js
from common.errors import InputError

_FINGERS = ("Thumb", "Index", "Middle", "Ring", "Pinky")
WHOLEBODY_NAMES: tuple[str, ...] = (
    "Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist",
    "R_Wrist", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "Pelvis",
    "L_Big_toe", "L_Small_toe", "L_Heel", "R_Big_toe", "R_Small_toe", "R_Heel",
    "L_Wrist_Hand", *(f"L_{f}_{i}" for f in _FINGERS for i in (1, 2, 3, 4)),
    "R_Wrist_Hand", *(f"R_{f}_{i}" for f in _FINGERS for i in (1, 2, 3, 4)),
    *(f"Face_{i}" for i in range(56, 73)),  # contour (the first 17 face_kpts)
    *(f"Face_{i}" for i in range(5, 56)),  # brows, nose, eyes, mouth
)
PARTS = (("keypoints", 17), ("foot_kpts", 6), ("lefthand_kpts", 21), ("righthand_kpts", 21), ("face_kpts", 68))
FILL = (("L_Wrist", "L_Wrist_Hand"), ("R_Wrist", "R_Wrist_Hand"), ("Nose", "Face_18"))
_IN_137 = [(i, js.JOINTS_NAME.index(n)) for i, n in enumerate(WHOLEBODY_NAMES) if n in js.JOINTS_NAME]
assert len(WHOLEBODY_NAMES) == 134 and len(_IN_137) == 132


def wholebody_joints(ann: dict[str, Any]) -> np.ndarray:
    """(134, 3) float32 x, y px, visibility of one annotation in :data:`WHOLEBODY_NAMES` order (KeyError if a
    part is missing)."""
    parts = {key: np.asarray(ann[key], np.float32).reshape(n, 3) for key, n in PARTS}
    body = parts["keypoints"]
    pelvis = (body[11] + body[12]) * 0.5
    pelvis[2] = body[11, 2] * body[12, 2]
    return np.concatenate([body, pelvis[None], parts["foot_kpts"], parts["lefthand_kpts"], parts["righthand_kpts"],
                           parts["face_kpts"]]).astype(np.float32)


def to_supervision_set(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(134, 3) annotation joints -> ((137, 3) x, y px, confidence 0; (137, 1) valid = visibility > 0), with the
    hand-wrist / face-18 fill rule."""
    j = np.asarray(joints, np.float32).copy()
    valid = (j[:, 2] > 0).astype(np.float32)
    for body, part in FILL:
        b, p = WHOLEBODY_NAMES.index(body), WHOLEBODY_NAMES.index(part)
        if valid[p] == 0:
            j[p], valid[p] = j[b], valid[b]
    out = np.zeros((js.JOINT_NUM, 3), np.float32)
    out_valid = np.zeros((js.JOINT_NUM, 1), np.float32)
    for src, dst in _IN_137:
        out[dst, :2] = j[src, :2]
        out_valid[dst, 0] = valid[src]
    return out, out_valid


def wholebody_from_layer_joints(uv: np.ndarray) -> np.ndarray:
    """(144, 2) projected SMPL-X layer joints -> (134, 2) in :data:`WHOLEBODY_NAMES` order (synthetic annotations:
    the hand wrists are the body wrists; the pelvis is the layer pelvis)."""
    out = np.zeros((134, 2), np.float32)
    for i, name in enumerate(WHOLEBODY_NAMES):
        name = {"L_Wrist_Hand": "L_Wrist", "R_Wrist_Hand": "R_Wrist"}.get(name, name)
        out[i] = uv[js.JOINT_IDX[js.JOINTS_NAME.index(name)]]
    return out


PARAM_SIZES = {"root_pose": 3, "body_pose": 63, "lhand_pose": 45, "rhand_pose": 45, "jaw_pose": 3, "shape": 10,
               "expr": 10, "trans": 3}


def neural_annot_fit(raw: dict[str, Any], ann: dict[str, Any], where: str
                     ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One NeuralAnnot-style fit ``{"smplx_param": {...}, "cam_param": {focal, princpt}}`` -> (entry
    ``smplx_param`` with validity flags from the fit or else the annotation's ``*_valid``, camera dict)."""
    try:
        p, cam = raw["smplx_param"], raw["cam_param"]
        param: dict[str, Any] = {k: np.asarray(p[k], np.float32).reshape(n) for k, n in PARAM_SIZES.items()}
        camera = {"focal": np.asarray(cam["focal"], np.float32).reshape(2),
                  "princpt": np.asarray(cam["princpt"], np.float32).reshape(2)}
    except (KeyError, ValueError, TypeError) as err:
        raise InputError(f"{where}: bad SMPL-X fit ({type(err).__name__}: {err}); expected smplx_param "
                         f"{{{', '.join(PARAM_SIZES)}}} and cam_param {{focal, princpt}}") from err
    for flag, key in (("lhand_valid", "lefthand_valid"), ("rhand_valid", "righthand_valid"),
                      ("face_valid", "face_valid")):
        param[flag] = bool(p.get(flag, ann.get(key, False)))
    param["gender"] = "neutral"
    return param, camera


def resize_box(xyxy: np.ndarray, scale: float) -> np.ndarray:
    """(4,) xyxy scaled about its centre (no aspect change), float32."""
    b = np.asarray(xyxy, np.float64)
    c, half = (b[:2] + b[2:]) / 2, (b[2:] - b[:2]) / 2 * scale
    return np.concatenate([c - half, c + half]).astype(np.float32)


def synthetic_person(layer: Any, assets: Any, regions: np.ndarray, rng: np.random.Generator,
                     img_size: tuple[int, int], aid: int, background: np.ndarray
                     ) -> tuple[np.ndarray, dict[str, Any], dict[str, Any], np.ndarray]:
    """One rendered person with its COCO-WholeBody annotation (id ``aid``, image id ``aid``) and NeuralAnnot-style
    fit, for synthetic MSCOCO / UBody. Returns (RGB image, annotation, fit, (144, 2) projected layer joints)."""
    from data import synthetic_humandata as sh

    camera = sh.camera_for(img_size)
    p = sh.sample_smplx_params(rng)
    v0, _ = sh._run_layer(layer, [p])
    transl = sh._place(v0[0].astype(np.float64), rng, camera, img_size, (0.0, float(img_size[1])))
    verts, joints = sh._run_layer(layer, [p], transl[None].astype(np.float32))
    img = background.copy()
    sh._paint(img, [verts[0]], layer.faces, [sh._face_colours(regions, rng)], camera)
    uv = sh.project(joints[0], camera["focal"], camera["princpt"])
    vuv = sh.project(verts[0], camera["focal"], camera["princpt"])
    wb = np.concatenate([wholebody_from_layer_joints(uv), np.full((134, 1), 2.0, np.float32)], 1)
    # WHOLEBODY order: body 17, pelvis (derived by the reader, not stored), feet 6, hands 2 x 21, face 68
    parts = {"keypoints": wb[:17], "foot_kpts": wb[18:24], "lefthand_kpts": wb[24:45], "righthand_kpts": wb[45:66],
             "face_kpts": wb[66:]}
    ann = {"id": aid, "image_id": aid, "bbox": [float(x) for x in sh._extent_xywh(vuv)], "iscrowd": 0,
           "num_keypoints": 133, **{k: a.reshape(-1).tolist() for k, a in parts.items()},
           **{f"{side}hand_box": sh._extent_xywh(vuv[assets.hand_vertex_idx[side]]).tolist()
              for side in ("left", "right")},
           "face_box": sh._extent_xywh(vuv[assets.face_vertex_idx]).tolist(),
           "lefthand_valid": True, "righthand_valid": True, "face_valid": True}
    param = {"root_pose": p["global_orient"], "body_pose": p["body_pose"], "lhand_pose": p["left_hand_pose"],
             "rhand_pose": p["right_hand_pose"], "jaw_pose": p["jaw_pose"], "shape": p["betas"],
             "expr": p["expression"], "trans": transl}
    fit = {"smplx_param": {k: np.asarray(x, np.float64).reshape(-1).tolist() for k, x in param.items()},
           "cam_param": {"focal": list(camera["focal"]), "princpt": list(camera["princpt"])}}
    return img, ann, fit, uv
