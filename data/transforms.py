"""Pure numpy transforms of the training-sample pipeline (facts sheet 4.3-4.5 and 4.8), one step per function.

Frames and units used below:

* **image px**: pixels of the original image, x right, y down, pixel centres at integer coordinates.
* **crop px**: pixels of the ``input_img_shape`` (512 x 384) crop made by the affine ``img2bb`` (2, 3).
* **hm cells**: the body heat-map grid ``output_hm_shape`` (D, H, W) = (16, 16, 12): x = crop x * W / 384,
  y = crop y * H / 512; the depth column is a depth **bin** in [0, D).
* **camera frame**: metres, OpenCV axes (x right, y down, z forward). ``joint_cam`` arrays are root-relative there.
* **axis-angle**: rotation axis times angle (radians), SMPL-X convention.

Augmentation (flip, rotation ``rot`` in degrees, scale) is applied the way the original does it: a flipped sample is
the mirror image (x -> W - 1 - x, camera X -> -X) with left and right joints (and poses, boxes, validities)
swapped; the crop is rotated by ``rot`` so 3D quantities rotate by ``-rot`` about the camera z axis.

Three behaviours of the original are fixed here, each behind a flag of :class:`TargetOptions` whose default is the
fix (``TargetOptions.original()`` restores the original):

* defect 12 (``depth_trunc_needs_depth``): the truncation mask required the *original* depth to be > 0, so samples
  without 3D keypoints (depth column 0) never got 2D keypoint supervision. Now the depth tests apply only where the
  sample has a depth.
* the facts-4.4 oddity (``trunc_follows_flip``): the "original coordinates" used by the truncation test were copied
  before the flip, so in a flipped sample each row was tested on its mirror partner's coordinates. Now the copy's
  rows are swapped with the flip (its coordinates are *not* mirrored: ``orig x > 0`` and ``orig y > 0`` test that
  the keypoint was annotated, i.e. not at the (0, 0) placeholder, in the image it was annotated in).
* defect 15 (``part_relative_kp_depth``): depth bins of keypoint targets used the pelvis-relative 2 m body range for
  hands and face too, while the hand position net and every fit-derived target use wrist/neck-relative depth with
  0.3 m. Now keypoint depth bins are part-relative with the part's range, like the fit-derived ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from common.body_model import joint_sets as js
from common.config import ModelConfig
from common.utils.image import crop_transform, generate_patch_image

# Augmentation ranges of the original get_aug_config (facts 4.3).
SCALE_FACTOR = 0.25  # scale = 1 + 0.25 * clip(N(0, 1), -1, 1)
ROT_FACTOR = 30.0  # degrees; rot = 30 * clip(N(0, 1), -2, 2) with probability ROT_PROB, else 0
ROT_PROB = 0.6
COLOR_FACTOR = 0.2  # per-channel colour factor U(0.8, 1.2)
FLIP_PROB = 0.5
SHAPE_SANITY_LIMIT = 3.0  # betas with any |beta| above this are replaced by the mean shape (all zeros)

# Missing hand/face box: the original's dummy [[0, 0], [1, 1]] (hm cells) with validity 0.
DUMMY_BOX = np.array([[0.0, 0.0], [1.0, 1.0]], dtype=np.float32)


def flip_permutation(num: int, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """(num,) int64 permutation ``perm`` with ``flipped = x[perm]`` swapping every (left, right) pair."""
    perm = np.arange(num)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


FLIP_PERM_137 = flip_permutation(js.JOINT_NUM, js.FLIP_PAIRS)  # 137-joint supervision set
FLIP_PERM_53 = flip_permutation(js.ORIG_JOINT_NUM, js.ORIG_FLIP_PAIRS)  # 53-joint rotation set


@dataclass(frozen=True)
class TargetOptions:
    """Switches between a fix and the original behaviour (see the module docstring); defaults are the fixes.

    The same options must be given to :func:`data.sample.build_sample` and :func:`data.targets.build_model_targets`.
    """

    depth_trunc_needs_depth: bool = True  # defect 12: test "orig depth > 0" only where the sample has a depth
    trunc_follows_flip: bool = True  # facts 4.4: truncation tests use the flipped, swapped rows
    part_relative_kp_depth: bool = True  # defect 15: keypoint depth bins wrist/neck-relative with 0.3 m ranges

    @classmethod
    def original(cls) -> TargetOptions:
        """The original SMPLer-X behaviour (all three fixes off)."""
        return cls(depth_trunc_needs_depth=False, trunc_follows_flip=False, part_relative_kp_depth=False)


# ----------------------------------------------------------------------------------------------------------------
# Augmentation
@dataclass(frozen=True)
class AugParams:
    """One draw of the train-time augmentation.

    scale: the source box is enlarged by this factor about its centre (> 1 zooms out). rot: degrees; the crop's
    axes are the box's axes rotated by ``rot`` (image content appears rotated by -rot). color_scale: (3,) RGB
    factors. do_flip: mirror the image horizontally (and swap left/right labels).
    """

    scale: float = 1.0
    rot: float = 0.0
    color_scale: np.ndarray = field(default_factory=lambda: np.ones(3, dtype=np.float32))
    do_flip: bool = False

    @classmethod
    def identity(cls) -> AugParams:
        """No augmentation (test mode, ``no_aug``)."""
        return cls()


def get_aug_config(rng: np.random.Generator) -> AugParams:
    """Draw augmentation parameters with the original's distributions (facts 4.3) from ``rng`` only.

    scale in [0.75, 1.25]; rot in [-60, 60] degrees, exactly 0 with probability 0.4; colour factors U(0.8, 1.2);
    flip with probability 0.5. Every call consumes the same number of draws, so a sample's parameters depend only
    on the generator's state (the original reseeded Python's global ``random``, defect 21).
    """
    scale = float(np.clip(rng.standard_normal(), -1.0, 1.0) * SCALE_FACTOR + 1.0)
    rot_draw = float(np.clip(rng.standard_normal(), -2.0, 2.0) * ROT_FACTOR)
    rot = rot_draw if rng.random() <= ROT_PROB else 0.0
    color_scale = rng.uniform(1.0 - COLOR_FACTOR, 1.0 + COLOR_FACTOR, size=3).astype(np.float32)
    do_flip = bool(rng.random() <= FLIP_PROB)
    return AugParams(scale=scale, rot=rot, color_scale=color_scale, do_flip=do_flip)


def augment(img: np.ndarray, bbox: np.ndarray, aug: AugParams, out_shape: tuple[int, int]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop the box, apply the colour factors and clip to [0, 255].

    Args:
        img: (H, W, 3) float32 RGB in [0, 255], image px.
        bbox: (4,) processed body box xywh, image px.
        aug: the augmentation draw.
        out_shape: (h, w) of the crop, px (``input_img_shape``).

    Returns:
        crop (h, w, 3) float32 in [0, 255]; img2bb (2, 3) float32 image px (of the flipped image when
        ``aug.do_flip``) -> crop px; bb2img (2, 3) its inverse.
    """
    crop, img2bb, bb2img = generate_patch_image(img, bbox, aug.scale, aug.rot, aug.do_flip, out_shape)
    crop = np.clip(crop * np.asarray(aug.color_scale, np.float32)[None, None, :], 0.0, 255.0)
    return crop.astype(np.float32), img2bb, bb2img


def augment_fast(img: np.ndarray, bbox: np.ndarray, aug: AugParams, out_shape: tuple[int, int]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`augment` for training, ~5x cheaper on large images: the uint8 image is warped directly (no
    full-image float copy) and a flip mirrors only the region the crop reads (no mirrored copy of the image). Same
    ``img2bb`` / ``bb2img`` and the same sample positions as :func:`augment`, so pixels differ only by the uint8
    rounding of the interpolation (<= 0.5 level, times the colour factor). Not used for evaluation or inference,
    which keep the original's float path exactly.

    (Folding the flip into the warp matrix instead would be cheaper still, but OpenCV quantises sample positions to
    1/32 px after fixed-point steps that round differently for a mirrored matrix: up to 8 grey levels at sharp edges.)
    """
    img_h, img_w = img.shape[:2]
    c_x = float(bbox[0] + 0.5 * bbox[2])
    c_y = float(bbox[1] + 0.5 * bbox[3])
    if aug.do_flip:
        c_x = img_w - c_x - 1
    h, w = out_shape
    img2bb = crop_transform(c_x, c_y, float(bbox[2]), float(bbox[3]), w, h, aug.scale, aug.rot)
    bb2img = crop_transform(c_x, c_y, float(bbox[2]), float(bbox[3]), w, h, aug.scale, aug.rot, inverse=True)
    if aug.do_flip:
        # The pixels the warp can read, in flipped-image coordinates (the crop corners mapped back, +1 px for the
        # bilinear neighbour), clipped to the image: outside it the warp reads the border constant either way.
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ bb2img.astype(np.float64).T
        x0, y0 = (max(0, int(np.floor(v)) - 1) for v in corners.min(0))
        x1 = min(img_w - 1, int(np.ceil(corners[:, 0].max())) + 1)
        y1 = min(img_h - 1, int(np.ceil(corners[:, 1].max())) + 1)
        if x1 < x0 or y1 < y0:  # the crop lies outside the image: all border
            crop = np.zeros((int(h), int(w), img.shape[2]), np.float32)
        else:
            # flipped image columns x0..x1 are original columns W-1-x1..W-1-x0, reversed (cv2.flip: ~30x faster
            # than numpy's negative-stride copy, the same bytes)
            roi = cv2.flip(img[y0:y1 + 1, img_w - 1 - x1: img_w - x0], 1)
            m = img2bb.astype(np.float64) @ np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
            crop = cv2.warpAffine(roi, m, (int(w), int(h)), flags=cv2.INTER_LINEAR).astype(np.float32)
    else:
        crop = cv2.warpAffine(img, img2bb, (int(w), int(h)), flags=cv2.INTER_LINEAR).astype(np.float32)
    crop = np.clip(crop * np.asarray(aug.color_scale, np.float32)[None, None, :], 0.0, 255.0)
    return crop, img2bb, bb2img


# ----------------------------------------------------------------------------------------------------------------
# Keypoints
def flip_joint_img(joint_img: np.ndarray, img_width: float, perm: np.ndarray = FLIP_PERM_137) -> np.ndarray:
    """Mirror image-px keypoints (J, C>=2): x -> W - 1 - x, then swap left/right rows. Other columns move along."""
    out = joint_img[perm].copy()
    out[:, 0] = img_width - 1 - out[:, 0]
    return out


def flip_joint_cam(joint_cam: np.ndarray, perm: np.ndarray = FLIP_PERM_137) -> np.ndarray:
    """Mirror camera-frame points (J, 3): X -> -X, then swap left/right rows."""
    out = joint_cam[perm].copy()
    out[:, 0] = -out[:, 0]
    return out


def aug_rotmat(rot: float) -> np.ndarray:
    """(3, 3) float32 rotation by ``-rot`` degrees about the camera z axis: the 3D counterpart of the crop rotation."""
    r = np.deg2rad(-rot)
    return np.array([[np.cos(r), -np.sin(r), 0.0], [np.sin(r), np.cos(r), 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)


def img_to_hm(xy: np.ndarray, img2bb: np.ndarray, model_cfg: ModelConfig) -> np.ndarray:
    """(J, 2) image px -> (J, 2) hm cells: the crop affine, then crop px -> cells (x * W / 384, y * H / 512)."""
    xy1 = np.concatenate((xy, np.ones_like(xy[:, :1])), 1)
    out = xy1 @ np.asarray(img2bb, xy.dtype).T
    out[:, 0] = out[:, 0] / model_cfg.input_img_shape[1] * model_cfg.output_hm_shape[2]
    out[:, 1] = out[:, 1] / model_cfg.input_img_shape[0] * model_cfg.output_hm_shape[1]
    return out


def part_relative(joint_cam: np.ndarray) -> np.ndarray:
    """(137, 3) camera-frame joints -> pelvis-relative body, L/R_Wrist-relative hands, Neck-relative face (m)."""
    out = joint_cam - joint_cam[js.ROOT_IDX, None]
    for part, ref in (("lhand", js.LWRIST_IDX), ("rhand", js.RWRIST_IDX), ("face", js.NECK_IDX)):
        rows = js.JOINT_PART[part]
        out[rows] = out[rows] - out[ref, None]
    return out


def depth_bins(z_rel: np.ndarray, size: float, depth_dim: int) -> np.ndarray:
    """Relative depth (m) -> depth bin: (z / (size / 2) + 1) / 2 * D; ``size`` is the full range (2 m body)."""
    return (z_rel / (size / 2) + 1) / 2.0 * depth_dim


def part_depth_bins(joint_cam_ra: np.ndarray, model_cfg: ModelConfig) -> np.ndarray:
    """(137,) depth bins of part-relative joints (:func:`part_relative`): body with ``body_3d_size`` (2 m), hands
    with ``hand_3d_size``, face with ``face_3d_size`` (0.3 m), as the fit-derived targets of the original."""
    d = model_cfg.output_hm_shape[0]
    out = np.empty(len(joint_cam_ra), dtype=joint_cam_ra.dtype)
    for part, size in (("body", model_cfg.body_3d_size), ("lhand", model_cfg.hand_3d_size),
                       ("rhand", model_cfg.hand_3d_size), ("face", model_cfg.face_3d_size)):
        rows = js.JOINT_PART[part]
        out[rows] = depth_bins(joint_cam_ra[rows, 2], size, d)
    return out


def keypoint_depth_bins(joint_cam_rel: np.ndarray, model_cfg: ModelConfig,
                        options: TargetOptions = TargetOptions()) -> np.ndarray:
    """(137,) depth column of keypoint targets from pelvis-relative 3D keypoints (137, 3), m.

    Default: part-relative bins (:func:`part_depth_bins`, defect 15 fixed). Original: pelvis-relative depth with the
    2 m body range for every joint.
    """
    if options.part_relative_kp_depth:
        return part_depth_bins(part_relative(joint_cam_rel), model_cfg)
    return depth_bins(joint_cam_rel[:, 2], model_cfg.body_3d_size, model_cfg.output_hm_shape[0])


def truncation(orig: np.ndarray, hm: np.ndarray, model_cfg: ModelConfig, test_orig_depth: bool) -> np.ndarray:
    """(J, 1) float32 in-crop mask (without the validity factor).

    1 where the original coordinates are annotated (orig x > 0, orig y > 0; image px) and the hm coordinates lie in
    the volume (0 <= x < W, 0 <= y < H, 0 <= depth bin < D). ``test_orig_depth`` adds orig depth > 0 (the original
    always did; it is meaningful only when the depth column holds a depth).
    """
    d, h, w = model_cfg.output_hm_shape
    ok = (orig[:, 0] > 0) & (hm[:, 0] >= 0) & (hm[:, 0] < w) & (orig[:, 1] > 0) & (hm[:, 1] >= 0) & (hm[:, 1] < h)
    ok &= (hm[:, 2] >= 0) & (hm[:, 2] < d)
    if test_orig_depth:
        ok &= orig[:, 2] > 0
    return ok.astype(np.float32)[:, None]


@dataclass
class KeypointTargets:
    """Output of :func:`process_db_coord` (137-joint set, float32)."""

    joint_img: np.ndarray  # (137, 3) hm cells x, y and depth bin
    joint_cam_wo_ra: np.ndarray  # (137, 3) m, pelvis-relative, flipped / rotated
    joint_cam_ra: np.ndarray  # (137, 3) m, pelvis-relative body, wrist-relative hands, neck-relative face
    joint_valid: np.ndarray  # (137, 1) annotation mask (swapped with the flip)
    joint_trunc: np.ndarray  # (137, 1) joint_valid x in-crop mask


def process_db_coord(joint_img: np.ndarray, joint_cam: np.ndarray, joint_valid: np.ndarray, do_flip: bool,
                     img_width: float, img2bb: np.ndarray, rot: float, model_cfg: ModelConfig, has_depth: bool,
                     options: TargetOptions = TargetOptions(), perm: np.ndarray = FLIP_PERM_137) -> KeypointTargets:
    """Keypoint targets of one sample (facts 4.4), already in the 137-joint supervision set.

    Args:
        joint_img: (137, 3) x, y image px and depth bin (0 when the sample has no 3D keypoints).
        joint_cam: (137, 3) pelvis-relative camera-frame keypoints, m (zeros without 3D keypoints).
        joint_valid: (137, 1) annotation mask.
        do_flip, rot: augmentation (rot in degrees); img_width: px of the image the keypoints refer to.
        img2bb: (2, 3) image px (flipped image when ``do_flip``) -> crop px.
        has_depth: the depth column holds real depths (the sample has 3D keypoints).
        options: see :class:`TargetOptions`.

    Steps: flip (mirror x, negate X, swap rows of coordinates and validity), rotate joint_cam by -rot about z,
    affine x, y to hm cells, truncation, part-relative ``joint_cam_ra``.
    """
    joint_img = np.asarray(joint_img, np.float32).copy()
    joint_cam = np.asarray(joint_cam, np.float32).copy()
    joint_valid = np.asarray(joint_valid, np.float32).reshape(-1, 1).copy()
    orig = joint_img.copy()
    if do_flip:
        joint_img = flip_joint_img(joint_img, img_width, perm)
        joint_cam = flip_joint_cam(joint_cam, perm)
        joint_valid = joint_valid[perm]
        if options.trunc_follows_flip:
            orig = orig[perm]  # rows follow their joints; coordinates stay those of the annotated image
    joint_cam = joint_cam @ aug_rotmat(rot).T
    joint_img[:, :2] = img_to_hm(joint_img[:, :2], img2bb, model_cfg)
    test_depth = has_depth or not options.depth_trunc_needs_depth
    joint_trunc = joint_valid * truncation(orig, joint_img, model_cfg, test_depth)
    return KeypointTargets(joint_img=joint_img, joint_cam_wo_ra=joint_cam, joint_cam_ra=part_relative(joint_cam),
                           joint_valid=joint_valid, joint_trunc=joint_trunc)


# ----------------------------------------------------------------------------------------------------------------
# SMPL-X parameters
def _compose(rotmat: np.ndarray, aa: np.ndarray) -> np.ndarray:
    """Axis-angle of ``rotmat @ R(aa)`` (float64 Rodrigues, as the original's cv2 calls)."""
    r, _ = cv2.Rodrigues(np.asarray(aa, np.float64).reshape(3, 1))
    out, _ = cv2.Rodrigues(np.asarray(rotmat, np.float64) @ r)
    return out.reshape(3).astype(np.float32)


def apply_camera_rotation(root_pose: np.ndarray, cam_r: np.ndarray | None) -> np.ndarray:
    """(3,) root axis-angle in the body-model world -> camera frame: R_cam @ R(root); unchanged without ``cam_r``."""
    if cam_r is None:
        return np.asarray(root_pose, np.float32).copy()
    return _compose(np.asarray(cam_r).reshape(3, 3), root_pose)


def flip_smplx_pose(pose: np.ndarray, valid: np.ndarray | None = None, perm: np.ndarray = FLIP_PERM_53
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Mirror a (53, 3) axis-angle pose: swap left/right joints (and the (53,) validity), negate y and z of every
    rotation (root and jaw included). Mirroring across x = 0 maps a rotation R to M R M with M = diag(-1, 1, 1),
    whose axis-angle is (x, -y, -z)."""
    out = np.asarray(pose, np.float32)[perm].copy()
    out[:, 1:3] *= -1
    return out, (None if valid is None else np.asarray(valid)[perm].copy())


def rotate_root_pose(root_pose: np.ndarray, rot: float) -> np.ndarray:
    """(3,) root axis-angle after the in-plane augmentation: Rz(-rot) @ R(root)."""
    if rot == 0:
        return np.asarray(root_pose, np.float32).copy()
    return _compose(aug_rotmat(rot), root_pose)


def sanitize_shape(betas: np.ndarray) -> np.ndarray:
    """Betas with any |beta| > 3 are replaced by zeros (the mean shape), as the original."""
    betas = np.asarray(betas, np.float32)
    return np.zeros_like(betas) if (np.abs(betas) > SHAPE_SANITY_LIMIT).any() else betas.copy()


@dataclass
class SMPLXParamTargets:
    """SMPL-X parameter targets of one sample (float32) and what the body-model step needs."""

    pose: np.ndarray  # (159,) axis-angle target: flipped, root rotated (camera frame, then by -rot)
    pose_valid: np.ndarray  # (159,) per-component mask
    shape: np.ndarray  # (10,) sanitised betas
    expr: np.ndarray  # (10,)
    expr_valid: float
    coord_valid: np.ndarray  # (137, 1) validity of fit-derived joints, flipped
    model_pose: np.ndarray  # (159,) body-model input: camera-frame root, missing parts zero, un-augmented
    model_shape: np.ndarray  # (10,) un-sanitised betas (the original computes the geometry before sanitising)


def smplx_param_targets(param: dict, cam_r: np.ndarray | None, do_flip: bool, rot: float) -> SMPLXParamTargets:
    """Pose / shape / expression targets and validities from a datalist ``smplx_param`` dict (facts 4.5).

    Missing parts (``lhand_valid`` / ``rhand_valid`` / ``face_valid`` false) get zero pose (and expression) and
    zero validity for their rotations and their 137-set joints. ``cam_r`` (3, 3): camera rotation merged into the
    root. The flip swaps validities with the joints. Optional ``invalid_rotations`` (53-set names) and
    ``invalid_joints`` (137-set names) in ``param`` zero those validities.
    """
    rot_valid = np.ones(js.ORIG_JOINT_NUM, np.float32)
    coord_valid = np.ones(js.JOINT_NUM, np.float32)
    parts = {k: np.asarray(param[k], np.float32).reshape(-1) for k in
             ("root_pose", "body_pose", "lhand_pose", "rhand_pose", "jaw_pose", "shape", "expr")}
    for side in ("lhand", "rhand"):
        if not bool(param.get(f"{side}_valid", True)):
            parts[f"{side}_pose"] = np.zeros_like(parts[f"{side}_pose"])
            rot_valid[js.ORIG_JOINT_PART[side]] = 0
            coord_valid[js.JOINT_PART[side]] = 0
    expr_valid = bool(param.get("face_valid", True))
    if not expr_valid:
        parts["jaw_pose"] = np.zeros_like(parts["jaw_pose"])
        parts["expr"] = np.zeros_like(parts["expr"])
        rot_valid[js.ORIG_JOINT_PART["face"]] = 0
        coord_valid[js.JOINT_PART["face"]] = 0
    # dataset-specific distrust of a fit (MPII / Human36M: ankle and wrist rotations, foot joints), before the flip
    for name in param.get("invalid_rotations", ()):
        rot_valid[js.ORIG_JOINTS_NAME.index(name)] = 0
    for name in param.get("invalid_joints", ()):
        coord_valid[js.JOINTS_NAME.index(name)] = 0
    root = apply_camera_rotation(parts["root_pose"], cam_r)
    model_pose = np.concatenate([root, *(parts[k] for k in ("body_pose", "lhand_pose", "rhand_pose", "jaw_pose"))])
    pose = model_pose.reshape(js.ORIG_JOINT_NUM, 3)
    if do_flip:
        pose, rot_valid = flip_smplx_pose(pose, rot_valid)
        coord_valid = coord_valid[FLIP_PERM_137]
    pose = pose.copy()
    pose[js.ORIG_ROOT_IDX] = rotate_root_pose(pose[js.ORIG_ROOT_IDX], rot)
    return SMPLXParamTargets(pose=pose.reshape(-1).astype(np.float32), pose_valid=np.repeat(rot_valid, 3),
                             shape=sanitize_shape(parts["shape"]), expr=parts["expr"], expr_valid=float(expr_valid),
                             coord_valid=coord_valid[:, None], model_pose=model_pose.astype(np.float32),
                             model_shape=parts["shape"])


# ----------------------------------------------------------------------------------------------------------------
# Hand and face boxes
def flip_box_xyxy(box: np.ndarray, img_width: float) -> np.ndarray:
    """Mirror an xyxy box (image px): x -> W - 1 - x, keeping x1 <= x2."""
    x1, y1, x2, y2 = np.asarray(box, np.float32)
    return np.array([img_width - 1 - x2, y1, img_width - 1 - x1, y2], dtype=np.float32)


def box_to_hm(box: np.ndarray | None, do_flip: bool, img_width: float, img2bb: np.ndarray, model_cfg: ModelConfig
              ) -> tuple[np.ndarray, float]:
    """One hand/face box target (facts 4.8 step 8): xyxy image px (or None) -> ((2, 2) [[x1, y1], [x2, y2]] in hm
    cells, validity). The four corners go through the (possibly rotated) crop affine; the target is their
    axis-aligned extent. A missing box gives the original's dummy with validity 0."""
    if box is None:
        return DUMMY_BOX.copy(), 0.0
    box = flip_box_xyxy(box, img_width) if do_flip else np.asarray(box, np.float32)
    x1, y1, x2, y2 = box
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float32)
    hm = img_to_hm(corners, img2bb, model_cfg)
    out = np.array([hm.min(0), hm.max(0)], dtype=np.float32)
    return out, 1.0


def box_targets(lhand: np.ndarray | None, rhand: np.ndarray | None, face: np.ndarray | None, do_flip: bool,
                img_width: float, img2bb: np.ndarray, model_cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Centre (2,) and size (2,) in hm cells and validity () of the three boxes; left and right swap with the flip.

    Keys: ``{lhand,rhand,face}_bbox_center``, ``..._bbox_size`` (float32 (2,)), ``..._bbox_valid`` (float32 ()).
    Note: the reader forced the body's 0.75 aspect on these boxes (defect 18, kept: the released models' box-net
    was trained on such targets).
    """
    boxes = {part: box_to_hm(b, do_flip, img_width, img2bb, model_cfg)
             for part, b in (("lhand", lhand), ("rhand", rhand), ("face", face))}
    if do_flip:
        boxes["lhand"], boxes["rhand"] = boxes["rhand"], boxes["lhand"]
    out: dict[str, np.ndarray] = {}
    for part, (b, valid) in boxes.items():
        out[f"{part}_bbox_center"] = ((b[0] + b[1]) / 2.0).astype(np.float32)
        out[f"{part}_bbox_size"] = (b[1] - b[0]).astype(np.float32)
        out[f"{part}_bbox_valid"] = np.float32(valid)
    return out
