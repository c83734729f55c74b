"""Training losses of SMPLer-X (facts sheet section 3).

Every term is an L1 difference times a validity mask, reduced by a plain ``mean()`` over all its elements (masked
zeros included) and multiplied by its weight, exactly as the original: the released models were trained with
these effective weights. Terms (keys of the returned dict): smplx_pose, smplx_shape, smplx_expr, joint_cam,
smplx_joint_cam, lhand_bbox, rhand_bbox, face_bbox, joint_proj, joint_img, smplx_joint_img.

Before the 2D terms, hand keypoint targets are moved from body heat-map cells into the cells of the **predicted**
(detached) hand boxes, where the hand position net predicts them, and the projected SMPL-X hand (and face) joints
are aligned to their targets by a per-sample mean translation (so the 2D projection loss of hands and face does
not depend on the camera translation).

One defect of the original is fixed (docs/differences.md): it remapped the hand targets only when at least one
sample of the batch had a valid hand box; in a batch without one, hand targets stayed in body cells while the
predictions are in hand-box cells. Here the remapping (which uses predicted boxes only) always happens.
"""

from __future__ import annotations

import torch

from common.body_model import joint_sets as js
from common.config import ModelConfig, TrainConfig
from common.nets.smpler_x import SMPLerXOutput


def coord_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
               is_3d: torch.Tensor | None = None) -> torch.Tensor:
    """|pred - target| * valid (unreduced); with ``is_3d`` (B,) the z column is also multiplied by it."""
    loss = (pred - target).abs() * valid
    if is_3d is not None:
        loss = torch.cat((loss[..., :2], loss[..., 2:] * is_3d[:, None, None]), -1)
    return loss


def _to_box_cells(x: torch.Tensor, y: torch.Tensor, box: torch.Tensor, cfg: ModelConfig):
    """Body heat-map cells -> cells of the (B, 4) xyxy box (input_body_shape px), original op order."""
    ih, iw = cfg.input_body_shape
    hm_h, hm_w = cfg.output_hm_shape[1:]
    hand_h, hand_w = cfg.output_hand_hm_shape[1:]
    x = (x - box[:, None, 0] / iw * hm_w) * (hand_w / ((box[:, None, 2] - box[:, None, 0]) / iw * hm_w))
    y = (y - box[:, None, 1] / ih * hm_h) * (hand_h / ((box[:, None, 3] - box[:, None, 1]) / ih * hm_h))
    return x, y


def _mean_offset(coord: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of (target - coord) over masked joints; zero where no joint is masked. (B,J,2) -> (B,1,2)."""
    m = mask[..., None].to(coord.dtype)
    n = m.sum(1, keepdim=True)
    return torch.where(n > 0, ((target - coord) * m).sum(1, keepdim=True) / n.clamp_min(1), torch.zeros_like(n))


def compute_losses(out: SMPLerXOutput, targets: dict[str, torch.Tensor], meta: dict[str, torch.Tensor],
                   model_cfg: ModelConfig, train_cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """Weighted loss terms (scalars). ``targets`` / ``meta`` follow the sample schema of docs/data.md."""
    w = train_cfg
    loss: dict[str, torch.Tensor] = {}
    pose = torch.cat((out.root_pose, out.body_pose, out.lhand_pose, out.rhand_pose, out.jaw_pose), 1)
    loss["smplx_pose"] = coord_loss(pose, targets["smplx_pose"], meta["smplx_pose_valid"]).mean() * w.smplx_pose_weight
    loss["smplx_shape"] = coord_loss(out.shape, targets["smplx_shape"],
                                     meta["smplx_shape_valid"][:, None]).mean() * w.smplx_shape_weight
    loss["smplx_expr"] = coord_loss(out.expr, targets["smplx_expr"], meta["smplx_expr_valid"][:, None]).mean()
    loss["joint_cam"] = coord_loss(out.joint_cam_wo_ra, targets["joint_cam"],
                                   meta["joint_valid"] * meta["is_3D"][:, None, None]).mean() * w.smplx_kps_3d_weight
    loss["smplx_joint_cam"] = coord_loss(out.joint_cam, targets["smplx_joint_cam"],
                                         meta["smplx_joint_valid"]).mean() * w.smplx_kps_3d_weight
    for part in ("lhand", "rhand", "face"):
        valid = meta[f"{part}_bbox_valid"][:, None]
        loss[f"{part}_bbox"] = (coord_loss(getattr(out, f"{part}_bbox_center"), targets[f"{part}_bbox_center"], valid)
                                + coord_loss(getattr(out, f"{part}_bbox_size"), targets[f"{part}_bbox_size"],
                                             valid)).mean()

    # predicted boxes back in input_body_shape px (the network reports them in input_img_shape px)
    s = torch.tensor([model_cfg.input_body_shape[1] / model_cfg.input_img_shape[1],
                      model_cfg.input_body_shape[0] / model_cfg.input_img_shape[0]] * 2, device=pose.device)
    boxes = {"lhand": out.lhand_bbox.detach() * s, "rhand": out.rhand_bbox.detach() * s}
    joint_img, smplx_joint_img = targets["joint_img"].clone(), targets["smplx_joint_img"].clone()
    joint_trunc, smplx_joint_trunc = meta["joint_trunc"].clone(), meta["smplx_joint_trunc"].clone()
    hand_d, hand_h, hand_w = model_cfg.output_hand_hm_shape
    z_scale = hand_d / model_cfg.output_hm_shape[0]
    for part in ("lhand", "rhand"):
        rows = js.JOINT_PART[part]
        for coords, trunc in ((joint_img, joint_trunc), (smplx_joint_img, smplx_joint_trunc)):
            x, y = _to_box_cells(coords[:, rows, 0], coords[:, rows, 1], boxes[part], model_cfg)
            inside = (x >= 0) & (x < hand_w) & (y >= 0) & (y < hand_h)
            coords[:, rows] = torch.stack((x, y, coords[:, rows, 2] * z_scale), -1)
            trunc[:, rows, 0] = trunc[:, rows, 0] * inside.to(trunc.dtype)

    proj = out.joint_proj
    pieces = [proj[:, : js.JOINT_PART["lhand"].start]]
    for part in ("lhand", "rhand"):
        rows = js.JOINT_PART[part]
        x, y = _to_box_cells(proj[:, rows, 0], proj[:, rows, 1], boxes[part], model_cfg)
        coord = torch.stack((x, y), -1)
        pieces.append(coord + _mean_offset(coord, joint_img[:, rows, :2], joint_trunc[:, rows, 0] == 1))
    face = js.JOINT_PART["face"]
    if (meta["face_bbox_valid"] != 0).any():  # as the original: face alignment only with a valid face box
        coord = proj[:, face]
        pieces.append(coord + _mean_offset(coord, joint_img[:, face, :2], joint_trunc[:, face, 0] == 1))
    else:
        pieces.append(proj[:, face])
    pieces.append(proj[:, face.stop:])
    proj = torch.cat(pieces, 1)

    loss["joint_proj"] = coord_loss(proj, joint_img[:, :, :2], joint_trunc).mean() * w.smplx_kps_2d_weight
    reduce = js.reduce_joint_set
    loss["joint_img"] = coord_loss(out.joint_img_hand_space, reduce(joint_img), reduce(joint_trunc),
                                   meta["is_3D"]).mean() * w.net_kps_2d_weight
    loss["smplx_joint_img"] = coord_loss(out.joint_img_hand_space, reduce(smplx_joint_img),
                                         reduce(smplx_joint_trunc)).mean() * w.net_kps_2d_weight
    return loss
