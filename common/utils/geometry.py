"""Rotation conversions, heat-map read-out and box helpers used by the network (torch, device-agnostic).

Conventions (facts sheet section 2):

* **6D rotations** are *interleaved*: the 6 numbers fill a 3x2 matrix row-major, so the two columns are
  ``(v0, v2, v4)`` and ``(v1, v3, v5)``; Gram-Schmidt gives the first two columns of R, the third is their cross
  product. The identity is ``[1, 0, 0, 1, 0, 0]``.
* **axis-angle** vectors are rotation axis times angle in radians (SMPL-X convention).
* **Rotation matrix -> axis-angle** reproduces ``torchgeometry.rotation_matrix_to_angle_axis`` (0.1.2), through
  a quaternion with the same branch choices, so released checkpoints give the same numbers; NaNs become 0 as in
  the original.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) interleaved 6D -> (..., 3, 3) rotation matrices (columns b1, b2, b3)."""
    shape = x.shape[:-1]
    m = x.reshape(-1, 3, 2)
    a1, a2 = m[:, :, 0], m[:, :, 1]
    b1 = F.normalize(a1, dim=1)
    b2 = F.normalize(a2 - torch.einsum("bi,bi->b", b1, a2).unsqueeze(-1) * b1, dim=1)
    # Explicit dim: the original's torch.cross without dim picks the first size-3 axis, which is the batch axis
    # when the batch happens to be 3 (see docs/differences.md).
    b3 = torch.linalg.cross(b1, b2, dim=1)
    return torch.stack((b1, b2, b3), dim=-1).reshape(*shape, 3, 3)


def rotmat_to_quaternion_tgm(rotmat: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(N, 3, 3) rotation matrices -> (N, 4) quaternions (w, x, y, z), with torchgeometry 0.1.2's case analysis.

    The four candidate quaternions are each exact for some rotations; the masks pick one per matrix exactly as
    torchgeometry does (including its choice near 180-degree rotations), so the axis-angle outputs match the
    original bit for bit in float32 up to operation order.
    """
    rt = rotmat.transpose(1, 2)
    r00, r01, r02 = rt[:, 0, 0], rt[:, 0, 1], rt[:, 0, 2]
    r10, r11, r12 = rt[:, 1, 0], rt[:, 1, 1], rt[:, 1, 2]
    r20, r21, r22 = rt[:, 2, 0], rt[:, 2, 1], rt[:, 2, 2]

    mask_d2 = r22 < eps
    mask_d0_d1 = r00 > r11
    mask_d0_nd1 = r00 < -r11

    t0 = 1 + r00 - r11 - r22
    q0 = torch.stack((r12 - r21, t0, r01 + r10, r20 + r02), -1)
    t1 = 1 - r00 + r11 - r22
    q1 = torch.stack((r20 - r02, r01 + r10, t1, r12 + r21), -1)
    t2 = 1 - r00 - r11 + r22
    q2 = torch.stack((r01 - r10, r20 + r02, r12 + r21, t2), -1)
    t3 = 1 + r00 + r11 + r22
    q3 = torch.stack((t3, r12 - r21, r20 - r02, r01 - r10), -1)

    c0 = (mask_d2 & mask_d0_d1).to(rotmat.dtype)[:, None]
    c1 = (mask_d2 & ~mask_d0_d1).to(rotmat.dtype)[:, None]
    c2 = (~mask_d2 & mask_d0_nd1).to(rotmat.dtype)[:, None]
    c3 = (~mask_d2 & ~mask_d0_nd1).to(rotmat.dtype)[:, None]

    q = q0 * c0 + q1 * c1 + q2 * c2 + q3 * c3
    q = q / torch.sqrt(t0[:, None] * c0 + t1[:, None] * c1 + t2[:, None] * c2 + t3[:, None] * c3)
    return q * 0.5


def quaternion_to_axis_angle_tgm(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions (w, x, y, z) -> (..., 3) axis-angle, as torchgeometry 0.1.2 (not normalised)."""
    q1, q2, q3 = q[..., 1], q[..., 2], q[..., 3]
    sin_sq = q1 * q1 + q2 * q2 + q3 * q3
    sin_t = torch.sqrt(sin_sq)
    cos_t = q[..., 0]
    two_theta = 2.0 * torch.where(cos_t < 0.0, torch.atan2(-sin_t, -cos_t), torch.atan2(sin_t, cos_t))
    k = torch.where(sin_sq > 0.0, two_theta / sin_t, 2.0 * torch.ones_like(sin_t))
    return torch.stack((q1 * k, q2 * k, q3 * k), -1)


def rotmat_to_axis_angle(rotmat: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle (radians); NaN -> 0 as the original."""
    shape = rotmat.shape[:-2]
    aa = quaternion_to_axis_angle_tgm(rotmat_to_quaternion_tgm(rotmat.reshape(-1, 3, 3)))
    aa = torch.nan_to_num(aa, nan=0.0, posinf=torch.inf, neginf=-torch.inf)
    return aa.reshape(*shape, 3)


def rot6d_to_axis_angle(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) interleaved 6D -> (..., 3) axis-angle. ``(B, J*6)`` inputs should be reshaped to (B, J, 6) first."""
    return rotmat_to_axis_angle(rot6d_to_rotmat(x))


def axis_angle_to_rotmat(aa: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrices (Rodrigues; exact at zero angle)."""
    angle = aa.norm(dim=-1, keepdim=True)
    axis = aa / angle.clamp_min(1e-12)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), -1).reshape(*aa.shape[:-1], 3, 3)
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand(k.shape)
    return eye + s * k + (1 - c) * (k @ k)


def rotmat_to_rot6d(rotmat: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6) interleaved 6D (the inverse of :func:`rot6d_to_rotmat` on rotations)."""
    return rotmat[..., :, :2].reshape(*rotmat.shape[:-2], 6)


def flip_axis_angle(aa: torch.Tensor) -> torch.Tensor:
    """Mirror axis-angle rotations across the x = 0 plane: (x, y, z) -> (x, -y, -z). Works on (..., 3)."""
    return aa * aa.new_tensor([1.0, -1.0, -1.0])


# ---------------------------------------------------------------------------------------------------------------
# heat-map read-out


def soft_argmax_3d(heatmap: torch.Tensor) -> torch.Tensor:
    """(B, J, D, H, W) logits -> (B, J, 3) expected (x, y, z) grid indices under the softmax over all cells."""
    b, j, d, h, w = heatmap.shape
    prob = F.softmax(heatmap.reshape(b, j, d * h * w), dim=2).reshape(b, j, d, h, w)
    return _expected_coords(prob, (w, h, d), ((2, 3), (2, 4), (3, 4)))


def soft_argmax_2d(heatmap: torch.Tensor) -> torch.Tensor:
    """(B, J, H, W) logits -> (B, J, 2) expected (x, y) grid indices."""
    b, j, h, w = heatmap.shape
    prob = F.softmax(heatmap.reshape(b, j, h * w), dim=2).reshape(b, j, h, w)
    return _expected_coords(prob, (w, h), ((2,), (3,)))


def _expected_coords(prob: torch.Tensor, sizes: tuple[int, ...], sum_dims: tuple[tuple[int, ...], ...]):
    out = []
    for size, dims in zip(sizes, sum_dims):
        marginal = prob.sum(dim=dims)
        grid = torch.arange(size, dtype=prob.dtype, device=prob.device)
        out.append((marginal * grid).sum(dim=2, keepdim=True))
    return torch.cat(out, dim=2)


def sample_joint_features(feat: torch.Tensor, joint_xy: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample (B, C, H, W) features at (B, J, 2) grid coordinates (x in [0, W-1], y in [0, H-1]).

    Returns (B, J, C). Outside the map the features are zero (``grid_sample`` zero padding, align_corners=True).
    """
    h, w = feat.shape[2:]
    x = joint_xy[:, :, 0] / (w - 1) * 2 - 1
    y = joint_xy[:, :, 1] / (h - 1) * 2 - 1
    grid = torch.stack((x, y), 2)[:, :, None, :]
    out = F.grid_sample(feat, grid, align_corners=True)[:, :, :, 0]
    return out.permute(0, 2, 1).contiguous()


# ---------------------------------------------------------------------------------------------------------------
# boxes


def restore_bbox(center: torch.Tensor, size: torch.Tensor, hm_shape: tuple[int, int], input_shape: tuple[int, int],
                 aspect_ratio: float, extension: float) -> torch.Tensor:
    """Box-net centre and size (heat-map units) -> (B, 4) xyxy box in network-input pixels, detached.

    Args:
        center, size: (B, 2) in body heat-map units (x over ``hm_shape[1]``, y over ``hm_shape[0]``).
        hm_shape: (H, W) of the body heat map, e.g. (16, 12).
        input_shape: (H, W) of the network input, e.g. (256, 192).
        aspect_ratio: target w / h; the smaller side is enlarged about the centre to reach it.
        extension: both sides are then scaled by this factor about the centre (2.0 hands, 1.5 face).
    """
    center, size = center.detach(), size.detach()
    # divide-then-multiply in the original's order so float32 results match bit for bit
    x1 = (center[:, 0] - size[:, 0] / 2.0) / hm_shape[1] * input_shape[1]
    y1 = (center[:, 1] - size[:, 1] / 2.0) / hm_shape[0] * input_shape[0]
    x2 = (center[:, 0] + size[:, 0] / 2.0) / hm_shape[1] * input_shape[1]
    y2 = (center[:, 1] + size[:, 1] / 2.0) / hm_shape[0] * input_shape[0]
    w, h = x2 - x1, y2 - y1
    cx, cy = x1 + w / 2.0, y1 + h / 2.0
    h_fit = torch.where(w > aspect_ratio * h, w / aspect_ratio, h)
    w_fit = torch.where(w < aspect_ratio * h, h * aspect_ratio, w)
    w_ext, h_ext = w_fit * extension, h_fit * extension
    x1 = cx - w_ext / 2.0
    y1 = cy - h_ext / 2.0
    return torch.stack((x1, y1, w_ext + x1, h_ext + y1), dim=1)
