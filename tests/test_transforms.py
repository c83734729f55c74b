"""Pure numpy sample transforms (data/transforms.py): augmentation draws, crop, flips, keypoint / pose / box targets.

Expected values come from independent computations: scipy rotations for axis-angle algebra, the crop affine applied
by hand (cv2.transform), rotation matrices mirrored as M R M, and joint names for the flip pairs.
"""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from common.body_model import joint_sets as js
from common.config import ModelConfig
from common.utils.image import process_bbox
from data import transforms as T

CFG = ModelConfig()
CELL = 32.0  # crop px per hm cell, in x (384 / 12) and y (512 / 16)


def _img2bb(bbox, aug: T.AugParams, img_w: int) -> np.ndarray:
    """The crop affine of ``augment`` (computed through it on a blank image)."""
    _, img2bb, _ = T.augment(np.zeros((8, img_w, 3), np.float32), np.asarray(bbox, np.float32), aug,
                             CFG.input_img_shape)
    return img2bb


def _to_hm(xy: np.ndarray, img2bb: np.ndarray) -> np.ndarray:
    return cv2.transform(xy[None].astype(np.float64), img2bb.astype(np.float64))[0] / CELL


# ----------------------------------------------------------------------------------------------------------------
# augmentation
def test_get_aug_config_distributions_and_own_rng():
    py_state, np_state = random.getstate(), np.random.get_state()
    draws = [T.get_aug_config(np.random.default_rng([7, i])) for i in range(3000)]
    assert random.getstate() == py_state  # the global RNGs are never touched (defect 21)
    assert all((a == b).all() for a, b in zip(np.random.get_state()[1], np_state[1]))

    scale = np.array([d.scale for d in draws])
    rot = np.array([d.rot for d in draws])
    color = np.stack([d.color_scale for d in draws])
    flip = np.array([d.do_flip for d in draws])
    assert scale.min() >= 0.75 and scale.max() <= 1.25
    assert np.isclose((scale == 0.75).mean(), 0.1587, atol=0.03)  # P(N(0,1) < -1) clipped onto the bound
    assert np.abs(rot).max() <= 60 and np.isclose((rot == 0).mean(), 0.4, atol=0.04)
    assert np.isclose(np.abs(rot[rot != 0]).max(), 60.0)  # clip at 2 sigma reached
    assert color.min() >= 0.8 and color.max() <= 1.2 and np.isclose(color.mean(), 1.0, atol=0.01)
    assert np.isclose(flip.mean(), 0.5, atol=0.04)

    a, b = T.get_aug_config(np.random.default_rng(3)), T.get_aug_config(np.random.default_rng(3))
    assert (a.scale, a.rot, a.do_flip) == (b.scale, b.rot, b.do_flip) and (a.color_scale == b.color_scale).all()


def test_augment_moves_pixels_with_the_affine():
    """A bright dot lands where img2bb sends its (flipped) position; colours are scaled and clipped."""
    h, w = 300, 240
    dot = np.array([150.0, 120.0])  # x, y px
    img = np.full((h, w, 3), 20.0, np.float32)
    cv2.circle(img, (int(dot[0]), int(dot[1])), 3, (200.0, 200.0, 200.0), -1)
    bbox = np.array([40.0, 30.0, 180.0, 240.0], np.float32)
    rng = np.random.default_rng(1)
    for _ in range(6):
        aug = T.get_aug_config(rng)
        crop, img2bb, bb2img = T.augment(img, bbox, aug, CFG.input_img_shape)
        assert crop.shape == (512, 384, 3) and crop.dtype == np.float32
        src = np.array([w - 1 - dot[0], dot[1]]) if aug.do_flip else dot
        expect = cv2.transform(src[None, None], img2bb.astype(np.float64))[0, 0]
        grey = crop.mean(2)
        ys, xs = np.nonzero(grey > grey.max() - 1)
        assert np.hypot(xs.mean() - expect[0], ys.mean() - expect[1]) < 1.5
        # colour scaling: background 20 * factor per channel (at the box centre, 40 px from the dot)
        centre = np.array([130.0, 150.0])
        centre = np.array([w - 1 - centre[0], centre[1]]) if aug.do_flip else centre
        at = cv2.transform(centre[None, None], img2bb.astype(np.float64))[0, 0]
        px = crop[int(round(at[1])), int(round(at[0]))]
        assert np.allclose(px, 20.0 * aug.color_scale, atol=1e-3)
        # bb2img inverts img2bb
        both = np.vstack([bb2img, [0, 0, 1]]) @ np.vstack([img2bb, [0, 0, 1]])
        assert np.allclose(both, np.eye(3), atol=1e-3)
    bright = T.augment(np.full((h, w, 3), 250.0, np.float32), bbox,
                       T.AugParams(color_scale=np.array([1.2, 1.0, 0.5], np.float32)), CFG.input_img_shape)[0]
    assert np.allclose(bright[256, 192], [255.0, 250.0, 125.0])


# ----------------------------------------------------------------------------------------------------------------
# flips
def test_flip_pairs_are_the_mirror_names():
    perm = T.FLIP_PERM_137
    assert (perm[perm] == np.arange(137)).all()
    for i, name in enumerate(js.JOINTS_NAME):
        if name.startswith(("L_", "R_")):
            other = ("R_" if name[0] == "L" else "L_") + name[2:]
            assert js.JOINTS_NAME[perm[i]] == other
    perm53 = T.FLIP_PERM_53
    assert (perm53[perm53] == np.arange(53)).all()
    for i, name in enumerate(js.ORIG_JOINTS_NAME):
        expect = ("R_" if name[0] == "L" else "L_") + name[2:] if name.startswith(("L_", "R_")) else name
        assert js.ORIG_JOINTS_NAME[perm53[i]] == expect


def test_flipping_twice_restores_keypoints_pose_and_boxes():
    rng = np.random.default_rng(0)
    joint_img = rng.uniform(0, 500, (137, 3)).astype(np.float32)
    joint_cam = rng.normal(size=(137, 3)).astype(np.float32)
    pose = rng.normal(size=(53, 3)).astype(np.float32)
    valid = (rng.random(53) > 0.5).astype(np.float32)
    box = np.array([10.0, 20.0, 60.0, 90.0], np.float32)

    once = T.flip_joint_img(joint_img, 640)
    assert not np.allclose(once, joint_img)
    assert np.allclose(T.flip_joint_img(once, 640), joint_img)
    assert np.allclose(T.flip_joint_cam(T.flip_joint_cam(joint_cam)), joint_cam)
    p1, v1 = T.flip_smplx_pose(pose, valid)
    p2, v2 = T.flip_smplx_pose(p1, v1)
    assert np.allclose(p2, pose) and (v2 == valid).all()
    flipped = T.flip_box_xyxy(box, 640)
    assert np.allclose(flipped, [640 - 1 - 60, 20, 640 - 1 - 10, 90])
    assert np.allclose(T.flip_box_xyxy(flipped, 640), box)


def test_pose_flip_is_the_mirror_rotation():
    """Per joint, the flipped rotation is M R M (M = diag(-1, 1, 1)) of its mirror partner's rotation."""
    rng = np.random.default_rng(1)
    pose = rng.normal(size=(53, 3)) * 0.7
    flipped, _ = T.flip_smplx_pose(pose)
    m = np.diag([-1.0, 1.0, 1.0])
    for i in range(53):
        src = Rotation.from_rotvec(pose[T.FLIP_PERM_53[i]]).as_matrix()
        assert np.allclose(Rotation.from_rotvec(flipped[i]).as_matrix(), m @ src @ m, atol=1e-5)


def test_root_rotations_compose_as_matrices():
    rng = np.random.default_rng(2)
    root = rng.normal(size=3)
    rot = 37.0
    expect = Rotation.from_euler("z", -rot, degrees=True) * Rotation.from_rotvec(root)
    got = Rotation.from_rotvec(T.rotate_root_pose(root, rot))
    assert np.allclose(got.as_matrix(), expect.as_matrix(), atol=1e-5)
    cam_r = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()
    got = Rotation.from_rotvec(T.apply_camera_rotation(root, cam_r)).as_matrix()
    assert np.allclose(got, cam_r @ Rotation.from_rotvec(root).as_matrix(), atol=1e-5)
    assert np.allclose(T.aug_rotmat(rot), Rotation.from_euler("z", -rot, degrees=True).as_matrix(), atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# keypoints
def _keypoints(rng: np.random.Generator, n_inside: int = 137):
    joint_img = np.zeros((137, 3), np.float32)
    joint_img[:, 0] = rng.uniform(60, 200, 137)
    joint_img[:, 1] = rng.uniform(50, 250, 137)
    joint_cam = rng.normal(scale=0.3, size=(137, 3)).astype(np.float32)
    joint_cam -= joint_cam[0]
    return joint_img, joint_cam


def test_process_db_coord_without_augmentation():
    rng = np.random.default_rng(3)
    joint_img, joint_cam = _keypoints(rng)
    joint_img[:, 2] = T.keypoint_depth_bins(joint_cam, CFG)
    joint_img[5] = (0.0, 0.0, joint_img[5, 2])  # unannotated placeholder
    joint_img[6, 0] = 900.0  # far outside the crop
    valid = np.ones((137, 1), np.float32)
    valid[7] = 0
    bbox = np.array([40.0, 30.0, 180.0, 240.0], np.float32)
    img2bb = _img2bb(bbox, T.AugParams(), 300)
    out = T.process_db_coord(joint_img, joint_cam, valid, False, 300, img2bb, 0.0, CFG, has_depth=True)
    assert np.allclose(out.joint_img[:, :2], _to_hm(joint_img[:, :2], img2bb), atol=1e-4)
    assert np.allclose(out.joint_img[:, 2], joint_img[:, 2])
    assert np.allclose(out.joint_cam_wo_ra, joint_cam, atol=1e-6)
    ra = out.joint_cam_ra
    for part, ref in (("lhand", js.LWRIST_IDX), ("rhand", js.RWRIST_IDX), ("face", js.NECK_IDX)):
        rows = js.JOINT_PART[part]
        assert np.allclose(ra[rows], joint_cam[rows] - joint_cam[ref], atol=1e-6)
    assert np.allclose(ra[:25], joint_cam[:25], atol=1e-6)
    hm = out.joint_img
    inside = (hm[:, 0] >= 0) & (hm[:, 0] < 12) & (hm[:, 1] >= 0) & (hm[:, 1] < 16) & (hm[:, 2] >= 0) & (hm[:, 2] < 16)
    expect = inside & (joint_img[:, 0] > 0) & (joint_img[:, 1] > 0) & (joint_img[:, 2] > 0) & (valid[:, 0] > 0)
    assert (out.joint_trunc[:, 0] == expect).all()
    assert out.joint_trunc[5, 0] == 0 and out.joint_trunc[6, 0] == 0 and out.joint_trunc[7, 0] == 0
    assert out.joint_trunc.sum() > 60


def test_rotation_and_flip_agree_between_image_and_camera_frames():
    """Far away (weak perspective), crop displacements are a positive multiple of the camera-frame X, Y
    displacements after any flip / rotation / scale: the 3D rotation by -rot matches the image rotation."""
    rng = np.random.default_rng(4)
    cam = rng.normal(scale=0.4, size=(137, 3)) + np.array([0.0, 0.0, 2000.0])
    f, c = 2e5, np.array([320.0, 240.0])
    uv = cam[:, :2] / cam[:, 2:] * f + c
    rel = (cam - cam[0]).astype(np.float32)
    joint_img = np.concatenate([uv, np.zeros((137, 1))], 1).astype(np.float32)
    # a 3:4 box (as process_bbox makes them): the crop scales x and y alike
    bbox = process_bbox([uv[:, 0].min(), uv[:, 1].min(), np.ptp(uv[:, 0]), np.ptp(uv[:, 1])], 640, 480, ratio=1.2)
    for i in range(8):
        aug = T.AugParams(scale=1.1, rot=[0.0, 33.0, -52.0, 90.0][i % 4], do_flip=i >= 4)
        img2bb = _img2bb(bbox, aug, 640)
        out = T.process_db_coord(joint_img, rel, np.ones((137, 1)), aug.do_flip, 640, img2bb, aug.rot, CFG, True)
        d_img = out.joint_img[:, :2] - out.joint_img[:1, :2]
        d_cam = out.joint_cam_wo_ra[:, :2]
        s = (d_img * d_cam).sum() / (d_cam * d_cam).sum()
        assert s > 0
        assert np.abs(d_img - s * d_cam).max() < 1e-3 * np.abs(d_img).max()


def test_2d_only_samples_keep_2d_truncation():
    """Defect 12: with depth column 0 (no 3D keypoints) the original truncated every joint."""
    rng = np.random.default_rng(5)
    joint_img, _ = _keypoints(rng)
    bbox = np.array([40.0, 30.0, 180.0, 240.0], np.float32)
    img2bb = _img2bb(bbox, T.AugParams(), 300)
    args = (joint_img, np.zeros((137, 3)), np.ones((137, 1)), False, 300, img2bb, 0.0, CFG)
    fixed = T.process_db_coord(*args, has_depth=False)
    hm = _to_hm(joint_img[:, :2], img2bb)
    inside = (hm[:, 0] >= 0) & (hm[:, 0] < 12) & (hm[:, 1] >= 0) & (hm[:, 1] < 16)
    assert inside.sum() > 60 and (fixed.joint_trunc[:, 0] == inside).all()
    original = T.process_db_coord(*args, has_depth=False, options=T.TargetOptions.original())
    assert original.joint_trunc.sum() == 0


def test_truncation_flags_follow_the_flip():
    """Facts 4.4 oddity: the original tested each flipped row on its mirror partner's original coordinates."""
    l_ear, r_ear = js.JOINTS_NAME.index("L_Ear"), js.JOINTS_NAME.index("R_Ear")
    joint_img = np.zeros((137, 3), np.float32)
    joint_img[:, :2] = (100.0, 100.0)
    joint_img[l_ear, :2] = (80.0, -3.0)  # above the image top (not annotated there), inside the enlarged crop
    joint_img[r_ear, :2] = (150.0, 40.0)
    bbox = np.array([0.0, -40.0, 240.0, 320.0], np.float32)
    args = (joint_img, np.zeros((137, 3)), np.ones((137, 1)), True, 240)
    img2bb = _img2bb(bbox, T.AugParams(do_flip=True), 240)
    fixed = T.process_db_coord(*args, img2bb, 0.0, CFG, has_depth=False)
    # after the flip the L_Ear row holds the old right ear (annotated), the R_Ear row the old left ear
    assert fixed.joint_trunc[l_ear, 0] == 1 and fixed.joint_trunc[r_ear, 0] == 0
    assert np.allclose(fixed.joint_img[l_ear, :2], _to_hm(np.array([[240 - 1 - 150.0, 40.0]]), img2bb)[0], atol=1e-4)
    legacy = T.process_db_coord(*args, img2bb, 0.0, CFG, has_depth=False,
                                options=T.TargetOptions(trunc_follows_flip=False))
    assert legacy.joint_trunc[l_ear, 0] == 0 and legacy.joint_trunc[r_ear, 0] == 1  # traded flags


def test_keypoint_depth_bins_are_part_relative():
    """Defect 15: hand / face depth relative to wrist / neck with the 0.3 m range (original: pelvis, 2 m)."""
    jc = np.zeros((137, 3), np.float32)
    jc[js.LWRIST_IDX, 2] = 0.4
    jc[30, 2] = 0.45  # a left-hand joint 5 cm behind its wrist
    jc[js.NECK_IDX, 2] = -0.2
    jc[100, 2] = -0.3  # a face point 10 cm in front of the neck
    jc[3, 2] = 0.5  # a body joint
    bins = T.keypoint_depth_bins(jc, CFG)
    assert np.isclose(bins[30], (0.05 / 0.15 + 1) / 2 * 16)
    assert np.isclose(bins[100], (-0.1 / 0.15 + 1) / 2 * 16)
    assert np.isclose(bins[3], (0.5 / 1.0 + 1) / 2 * 16)
    orig = T.keypoint_depth_bins(jc, CFG, T.TargetOptions.original())
    assert np.isclose(orig[30], (0.45 / 1.0 + 1) / 2 * 16) and np.isclose(orig[100], (-0.3 + 1) / 2 * 16)


# ----------------------------------------------------------------------------------------------------------------
# SMPL-X parameters
def _param(rng: np.random.Generator, **kw) -> dict:
    p = {"root_pose": rng.normal(size=3), "body_pose": rng.normal(size=63) * 0.2, "lhand_pose": rng.normal(size=45),
         "rhand_pose": rng.normal(size=45), "jaw_pose": rng.normal(size=3) * 0.1, "shape": rng.normal(size=10),
         "expr": rng.normal(size=10), "trans": rng.normal(size=3), "lhand_valid": True, "rhand_valid": True,
         "face_valid": True, "gender": "neutral"}
    p.update(kw)
    return {k: (np.asarray(v, np.float32) if isinstance(v, np.ndarray) else v) for k, v in p.items()}


def test_smplx_param_targets_masks_flip_and_sanitising():
    rng = np.random.default_rng(6)
    param = _param(rng, lhand_valid=False, face_valid=False)
    param["shape"][4] = 3.5
    out = T.smplx_param_targets(param, None, do_flip=False, rot=0.0)
    assert np.allclose(out.pose[:66], np.concatenate([param["root_pose"], param["body_pose"]]), atol=1e-6)
    assert (out.pose[66:111] == 0).all() and (out.pose_valid[66:111] == 0).all()
    assert np.allclose(out.pose[111:156], param["rhand_pose"]) and (out.pose_valid[111:156] == 1).all()
    assert (out.pose[156:] == 0).all() and (out.pose_valid[156:] == 0).all()
    assert (out.expr == 0).all() and out.expr_valid == 0
    assert (out.shape == 0).all() and np.allclose(out.model_shape, param["shape"])  # geometry uses the raw betas
    assert (out.coord_valid[25:45] == 0).all() and (out.coord_valid[65:] == 0).all()
    assert (out.coord_valid[:25] == 1).all() and (out.coord_valid[45:65] == 1).all()

    flipped = T.smplx_param_targets(param, None, do_flip=True, rot=25.0)
    assert (flipped.pose_valid[66:111] == 1).all() and (flipped.pose_valid[111:156] == 0).all()
    assert (flipped.coord_valid[45:65] == 0).all() and (flipped.coord_valid[25:45] == 1).all()
    hands = flipped.pose[66:111].reshape(15, 3)
    assert np.allclose(hands, param["rhand_pose"].reshape(15, 3) * [1, -1, -1], atol=1e-6)
    expect_root = Rotation.from_euler("z", -25.0, degrees=True) * Rotation.from_rotvec(param["root_pose"] * [1, -1, -1])
    assert np.allclose(Rotation.from_rotvec(flipped.pose[:3]).as_matrix(), expect_root.as_matrix(), atol=1e-5)
    assert np.allclose(flipped.model_pose, out.model_pose)  # the body-model input is never augmented


# ----------------------------------------------------------------------------------------------------------------
# boxes
@pytest.mark.parametrize("rot", [0.0, 90.0])
def test_box_targets(rot):
    bbox = np.array([40.0, 30.0, 180.0, 240.0], np.float32)
    lhand = np.array([50.0, 60.0, 80.0, 100.0], np.float32)
    face = np.array([100.0, 40.0, 140.0, 90.0], np.float32)
    img2bb = _img2bb(bbox, T.AugParams(rot=rot), 300)
    out = T.box_targets(lhand, None, face, False, 300, img2bb, CFG)
    corners = np.array([[50.0, 60.0], [80.0, 60.0], [80.0, 100.0], [50.0, 100.0]])
    hm = _to_hm(corners, img2bb)
    assert np.allclose(out["lhand_bbox_center"], hm.mean(0), atol=1e-4)
    size = np.array([30.0, 40.0]) if rot == 0 else np.array([40.0, 30.0])  # a quarter turn swaps the sides
    scale = 512 / 240 / CELL  # crop px per image px, then cells
    assert np.allclose(out["lhand_bbox_size"], size * scale, atol=1e-4)
    assert out["lhand_bbox_valid"] == 1 and out["face_bbox_valid"] == 1 and out["rhand_bbox_valid"] == 0
    assert np.allclose(out["rhand_bbox_center"], [0.5, 0.5]) and np.allclose(out["rhand_bbox_size"], [1, 1])

    img2bb_f = _img2bb(bbox, T.AugParams(rot=rot, do_flip=True), 300)
    flipped = T.box_targets(lhand, None, face, True, 300, img2bb_f, CFG)
    assert flipped["rhand_bbox_valid"] == 1 and flipped["lhand_bbox_valid"] == 0
    hm_f = _to_hm(np.array([[300 - 1 - x, y] for x, y in corners]), img2bb_f)
    assert np.allclose(flipped["rhand_bbox_center"], hm_f.mean(0), atol=1e-4)
    assert np.allclose(flipped["rhand_bbox_size"], out["lhand_bbox_size"], atol=1e-4)
    # the box centre mirrors about the crop's vertical axis when there is no rotation
    if rot == 0:
        assert np.isclose(flipped["rhand_bbox_center"][0] + out["lhand_bbox_center"][0], 12.0, atol=0.1)


@pytest.mark.parametrize("do_flip,rot,box", [(False, 0.0, (100, 40)), (True, 0.0, (100, 40)),
                                             (True, 25.0, (100, 40)), (False, -40.0, (100, 40)),
                                             (True, 0.0, (-50, -30)), (True, 13.0, (330, 200))])
def test_fast_training_crop_matches_the_exact_crop(do_flip, rot, box):
    """The uint8 training crop equals the original's float crop (mirrored full image, then warped) up to the uint8
    rounding of the interpolation, on a SHARP image (noise and hard edges: a 1/32 px shift of the sample grid, as
    folding the flip into the warp matrix gave, shows up as several grey levels there), boxes inside and cut."""
    rng = np.random.default_rng(0)
    img = (rng.random((300, 420, 3)) * 255).astype(np.uint8)
    img[:, 200:] = 255
    img[100:150] = 0
    color = np.array([0.9, 1.0, 1.15], np.float32)
    aug = T.AugParams(scale=1.1, rot=rot, color_scale=color, do_flip=do_flip)
    box = np.array([*box, 150.0, 200.0], np.float32)
    ref, t_ref, i_ref = T.augment(img.astype(np.float32), box, aug, (512, 384))
    fast, t_fast, i_fast = T.augment_fast(img, box, aug, (512, 384))
    assert np.array_equal(t_ref, t_fast) and np.array_equal(i_ref, i_fast)
    diff = np.abs(ref - fast)
    assert diff.max() <= 0.5 * color.max() + 1e-3 and diff.mean() < 0.2
