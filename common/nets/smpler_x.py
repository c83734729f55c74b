"""The SMPLer-X network: ``forward(img) -> SMPLerXOutput`` (facts sheet section 2.10).

Data flow: crop (B,3,512,384) RGB in [0,1] -> nearest 2x downsample -> ViT -> body position net (25 joints) ->
body regressor (root/body 6D, betas, camera) -> box net (hand/face boxes) -> hand RoI features -> hand position
net and regressor (left hands mirrored) -> face regressor -> neutral SMPL-X layer -> joints, projection, mesh.

The SMPL-X layer is attached with :meth:`SMPLerX.attach_body_model`; it is kept out of the module tree, so it
never appears in ``state_dict()`` (as the original popped ``smplx_layer.*`` before saving) and DDP does not
broadcast its buffers, yet it follows ``.to()`` like a submodule. Without a body model the outputs that need it
(``joint_proj``, ``joint_cam``, ``mesh_cam``) are ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.body_model import joint_sets as js
from common.config import ModelConfig
from common.nets.heads import BodyRotationNet, BoxNet, FaceRegressor, HandRoI, HandRotationNet, PositionNet
from common.nets.layers import init_head_weights
from common.nets.vit import ViT
from common.utils.geometry import flip_axis_angle, restore_bbox, rot6d_to_axis_angle

# Names of the trainable top-level modules, in the original's (and the checkpoint's) order.
MODULE_NAMES = ("encoder", "body_position_net", "body_regressor", "box_net", "hand_roi_net", "hand_position_net",
                "hand_regressor", "face_regressor")


@dataclass
class SMPLerXOutput:
    """Network outputs. Poses are axis-angle (radians); SMPL-X hand poses are offsets from the model's mean hand
    (``flat_hand_mean=False``). Metres for 3D quantities; "hm" = body heat-map cells (x in [0,12), y in [0,16)).

    ``to_dict()`` gives the original test-mode keys (``smplx_root_pose`` ...).
    """

    root_pose: torch.Tensor  # (B, 3) global orientation
    body_pose: torch.Tensor  # (B, 63) 21 body joints
    lhand_pose: torch.Tensor  # (B, 45)
    rhand_pose: torch.Tensor  # (B, 45)
    jaw_pose: torch.Tensor  # (B, 3)
    shape: torch.Tensor  # (B, 10) betas
    expr: torch.Tensor  # (B, 10) expression coefficients
    cam_trans: torch.Tensor  # (B, 3) m, translation of the body in the virtual camera (f=5000 px at 192x256)
    joint_img: torch.Tensor  # (B, 65, 3) position-net joints, all in body hm units (x, y, depth bin)
    joint_img_hand_space: torch.Tensor  # (B, 65, 3) same, but hand joints in their hand-box hm units (for losses)
    lhand_bbox: torch.Tensor  # (B, 4) xyxy px of the input crop (384x512)
    rhand_bbox: torch.Tensor  # (B, 4)
    face_bbox: torch.Tensor  # (B, 4)
    lhand_bbox_center: torch.Tensor  # (B, 2) hm units, raw box-net output (for the box loss)
    lhand_bbox_size: torch.Tensor  # (B, 2)
    rhand_bbox_center: torch.Tensor
    rhand_bbox_size: torch.Tensor
    face_bbox_center: torch.Tensor
    face_bbox_size: torch.Tensor
    joint_proj: torch.Tensor | None = None  # (B, 137, 2) projected SMPL-X joints, hm units (144 with all joints)
    joint_cam: torch.Tensor | None = None  # (B, 137, 3) m, pelvis-relative; hands wrist-, face neck-relative
    joint_cam_wo_ra: torch.Tensor | None = None  # (B, 137, 3) m, pelvis-relative
    mesh_cam: torch.Tensor | None = None  # (B, 10475, 3) m, vertices + cam_trans (camera frame)

    def to_dict(self) -> dict[str, torch.Tensor]:
        """The original's test-mode output dict (keys ``smplx_*``, ``cam_trans``, ``joint_img``, boxes)."""
        d = {
            "joint_img": self.joint_img,
            "smplx_joint_proj": self.joint_proj,
            "smplx_mesh_cam": self.mesh_cam,
            "smplx_root_pose": self.root_pose,
            "smplx_body_pose": self.body_pose,
            "smplx_lhand_pose": self.lhand_pose,
            "smplx_rhand_pose": self.rhand_pose,
            "smplx_jaw_pose": self.jaw_pose,
            "smplx_shape": self.shape,
            "smplx_expr": self.expr,
            "cam_trans": self.cam_trans,
            "lhand_bbox": self.lhand_bbox,
            "rhand_bbox": self.rhand_bbox,
            "face_bbox": self.face_bbox,
        }
        return {k: v for k, v in d.items() if v is not None}

    def detach(self) -> SMPLerXOutput:
        return SMPLerXOutput(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).detach()
                                for f in fields(self)})


class SMPLerX(nn.Module):
    """SMPLer-X. Build with :func:`common.nets.build_model`; ``forward(img)`` with img (B, 3, 512, 384) in [0, 1]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c_hm = cfg.output_hm_shape
        self.encoder = ViT(cfg.encoder_size, tuple(cfg.input_body_shape), cfg.num_task_tokens, cfg.drop_path_rate,
                           cfg.activation_checkpointing)
        feat_dim = self.encoder.embed_dim
        self.feat_dim = feat_dim
        self.body_position_net = PositionNet(js.BODY_POS_JOINT_NUM, c_hm, feat_dim)
        self.body_regressor = BodyRotationNet(feat_dim, cfg.regressor_channels)
        self.box_net = BoxNet(feat_dim, c_hm, cfg.box_net_channels)
        self.hand_roi_net = HandRoI(feat_dim, cfg.upscale, c_hm, cfg.input_body_shape, cfg.output_hand_hm_shape)
        self.hand_position_net = PositionNet(js.HAND_POS_JOINT_NUM, cfg.output_hand_hm_shape, feat_dim)
        self.hand_regressor = HandRotationNet(feat_dim, cfg.regressor_channels)
        self.face_regressor = FaceRegressor(feat_dim)
        # t_z = k * sigmoid(c): k makes the depth range match a body of camera_3d_size m filling the input image
        f, (h, w) = cfg.focal, cfg.input_body_shape
        self.cam_depth_scale = math.sqrt(f[0] * f[1] * cfg.camera_3d_size**2 / (h * w))
        self.joint_idx = torch.tensor(js.JOINT_IDX, device="cpu")
        self._body_model: nn.Module | None = None

    # ---------------------------------------------------------------------------------------------------------
    # body model handling

    def attach_body_model(self, body_model: nn.Module | None) -> SMPLerX:
        """Use ``body_model`` (a :class:`common.body_model.SMPLXLayer`, neutral) for joints and meshes."""
        if body_model is not None:
            p = next(self.parameters(), None)
            if p is not None and not p.is_meta:
                body_model = body_model.to(device=p.device, dtype=p.dtype)
        object.__setattr__(self, "_body_model", body_model)
        return self

    @property
    def body_model(self) -> nn.Module | None:
        return self._body_model

    def _apply(self, fn, recurse=True):  # keep the (unregistered) body model on the same device / dtype
        super()._apply(fn, recurse)
        if self._body_model is not None:
            self._body_model._apply(fn, recurse)
        return self

    def init_weights(self) -> None:
        """Training initialisation of the heads as the original (the encoder keeps ViTPose's init)."""
        for name in MODULE_NAMES[1:]:
            init_head_weights(getattr(self, name))

    # ---------------------------------------------------------------------------------------------------------

    def camera_translation(self, cam_param: torch.Tensor) -> torch.Tensor:
        """(B, 3) raw camera output -> (B, 3) translation in m: (c0, c1, k * sigmoid(c2))."""
        t_z = self.cam_depth_scale * torch.sigmoid(cam_param[:, 2])
        return torch.cat((cam_param[:, :2], t_z[:, None]), 1)

    autocast_dtype: torch.dtype | None = None  # set by common.nets.precision.set_precision ('bf16' on CUDA)

    def forward(self, img: torch.Tensor) -> SMPLerXOutput:
        """Test / train forward of a (B, 3, 512, 384) crop batch in [0, 1] (see :class:`SMPLerXOutput`)."""
        if self.autocast_dtype is not None and not torch.is_autocast_enabled(img.device.type):
            with torch.autocast(img.device.type, dtype=self.autocast_dtype):
                return self._forward(img)
        return self._forward(img)

    def _forward(self, img: torch.Tensor) -> SMPLerXOutput:
        cfg = self.cfg
        b = img.shape[0]
        ih, iw = cfg.input_body_shape
        hm_d, hm_h, hm_w = cfg.output_hm_shape
        hand_d, hand_h, hand_w = cfg.output_hand_hm_shape

        # 1. encoder on the 2x nearest-downsampled crop (only even pixels are seen; the original does this)
        body_img = F.interpolate(img, (ih, iw))
        img_feat, tokens = self.encoder(body_img)
        shape_token, cam_token, expr_token, jaw_token = tokens[:, 0], tokens[:, 1], tokens[:, 2], tokens[:, 3]
        body_tokens = tokens[:, 6:31]  # tokens 4:6 (hands) are unused, as in the original

        # 2. body
        body_hm, body_joint_img = self.body_position_net(img_feat)
        root_6d, body_6d, shape, cam_param = self.body_regressor(body_tokens, shape_token, cam_token,
                                                                 body_joint_img.detach())
        root_pose = rot6d_to_axis_angle(root_6d)
        body_pose = rot6d_to_axis_angle(body_6d.reshape(-1, 6)).reshape(b, -1)
        cam_trans = self.camera_translation(cam_param)

        # 3. hand and face boxes (xyxy in input_body_shape px, detached)
        lc, ls, rc, rs, fc, fs = self.box_net(img_feat, body_hm.detach())
        hand_ar = cfg.input_hand_shape[1] / cfg.input_hand_shape[0]
        face_ar = cfg.input_face_shape[1] / cfg.input_face_shape[0]
        lhand_box = restore_bbox(lc, ls, (hm_h, hm_w), (ih, iw), hand_ar, cfg.hand_bbox_extension)
        rhand_box = restore_bbox(rc, rs, (hm_h, hm_w), (ih, iw), hand_ar, cfg.hand_bbox_extension)
        face_box = restore_bbox(fc, fs, (hm_h, hm_w), (ih, iw), face_ar, cfg.face_bbox_extension)

        # 4. hands: RoI features (left mirrored), joints, rotations
        hand_feat = self.hand_roi_net(img_feat, lhand_box, rhand_box)
        _, hand_joint_img = self.hand_position_net(hand_feat)
        hand_6d = self.hand_regressor(hand_feat, hand_joint_img.detach())
        hand_pose = rot6d_to_axis_angle(hand_6d.reshape(-1, 6)).reshape(2 * b, -1)
        lhand_joint_img = torch.cat((hand_w - 1 - hand_joint_img[:b, :, 0:1], hand_joint_img[:b, :, 1:]), 2)
        rhand_joint_img = hand_joint_img[b:]
        lhand_pose = flip_axis_angle(hand_pose[:b].reshape(b, -1, 3)).reshape(b, -1)
        rhand_pose = hand_pose[b:]

        # 5. face
        expr, jaw_6d = self.face_regressor(expr_token, jaw_token)
        jaw_pose = rot6d_to_axis_angle(jaw_6d)

        # 6. joints in hand space (for the losses) and mapped back to body hm space (the test output)
        joint_img_hand_space = torch.cat((body_joint_img, lhand_joint_img, rhand_joint_img), 1)
        joint_img = torch.cat((body_joint_img, self._hand_to_body_hm(lhand_joint_img, lhand_box),
                               self._hand_to_body_hm(rhand_joint_img, rhand_box)), 1)

        out = SMPLerXOutput(
            root_pose=root_pose, body_pose=body_pose, lhand_pose=lhand_pose, rhand_pose=rhand_pose,
            jaw_pose=jaw_pose, shape=shape, expr=expr, cam_trans=cam_trans,
            joint_img=joint_img, joint_img_hand_space=joint_img_hand_space,
            lhand_bbox=self._to_crop_px(lhand_box), rhand_bbox=self._to_crop_px(rhand_box),
            face_bbox=self._to_crop_px(face_box),
            lhand_bbox_center=lc, lhand_bbox_size=ls, rhand_bbox_center=rc, rhand_bbox_size=rs,
            face_bbox_center=fc, face_bbox_size=fs,
        )
        if self._body_model is not None:
            out.joint_proj, out.joint_cam, out.joint_cam_wo_ra, out.mesh_cam = self.get_coord(
                root_pose, body_pose, lhand_pose, rhand_pose, jaw_pose, shape, expr, cam_trans)
        return out

    def _hand_to_body_hm(self, joints: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        """(B, 20, 3) hand-box hm coords -> body hm coords (x, y only; depth bin kept), original op order."""
        cfg = self.cfg
        ih, iw = cfg.input_body_shape
        hm_h, hm_w = cfg.output_hm_shape[1:]
        hand_h, hand_w = cfg.output_hand_hm_shape[1:]
        x = joints[:, :, 0] * ((box[:, None, 2] - box[:, None, 0]) / iw * hm_w / hand_w) + box[:, None, 0] / iw * hm_w
        y = joints[:, :, 1] * ((box[:, None, 3] - box[:, None, 1]) / ih * hm_h / hand_h) + box[:, None, 1] / ih * hm_h
        return torch.stack((x, y, joints[:, :, 2]), 2)

    def _to_crop_px(self, box: torch.Tensor) -> torch.Tensor:
        """(B, 4) xyxy in input_body_shape px -> px of the input crop (input_img_shape)."""
        sx = self.cfg.input_img_shape[1] / self.cfg.input_body_shape[1]
        sy = self.cfg.input_img_shape[0] / self.cfg.input_body_shape[0]
        return box * box.new_tensor([sx, sy, sx, sy])

    def get_coord(self, root_pose, body_pose, lhand_pose, rhand_pose, jaw_pose, shape, expr, cam_trans):
        """SMPL-X layer -> (joint_proj, joint_cam (part-relative), joint_cam_wo_ra (pelvis-relative), mesh_cam).

        Projection with the virtual camera (focal, princpt in input_body_shape px) then to hm units.
        """
        cfg = self.cfg
        vertices, joints = self._body_model(root_pose, body_pose, lhand_pose, rhand_pose, jaw_pose, shape, expr)
        if not cfg.all_layer_joints:
            joints = joints[:, self.joint_idx.to(joints.device)]
        jx, jy, jz = joints[:, :, 0], joints[:, :, 1], joints[:, :, 2]
        if cfg.detach_joint_projection and self.training:
            jx, jy, jz = jx.detach(), jy.detach(), jz.detach()
        z = jz + cam_trans[:, None, 2] + 1e-4
        x = (jx + cam_trans[:, None, 0]) / z * cfg.focal[0] + cfg.princpt[0]
        y = (jy + cam_trans[:, None, 1]) / z * cfg.focal[1] + cfg.princpt[1]
        x = x / cfg.input_body_shape[1] * cfg.output_hm_shape[2]
        y = y / cfg.input_body_shape[0] * cfg.output_hm_shape[1]
        joint_proj = torch.stack((x, y), 2)

        joint_cam_wo_ra = joints - joints[:, js.ROOT_IDX, None, :]
        jc = joint_cam_wo_ra
        lh, rh, face = js.JOINT_PART["lhand"], js.JOINT_PART["rhand"], js.JOINT_PART["face"]
        joint_cam = torch.cat((
            jc[:, : lh.start],
            jc[:, lh.start: lh.stop] - jc[:, js.LWRIST_IDX, None],
            jc[:, rh.start: rh.stop] - jc[:, js.RWRIST_IDX, None],
            jc[:, face.start: face.stop] - jc[:, js.NECK_IDX, None],
            jc[:, face.stop:],  # the 7 extra layer joints when all 144 are kept
        ), 1)
        mesh_cam = vertices + cam_trans[:, None, :]
        return joint_proj, joint_cam, joint_cam_wo_ra, mesh_cam
