"""3DPW (``PW3D``): SMPL annotations in COCO-style json; trained on as SMPL-X root/body, tested on 14 SMPL joints.

Files (under the data root)::

    PW3D/data/3DPW_{train,test}.json    images {id, file_name, sequence, width, height, cam_param {focal, princpt
                                        (px), optional R (3, 3), t (3,) m}}; annotations {id, image_id, bbox (xywh
                                        px), smpl_param {pose (72,), shape (10,), trans (3,), gender}}
    PW3D/data/imageFiles/<sequence>/<file_name>

* **Test** samples carry the SMPL parameters in ``targets`` (``smpl_pose`` (72,), ``smpl_shape`` (10,),
  ``smpl_trans`` (3,), ``smpl_gender`` 0 neutral / 1 male / 2 female, ``smpl_R`` (3, 3), ``smpl_t`` (3,),
  ``smpl_has_Rt``); :class:`PW3DSMPLEvaluator` poses the gendered SMPL layer in batches, applies the camera as the
  original (R merged into the root rotation, then the root moved to ``R root + t``) and scores MPJPE / PA-MPJPE on
  the 14 joints of the facts sheet (section 6).
* **Train** entries: the SMPL root and first 21 body rotations as the SMPL-X fit, shape zeroed (invalid), no
  hands / face, with the image camera; no keypoint targets (the original copied the SMPL 2D joints into the first
  22 slots of the 137-joint set without mapping them by name; here the projected joints of the converted fit
  supervise instead, see docs/differences.md).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from common.body_model import joint_sets as js
from common.engine.evaluator import PW3DEvaluator
from common.errors import InputError
from common.utils.image import process_bbox
from data.catalog import DatasetSpec, resolve_files, resolve_img_dir
from data.formats.base import EntryRecords, EvalContext, read_coco

GENDER_CODES = {"neutral": 0, "n": 0, "male": 1, "m": 1, "female": 2, "f": 2}
GENDERS = ("neutral", "male", "female")
SMPL_BODY_JOINTS = 21  # SMPL rotations 1-21 = SMPL-X body_pose


def _f32(x: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    a = np.asarray(x, np.float32)
    if a.size != int(np.prod(shape)):
        raise InputError(f"{where}: expected {int(np.prod(shape))} values, got shape {a.shape}")
    return a.reshape(shape)


def load(spec: DatasetSpec, split: str, *, data_root=None, sample_interval: int = 1, bbox_ratio: float = 1.2,
         body_model_dir=None) -> EntryRecords:
    """3DPW ``split`` as entries (module docstring); every ``sample_interval``-th annotation is kept."""
    (annot_path,) = resolve_files(spec, split, data_root)
    img_dir = resolve_img_dir(spec, data_root)
    images, anns = read_coco(annot_path, "3DPW")
    entries, skipped = [], Counter()
    for k, ann in enumerate(anns[::max(1, sample_interval)]):
        where = f"{annot_path} annotation {ann.get('id', k)}"
        try:
            img = images[int(ann["image_id"])]
            w, h = int(img["width"]), int(img["height"])
            cam = {key: np.asarray(v, np.float32) for key, v in img["cam_param"].items()}
            smpl = ann["smpl_param"]
            pose = _f32(smpl["pose"], (72,), f"{where} smpl_param.pose")
            shape = _f32(smpl["shape"], (10,), f"{where} smpl_param.shape")
            trans = _f32(smpl["trans"], (3,), f"{where} smpl_param.trans")
            gender = GENDER_CODES[str(smpl.get("gender", "neutral")).lower()]
            img_path = img_dir / str(img["sequence"]) / str(img["file_name"])
            box = np.asarray(ann["bbox"], np.float64)
        except KeyError as err:
            raise InputError(f"{where} lacks {err} (needs image_id, bbox, smpl_param {{pose, shape, trans}}; images "
                             "need sequence, file_name, width, height, cam_param)") from err
        if not (np.isfinite(pose).all() and np.isfinite(shape).all() and np.isfinite(trans).all()):
            skipped["nonfinite_smpl"] += 1
            continue
        bbox = process_bbox(box, w, h, ratio=bbox_ratio)
        if bbox is None:
            skipped["invalid_bbox"] += 1
            continue
        has_intr = "focal" in cam and "princpt" in cam
        camera = {"focal": cam["focal"].reshape(2), "princpt": cam["princpt"].reshape(2)} if has_intr else {}
        entry: dict[str, Any] = {
            "img_path": str(img_path), "img_shape": (h, w), "bbox": bbox, "lhand_bbox": None, "rhand_bbox": None,
            "face_bbox": None, "joint_img": np.zeros((js.JOINT_NUM, 3), np.float32), "joint_cam": None,
            "joint_valid": np.zeros((js.JOINT_NUM, 1), np.float32), "camera": camera, "dataset": spec.name,
            "index": int(ann.get("id", k)),
        }
        if split == "train":
            if "R" in cam:  # the fit lives in the world frame: the sample pipeline applies R (and t) as the original
                entry["camera"] = {**camera, "R": cam["R"].reshape(3, 3),
                                   **({"t": cam["t"].reshape(3)} if "t" in cam else {})}
            entry["smplx_param"] = {
                "root_pose": pose[:3].copy(), "body_pose": pose[3:3 + 3 * SMPL_BODY_JOINTS].copy(),
                "lhand_pose": np.zeros(45, np.float32), "rhand_pose": np.zeros(45, np.float32),
                "jaw_pose": np.zeros(3, np.float32), "shape": np.zeros(10, np.float32),
                "expr": np.zeros(10, np.float32), "trans": trans, "lhand_valid": False, "rhand_valid": False,
                "face_valid": False, "gender": "neutral"}
        else:
            entry["smplx_param"] = None
            has_rt = "R" in cam and "t" in cam
            entry["gt"] = {"smpl_pose": pose, "smpl_shape": shape, "smpl_trans": trans,
                           "smpl_gender": np.int64(gender),
                           "smpl_R": cam["R"].reshape(3, 3) if "R" in cam else np.eye(3, dtype=np.float32),
                           "smpl_t": cam["t"].reshape(3) if "t" in cam else np.zeros(3, np.float32),
                           "smpl_has_R": np.float32("R" in cam), "smpl_has_Rt": np.float32(has_rt)}
        entries.append(entry)
    return EntryRecords(spec.name, split, entries, skipped, {"file": str(annot_path)})


# ----------------------------------------------------------------------------------------------------------------
# Ground-truth SMPL meshes and the evaluator
class SMPLMeshes:
    """Gendered SMPL layers (pip ``smplx``) from ``<body_model_dir>/smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl``."""

    def __init__(self, body_model_dir: str | Path):
        from common.body_model import check_body_model_files
        from common.body_model.smplx_model import load_smpl_layer

        folder = Path(body_model_dir)
        check_body_model_files(folder, smpl=True, only=[f"smpl/SMPL_{g.upper()}.pkl" for g in GENDERS])
        self.layers = {g: load_smpl_layer(folder, g) for g in GENDERS}
        self.j_regressor = self.layers["neutral"].J_regressor.numpy().astype(np.float64)  # (24, 6890)

    @torch.no_grad()
    def camera_meshes(self, targets: dict[str, Any]) -> np.ndarray:
        """(B, 6890, 3) float64 GT meshes in the camera frame, metres (see the module docstring)."""
        t = {k: np.asarray(targets[k].numpy() if isinstance(targets[k], torch.Tensor) else targets[k])
             for k in ("smpl_pose", "smpl_shape", "smpl_trans", "smpl_gender", "smpl_R", "smpl_t", "smpl_has_R",
                       "smpl_has_Rt")}
        pose = t["smpl_pose"].astype(np.float64).reshape(-1, 24, 3).copy()
        n = len(pose)
        for i in range(n):
            if t["smpl_has_R"][i] > 0:  # merge the camera rotation into the root rotation
                root = cv2.Rodrigues(t["smpl_R"][i].astype(np.float64) @ cv2.Rodrigues(pose[i, 0])[0])[0]
                pose[i, 0] = root[:, 0]
        meshes = np.zeros((n, 6890, 3))
        for code, gender in enumerate(GENDERS):
            rows = np.flatnonzero(t["smpl_gender"].reshape(-1) == code)
            if not len(rows):
                continue
            layer = self.layers[gender]
            out = layer(global_orient=torch.as_tensor(pose[rows, 0], dtype=torch.float32),
                        body_pose=torch.as_tensor(pose[rows, 1:].reshape(len(rows), -1), dtype=torch.float32),
                        betas=torch.as_tensor(t["smpl_shape"][rows], dtype=torch.float32),
                        transl=torch.as_tensor(t["smpl_trans"][rows], dtype=torch.float32))
            meshes[rows] = out.vertices.numpy()
        for i in range(n):
            if t["smpl_has_Rt"][i] > 0:  # the translation was not rotated with the root: move the root
                root = self.j_regressor[0] @ meshes[i]
                meshes[i] += t["smpl_R"][i].astype(np.float64) @ root + t["smpl_t"][i] - root
        return meshes


class PW3DSMPLEvaluator(PW3DEvaluator):
    """:class:`common.engine.evaluator.PW3DEvaluator` with the GT SMPL meshes posed from the test targets."""

    def __init__(self, smplx_j_regressor: np.ndarray, body_model_dir: str | Path):
        self.smpl = SMPLMeshes(body_model_dir)
        super().__init__(smplx_j_regressor, self.smpl.j_regressor)

    def metrics(self, out, targets, meta):
        targets = {**targets, "smpl_mesh_cam": self.smpl.camera_meshes(targets)}
        return super().metrics(out, targets, meta)


def make_evaluator(split: str, ctx: EvalContext) -> PW3DSMPLEvaluator:
    return PW3DSMPLEvaluator(ctx.assets.j_regressor, ctx.body_model_dir)


# ----------------------------------------------------------------------------------------------------------------
# Synthetic 3DPW in the official layout (tests, demos)
def write_synthetic_pw3d(data_root: str | Path, body_model_dir: str | Path, n_train: int = 2, n_test: int = 3,
                         seed: int = 0, img_size: tuple[int, int] = (480, 640)) -> dict[str, np.ndarray]:
    """Render one SMPL body per image and write ``PW3D/data/3DPW_{train,test}.json`` and the images.

    Genders cycle neutral / male / female; every second image has a camera rotation ``R`` and translation ``t``,
    with the stored (world-frame) root rotation and translation chosen so that the original's camera handling gives
    back the rendered camera-frame mesh. Returns ``{'test_meshes': (n_test, 6890, 3) camera frame}``.
    """
    from data import synthetic_humandata as sh

    smpl = SMPLMeshes(body_model_dir)
    folder = Path(data_root) / "PW3D" / "data"
    camera = sh.camera_for(img_size)
    test_meshes = []
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, anns = [], []
        for i in range(n):
            rng = np.random.default_rng([s, i])
            p = sh.sample_smplx_params(rng)
            gender = GENDERS[i % 3]
            layer = smpl.layers[gender]
            pose = np.zeros((24, 3))
            pose[0], pose[1:22] = p["global_orient"], p["body_pose"]
            betas = np.clip(rng.normal(0, 0.8, 10), -2, 2)
            with torch.no_grad():
                v0 = layer(global_orient=torch.tensor(pose[None, 0], dtype=torch.float32),
                           body_pose=torch.tensor(pose[None, 1:].reshape(1, -1), dtype=torch.float32),
                           betas=torch.tensor(betas[None], dtype=torch.float32)).vertices[0].numpy()
            trans_cam = sh._place(v0.astype(np.float64), rng, camera, img_size, (0.0, float(img_size[1])))
            mesh_cam = v0 + trans_cam
            cam: dict[str, Any] = {"focal": camera["focal"], "princpt": camera["princpt"]}
            stored_pose, stored_trans = pose.copy(), trans_cam.copy()
            if i % 2 == 1:  # a world frame: R rotates world -> camera, t as the original composes it
                r = cv2.Rodrigues(rng.normal(0, 0.3, 3).reshape(3, 1))[0]
                stored_pose[0] = cv2.Rodrigues(r.T @ cv2.Rodrigues(pose[0])[0])[0][:, 0]
                stored_trans = rng.normal(0, 1.0, 3)
                pelvis = smpl.j_regressor[0] @ v0  # root of the rotated, untranslated mesh
                cam["R"], cam["t"] = r.tolist(), (trans_cam + pelvis - r @ (pelvis + stored_trans)).tolist()
            img = sh.synthetic_background(s, i, img_size)
            colours = np.tile(sh._hsv_to_rgb(rng.uniform(0, 360), 0.7, 0.8), (len(layer.faces), 1))
            sh._paint(img, [mesh_cam], np.asarray(layer.faces, np.int64), [colours], camera)
            seq = f"seq_{i // 2:02d}"
            name = f"image_{i:05d}.jpg"
            (folder / "imageFiles" / seq).mkdir(parents=True, exist_ok=True)
            with open(folder / "imageFiles" / seq / name, "wb") as fh:
                fh.write(cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
            uv = sh.project(mesh_cam, camera["focal"], camera["princpt"])
            images.append({"id": i, "file_name": name, "sequence": seq, "width": img_size[1],
                           "height": img_size[0], "cam_param": cam})
            anns.append({"id": i, "image_id": i, "bbox": [float(x) for x in sh._extent_xywh(uv)],
                         "smpl_param": {"pose": stored_pose.reshape(-1).tolist(), "shape": betas.tolist(),
                                        "trans": [float(x) for x in stored_trans], "gender": gender}})
            if split == "test":
                test_meshes.append(mesh_cam)
        from common.utils.io import save_json

        save_json(folder / f"3DPW_{split}.json", {"images": images, "annotations": anns})
    return {"test_meshes": np.stack(test_meshes)}
