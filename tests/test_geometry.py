"""Rotation, heat-map and box conventions against independent computations (scipy, brute force, by hand)."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from common.utils.geometry import (
    axis_angle_to_rotmat,
    flip_axis_angle,
    restore_bbox,
    rot6d_to_axis_angle,
    rot6d_to_rotmat,
    rotmat_to_axis_angle,
    sample_joint_features,
    soft_argmax_2d,
    soft_argmax_3d,
)


def _random_rotvecs(n, max_angle=3.0, seed=0):
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    return axis * rng.uniform(0.0, max_angle, size=(n, 1))


def test_6d_layout_is_interleaved():
    # The 6 numbers fill a 3x2 matrix row-major: columns (v0, v2, v4) and (v1, v3, v5).
    rv = _random_rotvecs(50)
    R = Rotation.from_rotvec(rv).as_matrix()
    six = torch.tensor(R[:, :, :2].reshape(-1, 6), dtype=torch.float64)
    assert torch.allclose(rot6d_to_rotmat(six), torch.tensor(R), atol=1e-12)
    # the other common layout (first column = first three numbers) must give something else
    split = torch.tensor(np.concatenate([R[:, :, 0], R[:, :, 1]], 1), dtype=torch.float64)
    assert not torch.allclose(rot6d_to_rotmat(split), torch.tensor(R), atol=1e-3)
    assert torch.allclose(rot6d_to_rotmat(torch.tensor([1.0, 0, 0, 1, 0, 0])), torch.eye(3))


def test_6d_gram_schmidt_on_unnormalised_input():
    rng = np.random.default_rng(1)
    six = torch.tensor(rng.normal(size=(20, 6)))
    R = rot6d_to_rotmat(six).numpy()
    a1, a2 = six.numpy()[:, 0::2], six.numpy()[:, 1::2]
    b1 = a1 / np.linalg.norm(a1, axis=1, keepdims=True)
    b2 = a2 - (b1 * a2).sum(1, keepdims=True) * b1
    b2 /= np.linalg.norm(b2, axis=1, keepdims=True)
    assert np.allclose(R[:, :, 0], b1) and np.allclose(R[:, :, 1], b2)
    assert np.allclose(np.linalg.det(R), 1.0)
    assert np.allclose(R.transpose(0, 2, 1) @ R, np.eye(3), atol=1e-12)


def test_rotmat_to_axis_angle_matches_scipy():
    rv = _random_rotvecs(500, max_angle=3.1)
    R = torch.tensor(Rotation.from_rotvec(rv).as_matrix())
    aa = rotmat_to_axis_angle(R).numpy()
    assert np.abs(aa - rv).max() < 1e-6
    # float32, as the network runs
    aa32 = rotmat_to_axis_angle(R.float()).numpy()
    assert np.abs(aa32 - rv).max() < 2e-3


def test_axis_angle_round_trip_and_near_pi():
    rv = np.concatenate([_random_rotvecs(200, 3.14159, seed=3), [[math.pi, 0, 0], [0, 0, 1e-9], [0, 0, 0]]])
    R = axis_angle_to_rotmat(torch.tensor(rv))
    assert np.allclose(R.numpy(), Rotation.from_rotvec(rv).as_matrix(), atol=1e-9)
    back = axis_angle_to_rotmat(rotmat_to_axis_angle(R))  # same rotation (axis sign is free at exactly pi)
    assert torch.allclose(back, R, atol=1e-6)


def test_rot6d_batch_of_three_uses_the_right_cross_axis():
    # The original's torch.cross without dim took the batch axis when the batch was 3. Ours must not depend on B.
    rv = _random_rotvecs(3, seed=4)
    six = torch.tensor(Rotation.from_rotvec(rv).as_matrix()[:, :, :2].reshape(3, 6))
    together = rot6d_to_axis_angle(six)
    single = torch.cat([rot6d_to_axis_angle(six[i : i + 1]) for i in range(3)])
    assert torch.allclose(together, single)
    assert np.allclose(together.numpy(), rv, atol=1e-9)


def test_degenerate_6d_is_finite_like_the_original():
    # An all-zero 6D vector gives R = 0. torchgeometry's case analysis then takes the "r22 < eps, r00 <= r11"
    # branch: q = (0, 0, 1, 0) / 2, i.e. half-angle pi/2 about y -> axis-angle (0, pi, 0). Finite, as the original.
    aa = rot6d_to_axis_angle(torch.zeros(4, 6))
    assert torch.allclose(aa, torch.tensor([0.0, math.pi, 0.0]).expand(4, 3))


def test_flip_axis_angle_is_mirror_conjugation():
    rv = torch.tensor(_random_rotvecs(100, seed=5))
    M = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    expected = M @ axis_angle_to_rotmat(rv) @ M
    assert torch.allclose(axis_angle_to_rotmat(flip_axis_angle(rv)), expected, atol=1e-12)
    assert torch.equal(flip_axis_angle(flip_axis_angle(rv)), rv)


def test_soft_argmax_3d_against_brute_force():
    g = torch.Generator().manual_seed(0)
    hm = torch.randn(2, 5, 4, 6, 3, generator=g, dtype=torch.float64) * 3
    out = soft_argmax_3d(hm)
    p = torch.softmax(hm.reshape(2, 5, -1), -1).reshape(hm.shape)
    d, h, w = torch.meshgrid(torch.arange(4.0), torch.arange(6.0), torch.arange(3.0), indexing="ij")
    expect = torch.stack([(p * w.double()).sum((2, 3, 4)), (p * h.double()).sum((2, 3, 4)),
                          (p * d.double()).sum((2, 3, 4))], -1)
    assert torch.allclose(out, expect, atol=1e-12)
    peaked = torch.full((1, 1, 4, 6, 3), -1e4)
    peaked[0, 0, 3, 5, 1] = 0  # depth 3, y 5, x 1
    assert torch.allclose(soft_argmax_3d(peaked)[0, 0], torch.tensor([1.0, 5.0, 3.0]))
    peaked2 = torch.full((1, 1, 7, 4), -1e4)
    peaked2[0, 0, 6, 2] = 0
    assert torch.allclose(soft_argmax_2d(peaked2)[0, 0], torch.tensor([2.0, 6.0]))


def test_sample_joint_features_at_grid_points_and_midpoints():
    feat = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).reshape(2, 3, 4, 5)
    pts = torch.tensor([[[0.0, 0.0], [4.0, 3.0], [2.0, 1.0]], [[1.0, 2.0], [3.5, 0.0], [0.0, 2.5]]],
                       dtype=torch.float64)
    out = sample_joint_features(feat, pts)
    assert out.shape == (2, 3, 3)
    assert torch.equal(out[0, 0], feat[0, :, 0, 0]) and torch.equal(out[0, 1], feat[0, :, 3, 4])
    assert torch.equal(out[0, 2], feat[0, :, 1, 2]) and torch.equal(out[1, 0], feat[1, :, 2, 1])
    assert torch.allclose(out[1, 1], (feat[1, :, 0, 3] + feat[1, :, 0, 4]) / 2)
    assert torch.allclose(out[1, 2], (feat[1, :, 2, 0] + feat[1, :, 3, 0]) / 2)


def test_restore_bbox_by_hand():
    # centre (6, 8) hm cells, size (2, 1): in 192x256 px that is 32 x 16 around (96, 128).
    center = torch.tensor([[6.0, 8.0], [3.0, 4.0]])
    size = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    box = restore_bbox(center, size, (16, 12), (256, 192), aspect_ratio=1.0, extension=2.0)
    # first: wider than tall -> height raised to 32, then x2 -> 64 x 64 around (96, 128)
    assert torch.allclose(box[0], torch.tensor([64.0, 96.0, 128.0, 160.0]))
    # second: 16 x 48 px around (48, 64) -> width raised to 48, x2 -> 96 x 96
    assert torch.allclose(box[1], torch.tensor([0.0, 16.0, 96.0, 112.0]))
    face = restore_bbox(center[:1], size[:1], (16, 12), (256, 192), aspect_ratio=1.0, extension=1.5)
    assert torch.allclose(face[0], torch.tensor([72.0, 104.0, 120.0, 152.0]))


@pytest.mark.parametrize("shape", [(1, 6), (5, 6), (2, 7, 6)])
def test_rot6d_to_axis_angle_shapes(shape):
    out = rot6d_to_axis_angle(torch.randn(shape))
    assert out.shape == shape[:-1] + (3,) and torch.isfinite(out).all()
