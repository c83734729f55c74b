"""The SMPL-X rig the exporters write: kinematic tree, shaped bind pose, skinning weights and per-frame rotations.

Everything here is numpy (no torch), read straight from the body-model ``.npz`` with the same conventions as the
pip ``smplx`` package (and so as :class:`common.body_model.SMPLXLayer`):

* shape: ``v_shaped = v_template + shapedirs[..., :10] @ betas + expr_dirs @ expression`` (metres, body-model frame:
  y up, +x the subject's left, +z the front); ``expr_dirs`` are shape components 300-309 (10-19 for files with
  only 20 components, as ``smplx`` reads them);
* joints: ``J = J_regressor @ v_shaped`` (55, 3), parents from ``kintree_table`` (root = 0, the pelvis);
* pose: 55 axis-angle rotations (rad) in the order global_orient, body (1-21), jaw (22), left / right eye (23, 24:
  zero), left hand (25-39), right hand (40-54); hand rotations are the mean hand plus the track's offsets
  (``flat_hand_mean=False``);
* skinning: ``v = sum_j w_vj G_j [I | -J_j] v_posed`` with ``G_j`` the world transform of joint j; ``v_posed`` adds
  the pose-corrective blend shapes (``posedirs``), which the exported files cannot express (see docs/exports.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from common.body_model.smplx_model import check_body_model_files
from common.errors import BodyModelFilesMissing
from common.export.tracks import TrackMotion

JOINT_NUM = 55
# SMPL-X kinematic joint names (the smplx package's spelling), index = joint id
SMPLX_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "jaw", "left_eye_smplhf",
    "right_eye_smplhf",
    *(f"{side}_{finger}{k}" for side in ("left", "right")
      for finger in ("index", "middle", "pinky", "ring", "thumb") for k in (1, 2, 3)),
)
assert len(SMPLX_JOINT_NAMES) == JOINT_NUM


@dataclass(frozen=True)
class SmplxAssets:
    """Arrays of one SMPL-X model file (float64 unless stated): v_template (V, 3) m; shapedirs (V, 3, 10);
    expr_dirs (V, 3, 10); J_regressor (55, V); weights (V, 55) LBS weights (rows sum to 1); parents (55,) int64
    (-1 for the root); faces (F, 3) int64; hand_mean (2, 15, 3) axis-angle rad (left, right)."""

    v_template: np.ndarray
    shapedirs: np.ndarray
    expr_dirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    faces: np.ndarray
    hand_mean: np.ndarray


def load_smplx_assets(model_dir: str | Path, gender: str = "neutral") -> SmplxAssets:
    """Read ``smplx/SMPLX_<GENDER>.npz`` under ``model_dir`` (cached per file); raises
    :class:`BodyModelFilesMissing` with what to do when it is missing or not an SMPL-X file."""
    name = f"smplx/SMPLX_{gender.upper()}.npz"
    model_dir = Path(model_dir).expanduser().resolve()
    check_body_model_files(model_dir, only=[name])
    return _load(model_dir / name)


@functools.lru_cache(maxsize=4)
def _load(path: Path) -> SmplxAssets:
    try:
        with np.load(path) as z:
            shapedirs = np.asarray(z["shapedirs"], np.float64)
            expr0 = 300 if shapedirs.shape[-1] >= 400 else 10  # where smplx reads the expression components
            parents = np.asarray(z["kintree_table"], np.int64)[0].copy()
            parents[0] = -1
            assets = SmplxAssets(
                v_template=np.asarray(z["v_template"], np.float64), shapedirs=shapedirs[:, :, :10].copy(),
                expr_dirs=shapedirs[:, :, expr0:expr0 + 10].copy(),
                J_regressor=np.asarray(z["J_regressor"], np.float64), weights=np.asarray(z["weights"], np.float64),
                parents=parents, faces=np.asarray(z["f"], np.int64),
                hand_mean=np.stack([np.asarray(z["hands_meanl"], np.float64).reshape(15, 3),
                                    np.asarray(z["hands_meanr"], np.float64).reshape(15, 3)]))
    except (OSError, KeyError, ValueError) as err:
        raise BodyModelFilesMissing(f"cannot read the SMPL-X model {path}: {type(err).__name__}: {err}. Replace it "
                                    "with the official SMPLX_*.npz (see README, body model)") from err
    v = len(assets.v_template)
    ok = (assets.J_regressor.shape == (JOINT_NUM, v) and assets.weights.shape == (v, JOINT_NUM)
          and assets.parents.shape == (JOINT_NUM,) and assets.expr_dirs.shape == (v, 3, 10)
          and np.all(assets.parents[1:] < np.arange(1, JOINT_NUM)))
    if not ok:
        raise BodyModelFilesMissing(f"{path} is not an SMPL-X model with 55 joints (J_regressor "
                                    f"{assets.J_regressor.shape}, weights {assets.weights.shape}); use the official "
                                    "SMPLX_*.npz")
    return assets


@dataclass(frozen=True)
class ShapedRig:
    """One person's bind pose (T-pose, body-model frame, metres).

    vertices (V, 3): template + shape blend shapes of ``betas`` (expression 0: expressions are added per frame);
    joints (55, 3): ``J_regressor`` of the template shaped by ``betas`` and the bind ``expression``;
    betas / expression (10,) the baked coefficients; the other fields are the model's (see :class:`SmplxAssets`).
    """

    vertices: np.ndarray
    joints: np.ndarray
    betas: np.ndarray
    expression: np.ndarray
    assets: SmplxAssets

    @property
    def offsets(self) -> np.ndarray:
        """(55, 3) rest offset of each joint from its parent (the root's: its position), metres."""
        p = self.assets.parents
        return self.joints - np.where(p[:, None] >= 0, self.joints[np.maximum(p, 0)], 0.0)


def shaped_rig(assets: SmplxAssets, betas: np.ndarray, expression: np.ndarray | None = None) -> ShapedRig:
    """The bind pose of a person with shape ``betas`` (10,); ``expression`` (10,) only moves the joints (default 0)."""
    betas = np.asarray(betas, np.float64).reshape(10)
    expression = np.zeros(10) if expression is None else np.asarray(expression, np.float64).reshape(10)
    vertices = assets.v_template + assets.shapedirs @ betas
    joints = assets.J_regressor @ (vertices + assets.expr_dirs @ expression)
    return ShapedRig(vertices=vertices, joints=joints, betas=betas, expression=expression, assets=assets)


def full_pose(track: TrackMotion, assets: SmplxAssets) -> np.ndarray:
    """(T, 55, 3) float64 axis-angle (rad) of every joint, the model's joint order; hands = mean + offsets, eyes 0."""
    n = len(track)
    pose = np.zeros((n, JOINT_NUM, 3))
    pose[:, 0] = track.global_orient
    pose[:, 1:22] = track.body_pose
    pose[:, 22] = track.jaw_pose
    pose[:, 25:40] = track.left_hand_pose + assets.hand_mean[0]
    pose[:, 40:55] = track.right_hand_pose + assets.hand_mean[1]
    return pose


def continuous_quaternions(rotvecs: np.ndarray) -> np.ndarray:
    """(T, J, 3) axis-angle -> (T, J, 4) unit quaternions (x, y, z, w), signs chosen so consecutive frames have a
    positive dot product (interpolation then takes the short way, whatever the player's slerp does with signs)."""
    q = Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_quat().reshape(*rotvecs.shape[:-1], 4)
    for t in range(1, len(q)):
        q[t] *= np.where(np.sum(q[t] * q[t - 1], axis=-1, keepdims=True) < 0, -1.0, 1.0)
    return q
