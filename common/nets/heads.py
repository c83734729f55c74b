"""SMPLer-X heads (facts sheet section 2.4). Attribute names and layer indices equal the original's.

Notation: B batch, C encoder width, body heat map (D, H, W) = (16, 16, 12), hand heat map (16, 16, 16).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.ops import roi_align

from common.body_model import joint_sets as js
from common.nets.fast_cpu import deconv_stack
from common.nets.layers import make_conv_layers, make_deconv_layers, make_linear_layers
from common.utils.geometry import sample_joint_features, soft_argmax_2d, soft_argmax_3d


class PositionNet(nn.Module):
    """1x1 conv to J heat-map volumes, then 3D soft-argmax.

    ``forward(feat (B, C, H, W)) -> (softmaxed volume (B, J, D, H, W), coords (B, J, 3) as (x, y, z) cells)``.
    """

    def __init__(self, joint_num: int, hm_shape: tuple[int, int, int], feat_dim: int):
        super().__init__()
        self.joint_num = joint_num
        self.hm_shape = tuple(hm_shape)
        self.conv = make_conv_layers([feat_dim, joint_num * hm_shape[0]], kernel=1, stride=1, padding=0,
                                     bnrelu_final=False)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d, h, w = self.hm_shape
        hm = self.conv(feat).reshape(-1, self.joint_num, d, h, w)
        coord = soft_argmax_3d(hm)
        prob = torch.softmax(hm.reshape(-1, self.joint_num, d * h * w), 2).reshape(-1, self.joint_num, d, h, w)
        return prob, coord


class BodyRotationNet(nn.Module):
    """Root / body 6D rotations from the 25 body tokens and joint coordinates; betas and camera from their tokens.

    ``forward(body_tokens (B,25,C), shape_token (B,C), cam_token (B,C), joint_img (B,25,3))``
    -> root 6D (B,6), body 6D (B,126), betas (B,10), cam params (B,3).
    """

    def __init__(self, feat_dim: int, hidden: int = 512):
        super().__init__()
        n = js.BODY_POS_JOINT_NUM
        self.body_conv = make_linear_layers([feat_dim, hidden], relu_final=False)
        self.root_pose_out = make_linear_layers([n * (hidden + 3), 6], relu_final=False)
        self.body_pose_out = make_linear_layers([n * (hidden + 3), (len(js.ORIG_JOINT_PART["body"]) - 1) * 6],
                                                relu_final=False)
        self.shape_out = make_linear_layers([feat_dim, js.SHAPE_PARAM_DIM], relu_final=False)
        self.cam_out = make_linear_layers([feat_dim, 3], relu_final=False)

    def forward(self, body_tokens, shape_token, cam_token, joint_img):
        b = body_tokens.shape[0]
        shape = self.shape_out(shape_token)
        cam = self.cam_out(cam_token)
        feat = torch.cat((self.body_conv(body_tokens), joint_img), 2).view(b, -1)
        return self.root_pose_out(feat), self.body_pose_out(feat), shape, cam


class HandRotationNet(nn.Module):
    """Hand 6D rotations (15 joints, SMPL-X finger order) from hand features sampled at the 20 hand joints.

    ``forward(hand_feat (2B,C,16,16), joint_img (2B,20,3)) -> (2B, 90)``.
    """

    def __init__(self, feat_dim: int, hidden: int = 512):
        super().__init__()
        n = js.HAND_POS_JOINT_NUM
        self.hand_conv = make_conv_layers([feat_dim, hidden], kernel=1, stride=1, padding=0)
        self.hand_pose_out = make_linear_layers([n * (hidden + 3), len(js.ORIG_JOINT_PART["rhand"]) * 6],
                                                relu_final=False)

    def forward(self, feat: torch.Tensor, joint_img: torch.Tensor) -> torch.Tensor:
        b = feat.shape[0]
        sampled = sample_joint_features(self.hand_conv(feat), joint_img[:, :, :2])
        return self.hand_pose_out(torch.cat((sampled, joint_img), 2).view(b, -1))


class FaceRegressor(nn.Module):
    """Expression (B,10) and jaw 6D (B,6) from their tokens."""

    def __init__(self, feat_dim: int):
        super().__init__()
        self.expr_out = make_linear_layers([feat_dim, js.EXPR_PARAM_DIM], relu_final=False)
        self.jaw_pose_out = make_linear_layers([feat_dim, 6], relu_final=False)

    def forward(self, expr_token: torch.Tensor, jaw_token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.expr_out(expr_token), self.jaw_pose_out(jaw_token)


class BoxNet(nn.Module):
    """Hand and face box centres / sizes from image features and the body heat-map volume.

    The C + 25*16 channel input is upsampled 8x by three deconvolutions (16x12 -> 128x96); a 1x1 conv gives three
    centre heat maps (lhand, rhand, face) read out by 2D soft-argmax; box sizes come from MLPs on the features
    sampled at each (detached) centre. Returns centres / 8 and sizes, both (B, 2) in body heat-map units.
    """

    def __init__(self, feat_dim: int, body_hm_shape: tuple[int, int, int], channels: int = 256):
        super().__init__()
        self.hm_shape = tuple(body_hm_shape)
        in_ch = feat_dim + js.BODY_POS_JOINT_NUM * body_hm_shape[0]
        self.deconv = make_deconv_layers([in_ch, channels, channels, channels])
        self.bbox_center = make_conv_layers([channels, 3], kernel=1, stride=1, padding=0, bnrelu_final=False)
        self.lhand_size = make_linear_layers([channels, channels, 2], relu_final=False)
        self.rhand_size = make_linear_layers([channels, channels, 2], relu_final=False)
        self.face_size = make_linear_layers([channels, channels, 2], relu_final=False)
        # Channels-last convolutions: the 256->256 transposed convolution to 128x96 costs as much as a ViT-S and
        # runs ~1.7x faster in this layout on CPU (oneDNN); weights keep their shapes, only strides change. In CPU
        # inference the stack runs fused (common/nets/fast_cpu.py).
        self.deconv.to(memory_format=torch.channels_last)
        self.bbox_center.to(memory_format=torch.channels_last)

    def forward(self, feat: torch.Tensor, body_hm: torch.Tensor):
        d, h, w = self.hm_shape
        x = torch.cat((feat, body_hm.reshape(body_hm.shape[0], -1, h, w)), 1)
        x = deconv_stack(self.deconv, x.contiguous(memory_format=torch.channels_last))
        centers = soft_argmax_2d(self.bbox_center(x))  # (B, 3, 2) in 128x96 units
        pts = centers.detach()
        sampled = sample_joint_features(x, pts)  # (B, 3, channels)
        lhand_size = self.lhand_size(sampled[:, 0])
        rhand_size = self.rhand_size(sampled[:, 1])
        face_size = self.face_size(sampled[:, 2])
        centers = centers / 8
        return centers[:, 0], lhand_size, centers[:, 1], rhand_size, centers[:, 2], face_size


class HandRoI(nn.Module):
    """Upsample image features ``upscale`` times and RoI-align both hands to (2B, C, 16, 16) hand features.

    Rows 0..B-1 are left hands mirrored along the width (so they look like right hands), rows B..2B-1 right hands.
    Hand boxes are xyxy in network-input pixels (192x256).
    """

    def __init__(self, feat_dim: int, upscale: int, body_hm_shape: tuple[int, int, int],
                 input_body_shape: tuple[int, int], hand_hm_shape: tuple[int, int, int]):
        super().__init__()
        self.upscale = upscale
        self.body_hm_shape = tuple(body_hm_shape)
        self.input_body_shape = tuple(input_body_shape)
        self.hand_hm_shape = tuple(hand_hm_shape)
        if upscale == 1:
            self.deconv = make_conv_layers([feat_dim, feat_dim], kernel=1, stride=1, padding=0, bnrelu_final=False)
            out = feat_dim
        else:
            steps = {2: 1, 4: 2, 8: 3}[upscale]
            dims = [feat_dim // (2**i) for i in range(steps + 1)]
            self.deconv = make_deconv_layers(dims)
            out = dims[-1]
        self.conv = make_conv_layers([out, feat_dim], kernel=1, stride=1, padding=0, bnrelu_final=False)

    def _rois(self, box: torch.Tensor) -> torch.Tensor:
        # xyxy in input pixels -> pixels of the upsampled map; same op order as the original (divide first)
        ih, iw = self.input_body_shape
        hm_h, hm_w = self.body_hm_shape[1], self.body_hm_shape[2]
        idx = torch.arange(box.shape[0], dtype=box.dtype, device=box.device)[:, None]
        x1 = box[:, 0:1] / iw * hm_w * self.upscale
        y1 = box[:, 1:2] / ih * hm_h * self.upscale
        x2 = box[:, 2:3] / iw * hm_w * self.upscale
        y2 = box[:, 3:4] / ih * hm_h * self.upscale
        return torch.cat((idx, x1, y1, x2, y2), 1)

    def forward(self, feat: torch.Tensor, lhand_box: torch.Tensor, rhand_box: torch.Tensor) -> torch.Tensor:
        feat = deconv_stack(self.deconv, feat) if self.upscale > 1 else self.deconv(feat)
        feat = feat.contiguous()
        size = (self.hand_hm_shape[1], self.hand_hm_shape[2])
        # torchvision roi_align with aligned=False is the same algorithm as mmcv's avg-mode roi_align the original
        # used (no half-pixel offset, adaptive sampling grid, sizes clamped to >= 1).
        left = roi_align(feat, self._rois(lhand_box), size, spatial_scale=1.0, sampling_ratio=0, aligned=False)
        left = torch.flip(left, [3])
        right = roi_align(feat, self._rois(rhand_box), size, spatial_scale=1.0, sampling_ratio=0, aligned=False)
        return self.conv(torch.cat((left, right)))
