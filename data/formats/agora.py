"""AGORA in the original's 4K mode: pre-cropped person images, validation metrics and submission files.

Files (under the data root, ``AGORA/data/``)::

    AGORA_{train,validation}_fix_betas.json   COCO-style: images {id, file_name_3840x2160}; annotations {id, image_id,
                                              is_valid, lhand_bbox, rhand_bbox, face_bbox (xywh px of the 3840x2160
                                              image), smplx_joints_2d_path, smplx_joints_3d_path, smplx_verts_path,
                                              smplx_param_path (relative to AGORA/data), kid, gender}
    3840x2160/<folder>_crop/<image stem>_ann_id_<id>.png (+ .json)   the person crop and {img2bb_trans (2x3, 4K image
                                              -> crop px), resized_height, resized_width}
    AGORA_test_bbox.json                      {"<image file>": [{"bbox": ...}, ...]} (people of the test images)
    3840x2160/test_crop/<image stem>_pid_<k>.png (+ .json)

The body box is the whole crop. Hand / face boxes go through the crop affine and are clipped to the 4K frame (as the
original). Training entries read the per-person files when a sample is built (in the data-loader worker, as the
original; listing 100k people stays fast): 2D joints (4K px -> crop px), 3D joints (m), both in the
127-joint AGORA order (= the first 127 SMPL-X layer joints) mapped into the 137 set by name, and the SMPL-X
parameters (adults' ``betas_neutral``, kids' ``betas``, first 10; root rotation kept valid). Validation samples
carry the GT vertices (``targets['smplx_mesh_cam']``, read in the worker); validation and test samples carry the crop
affine (``meta['agora_orig2crop']``) and the person's number in its image (``meta['agora_person']``), so
:class:`AgoraEvaluator` can write the official ``predictions/<image stem>_personId_<k>.pkl`` files with the 144
layer joints projected to 4K pixels. People are numbered by their order in the annotation file (validation; the
original numbered them with a counter that gave everyone 0) or by the box list (test), independent of batching
and ranks.
"""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.body_model import joint_sets as js
from common.engine.evaluator import WholeBodyEvaluator, _np
from common.errors import InputError
from common.evaluation.agora import AGORA_RESOLUTION, SubmissionWriter
from common.utils.image import sanitize_bbox
from common.utils.safe_pickle import safe_load
from data.catalog import DatasetSpec, resolve_files, resolve_img_dir
from data.formats.base import EntryRecords, EvalContext, LazyArray, entry_function, read_coco, read_json

_F = ("Index", "Middle", "Pinky", "Ring", "Thumb")
AGORA_NAMES: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "Spine_1", "L_Knee", "R_Knee", "Spine_2", "L_Ankle", "R_Ankle", "Spine_3", "L_Foot",
    "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist",
    "R_Wrist", "Jaw", "L_Eye_SMPLH", "R_Eye_SMPLH",
    *(f"L_{f}_{i}" for f in _F for i in (1, 2, 3)), *(f"R_{f}_{i}" for f in _F for i in (1, 2, 3)),
    "Nose", "R_Eye", "L_Eye", "R_Ear", "L_Ear", "L_Big_toe", "L_Small_toe", "L_Heel", "R_Big_toe", "R_Small_toe",
    "R_Heel", *(f"L_{f}_4" for f in ("Thumb", "Index", "Middle", "Ring", "Pinky")),
    *(f"R_{f}_4" for f in ("Thumb", "Index", "Middle", "Ring", "Pinky")), *(f"Face_{i}" for i in range(5, 56)),
)
_TO_137 = [(i, js.JOINTS_NAME.index(n)) for i, n in enumerate(AGORA_NAMES) if n in js.JOINTS_NAME]
assert len(AGORA_NAMES) == 127
VIRTUAL_FOCAL, VIRTUAL_PRINCPT = (5000.0, 5000.0), (96.0, 128.0)  # the network's camera, input_body_shape px
INPUT_BODY_SHAPE, INPUT_IMG_SHAPE = (256, 192), (512, 384)


@entry_function
def read_verts_json(path: str) -> np.ndarray:
    """(10475, 3) float32 GT vertices (m) of one person."""
    v = np.asarray(read_json(Path(path), "AGORA"), np.float32).reshape(-1, 3)
    if v.shape[0] != js.SMPLX_VERTEX_NUM:
        raise InputError(f"{path}: {v.shape[0]} vertices, expected {js.SMPLX_VERTEX_NUM}")
    return v


def _affine(points: np.ndarray, a: np.ndarray) -> np.ndarray:
    p = np.asarray(points, np.float64)
    return p @ np.asarray(a, np.float64)[:, :2].T + np.asarray(a, np.float64)[:, 2]


def _part_box(xywh: Any, a: np.ndarray) -> np.ndarray | None:
    """4K xywh -> crop xyxy through the crop affine, clipped to the 4K frame size (as the original)."""
    b = np.asarray(xywh, np.float64).reshape(2, 2).copy()
    b[1] += b[0]
    b = _affine(b, a)
    b[1] -= b[0]
    box = sanitize_bbox(b.reshape(4), AGORA_RESOLUTION[1], AGORA_RESOLUTION[0])
    if box is None:
        return None
    box = np.asarray(box, np.float32)
    box[2:] += box[:2]
    return box


def _crop(folder: Path, stem: str) -> tuple[Path, np.ndarray, tuple[int, int]] | None:
    meta = folder / f"{stem}.json"
    if not meta.is_file():
        return None
    info = read_json(meta, "AGORA")
    try:
        a = np.asarray(info["img2bb_trans"], np.float32).reshape(2, 3)
        shape = (int(info["resized_height"]), int(info["resized_width"]))
    except (KeyError, ValueError) as err:
        raise InputError(f"{meta}: needs img2bb_trans (2x3), resized_height, resized_width ({err})") from err
    return folder / f"{stem}.png", a, shape


def _smplx_param(path: Path, kid: bool) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            p = safe_load(f, torch_tensors=True)  # plain data (arrays or tensors) only: no code from the file
        flat = {k: np.asarray(v, np.float32).reshape(-1) for k, v in p.items() if k != "gender"
                and np.asarray(v).dtype != object}
        shape = flat["betas"] if kid or "betas_neutral" not in flat else flat["betas_neutral"]
        return {"root_pose": flat["global_orient"][:3], "body_pose": flat["body_pose"][:63],
                "lhand_pose": flat["left_hand_pose"][:45], "rhand_pose": flat["right_hand_pose"][:45],
                "jaw_pose": flat["jaw_pose"][:3], "shape": shape[:10].copy(), "expr": flat["expression"][:10],
                "trans": flat["transl"][:3], "lhand_valid": True, "rhand_valid": True, "face_valid": True,
                "gender": "neutral"}
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError, AttributeError) as err:
        raise InputError(f"{path}: cannot read the SMPL-X parameters ({type(err).__name__}: {err})") from err


def load(spec: DatasetSpec, split: str, *, data_root=None, sample_interval: int = 1, bbox_ratio: float = 1.2,
         body_model_dir=None) -> EntryRecords:
    """AGORA ``split`` ('train', 'val' or 'test') as entries (module docstring)."""
    (annot_path,) = resolve_files(spec, split, data_root)
    base = resolve_img_dir(spec, data_root)
    entries, skipped = [], Counter()
    if split == "test":
        boxes = read_json(annot_path, "AGORA")
        for filename in sorted(boxes):
            for pid in range(len(boxes[filename])):
                found = _crop(base / "3840x2160" / "test_crop", f"{Path(filename).stem}_pid_{pid}")
                if found is None:
                    skipped["missing_crop"] += 1
                    continue
                img, a, (h, w) = found
                entries.append(_entry(spec, img, a, h, w, len(entries), pid))
        return EntryRecords(spec.name, split, entries[::max(1, sample_interval)], skipped)
    images, anns = read_coco(annot_path, "AGORA")
    people_in_image: Counter = Counter()
    for k, ann in enumerate(anns):
        where = f"{annot_path} annotation {ann.get('id', k)}"
        try:
            image_id = int(ann["image_id"])
            person = people_in_image[image_id]  # the person's number in its image: file order
            people_in_image[image_id] += 1
            if (k + 1) % max(1, sample_interval):
                continue
            if not ann["is_valid"]:
                skipped["not_valid"] += 1
                continue
            file_4k = str(images[image_id]["file_name_3840x2160"])
            folder = base / "3840x2160" / f"{Path(file_4k).parent.name}_crop"
            found = _crop(folder, f"{Path(file_4k).stem}_ann_id_{ann['id']}")
            if found is None:
                skipped["missing_crop"] += 1
                continue
            img, a, (h, w) = found
            entry = _entry(spec, img, a, h, w, int(ann["id"]), person)
            for part in ("lhand", "rhand", "face"):
                entry[f"{part}_bbox"] = _part_box(ann[f"{part}_bbox"], a)
            if split == "val":
                entry["gt"] = {"smplx_mesh_cam": LazyArray(read_verts_json, str(base / ann["smplx_verts_path"]))}
            else:  # the per-person files are read when the sample is built (in the worker), as the original
                entry.update(expand=expand_train_entry, agora_files={
                    "joints_2d": str(base / ann["smplx_joints_2d_path"]),
                    "joints_3d": str(base / ann["smplx_joints_3d_path"]),
                    "params": str(base / ann["smplx_param_path"]), "kid": bool(ann["kid"]), "where": where})
        except KeyError as err:
            raise InputError(f"{where} lacks {err}; see data/formats/agora.py for the expected keys") from err
        entries.append(entry)
    return EntryRecords(spec.name, split, entries, skipped, {"file": str(annot_path)})


@entry_function
def expand_train_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A training entry completed from its person's files: 127 AGORA joints (2D: 4K px -> crop px through the crop
    affine; 3D: m) mapped into the 137 set by name, and the SMPL-X parameters."""
    files = entry.pop("agora_files")
    a = entry["meta"]["agora_orig2crop"]
    j2d = np.asarray(read_json(Path(files["joints_2d"]), "AGORA"), np.float64).reshape(-1, 2)
    j3d = np.asarray(read_json(Path(files["joints_3d"]), "AGORA"), np.float32).reshape(-1, 3)
    if len(j2d) < 127 or len(j3d) < 127:
        raise InputError(f"{files['where']}: joint files hold {len(j2d)} / {len(j3d)} joints, expected 127")
    crop_2d = _affine(j2d[:127], a).astype(np.float32)
    entry["joint_img"], entry["joint_valid"] = entry["joint_img"].copy(), entry["joint_valid"].copy()
    entry["joint_cam"] = np.zeros((js.JOINT_NUM, 3), np.float32)
    for src, dst in _TO_137:
        entry["joint_img"][dst, :2] = crop_2d[src]
        entry["joint_valid"][dst, 0] = 1.0
        entry["joint_cam"][dst] = j3d[src]
    entry["smplx_param"] = _smplx_param(Path(files["params"]), files["kid"])
    return entry


def _entry(spec: DatasetSpec, img: Path, a: np.ndarray, h: int, w: int, index: int, person: int) -> dict[str, Any]:
    return {"img_path": str(img), "img_shape": (h, w), "bbox": np.array([0, 0, w, h], np.float32),
            "lhand_bbox": None, "rhand_bbox": None, "face_bbox": None,
            "joint_img": np.zeros((js.JOINT_NUM, 3), np.float32), "joint_cam": None,
            "joint_valid": np.zeros((js.JOINT_NUM, 1), np.float32), "smplx_param": None, "camera": {},
            "dataset": spec.name, "index": index,
            "meta": {"agora_orig2crop": a.astype(np.float32), "agora_person": np.int64(person)}}


# ----------------------------------------------------------------------------------------------------------------
# Evaluation and submission
def full_bb2img(bb2img: np.ndarray, orig2crop: np.ndarray) -> np.ndarray:
    """(B, 2, 3) network-input px -> 4K px: the sample's crop affine composed with the stored 4K -> crop affine."""
    out = np.zeros((len(bb2img), 2, 3))
    for i, (b, a) in enumerate(zip(np.asarray(bb2img, np.float64), np.asarray(orig2crop, np.float64))):
        out[i] = (np.linalg.inv(np.vstack([a, [0, 0, 1]])) @ np.vstack([b, [0, 0, 1]]))[:2]
    return out


class AgoraEvaluator(WholeBodyEvaluator):
    """Validation: the 10 vertex metrics (no joints) and the submission files; test: the submission files only."""

    def __init__(self, split: str, ctx: EvalContext):
        super().__init__("AGORA", ctx.assets, body_model=ctx.body_model, joints=False)
        self.split, self.writer = split, SubmissionWriter(ctx.out_dir, split)
        self.files = 0

    @torch.no_grad()
    def layer_joints_px(self, out: dict[str, np.ndarray], meta: dict[str, Any]) -> np.ndarray:
        """(B, 144, 2) px of the 3840x2160 image: every SMPL-X layer joint of the prediction, projected."""
        p = next(iter(self.body_model.buffers()))
        t = {k: torch.as_tensor(np.asarray(out[k]), dtype=p.dtype, device=p.device) for k in (
            "smplx_root_pose", "smplx_body_pose", "smplx_lhand_pose", "smplx_rhand_pose", "smplx_jaw_pose",
            "smplx_shape", "smplx_expr", "cam_trans")}
        _, joints = self.body_model(t["smplx_root_pose"], t["smplx_body_pose"], t["smplx_lhand_pose"],
                                    t["smplx_rhand_pose"], t["smplx_jaw_pose"], t["smplx_shape"], t["smplx_expr"])
        j = (joints + t["cam_trans"][:, None]).double().cpu().numpy()
        z = j[..., 2] + 1e-4
        x = (j[..., 0] / z * VIRTUAL_FOCAL[0] + VIRTUAL_PRINCPT[0]) / INPUT_BODY_SHAPE[1] * INPUT_IMG_SHAPE[1]
        y = (j[..., 1] / z * VIRTUAL_FOCAL[1] + VIRTUAL_PRINCPT[1]) / INPUT_BODY_SHAPE[0] * INPUT_IMG_SHAPE[0]
        b = full_bb2img(_np(meta["bb2img_trans"]), _np(meta["agora_orig2crop"]))
        return np.einsum("bij,bnj->bni", b, np.stack([x, y, np.ones_like(x)], -1))

    def process(self, out: dict, targets: dict, meta: dict) -> None:
        out = {k: _np(v) for k, v in out.items()}
        joints = self.layer_joints_px(out, meta)
        persons = _np(meta["agora_person"]).astype(int)
        for i, path in enumerate(meta["img_path"]):
            self.writer.add(str(path), {k: v[i] for k, v in out.items()}, joints[i], person_idx=int(persons[i]))
            self.files += 1
        if self.split == "test":  # no ground truth: one record per person, no metrics
            self.records.extend({"img_path": str(p)} for p in meta["img_path"])
        else:
            super().process(out, targets, meta)

    def write(self, result_dir, summary) -> None:
        super().write(result_dir, summary)
        print(f"AGORA {self.split}: {len(self.records)} submission file(s) in {self.writer.dir}"
              + (" (zip predictions/ and upload it to the AGORA evaluation server)" if self.split == "test" else ""))


def make_evaluator(split: str, ctx: EvalContext) -> AgoraEvaluator:
    return AgoraEvaluator(split, ctx)


# ----------------------------------------------------------------------------------------------------------------
# Synthetic AGORA in the official 4K-crop layout (tests)
SYN_FOCAL, SYN_CROP = 3000.0, (256, 192)  # px of the 3840x2160 frame; crop (h, w)


def write_synthetic_agora(data_root: str | Path, body_model_dir: str | Path, n_images: int = 2, people: int = 2,
                          seed: int = 0) -> dict[str, Any]:
    """Write ``AGORA/data/`` for train / val / test: ``people`` rendered bodies per 4K image (only their crops are
    rendered, as the crops are all the loader reads), per-person GT files and parameter pickles. Every person's crop
    affine is a scale + shift of the 4K frame. The first train person is marked invalid; people with an odd number
    are kids (``betas`` used), the others adults (``betas_neutral`` used, ``betas`` holds other values).

    Returns ``{split: [{'ann_id', 'person', 'image', 'joints' (144, 3) m, 'uv4k' (144, 2), 'verts', 'affine',
    'betas_used', 'params'}...]}``.
    """
    import cv2

    from common.body_model import SMPLXLayer
    from common.utils.io import save_json
    from data import synthetic_humandata as sh

    base = Path(data_root) / "AGORA" / "data"
    layer = SMPLXLayer(body_model_dir, "neutral")
    regions = sh._face_regions(layer)
    from common.body_model import load_eval_assets

    assets = load_eval_assets(body_model_dir)
    camera = {"focal": [SYN_FOCAL, SYN_FOCAL], "princpt": [1920.0, 1080.0]}
    truth: dict[str, list] = {}
    aid = 0
    for split, folder, s in (("train", "train", seed), ("val", "validation", seed + 1), ("test", "test", seed + 2)):
        images, anns, boxes_test, truth[split] = [], [], {}, []
        for i in range(n_images):
            name = f"ag_{folder}_{i:05d}.png"
            images.append({"id": i, "file_name_3840x2160": f"{folder}/{name}"})
            for k in range(people):
                rng = np.random.default_rng([s, i, k])
                p = sh.sample_smplx_params(rng)
                v0, _ = sh._run_layer(layer, [p])
                strip = (3840 * k / people, 3840 * (k + 1) / people)
                transl = sh._place(v0[0].astype(np.float64), rng, camera, AGORA_RESOLUTION, strip)
                verts, joints = sh._run_layer(layer, [p], transl[None].astype(np.float32))
                uv = sh.project(verts[0], camera["focal"], camera["princpt"])
                x, y, w, h = sh._extent_xywh(uv, 1.2)
                scale = SYN_CROP[0] / max(h, w / 0.75)
                cx, cy = x + w / 2, y + h / 2
                a = np.array([[scale, 0, SYN_CROP[1] / 2 - scale * cx], [0, scale, SYN_CROP[0] / 2 - scale * cy]])
                crop_cam = {"focal": [SYN_FOCAL * scale] * 2,
                            "princpt": [scale * 1920.0 + a[0, 2], scale * 1080.0 + a[1, 2]]}
                img = sh.synthetic_background(s, i * 10 + k, SYN_CROP)
                sh._paint(img, [verts[0]], layer.faces, [sh._face_colours(regions, rng)], crop_cam)
                stem = f"{Path(name).stem}_pid_{k}" if split == "test" else f"{Path(name).stem}_ann_id_{aid}"
                crop_dir = base / "3840x2160" / ("test_crop" if split == "test" else f"{folder}_crop")
                crop_dir.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(crop_dir / f"{stem}.png"), img[:, :, ::-1])
                save_json(crop_dir / f"{stem}.json", {"img2bb_trans": a.tolist(), "resized_height": SYN_CROP[0],
                                                     "resized_width": SYN_CROP[1]})
                uvj = sh.project(joints[0], camera["focal"], camera["princpt"])
                kid = k % 2 == 1
                record = {"ann_id": aid, "person": k, "image": name, "joints": joints[0], "uv4k": uvj,
                          "verts": verts[0], "affine": a, "betas_used": p["betas"], "params": p}
                truth[split].append(record)
                if split == "test":
                    boxes_test.setdefault(name, []).append({"bbox": [float(v) for v in (x, y, w, h)]})
                    aid += 1
                    continue
                gt = f"gt/{folder}/{aid}"
                (base / "gt" / folder).mkdir(parents=True, exist_ok=True)
                save_json(base / f"{gt}_2d.json", uvj[:127].tolist())
                save_json(base / f"{gt}_3d.json", joints[0][:127].tolist())
                save_json(base / f"{gt}_verts.json", verts[0].tolist())
                other = p["betas"] + 1.0  # what the loader must not use for adults
                param = {"global_orient": p["global_orient"][None], "body_pose": p["body_pose"].reshape(1, 63),
                         "left_hand_pose": p["left_hand_pose"].reshape(1, 45),
                         "right_hand_pose": p["right_hand_pose"].reshape(1, 45), "jaw_pose": p["jaw_pose"][None],
                         "expression": p["expression"][None], "transl": transl[None],
                         "betas": np.concatenate([p["betas"], [0.5]])[None] if kid else other[None]}
                if not kid:
                    param["betas_neutral"] = p["betas"][None]
                with open(base / f"{gt}.pkl", "wb") as f:
                    pickle.dump(param, f, protocol=2)
                parts = {"lhand_bbox": assets.hand_vertex_idx["left"], "rhand_bbox": assets.hand_vertex_idx["right"],
                         "face_bbox": assets.face_vertex_idx}
                anns.append({"id": aid, "image_id": i, "is_valid": not (split == "train" and aid == 0), "kid": kid,
                             "gender": "neutral", "smplx_joints_2d_path": f"{gt}_2d.json",
                             "smplx_joints_3d_path": f"{gt}_3d.json", "smplx_verts_path": f"{gt}_verts.json",
                             "smplx_param_path": f"{gt}.pkl",
                             **{key: [float(v) for v in sh._extent_xywh(uv[idx])] for key, idx in parts.items()}})
                aid += 1
        if split == "test":
            save_json(base / "AGORA_test_bbox.json", boxes_test)
        else:
            save_json(base / f"AGORA_{'train' if split == 'train' else 'validation'}_fix_betas.json",
                      {"images": images, "annotations": anns})
    return truth
