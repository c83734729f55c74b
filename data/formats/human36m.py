"""Human3.6M (``Human36M``): NeuralAnnot SMPL-X fits in the world frame with the per-camera extrinsics (training).

Files (under the data root, ``Human36M/``)::

    annotations/Human36M_subject<S>_data.json             COCO-style: images {id, file_name, width, height, subject,
                                                          action_idx, subaction_idx, frame_idx, cam_idx};
                                                          annotations {id, image_id, bbox (xywh)}
    annotations/Human36M_subject<S>_camera.json           {"<cam_idx>": {R (3x3), t (3,) mm, f (2,), c (2,) px}}
    annotations/Human36M_subject<S>_joint_3d.json         {action: {subaction: {frame: (17, 3) mm, world}}}
    annotations/Human36M_subject<S>_SMPLX_NeuralAnnot.json {action: {subaction: {frame: {root_pose, body_pose,
                                                          shape, trans[, lhand_pose, rhand_pose, jaw_pose, expr]}}}}
    J_regressor_h36m_smplx.npy                            (17, 10475) (for the original's H36M protocol)
    images/<file_name>

As the original: subjects 1, 5, 6, 7, 8 train on every 5th frame, subjects 9 and 11 test on every 64th frame of
camera 4; the fit (world frame) is taken to the camera with R (merged into the root) and t (mm -> m); its ankle /
wrist rotations and foot joints are not trusted. Like the original, the fit's joints are the keypoint targets (the
H36M skeleton's joints sit elsewhere than SMPL-X's of the same name); the 17 world joints are checked to be present
and kept in camera metres as ``entry['h36m_joint_cam']``. A missing hand / face part of the fit is zero and invalid.
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
from data.formats.mpii import UNTRUSTED_JOINTS, UNTRUSTED_ROTATIONS

H36M_NAMES = ("Pelvis", "R_Hip", "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "Torso", "Neck", "Head",
              "Head_top", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Shoulder", "R_Elbow", "R_Wrist")
SUBJECTS = {"train": (1, 5, 6, 7, 8), "test": (9, 11)}
FRAME_STEP = {"train": 5, "test": 64}
TEST_CAMERA = "4"
PARAM_SIZES = {"root_pose": 3, "body_pose": 63, "lhand_pose": 45, "rhand_pose": 45, "jaw_pose": 3, "shape": 10,
               "expr": 10, "trans": 3}


def fit_param(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """A NeuralAnnot fit -> entry ``smplx_param``: absent hand / face parts are zeros with their flag False."""
    try:
        param: dict[str, Any] = {k: np.asarray(raw[k], np.float32).reshape(n) if k in raw else np.zeros(n, np.float32)
                                 for k, n in PARAM_SIZES.items()}
        for k in ("root_pose", "body_pose", "shape", "trans"):
            raw[k]  # noqa: B018 -- required
    except (KeyError, ValueError, TypeError) as err:
        raise InputError(f"{where}: bad SMPL-X fit ({type(err).__name__}: {err}); needs root_pose, body_pose, shape, "
                         "trans") from err
    param.update(lhand_valid="lhand_pose" in raw, rhand_valid="rhand_pose" in raw,
                 face_valid="jaw_pose" in raw and "expr" in raw, gender="neutral",
                 invalid_rotations=UNTRUSTED_ROTATIONS, invalid_joints=UNTRUSTED_JOINTS)
    return param


def load(spec: DatasetSpec, split: str, *, data_root=None, sample_interval: int = 1, bbox_ratio: float = 1.2,
         body_model_dir=None) -> EntryRecords:
    """Human3.6M ``split`` as entries (module docstring); ``sample_interval`` thins the annotations further."""
    files = resolve_files(spec, split, data_root)
    annot_dir = files[0].parent
    img_dir = resolve_img_dir(spec, data_root)
    entries, skipped = [], Counter()
    k = 0
    for subject in SUBJECTS[split]:
        stem = annot_dir / f"Human36M_subject{subject}"
        images, anns = read_coco(f"{stem}_data.json", "Human3.6M")
        cameras = read_json(f"{stem}_camera.json", "Human3.6M")
        joints = read_json(f"{stem}_joint_3d.json", "Human3.6M")
        fits = read_json(f"{stem}_SMPLX_NeuralAnnot.json", "Human3.6M")
        for ann in anns:
            k += 1
            if k % max(1, sample_interval):
                continue
            where = f"{stem}_data.json annotation {ann.get('id')}"
            try:
                img = images[int(ann["image_id"])]
                frame, cam_idx = int(img["frame_idx"]), str(img["cam_idx"])
                if frame % FRAME_STEP[split] or (split == "test" and cam_idx != TEST_CAMERA):
                    continue
                keys = (str(img["action_idx"]), str(img["subaction_idx"]), str(frame))
                cam = cameras[cam_idx]
                r = np.asarray(cam["R"], np.float32).reshape(3, 3)
                t = np.asarray(cam["t"], np.float32).reshape(3) / 1000.0
                camera = {"focal": np.asarray(cam["f"], np.float32).reshape(2),
                          "princpt": np.asarray(cam["c"], np.float32).reshape(2), "R": r, "t": t}
                world = np.asarray(joints[keys[0]][keys[1]][keys[2]], np.float32).reshape(len(H36M_NAMES), 3)
                raw = fits[keys[0]][keys[1]][keys[2]]
                w, h = int(img["width"]), int(img["height"])
                box = np.asarray(ann["bbox"], np.float64)
                file_name = str(img["file_name"])
            except (KeyError, ValueError) as err:
                raise InputError(f"{where}: {type(err).__name__} {err} (see data/formats/human36m.py for the layout "
                                 "of the data / camera / joint_3d / NeuralAnnot files)") from err
            bbox = process_bbox(box, w, h, ratio=bbox_ratio)
            if bbox is None:
                skipped["invalid_bbox"] += 1
                continue
            from common.body_model import joint_sets as js

            entries.append({
                "img_path": str(img_dir / file_name), "img_shape": (h, w), "bbox": bbox, "lhand_bbox": None,
                "rhand_bbox": None, "face_bbox": None, "joint_img": np.zeros((js.JOINT_NUM, 3), np.float32),
                "joint_cam": None, "joint_valid": np.zeros((js.JOINT_NUM, 1), np.float32),
                "smplx_param": fit_param(raw, f"{stem}_SMPLX_NeuralAnnot.json {'/'.join(keys)}"), "camera": camera,
                "dataset": spec.name, "index": int(ann["id"]),
                "h36m_joint_cam": (world / 1000.0) @ r.T + t,
            })
    return EntryRecords(spec.name, split, entries, skipped)


def make_evaluator(split: str, ctx: EvalContext):
    raise ConfigError("Human36M is a training set here (the SMPLer-X benchmarks do not include it)")


def write_synthetic_human36m(data_root: str | Path, body_model_dir: str | Path, frames: tuple[int, ...] = (0, 3, 5),
                             seed: int = 0, img_size: tuple[int, int] = (240, 320)) -> dict[str, Any]:
    """``Human36M/`` in the official layout for every train and test subject: one action, one sub-action, the given
    frames, cameras 1 and 4 (each with its own R, t). The fits are stored in the world frame such that the
    original's camera handling gives back the rendered body; the "H36M joints" are the SMPL-X layer joints of the
    same names in world mm. Returns ``{image_id: {'uv': (144, 2) px of the rendered layer joints}}``."""
    import cv2

    from common.body_model import SMPLXLayer
    from common.body_model import joint_sets as js
    from common.utils.io import save_json
    from data import synthetic_humandata as sh

    root = Path(data_root) / "Human36M"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    np.save(root / "J_regressor_h36m_smplx.npy", np.zeros((17, js.SMPLX_VERTEX_NUM), np.float32))
    layer = SMPLXLayer(body_model_dir, "neutral")
    regions = sh._face_regions(layer)
    f, c = 300.0, (img_size[1] / 2, img_size[0] / 2)
    camera = {"focal": [f, f], "princpt": list(c)}
    truth, image_id = {}, 0
    for subject in (*SUBJECTS["train"], *SUBJECTS["test"]):
        rng = np.random.default_rng([seed, subject])
        images, anns, joints_w, fits = [], [], {}, {}
        cams = {str(ci): cv2.Rodrigues(rng.normal(0, 0.4, (3, 1)))[0] for ci in (1, 4)}
        trans_w = rng.normal(0, 1.0, 3)  # the person's world position (m)
        p = sh.sample_smplx_params(rng)
        v0, j0 = sh._run_layer(layer, [p])
        pelvis0 = j0[0, 0].astype(np.float64)
        trans_cam = sh._place(v0[0].astype(np.float64), rng, camera, img_size, (0.0, float(img_size[1])))
        cam_json = {}
        for ci, r in cams.items():
            t = trans_cam + pelvis0 - r @ (pelvis0 + trans_w)  # world -> camera, as the original composes it
            cam_json[ci] = {"R": r.tolist(), "t": (t * 1000).tolist(), "f": [f, f], "c": list(c)}
        root_w = cv2.Rodrigues(cams["1"].T @ cv2.Rodrigues(p["global_orient"].reshape(3, 1))[0])[0][:, 0]
        for frame in frames:
            # one pose for all frames of this subject; camera 1's root convention (both cameras see the same world)
            joints_cam1 = j0[0].astype(np.float64) + trans_cam
            r1, t1 = cams["1"], np.asarray(cam_json["1"]["t"]) / 1000
            world = (joints_cam1 - t1) @ r1  # R^T (x - t)
            names = [js.JOINT_IDX[js.JOINTS_NAME.index(n)] if n in js.JOINTS_NAME else 0 for n in H36M_NAMES]
            joints_w.setdefault("0", {}).setdefault("0", {})[str(frame)] = (world[names] * 1000).tolist()
            fits.setdefault("0", {}).setdefault("0", {})[str(frame)] = {
                "root_pose": root_w.tolist(), "body_pose": p["body_pose"].reshape(-1).tolist(),
                "shape": p["betas"].tolist(), "trans": trans_w.tolist()}
            for ci, r in cams.items():
                t = np.asarray(cam_json[ci]["t"]) / 1000
                joints_cam = world @ r.T + t
                verts_cam = ((v0[0].astype(np.float64) + trans_cam - t1) @ r1) @ r.T + t
                img = sh.synthetic_background(seed, image_id, img_size)
                sh._paint(img, [verts_cam], layer.faces, [sh._face_colours(regions, rng)], camera)
                name = f"s_{subject:02d}_act_00_subact_00_ca_0{ci}/frame_{frame:06d}.jpg"
                (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / "images" / name), img[:, :, ::-1])
                uv = sh.project(joints_cam, camera["focal"], camera["princpt"])
                images.append({"id": image_id, "file_name": name, "width": img_size[1], "height": img_size[0],
                               "subject": subject, "action_idx": 0, "subaction_idx": 0, "frame_idx": frame,
                               "cam_idx": int(ci)})
                anns.append({"id": image_id, "image_id": image_id,
                             "bbox": [float(x) for x in sh._extent_xywh(sh.project(verts_cam, camera["focal"],
                                                                                  camera["princpt"]))]})
                truth[image_id] = {"uv": uv, "subject": subject, "frame": frame, "cam": ci}
                image_id += 1
        stem = root / "annotations" / f"Human36M_subject{subject}"
        save_json(Path(f"{stem}_data.json"), {"images": images, "annotations": anns})
        save_json(Path(f"{stem}_camera.json"), cam_json)
        save_json(Path(f"{stem}_joint_3d.json"), joints_w)
        save_json(Path(f"{stem}_SMPLX_NeuralAnnot.json"), fits)
    return truth
