"""Sample pipeline (data/sample.py) and the batched body-model targets (data/targets.py).

Entries are built by hand from known SMPL-X parameters and a known camera: the stand-in SMPL-X layer gives the
camera-frame joints, their projection the 2D keypoints. So every fit-derived target has an independent
counterpart: the same joints pushed through ``process_db_coord`` as keypoints, or the pose targets pushed back
through the body model.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from torch.utils.data import default_collate

from common.body_model import joint_sets as js
from common.config import ModelConfig
from common.utils.image import generate_patch_image, process_bbox
from data import transforms as T
from data.sample import GENDERS, build_sample
from data.targets import build_model_targets

CFG = ModelConfig()
W, H = 640, 720  # image px
FOCAL, PRINCPT = np.array([900.0, 900.0], np.float32), np.array([320.0, 360.0], np.float32)
CAM_R = Rotation.from_euler("xyz", [6, -12, 4], degrees=True).as_matrix().astype(np.float32)
CAM_T = np.array([0.1, -0.05, 0.3], np.float32)
KINEMATIC = np.array(js.JOINT_IDX) < 55  # 137 rows that are kinematic joints (mirror-exact in the stand-in)


@pytest.fixture(scope="module")
def layers(body_model_dir):
    from common.body_model import SMPLXLayer

    return {g: SMPLXLayer(body_model_dir, gender=g) for g in GENDERS}


@pytest.fixture(scope="module")
def img_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sample_img") / "img.png"
    img = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)
    return path


def _run_layer(layer, pose: np.ndarray, betas: np.ndarray, expr: np.ndarray, trans: np.ndarray | None) -> np.ndarray:
    """(137, 3) joints of one parameter set (metres, the layer's frame)."""
    t = lambda a: torch.from_numpy(np.asarray(a, np.float32))[None]  # noqa: E731
    p = pose.reshape(-1)
    _, joints = layer(t(p[:3]), t(p[3:66]), t(p[66:111]), t(p[111:156]), t(p[156:]), t(betas), t(expr),
                      None if trans is None else t(trans))
    return joints[0].numpy()[list(js.JOINT_IDX)]


def make_entry(layers, img_path, seed: int, *, camera: str = "intrinsics", gender: str = "neutral",
               has_3d: bool = True, zero_shape: bool = False, lhand_valid: bool = True, face_valid: bool = True,
               boxes: bool = True, smplx: bool = True, dataset: str = "test") -> tuple[dict, np.ndarray]:
    """(datalist entry, true camera-frame joints (137, 3) m) of a body 4 m in front of the camera.

    camera: 'intrinsics' (focal/princpt), 'none' (empty dict: the 2D keypoints are the projection targets) or
    'extrinsics' (focal/princpt/R/t: the parameters live in a world frame, the keypoints in the camera frame).
    """
    rng = np.random.default_rng(seed)
    # body y-up -> camera y-down: a half turn about x, then a yaw and a small tilt (the body faces the camera)
    root_cam = Rotation.from_euler("xyz", [180 + rng.uniform(-10, 10), rng.uniform(-30, 30), rng.uniform(-8, 8)],
                                   degrees=True)
    pose = np.zeros(159, np.float32)
    pose[3:66] = rng.normal(scale=0.2, size=63)
    pose[66:156] = rng.normal(scale=0.25, size=90)
    pose[156:] = rng.normal(scale=0.1, size=3)
    betas = np.zeros(10, np.float32) if zero_shape else rng.normal(scale=0.5, size=10).astype(np.float32)
    expr = np.zeros(10, np.float32) if zero_shape else rng.normal(scale=0.5, size=10).astype(np.float32)
    if not lhand_valid:
        pose[66:111] = 0
    if not face_valid:
        pose[156:], expr = 0, np.zeros(10, np.float32)
    trans_cam = np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.1, 0.2), 4.0], np.float32)
    if camera == "extrinsics":
        root = Rotation.from_matrix(CAM_R.T.astype(np.float64)) * root_cam
        trans = CAM_R.T @ (trans_cam - CAM_T)
    else:
        root, trans = root_cam, trans_cam
    pose[:3] = root.as_rotvec()
    world = _run_layer(layers[gender], pose, betas, expr, trans)
    joints = world @ CAM_R.T + CAM_T if camera == "extrinsics" else world
    uv = joints[:, :2] / joints[:, 2:] * FOCAL + PRINCPT

    x0, y0 = uv.min(0)
    x1, y1 = uv.max(0)
    bbox = process_bbox([x0, y0, x1 - x0, y1 - y0], W, H, ratio=1.2)

    def part_box(part: str) -> np.ndarray:
        p = uv[js.JOINT_PART[part]]
        b = process_bbox([*p.min(0), *np.ptp(p, 0)], W, H, ratio=1.2)
        return np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]], np.float32)

    cams = {"intrinsics": {"focal": FOCAL, "princpt": PRINCPT}, "none": {},
            "extrinsics": {"focal": FOCAL, "princpt": PRINCPT, "R": CAM_R, "t": CAM_T}}
    param = {"root_pose": pose[:3], "body_pose": pose[3:66], "lhand_pose": pose[66:111], "rhand_pose": pose[111:156],
             "jaw_pose": pose[156:], "shape": betas, "expr": expr, "trans": trans.astype(np.float32),
             "lhand_valid": lhand_valid, "rhand_valid": True, "face_valid": face_valid, "gender": gender}
    entry = {
        "img_path": str(img_path), "img_shape": (H, W), "bbox": bbox,
        "lhand_bbox": part_box("lhand") if boxes and lhand_valid else None,
        "rhand_bbox": part_box("rhand") if boxes else None,
        "face_bbox": part_box("face") if boxes and face_valid else None,
        "joint_img": np.concatenate([uv, np.ones((137, 1))], 1).astype(np.float32),
        "joint_cam": joints.astype(np.float32) if has_3d else None,
        "joint_valid": np.ones((137, 1), np.float32),
        "smplx_param": {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in param.items()} if smplx else None,
        "camera": {k: np.asarray(v, np.float32) for k, v in cams[camera].items()},
        "dataset": dataset, "index": seed,
    }
    return entry, joints.astype(np.float32)


def seeds_with(flip: bool, rot: bool, n: int = 1, max_rot: float = 60.0) -> list[int]:
    """Sample seeds whose augmentation draw has the given flip and (non-)zero rotation of at most max_rot degrees."""
    out = []
    for s in range(1000):
        aug = T.get_aug_config(np.random.default_rng(s))
        if aug.do_flip == flip and (aug.rot != 0) == rot and abs(aug.rot) <= max_rot:
            out.append(s)
            if len(out) == n:
                return out
    raise AssertionError("no such seed")


AUG_SEEDS = seeds_with(False, False) + seeds_with(False, True) + seeds_with(True, False) + seeds_with(True, True, 2)


def keypoint_reference(joints: np.ndarray, meta: dict, b: int) -> T.KeypointTargets:
    """process_db_coord of the true 3D joints with sample b's augmentation (independent of the body-model step)."""
    rel = joints - joints[js.ROOT_IDX]
    uv = joints[:, :2] / joints[:, 2:] * FOCAL + PRINCPT
    joint_img = np.concatenate([uv, T.keypoint_depth_bins(rel, CFG)[:, None]], 1)
    return T.process_db_coord(joint_img, rel, np.ones((137, 1)), bool(meta["do_flip"][b]), W,
                              meta["img2bb_trans"][b].numpy(), float(meta["rot"][b]), CFG, has_depth=True)


def _batch(entries: list[dict], seeds: list[int], options: T.TargetOptions = T.TargetOptions(), train: bool = True):
    samples = [build_sample(e, np.random.default_rng(s), train, CFG, options=options) for e, s in zip(entries, seeds)]
    return default_collate(samples)


# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("camera,gender", [("intrinsics", "male"), ("none", "female"), ("extrinsics", "neutral")])
def test_fit_targets_match_transformed_keypoints(layers, img_path, camera, gender):
    """Under flip / rotation / scale, the fit-derived targets of 2D-only samples (layer -> camera -> projection or
    2D keypoints -> flip -> affine) equal process_db_coord of the true 3D keypoints: x, y, part-relative depth bins,
    part-relative joint_cam and truncation."""
    made = [make_entry(layers, img_path, s, camera=camera, gender=gender, has_3d=False) for s in AUG_SEEDS]
    _, targets, meta = _batch([e for e, _ in made], AUG_SEEDS)
    targets, meta = build_model_targets(targets, meta, layers, CFG)
    assert set(meta["do_flip"].tolist()) == {0.0, 1.0} and (meta["rot"] != 0).any()
    assert (meta["cam_has_intrinsics"] == (camera != "none")).all()
    # With extrinsics the keypoints here are world-frame joints moved into the camera; the layer, run with the
    # camera-frame root as the original does, picks the dynamic face-contour landmarks for the camera-frame head
    # orientation, so those 17 rows legitimately differ.
    rows = np.arange(137) if camera != "extrinsics" else np.arange(120)
    for b, (_, joints) in enumerate(made):
        ref = keypoint_reference(joints, meta, b)
        assert np.abs(targets["smplx_joint_img"][b, rows].numpy() - ref.joint_img[rows]).max() < 1e-3  # hm cells
        assert np.abs(targets["smplx_joint_cam"][b, rows].numpy() - ref.joint_cam_ra[rows]).max() < 1e-4  # m
        assert (meta["smplx_joint_trunc"][b, rows].numpy() == ref.joint_trunc[rows]).all()
        assert ref.joint_trunc.sum() >= 10  # (strong rotations move limbs out of the crop)
        # the keypoint targets of the same sample (2D only: no depth) agree in x, y
        assert np.abs(targets["joint_img"][b, :, :2].numpy() - ref.joint_img[:, :2]).max() < 1e-3


@pytest.mark.parametrize("camera", ["intrinsics", "extrinsics"])
def test_pose_targets_reproduce_the_transformed_keypoints(layers, img_path, camera):
    """The flipped / rotated pose target, run through the body model, gives the flipped / rotated 3D keypoint
    targets (kinematic joints; the stand-in's mesh-derived joints are not mirror-symmetric)."""
    made = [make_entry(layers, img_path, s, camera=camera, zero_shape=True) for s in AUG_SEEDS]
    _, targets, meta = _batch([e for e, _ in made], AUG_SEEDS)
    for b in range(len(made)):
        joints = _run_layer(layers["neutral"], targets["smplx_pose"][b].numpy(), np.zeros(10), np.zeros(10), None)
        rel = joints - joints[js.ROOT_IDX]
        target = targets["joint_cam"][b].numpy()
        assert np.abs(rel[KINEMATIC] - target[KINEMATIC]).max() < 1e-4
        # and the truth, transformed independently
        assert np.abs(target - keypoint_reference(made[b][1], meta, b).joint_cam_wo_ra).max() < 1e-5


@pytest.mark.parametrize("flip", [False, True])
def test_masks_follow_missing_annotations(layers, img_path, flip):
    seed = seeds_with(flip, True, max_rot=20.0)[0]  # mild: the hands stay in the crop
    entry, _ = make_entry(layers, img_path, seed, has_3d=False, lhand_valid=False, face_valid=False)
    _, targets, meta = _batch([entry], [seed])
    targets, meta = build_model_targets(targets, meta, layers, CFG)
    missing, present = ("rhand", "lhand") if flip else ("lhand", "rhand")  # the flip swaps sides
    pose_rows = {"lhand": slice(66, 111), "rhand": slice(111, 156)}
    pv = meta["smplx_pose_valid"][0]
    assert (pv[pose_rows[missing]] == 0).all() and (pv[pose_rows[present]] == 1).all()
    assert (pv[156:] == 0).all() and (pv[:66] == 1).all()
    assert (targets["smplx_pose"][0, pose_rows[missing]] == 0).all() and (targets["smplx_pose"][0, 156:] == 0).all()
    assert meta["smplx_expr_valid"][0] == 0 and (targets["smplx_expr"][0] == 0).all()
    assert meta["is_3D"][0] == 0 and (targets["joint_cam"][0] == 0).all()
    assert meta[f"{missing}_bbox_valid"][0] == 0 and meta[f"{present}_bbox_valid"][0] == 1
    assert meta["face_bbox_valid"][0] == 0
    for key in ("smplx_joint_valid", "smplx_joint_trunc"):
        m = meta[key][0, :, 0]
        assert (m[js.JOINT_PART[missing]] == 0).all() and (m[js.JOINT_PART["face"]] == 0).all()
    assert meta["smplx_joint_trunc"][0, js.JOINT_PART[present], 0].sum() > 10
    assert meta["smplx_shape_valid"][0] == 1

    # no SMPL-X fit at all: zeros with zero masks, and the body-model step leaves them alone
    entry, _ = make_entry(layers, img_path, seed, smplx=False, has_3d=False)
    _, targets, meta = _batch([entry], [seed])
    targets2, meta2 = build_model_targets(targets, meta, layers, CFG)
    assert meta["has_smplx"][0] == 0
    for key in ("smplx_pose_valid", "smplx_shape_valid", "smplx_expr_valid", "smplx_joint_valid", "smplx_joint_trunc"):
        assert (meta2[key] == 0).all()
    for key in ("smplx_pose", "smplx_joint_img", "smplx_joint_cam"):
        assert (targets2[key] == 0).all()
    assert meta["joint_trunc"].sum() > 60  # the keypoints still supervise


def test_2d_only_samples_keep_2d_supervision(layers, img_path):
    """Defect 12 fixed: a 2D-only sample without a camera has keypoint and fit truncation; the original: none."""
    seed = seeds_with(True, True)[0]
    entry, joints = make_entry(layers, img_path, seed, camera="none", has_3d=False)
    _, targets, meta = _batch([entry], [seed])
    targets, meta = build_model_targets(targets, meta, layers, CFG)
    hm = targets["joint_img"][0].numpy()
    inside = (hm[:, 0] >= 0) & (hm[:, 0] < 12) & (hm[:, 1] >= 0) & (hm[:, 1] < 16)
    assert inside.sum() > 60 and (meta["joint_trunc"][0, :, 0].numpy() == inside).all()
    assert meta["smplx_joint_trunc"].sum() > 60

    _, targets, meta = _batch([entry], [seed], options=T.TargetOptions.original())
    targets, meta = build_model_targets(targets, meta, layers, CFG, options=T.TargetOptions.original())
    assert meta["joint_trunc"].sum() == 0 and meta["smplx_joint_trunc"].sum() == 0
    # original: the fit-side image target of a 2D-only sample is the keypoint target (depth 0)
    assert torch.equal(targets["smplx_joint_img"], targets["joint_img"])


def test_batched_equals_per_sample(layers, img_path):
    kinds = [dict(camera="intrinsics", gender="neutral"), dict(camera="intrinsics", gender="male", has_3d=False),
             dict(camera="none", gender="female", has_3d=False), dict(camera="extrinsics", has_3d=False),
             dict(smplx=False, has_3d=False), dict(camera="none", dataset="RenBody"),
             dict(camera="extrinsics", gender="female", has_3d=False, lhand_valid=False, face_valid=False)]
    seeds = [AUG_SEEDS[i % len(AUG_SEEDS)] for i in range(len(kinds))]
    entries = [make_entry(layers, img_path, s, **k)[0] for s, k in zip(seeds, kinds)]
    _, targets, meta = _batch(entries, seeds)
    out_t, out_m = build_model_targets(targets, meta, layers, CFG)
    for b in range(len(entries)):
        _, t1, m1 = _batch([entries[b]], [seeds[b]])
        t1, m1 = build_model_targets(t1, m1, layers, CFG)
        for big, one in ((out_t, t1), (out_m, m1)):
            for key, value in one.items():
                if torch.is_tensor(value):
                    assert torch.allclose(big[key][b], value[0], atol=2e-5), key
    # the body-model step changed what it should (and only for samples without 3D keypoints or with the quirk)
    assert not torch.equal(out_t["smplx_joint_cam"][1], targets["smplx_joint_cam"][1])
    assert torch.equal(out_t["smplx_joint_cam"][0], targets["smplx_joint_cam"][0])
    assert torch.equal(out_t["joint_cam"][:5], targets["joint_cam"][:5])


def test_renbody_takes_3d_joints_from_the_fit(layers, img_path):
    seed = seeds_with(True, True)[0]
    entry, joints = make_entry(layers, img_path, seed, camera="intrinsics", dataset="RenBody")
    entry["joint_cam"] = entry["joint_cam"] + np.random.default_rng(1).normal(scale=0.05, size=(137, 3))
    _, targets, meta = _batch([entry], [seed])
    assert meta["use_model_joint_cam"][0] == 1
    before = targets["joint_cam"][0].numpy()
    targets, meta = build_model_targets(targets, meta, layers, CFG)
    ref = keypoint_reference(joints, meta, 0)
    assert np.abs(before - ref.joint_cam_wo_ra).max() > 0.01  # the noisy keypoints
    assert np.abs(targets["joint_cam"][0].numpy() - ref.joint_cam_wo_ra).max() < 1e-4
    assert np.abs(targets["smplx_joint_cam"][0].numpy() - ref.joint_cam_ra).max() < 1e-4


TRAIN_SCHEMA = {
    "targets": {"joint_img": (137, 3), "smplx_joint_img": (137, 3), "joint_cam": (137, 3), "smplx_joint_cam": (137, 3),
                "smplx_pose": (159,), "smplx_shape": (10,), "smplx_expr": (10,),
                **{f"{p}_bbox_{k}": (2,) for p in ("lhand", "rhand", "face") for k in ("center", "size")}},
    "meta": {"joint_valid": (137, 1), "joint_trunc": (137, 1), "smplx_joint_valid": (137, 1),
             "smplx_joint_trunc": (137, 1), "smplx_pose_valid": (159,), "smplx_shape_valid": (), "smplx_expr_valid": (),
             "is_3D": (), "lhand_bbox_valid": (), "rhand_bbox_valid": (), "face_bbox_valid": (), "has_smplx": (),
             "bm_pose": (159,), "bm_shape": (10,), "bm_expr": (10,), "bm_trans": (3,), "bm_gender": (),
             "cam_focal": (2,), "cam_princpt": (2,), "cam_has_intrinsics": (), "cam_R": (3, 3), "cam_t": (3,),
             "cam_has_R": (), "cam_has_t": (), "do_flip": (), "rot": (), "img2bb_trans": (2, 3), "img_width": (),
             "img_height": (), "kp_joint_img": (137, 3), "use_model_joint_cam": ()},
}


def test_schema_and_default_collate(layers, img_path):
    kinds = [dict(), dict(has_3d=False, camera="none", boxes=False), dict(smplx=False), dict(camera="extrinsics")]
    entries = [make_entry(layers, img_path, i, **k)[0] for i, k in enumerate(kinds)]
    samples = [build_sample(e, np.random.default_rng(i), True, CFG) for i, e in enumerate(entries)]
    for inputs, targets, meta in samples:
        assert inputs["img"].shape == (3, 512, 384) and inputs["img"].dtype == np.float32
        assert 0 <= inputs["img"].min() and inputs["img"].max() <= 1
        for part, schema in ((targets, TRAIN_SCHEMA["targets"]), (meta, TRAIN_SCHEMA["meta"])):
            assert set(part) == set(schema)
            for key, shape in schema.items():
                assert np.shape(part[key]) == shape, key
                assert np.asarray(part[key]).dtype == (np.int64 if key == "bm_gender" else np.float32), key
    inputs, targets, meta = default_collate(samples)
    assert inputs["img"].shape == (4, 3, 512, 384)
    assert all(v.dtype == torch.float32 for k, v in {**targets, **meta}.items() if k != "bm_gender")
    assert meta["bm_gender"].dtype == torch.int64

    tests = [build_sample(e, np.random.default_rng(0), False, CFG) for e in entries]
    inputs, targets, meta = default_collate(tests)
    assert set(targets) == {"smplx_pose", "smplx_shape", "smplx_expr", "smplx_cam_trans"}
    assert meta["img_path"] == [str(img_path)] * 4 and meta["bb2img_trans"].shape == (4, 2, 3)
    assert meta["gt_smplx_transl"].dtype == torch.float32 and torch.equal(meta["gt_smplx_transl"],
                                                                          targets["smplx_cam_trans"])


def test_deterministic_for_a_seed(layers, img_path):
    entry, _ = make_entry(layers, img_path, 3, has_3d=False)
    a = build_sample(entry, np.random.default_rng(11), True, CFG)
    b = build_sample(entry, np.random.default_rng(11), True, CFG)
    c = build_sample(entry, np.random.default_rng(12), True, CFG)
    for x, y in zip(a, b):
        assert all(np.array_equal(x[k], y[k]) for k in x)
    assert not np.array_equal(a[0]["img"], c[0]["img"])
    no_aug = build_sample(entry, np.random.default_rng(11), True, CFG, no_aug=True)
    assert no_aug[2]["do_flip"] == 0 and no_aug[2]["rot"] == 0


def test_test_mode_sample(layers, img_path):
    entry, _ = make_entry(layers, img_path, 5, camera="extrinsics")
    entry["smplx_param"]["shape"][2] = -3.2  # out of range: the mean shape is used
    inputs, targets, meta = build_sample(entry, np.random.default_rng(0), False, CFG)
    img = cv2.imread(str(img_path))[:, :, ::-1].astype(np.float32)
    crop, img2bb, bb2img = generate_patch_image(img, entry["bbox"], 1.0, 0.0, False, CFG.input_img_shape)
    assert np.allclose(inputs["img"], crop.transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert np.allclose(meta["bb2img_trans"], bb2img) and np.allclose(meta["img2bb_trans"], img2bb)
    param = entry["smplx_param"]
    assert np.allclose(targets["smplx_cam_trans"], param["trans"]) and np.allclose(meta["gt_smplx_transl"],
                                                                                   param["trans"])
    root = Rotation.from_rotvec(targets["smplx_pose"][:3]).as_matrix()
    assert np.allclose(root, CAM_R @ Rotation.from_rotvec(param["root_pose"]).as_matrix(), atol=1e-5)
    assert np.allclose(targets["smplx_pose"][3:], np.concatenate([param[k] for k in (
        "body_pose", "lhand_pose", "rhand_pose", "jaw_pose")]))
    assert (targets["smplx_shape"] == 0).all() and meta["smplx_shape_valid"] == 0
    assert np.allclose(targets["smplx_expr"], param["expr"])


@pytest.mark.parametrize("follow", [True, False])
def test_fit_truncation_follows_the_flip(layers, img_path, follow):
    """Fit-side truncation uses the same rows as the keypoint side: with the fix, a flipped row is tested on the
    original coordinates of the joint it now holds; the original tested its mirror partner's."""
    seed = seeds_with(True, False)[0]
    entry, _ = make_entry(layers, img_path, seed, camera="none", has_3d=False)
    l_ear, r_ear = js.JOINTS_NAME.index("L_Ear"), js.JOINTS_NAME.index("R_Ear")
    entry["joint_img"][l_ear, 1] = -3.0  # not annotated in the image (above its top) ...
    x, y, w, h = entry["bbox"]
    entry["bbox"] = np.array([x, y - 150, w, h + 150], np.float32)  # ... but inside the crop
    options = T.TargetOptions(trunc_follows_flip=follow)
    _, targets, meta = _batch([entry], [seed], options=options)
    targets, meta = build_model_targets(targets, meta, layers, CFG, options=options)
    ref = T.process_db_coord(meta["kp_joint_img"][0].numpy(), np.zeros((137, 3)), np.ones((137, 1)), True, W,
                             meta["img2bb_trans"][0].numpy(), 0.0, CFG, has_depth=False, options=options)
    assert (meta["joint_trunc"][0].numpy() == ref.joint_trunc).all()
    for trunc in (meta["joint_trunc"][0, :, 0], meta["smplx_joint_trunc"][0, :, 0]):
        # after the flip the L_Ear row holds the old (annotated) right ear, the R_Ear row the old left ear
        assert (trunc[l_ear], trunc[r_ear]) == ((1, 0) if follow else (0, 1))
