"""BVH (Biovision hierarchy) motion of one tracked person: the SMPL-X skeleton driven by the track's poses.

Skeleton: the 55 SMPL-X joints (:data:`SMPLX_JOINT_NAMES`), root ``pelvis``, parents from the model's
``kintree_table``; children are listed in joint-index order; leaves get an ``End Site`` half as long as their own
bone. Rest pose: the track's shaped T-pose (median betas, joints of the median expression) upright in the body-model
frame (y up, the subject facing +z), with the root OFFSET 0 (readers differ on whether the root's OFFSET is added to
its position channels; 0 makes both readings agree).

Units and axes: centimetres (``unit_scale`` = 100 per metre by default), degrees. The motion's world frame is y-up:
the scene camera's OpenCV frame (x right, y down, z forward) turned 180 degrees about x, i.e. (x, -y, -z): x right,
y up, z towards the viewer, the camera at the origin looking down -z (the glTF exports use the same frame).

Channels: the root ``Xposition Yposition Zposition Zrotation Xrotation Yrotation``, every other joint ``Zrotation
Xrotation Yrotation``; Euler angles are intrinsic in the listed order (local = Rz Rx Ry, column vectors) and each
joint's world transform is ``parent world @ translate(OFFSET) @ local`` (root: ``translate(position) @ local``).
The root's rotation is ``C R_root`` and its position ``C (J_pelvis + transl)`` with ``C`` the 180 degree turn above.

Frames: one per video frame from the track's first to its last ``frame_index`` at ``1 / fps`` s each. Frames where
the track is absent are interpolated between the nearest present frames before and after: rotations by slerp per
joint (shortest path), the root position linearly (BVH cannot hide a character, so every gap is filled).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from common.errors import InputError
from common.export.gltf import CV_TO_GLTF
from common.export.skeleton import JOINT_NUM, SMPLX_JOINT_NAMES, full_pose, load_smplx_assets, shaped_rig
from common.export.tracks import TrackMotion
from common.utils.io import atomic_open

ROOT_CHANNELS = ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
JOINT_CHANNELS = ("Zrotation", "Xrotation", "Yrotation")
EULER_ORDER = "ZXY"  # scipy upper case = intrinsic, matching the channel order


def dense_motion(track: TrackMotion, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill every frame between the track's first and last frame_index.

    ``pose`` (T, 55, 3) axis-angle of the present frames. Returns frame indices (F,), rotations (F, 55) as a flat
    scipy Rotation array (F * 55) and transl (F, 3) metres: present frames as given, absent ones slerped / lerped
    between their neighbours.
    """
    frames = np.arange(track.frame_index[0], track.frame_index[-1] + 1)
    transl = np.stack([np.interp(frames, track.frame_index, track.transl[:, c].astype(np.float64))
                       for c in range(3)], axis=1)
    quats = np.empty((len(frames), JOINT_NUM, 4))
    if len(track) == 1:
        quats[:] = Rotation.from_rotvec(pose[0]).as_quat()
    else:
        keys = track.frame_index.astype(np.float64)
        for j in range(JOINT_NUM):
            quats[:, j] = Slerp(keys, Rotation.from_rotvec(pose[:, j]))(frames).as_quat()
    return frames, Rotation.from_quat(quats.reshape(-1, 4)), transl


def _hierarchy(lines: list[str], j: int, children: list[list[int]], offsets: np.ndarray, depth: int) -> None:
    pad = "  " * depth
    lines += [f"{pad}{'ROOT' if j == 0 else 'JOINT'} {SMPLX_JOINT_NAMES[j]}", f"{pad}{{",
              f"{pad}  OFFSET {_fmt(offsets[j])}",
              f"{pad}  CHANNELS {len(ROOT_CHANNELS if j == 0 else JOINT_CHANNELS)} "
              f"{' '.join(ROOT_CHANNELS if j == 0 else JOINT_CHANNELS)}"]
    for c in children[j]:
        _hierarchy(lines, c, children, offsets, depth + 1)
    if not children[j]:
        tip = offsets[j] * 0.5 if np.linalg.norm(offsets[j]) > 1e-6 else np.array([0.0, 1.0, 0.0])
        lines += [f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {_fmt(tip)}", f"{pad}  }}"]
    lines.append(f"{pad}}}")


def _fmt(values: np.ndarray) -> str:
    return " ".join(f"{v:.6f}" for v in np.asarray(values, np.float64).reshape(-1))


def write_bvh(path: str | Path, track: TrackMotion, body_model_dir: str | Path, fps: float, *,
              unit_scale: float = 100.0, gender: str = "neutral") -> Path:
    """Write one track's BVH (module docstring) and return ``path``.

    ``fps``: the video's frame rate (frames / s; Frame Time = 1 / fps); ``unit_scale``: file units per metre
    (100: centimetres); ``body_model_dir``: the folder holding ``smplx/SMPLX_<GENDER>.npz``.
    """
    if not (np.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive frame rate, got {fps}; pass the video's fps")
    if not (np.isfinite(unit_scale) and unit_scale > 0):
        raise InputError(f"unit_scale must be > 0 (file units per metre), got {unit_scale}")
    track.validate()
    assets = load_smplx_assets(body_model_dir, gender)
    rig = shaped_rig(assets, track.baked_betas(), track.baked_expression())
    frames, rots, transl = dense_motion(track, full_pose(track, assets))
    n = len(frames)
    euler = rots.as_euler(EULER_ORDER, degrees=True).reshape(n, JOINT_NUM, 3)
    euler[:, 0] = (Rotation.from_matrix(CV_TO_GLTF) * rots[::JOINT_NUM]).as_euler(EULER_ORDER, degrees=True)
    euler = np.unwrap(euler, period=360.0, axis=0)  # no +-180 degree jumps between frames
    position = (CV_TO_GLTF @ (rig.joints[0] + transl).T).T * unit_scale

    offsets = rig.offsets * unit_scale
    offsets[0] = 0.0
    children: list[list[int]] = [[] for _ in range(JOINT_NUM)]
    for j in range(1, JOINT_NUM):
        children[assets.parents[j]].append(j)
    lines = ["HIERARCHY"]
    _hierarchy(lines, 0, children, offsets, 0)
    order = [0]
    stack = list(reversed(children[0]))
    while stack:  # depth-first, the order the hierarchy lists the joints (= the channel order of a frame)
        j = stack.pop()
        order.append(j)
        stack += reversed(children[j])
    lines += ["MOTION", f"Frames: {n}", f"Frame Time: {1.0 / fps:.8f}"]
    for f in range(n):
        lines.append(f"{_fmt(position[f])} {_fmt(euler[f, order])}")
    with atomic_open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return Path(path)
