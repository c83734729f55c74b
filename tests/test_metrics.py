"""Metrics against independent computations: zero for identical inputs, Procrustes invariances, scipy's Kabsch,
hand-computed small cases, the UBody visibility rule and the 3DPW protocol."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from common.evaluation import metrics as M


def _random_similarity(rng, pts):
    r = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
    return 1.7 * pts @ r.T + rng.normal(size=3)


def test_procrustes_against_scipy_kabsch():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(5, 40, 3))
    pred = gt + 0.05 * rng.normal(size=gt.shape)
    pred = np.stack([_random_similarity(rng, p) for p in pred])
    s, r, t = M.similarity_transform(pred, gt)
    for b in range(5):
        p0, g0 = pred[b] - pred[b].mean(0), gt[b] - gt[b].mean(0)
        rot, _ = Rotation.align_vectors(g0, p0)  # proper rotation minimising sum |g0 - R p0|^2
        assert np.allclose(r[b], rot.as_matrix(), atol=1e-8)
        scale = np.sum(g0 * (p0 @ rot.as_matrix().T)) / np.sum(p0**2)  # optimal scale for that rotation
        assert np.isclose(s[b], scale)
        assert np.isclose(np.linalg.det(r[b]), 1.0)


def test_zero_for_identical_and_pa_invariance():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(3, 30, 3))
    assert np.allclose(M.pa_mpjpe(gt, gt), 0, atol=1e-9) and np.allclose(M.mpjpe(gt, gt), 0)
    pred = gt + 0.02 * rng.normal(size=gt.shape)
    moved = np.stack([_random_similarity(rng, p) for p in pred])
    assert np.allclose(M.pa_mpjpe(moved, gt), M.pa_mpjpe(pred, gt), atol=1e-9)
    assert not np.allclose(M.mpjpe(moved, gt), M.mpjpe(pred, gt))


def test_hand_computed_cases():
    gt = np.array([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]])
    pred = gt.copy()
    pred[0, 1] += [0, 0.003, 0.004]  # 5 mm off on one of four joints
    assert np.allclose(M.mpjpe(pred, gt, root=0), 5 / 4)
    assert np.allclose(M.mpjpe(pred + 1.0, gt, root=0), 5 / 4)  # root alignment removes the shift
    assert np.allclose(M.mpjpe(pred + 1.0, gt, root=None), np.linalg.norm(pred[0] + 1 - gt[0], axis=1).mean() * 1e3)
    # a scaled, rotated, shifted copy aligns exactly
    r = Rotation.from_rotvec([0.3, -1.0, 0.5]).as_matrix()
    assert np.allclose(M.pa_mpjpe(0.5 * gt @ r.T + 3, gt), 0, atol=1e-9)
    # a mirror image cannot be aligned by a rotation: error > 0 (reflections are excluded)
    mirrored = gt * np.array([-1, 1, 1])
    assert M.pa_mpjpe(mirrored, gt)[0] > 50


def test_visibility_rule_and_available_sides():
    gt = np.zeros((2, 4, 3))
    pred = np.zeros((2, 4, 3))
    pred[:, :, 0] = [0.001, 0.002, 0.003, 0.004]
    vis = np.array([[True, False, True, False], [False, False, False, False]])
    err = M.point_error_mm(pred, gt, vis)
    assert np.isclose(err[0], 2.0) and np.isnan(err[1])
    assert np.allclose(M._mean_available(np.array([1.0, np.nan, np.nan]), np.array([3.0, 5.0, np.nan]))[:2], [2, 5])
    assert M.summarize({"a": np.array([1.0, np.nan, 3.0])}) == {"a": 2.0}


def test_projection_and_inside_image():
    # a point on the optical axis lands at the virtual principal point (96, 128) -> crop (192, 256) -> image
    bb2img = np.array([[[2.0, 0, 10], [0, 2.0, 20]]])
    px = M.project_to_image(np.array([[[0.0, 0, 10], [1.0, 0.0, 10]]]), bb2img)
    assert np.allclose(px[0, 0], [2 * 192 + 10, 2 * 256 + 20])
    u = (1.0 / (10 + 1e-4) * 5000 + 96) * 2  # crop px of the second point
    assert np.allclose(px[0, 1], [2 * u + 10, 2 * 256 + 20])
    inside = M.inside_image(np.array([[[5.0, 5], [0, 5], [99.9, 49.9], [100, 10]]]), np.array([[50, 100]]))
    assert inside.tolist() == [[True, False, True, False]]


@pytest.fixture(scope="module")
def assets(body_model_dir):
    from common.body_model import load_eval_assets

    return load_eval_assets(body_model_dir)


def test_whole_body_metrics(assets):
    rng = np.random.default_rng(2)
    gt = rng.normal(scale=0.3, size=(2, 10475, 3))
    res = M.whole_body_metrics(gt, gt, assets)
    assert list(res) == list(M.HUMANDATA_METRICS)
    assert all(np.allclose(v, 0, atol=1e-6) for v in res.values())
    # a global translation is removed by every alignment (pelvis, wrists, neck, Procrustes)
    shifted = M.whole_body_metrics(gt + [0.1, -0.2, 0.3], gt, assets)
    # (the float32 regressors' rows sum to 1 within 1e-7, hence nanometre residues)
    assert all(np.allclose(v, 0, atol=1e-4) for v in shifted.values())
    # moving only the left-hand vertices: left-hand MPVPE equals the mean offset (wrist from the whole mesh)
    pred = gt.copy()
    left = np.asarray(assets.hand_vertex_idx["left"])
    pred[:, left] += [0.0, 0.01, 0.0]
    r = M.whole_body_metrics(pred, gt, assets)
    wrist_shift = M.regress(assets.j_regressor, pred)[:, 20] - M.regress(assets.j_regressor, gt)[:, 20]
    expect = np.linalg.norm(np.array([0, 0.01, 0]) - wrist_shift, axis=1) * 1000
    assert np.allclose(r["mpvpe_l_hand"], expect) and np.allclose(r["mpvpe_r_hand"], 0, atol=1e-6)
    assert np.allclose(r["pa_mpvpe_l_hand"], 0, atol=1e-6)  # a rigid shift of the hand alone
    assert np.allclose(r["mpvpe_hand"], (r["mpvpe_l_hand"] + r["mpvpe_r_hand"]) / 2)
    # visibility: no visible face vertex -> NaN face metrics for that sample only
    vis = np.ones((2, 10475), bool)
    vis[1, np.asarray(assets.face_vertex_idx)] = False
    rv = M.whole_body_metrics(pred, gt, assets, visible=vis)
    assert np.isnan(rv["mpvpe_face"][1]) and np.isfinite(rv["mpvpe_face"][0])


def test_pw3d_protocol():
    rng = np.random.default_rng(3)
    smpl_reg = rng.random((24, 50))
    smpl_reg /= smpl_reg.sum(1, keepdims=True)
    smplx_reg = rng.random((55, 60))
    smplx_reg /= smplx_reg.sum(1, keepdims=True)
    gt_mesh = rng.normal(size=(2, 50, 3))
    joints_gt = M.regress(smpl_reg, gt_mesh)
    # build a prediction whose SMPL-X joints equal the GT SMPL joints (+ a translation): zero error
    target = np.zeros((2, 55, 3))
    target[:, :24] = joints_gt + [1.0, 2.0, 3.0]
    pred_mesh = np.einsum("vj,bjc->bvc", np.linalg.pinv(smplx_reg), target)
    r = M.pw3d_metrics(pred_mesh, gt_mesh, smplx_reg, smpl_reg)
    assert np.allclose(r["mpjpe_body"], 0, atol=1e-6) and np.allclose(r["pa_mpjpe_body"], 0, atol=1e-6)
