"""Targets that need the SMPL-X layer, computed batched in torch on the batch's device (facts sheet 4.5, 4.8).

:func:`build_model_targets` runs the layer on the SMPL-X fit of every sample (``meta_info['bm_*']`` from
:func:`data.sample.build_sample`), applies the sample's camera and augmentation exactly as
:func:`data.transforms.process_db_coord` does for keypoints, and fills the fit-derived targets of samples **without
3D keypoints** (for samples with 3D keypoints the original uses the keypoint targets, already set by build_sample):

* ``targets['smplx_joint_img']`` (B, 137, 3): hm cells x, y and part-relative depth bin;
* ``targets['smplx_joint_cam']`` (B, 137, 3): m, part-relative (pelvis / wrists / neck), flipped and rotated;
* ``meta_info['smplx_joint_trunc']`` (B, 137, 1): fit validity x in-crop mask (``smplx_joint_valid`` is already
  the fit validity for these samples).

Samples of datasets with the ``renbody_model_joints`` quirk (``meta_info['use_model_joint_cam']``) also get their
3D keypoint targets ``joint_cam`` / ``smplx_joint_cam`` from the fit, as the original did for RenBody.

Geometry, per sample: the layer of the sample's **gender** (as the original, which used the annotated gender for
target geometry; the network itself uses the neutral layer) with the camera-frame root (camera R already merged
by build_sample) and ``transl``; with camera R and t, joints -> joints - pelvis + R pelvis + t. 2D positions: the
projection with focal / princpt when the camera has intrinsics, else the sample's own 2D keypoints
(``kp_joint_img``). Depth bins are part-relative with the part ranges (body 2 m pelvis-relative, hands 0.3 m
wrist-relative, face 0.3 m neck-relative), as the original's fit-derived targets.

Everything is per sample (no cross-sample interaction), so a batch gives the same values as its samples one by one.
"""

from __future__ import annotations

import torch

from common.body_model import joint_sets as js
from common.config import ModelConfig
from data.sample import GENDERS
from data.transforms import FLIP_PERM_137, TargetOptions

_MIN_DEPTH = 1e-4  # m; projection divides by max(Z, this): points behind the camera stay finite (and truncated)


def _part_relative(jc: torch.Tensor) -> torch.Tensor:
    """(B, 137, 3) -> pelvis-relative body, wrist-relative hands, neck-relative face."""
    out = jc - jc[:, js.ROOT_IDX : js.ROOT_IDX + 1]
    pieces = []
    for part in ("body", "lhand", "rhand", "face"):
        rows = out[:, js.JOINT_PART[part]]
        ref = {"lhand": js.LWRIST_IDX, "rhand": js.RWRIST_IDX, "face": js.NECK_IDX}.get(part)
        pieces.append(rows if ref is None else rows - out[:, ref : ref + 1])
    return torch.cat(pieces, 1)


def _depth_bins(ra: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """(B, 137, 3) part-relative joints -> (B, 137) depth bins with the part ranges."""
    d = cfg.output_hm_shape[0]
    sizes = torch.empty(js.JOINT_NUM, dtype=ra.dtype, device=ra.device)
    for part, size in (("body", cfg.body_3d_size), ("lhand", cfg.hand_3d_size), ("rhand", cfg.hand_3d_size),
                       ("face", cfg.face_3d_size)):
        sizes[js.JOINT_PART[part]] = size
    return (ra[..., 2] / (sizes / 2) + 1) / 2.0 * d


def _aug_rotmats(rot: torch.Tensor) -> torch.Tensor:
    """(B,) degrees -> (B, 3, 3) rotations by -rot about the camera z axis (data.transforms.aug_rotmat)."""
    r = torch.deg2rad(-rot)
    c, s, z, o = torch.cos(r), torch.sin(r), torch.zeros_like(r), torch.ones_like(r)
    return torch.stack((c, -s, z, s, c, z, z, z, o), -1).reshape(-1, 3, 3)


def smplx_layer_joints(meta: dict[str, torch.Tensor], body_models: dict[str, torch.nn.Module]) -> torch.Tensor:
    """(B, 137, 3) camera-frame joints (m) of the samples' SMPL-X fits; zeros where ``has_smplx`` is 0.

    Uses ``body_models[gender]`` per sample (keys 'neutral', 'male', 'female'; only the genders present are needed).
    """
    pose = meta["bm_pose"]
    bsz, dtype, device = pose.shape[0], pose.dtype, pose.device
    joints = torch.zeros(bsz, js.JOINT_NUM, 3, dtype=dtype, device=device)
    has = meta["has_smplx"] > 0
    idx_137 = torch.as_tensor(js.JOINT_IDX, device=device)
    for gi, gender in enumerate(GENDERS):
        idx = torch.nonzero(has & (meta["bm_gender"] == gi)).squeeze(1)
        if idx.numel() == 0:
            continue
        if gender not in body_models:
            raise KeyError(f"build_model_targets needs the '{gender}' SMPL-X layer (a sample has that gender); pass "
                           f"body_models with keys {GENDERS}")
        root, body, lhand, rhand, jaw = torch.split(pose[idx], list(js.POSE_SPLITS), dim=1)
        _, out = body_models[gender](root, body, lhand, rhand, jaw, meta["bm_shape"][idx], meta["bm_expr"][idx],
                                     transl=meta["bm_trans"][idx])
        joints[idx] = out[:, idx_137].to(dtype)
    # extrinsic translation: the layer rotated about its own pelvis location, not the camera origin
    rt = ((meta["cam_has_R"] > 0) & (meta["cam_has_t"] > 0))[:, None, None]
    root = joints[:, js.ROOT_IDX : js.ROOT_IDX + 1]
    moved = joints - root + root @ meta["cam_R"].transpose(1, 2) + meta["cam_t"][:, None]
    return torch.where(rt, moved, joints)


@torch.no_grad()
def model_joint_targets(meta: dict[str, torch.Tensor], body_models: dict[str, torch.nn.Module],
                        model_cfg: ModelConfig, options: TargetOptions = TargetOptions()) -> dict[str, torch.Tensor]:
    """Fit-derived joint targets for every sample (zeros where ``has_smplx`` is 0).

    Returns ``joint_img`` (B, 137, 3) hm cells + depth bin, ``joint_cam_wo_ra`` (B, 137, 3) m pelvis-relative,
    ``joint_cam_ra`` (B, 137, 3) m part-relative (both flipped and rotated by -rot about z), ``joint_trunc``
    (B, 137, 1) in-crop mask without the validity factor.
    """
    joints = smplx_layer_joints(meta, body_models)
    dtype, device = joints.dtype, joints.device
    has = (meta["has_smplx"] > 0)[:, None, None]

    # 2D: projection with the sample's intrinsics, else its own 2D keypoints (x, y px; depth column kept for trunc)
    z = joints[..., 2]
    zc = z.clamp_min(_MIN_DEPTH)
    f, c = meta["cam_focal"][:, None], meta["cam_princpt"][:, None]
    proj = torch.stack((joints[..., 0] / zc * f[..., 0] + c[..., 0], joints[..., 1] / zc * f[..., 1] + c[..., 1], z),
                       -1)
    intr = meta["cam_has_intrinsics"] > 0
    img = torch.where(intr[:, None, None], proj, meta["kp_joint_img"].to(dtype))
    orig = img

    # flip: mirror x / negate X, swap left-right rows
    jc = joints - joints[:, js.ROOT_IDX : js.ROOT_IDX + 1]
    flip = (meta["do_flip"] > 0)[:, None, None]
    perm = torch.as_tensor(FLIP_PERM_137, device=device)
    sign = torch.tensor([-1.0, 1.0, 1.0], dtype=dtype, device=device)
    jc = torch.where(flip, jc[:, perm] * sign, jc)
    width = meta["img_width"].to(dtype)[:, None]
    img_f = img[:, perm].clone()
    img_f[..., 0] = width - 1 - img_f[..., 0]
    img = torch.where(flip, img_f, img)
    if options.trunc_follows_flip:
        orig = torch.where(flip, orig[:, perm], orig)

    jc = jc @ _aug_rotmats(meta["rot"].to(dtype)).transpose(1, 2)
    ra = _part_relative(jc)
    xy = torch.cat((img[..., :2], torch.ones_like(img[..., :1])), -1) @ meta["img2bb_trans"].to(dtype).transpose(1, 2)
    d, h, w = model_cfg.output_hm_shape
    in_h, in_w = model_cfg.input_img_shape
    hm = torch.stack((xy[..., 0] / in_w * w, xy[..., 1] / in_h * h, _depth_bins(ra, model_cfg)), -1)

    ok = (orig[..., 0] > 0) & (hm[..., 0] >= 0) & (hm[..., 0] < w) & (orig[..., 1] > 0) & (hm[..., 1] >= 0)
    ok &= (hm[..., 1] < h) & (hm[..., 2] >= 0) & (hm[..., 2] < d)
    # the original always required orig depth > 0 (defect 12); it is a depth only with a camera (Z) or 3D keypoints
    test_depth = intr | (meta["is_3D"] > 0) | (not options.depth_trunc_needs_depth)
    ok &= (orig[..., 2] > 0) | ~test_depth[:, None]
    zero = torch.zeros((), dtype=dtype, device=device)
    return {"joint_img": torch.where(has, hm, zero), "joint_cam_wo_ra": torch.where(has, jc, zero),
            "joint_cam_ra": torch.where(has, ra, zero), "joint_trunc": torch.where(has, ok[..., None].to(dtype), zero)}


Batch = dict[str, torch.Tensor]


@torch.no_grad()
def build_model_targets(targets: Batch, meta: Batch, body_models: dict[str, torch.nn.Module], model_cfg: ModelConfig,
                        options: TargetOptions = TargetOptions()) -> tuple[Batch, Batch]:
    """Fill the fit-derived targets of a collated training batch (module docstring); returns new dicts
    ``(targets, meta_info)``; the inputs are not modified. ``body_models`` must be on the batch's device."""
    targets, meta = dict(targets), dict(meta)
    has = meta["has_smplx"] > 0
    if has.numel() == 0 or not bool(has.any()):
        return targets, meta
    model = model_joint_targets(meta, body_models, model_cfg, options)
    from_fit = (has & (meta["is_3D"] == 0))[:, None, None]
    if options.depth_trunc_needs_depth:
        # with defect 12 the original's fit truncation was zero here, so its keypoint image targets (depth 0) never
        # counted; now the truncation is real, so the image targets are the fit's too (x, y the same without a camera)
        targets["smplx_joint_img"] = torch.where(from_fit, model["joint_img"], targets["smplx_joint_img"])
    targets["smplx_joint_cam"] = torch.where(from_fit, model["joint_cam_ra"], targets["smplx_joint_cam"])
    meta["smplx_joint_trunc"] = torch.where(from_fit, meta["smplx_joint_valid"] * model["joint_trunc"],
                                            meta["smplx_joint_trunc"])
    renbody = (has & (meta["use_model_joint_cam"] > 0))[:, None, None]
    targets["joint_cam"] = torch.where(renbody, model["joint_cam_wo_ra"], targets["joint_cam"])
    targets["smplx_joint_cam"] = torch.where(renbody, model["joint_cam_ra"], targets["smplx_joint_cam"])
    return targets, meta
