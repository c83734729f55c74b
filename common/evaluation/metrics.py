"""Evaluation metrics of SMPLer-X (facts sheet section 6): pure, batched numpy functions.

Inputs are metres, outputs **millimetres**, one value per sample (shape (B,)); averaging over samples is the
caller's (the benchmarks report plain means over samples). Point sets are (B, N, 3).

* ``mpjpe`` / ``mpvpe``: mean Euclidean error after a translation alignment (given reference points).
* ``pa_*``: after a similarity Procrustes alignment of the prediction onto the ground truth (rotation with the
  reflection fixed, isotropic scale, translation), computed per point set (per hand, per face).
* Hands / face: vertex subsets (MANO / FLAME ids of SMPL-X). MPVPE aligns hands by the wrist joints and the face by
  the neck joint of the *whole* meshes (rows 20, 21, 12 of the SMPL-X J_regressor), the body by the pelvis (row 0).
* PA-MPJPE body uses the 14-joint ``SMPLX_to_J14`` regressor; hands the 21-joint hand regressors.

Procrustes runs in float64 (the original ran it in float32, which scores identical meshes at up to ~0.06 mm).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from common.body_model import joint_sets as js

HUMANDATA_METRICS = ("pa_mpvpe_all", "pa_mpvpe_l_hand", "pa_mpvpe_r_hand", "pa_mpvpe_hand", "pa_mpvpe_face",
                     "mpvpe_all", "mpvpe_l_hand", "mpvpe_r_hand", "mpvpe_hand", "mpvpe_face",
                     "pa_mpjpe_body", "pa_mpjpe_l_hand", "pa_mpjpe_r_hand", "pa_mpjpe_hand")
# LSP-order 14 joints taken from the SMPL (GT) and SMPL-X (prediction) kinematic joints for 3DPW
PW3D_JOINTS = (1, 2, 4, 5, 7, 8, 12, 15, 16, 17, 18, 19, 20, 21)


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def similarity_transform(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity (scale s (B,), rotation R (B,3,3), translation t (B,3)) with s R pred + t ~ gt.

    Umeyama's solution: SVD of the cross-covariance; the reflection case flips the smallest singular direction.
    """
    pred, gt = _f64(pred), _f64(gt)
    mu_p, mu_g = pred.mean(1, keepdims=True), gt.mean(1, keepdims=True)
    p0, g0 = pred - mu_p, gt - mu_g
    cov = np.einsum("bni,bnj->bij", p0, g0) / pred.shape[1]
    u, s, vt = np.linalg.svd(cov)
    sign = np.sign(np.linalg.det(np.einsum("bji,bkj->bik", vt, u)))  # det(V U^T)
    sign[sign == 0] = 1.0
    d = np.ones_like(s)
    d[:, -1] = sign
    rot = np.einsum("bji,bj,bkj->bik", vt, d, u)  # V diag(d) U^T
    var_p = (p0**2).sum((1, 2)) / pred.shape[1]
    scale = (s * d).sum(1) / np.maximum(var_p, 1e-300)
    trans = mu_g[:, 0] - scale[:, None] * np.einsum("bij,bj->bi", rot, mu_p[:, 0])
    return scale, rot, trans


def rigid_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(B, N, 3) prediction aligned onto (B, N, 3) ground truth by the best similarity transform."""
    s, r, t = similarity_transform(pred, gt)
    return s[:, None, None] * np.einsum("bij,bnj->bni", r, _f64(pred)) + t[:, None]


def point_error_mm(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray | None = None) -> np.ndarray:
    """Mean L2 distance in mm per sample, optionally over ``visible`` points only (B, N) bool.

    Samples with no visible point get NaN (callers drop them, as the original's UBody evaluation did).
    """
    d = np.linalg.norm(_f64(pred) - _f64(gt), axis=-1) * 1000.0
    if visible is None:
        return d.mean(1)
    visible = np.asarray(visible, dtype=bool)
    n = visible.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (d * visible).sum(1) / n, np.nan)


def mpjpe(pred: np.ndarray, gt: np.ndarray, root: int | None = 0) -> np.ndarray:
    """Mean per-joint position error (mm) after aligning joint ``root`` (None: no alignment)."""
    pred, gt = _f64(pred), _f64(gt)
    if root is not None:
        pred = pred - pred[:, root: root + 1] + gt[:, root: root + 1]
    return point_error_mm(pred, gt)


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray | None = None) -> np.ndarray:
    """Procrustes-aligned mean per-point error (mm); used for joints and vertex subsets alike."""
    return point_error_mm(rigid_align(pred, gt), gt, visible)


def regress(regressor: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """(J, V) regressor applied to (B, V, 3) meshes -> (B, J, 3)."""
    return np.einsum("jv,bvc->bjc", _f64(regressor), _f64(verts))


def translation_aligned(pred_part: np.ndarray, pred_ref: np.ndarray, gt_ref: np.ndarray) -> np.ndarray:
    """Shift (B, N, 3) points so the prediction's reference point (B, 3) lands on the ground truth's."""
    return _f64(pred_part) - _f64(pred_ref)[:, None] + _f64(gt_ref)[:, None]


def whole_body_metrics(pred_mesh: np.ndarray, gt_mesh: np.ndarray, assets, visible: np.ndarray | None = None,
                       visible_joints: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The 14 metrics of EHF and the HumanData test sets, per sample in mm (B,), from (B, 10475, 3) meshes.

    Args:
        assets: :class:`common.body_model.EvalAssets` (J_regressor, J14 regressor, hand regressors, hand / face
            vertex ids) of the SMPL-X model.
        visible: optional (B, 10475) bool: average only over these vertices (UBody's rule); alignments still use
            every vertex. A part with no visible vertex gives NaN for that sample.
        visible_joints: optional {'body': (B,14), 'left': (B,21), 'right': (B,21)} bool for the joint metrics.
    """
    pred, gt = _f64(pred_mesh), _f64(gt_mesh)
    jr = assets.j_regressor
    j_pred, j_gt = regress(jr, pred), regress(jr, gt)
    idx = js.J_REGRESSOR_IDX
    vis = (lambda ids: None if visible is None else np.asarray(visible)[:, ids])  # noqa: E731
    vj = visible_joints or {}
    out: dict[str, np.ndarray] = {}
    out["pa_mpvpe_all"] = pa_mpjpe(pred, gt, vis(slice(None)))
    out["mpvpe_all"] = point_error_mm(translation_aligned(pred, j_pred[:, idx["pelvis"]], j_gt[:, idx["pelvis"]]),
                                      gt, vis(slice(None)))
    for side, key, wrist in (("l", "left", "lwrist"), ("r", "right", "rwrist")):
        ids = np.asarray(assets.hand_vertex_idx[key])
        out[f"pa_mpvpe_{side}_hand"] = pa_mpjpe(pred[:, ids], gt[:, ids], vis(ids))
        out[f"mpvpe_{side}_hand"] = point_error_mm(
            translation_aligned(pred[:, ids], j_pred[:, idx[wrist]], j_gt[:, idx[wrist]]), gt[:, ids], vis(ids))
    face = np.asarray(assets.face_vertex_idx)
    out["pa_mpvpe_face"] = pa_mpjpe(pred[:, face], gt[:, face], vis(face))
    out["mpvpe_face"] = point_error_mm(
        translation_aligned(pred[:, face], j_pred[:, idx["neck"]], j_gt[:, idx["neck"]]), gt[:, face], vis(face))
    out["pa_mpjpe_body"] = pa_mpjpe(regress(assets.j14_regressor, pred), regress(assets.j14_regressor, gt),
                                    vj.get("body"))
    for side, key in (("l", "left"), ("r", "right")):
        reg = assets.hand_regressors[key]
        out[f"pa_mpjpe_{side}_hand"] = pa_mpjpe(regress(reg, pred), regress(reg, gt), vj.get(key))
    for name in ("pa_mpvpe", "mpvpe"):  # "hands" = mean of the available sides
        out[f"{name}_hand"] = _mean_available(out[f"{name}_l_hand"], out[f"{name}_r_hand"])
    out["pa_mpjpe_hand"] = _mean_available(out["pa_mpjpe_l_hand"], out["pa_mpjpe_r_hand"])
    return {k: out[k] for k in HUMANDATA_METRICS}


def _mean_available(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    stacked = np.stack([a, b])
    n = np.isfinite(stacked).sum(0)
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, np.nansum(stacked, 0) / np.maximum(n, 1), np.nan)


def pw3d_metrics(pred_smplx_mesh: np.ndarray, gt_smpl_mesh: np.ndarray, smplx_j_regressor: np.ndarray,
                 smpl_j_regressor: np.ndarray) -> dict[str, np.ndarray]:
    """3DPW protocol: 14 LSP joints from the SMPL-X kinematic joints (prediction) and the SMPL regressor (GT).

    MPJPE after moving the prediction's SMPL-X pelvis onto the GT's SMPL pelvis; PA-MPJPE after Procrustes.
    (Even a perfect SMPL-X fit does not score 0: the two regressors differ.)
    """
    j_pred_all = regress(smplx_j_regressor, pred_smplx_mesh)
    j_gt_all = regress(smpl_j_regressor, gt_smpl_mesh)
    joints = list(PW3D_JOINTS)
    j_pred, j_gt = j_pred_all[:, joints], j_gt_all[:, joints]
    aligned = translation_aligned(j_pred, j_pred_all[:, 0], j_gt_all[:, 0])
    return {"mpjpe_body": point_error_mm(aligned, j_gt), "pa_mpjpe_body": pa_mpjpe(j_pred, j_gt)}


def project_to_image(points_cam: np.ndarray, bb2img: np.ndarray, focal=(5000.0, 5000.0), princpt=(96.0, 128.0),
                     input_body_shape=(256, 192), input_img_shape=(512, 384)) -> np.ndarray:
    """(B, N, 3) camera points -> (B, N, 2) original-image px through the virtual crop camera and ``bb2img``.

    The virtual camera lives in input_body_shape px; points go to input_img_shape px, then through the (B, 2, 3)
    crop -> image affine. This is UBody's visibility projection (with the original's +1e-4 on the depth).
    """
    p = _f64(points_cam)
    z = p[..., 2] + 1e-4
    x = (p[..., 0] / z * focal[0] + princpt[0]) / input_body_shape[1] * input_img_shape[1]
    y = (p[..., 1] / z * focal[1] + princpt[1]) / input_body_shape[0] * input_img_shape[0]
    homo = np.stack([x, y, np.ones_like(x)], -1)
    return np.einsum("bij,bnj->bni", _f64(bb2img), homo)


def inside_image(points_px: np.ndarray, img_hw: np.ndarray) -> np.ndarray:
    """(B, N, 2) px and (B, 2) (h, w) -> (B, N) bool: strictly inside (0 < x < w, 0 < y < h)."""
    hw = _f64(img_hw)
    x, y = points_px[..., 0], points_px[..., 1]
    return (x > 0) & (x < hw[:, 1:2]) & (y > 0) & (y < hw[:, 0:1])


def summarize(per_sample: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Plain means over samples (NaN entries, i.e. parts with nothing visible, are left out)."""
    return {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in per_sample.items()}
