"""One animated glTF 2.0 binary for a clip: a skinned SMPL-X character per track, animated at the video's times.

Layout of the file (glTF scene frame = the OpenCV scene camera frame stored as (x, -y, -z), see
:mod:`common.export.gltf`; metres; seconds):

* node ``camera``: the scene camera at the origin (when given);
* per track k: node ``track_<k>`` (group, identity; its *scale* hides the character, below) whose child is the
  skeleton: 55 joint nodes named as SMPL-X (``pelvis``, ``left_hip``, ... :data:`SMPLX_JOINT_NAMES`), parents from
  the model's ``kintree_table``, rest translations = the shaped joints' offsets (the pelvis: its rest position), rest
  rotations identity: the rest pose is the track's shaped T-pose, upright (body-model frame: y up, facing +z);
* node ``track_<k>_body``: the skinned mesh (root node, no transform, as glTF requires): POSITION = template shaped
  by the track's median betas (expression 0), NORMAL, JOINTS_0 / WEIGHTS_0 (and JOINTS_1 / WEIGHTS_1 with
  ``influences=8``), 10 morph targets ``expression_0..9`` = the model's expression blend shapes; skin with inverse
  bind matrices ``[I | -J_j]`` (bind pose = rest pose);
* one animation ``clip``: per track, LINEAR keyframes at ``time_s - start_time_s`` of every joint's rotation (the
  SMPL-X local rotations; hands = mean hand + offsets; eyes identity), the pelvis translation, and the morph
  weights (= the expression coefficients); the pelvis key carries the camera frame: rotation ``C R_root``,
  translation ``C (J_pelvis + transl)`` with ``C`` = 180 degrees about x.

Gaps (frames where the track is absent, from ``frame_index``): up to ``max_gap_frames`` missing frames are bridged
by the interpolation (slerp / linear); a longer gap cuts the track into segments and the character is hidden between
them: ``track_<k>`` scale keys with STEP interpolation are 1 from half a frame period before a segment's first
frame to half a period after its last frame (hold keys keep the first / last pose over those half periods) and
0 (every vertex collapses onto the group's origin, the camera centre) otherwise, also before the track's first
and after its last frame.

Approximations (measured in docs/exports.md): pose-corrective blend shapes (``posedirs``) cannot be expressed by
skinning and are dropped; with ``influences=4`` each vertex keeps its 4 largest LBS weights, renormalised; joint
positions use the median expression (SMPL-X joints move slightly with the expression); betas are the median.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from common.errors import InputError
from common.export.gltf import CV_TO_GLTF, GlbBuilder, check_faces, vertex_normals
from common.export.skeleton import (
    JOINT_NUM,
    SMPLX_JOINT_NAMES,
    ShapedRig,
    continuous_quaternions,
    full_pose,
    load_smplx_assets,
    shaped_rig,
)
from common.export.tracks import SceneCamera, TrackMotion

EXPRESSION_TARGETS = tuple(f"expression_{i}" for i in range(10))


def pack_skin_weights(weights: np.ndarray, influences: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(V, 55) LBS weights -> (joints (V, influences) uint8, weights (V, influences) float32): each vertex's
    ``influences`` largest weights in decreasing order, renormalised to sum to 1 in float32; unused slots (weight 0)
    get joint 0, as glTF recommends. Columns 4k..4k+3 are the JOINTS_k / WEIGHTS_k sets."""
    if influences not in (4, 8):
        raise InputError(f"influences must be 4 or 8 (one or two glTF JOINTS/WEIGHTS sets), got {influences}")
    w = np.asarray(weights, np.float64)
    order = np.argsort(-w, axis=1, kind="stable")[:, :influences]
    top = np.take_along_axis(w, order, axis=1)
    total = top.sum(1, keepdims=True)
    if np.any(total <= 0):
        raise InputError("a vertex has no positive skinning weight; the body-model file is damaged")
    top = (top / total).astype(np.float32)
    top[:, 0] += np.float32(1.0) - top.sum(1, dtype=np.float32)  # exact float32 sum for the validator
    joints = np.where(top > 0, order, 0).astype(np.uint8)
    return joints, top


def _frame_period(tracks: Sequence[TrackMotion], fps: float | None) -> float:
    if fps is not None:
        if not fps > 0:
            raise InputError(f"fps must be > 0, got {fps}")
        return 1.0 / fps
    steps = [np.diff(t.time_s) / np.diff(t.frame_index) for t in tracks if len(t) > 1]
    if not steps:
        raise InputError("cannot tell the frame rate from single-frame tracks; pass fps= (the video's frame rate)")
    return float(np.median(np.concatenate(steps)))


def key_schedule(track: TrackMotion, dt: float, start: float, max_gap_frames: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Keyframes of one track (see the module docstring).

    The track is cut into segments where more than ``max_gap_frames`` frames are missing. A segment's frames at
    times tau_a..tau_b are shown over [tau_a - h, tau_b + h) with h = half a frame period (less if the timestamps
    are irregular), so no visibility switch falls on a frame's own time, where float rounding could pick either
    side. Hold keys at both ends repeat the segment's first / last pose, so nothing interpolates while visible.

    Returns pose key times (K,) s from ``start``, the track row shown at each pose key (K,), visibility key times
    (S,) and values (S,) in {0, 1} (for STEP interpolation).
    """
    tau = np.maximum(track.time_s - start, 0.0)
    breaks = np.flatnonzero(np.diff(track.frame_index) - 1 > max_gap_frames)
    firsts = np.concatenate([[0], breaks + 1])
    lasts = np.concatenate([breaks, [len(track) - 1]])
    times: list[float] = []
    rows: list[int] = []
    vis_t: list[float] = []
    vis_v: list[float] = []
    for s, (a, b) in enumerate(zip(firsts, lasts)):
        before = dt / 2 if s == 0 else min(dt / 2, (tau[a] - tau[lasts[s - 1]]) / 3)
        after = dt / 2 if s + 1 == len(firsts) else min(dt / 2, (tau[firsts[s + 1]] - tau[b]) / 3)
        show, hide = max(tau[a] - before, 0.0), tau[b] + after
        if s == 0 and show > 0:
            vis_t.append(0.0)
            vis_v.append(0.0)
        vis_t += [show, hide]
        vis_v += [1.0, 0.0]
        if show < tau[a]:
            times.append(show)
            rows.append(a)
        times += [*tau[a:b + 1], hide]
        rows += [*range(a, b + 1), b]
    return np.asarray(times), np.asarray(rows), np.asarray(vis_t), np.asarray(vis_v)


def _add_character(b: GlbBuilder, track: TrackMotion, rig: ShapedRig, index: int, influences: int) -> dict:
    """Mesh, skin and nodes of one track; returns the node indices {'group', 'joints', 'body'}."""
    g, assets = b.g, rig.assets
    faces = check_faces(assets.faces, len(rig.vertices))
    joints, weights = pack_skin_weights(assets.weights, influences)
    attrs = g.Attributes(POSITION=b.accessor(rig.vertices.astype(np.float32), target=g.ARRAY_BUFFER, bounds=True),
                         NORMAL=b.accessor(vertex_normals(rig.vertices, faces), target=g.ARRAY_BUFFER))
    for k in range(influences // 4):
        setattr(attrs, f"JOINTS_{k}", b.accessor(joints[:, 4 * k:4 * k + 4], target=g.ARRAY_BUFFER))
        setattr(attrs, f"WEIGHTS_{k}", b.accessor(weights[:, 4 * k:4 * k + 4], target=g.ARRAY_BUFFER))
    targets = [g.Attributes(POSITION=b.accessor(assets.expr_dirs[:, :, i].astype(np.float32), target=g.ARRAY_BUFFER,
                                                bounds=True)) for i in range(10)]
    prim = g.Primitive(attributes=attrs, indices=b.accessor(faces.reshape(-1), target=g.ELEMENT_ARRAY_BUFFER),
                       mode=g.TRIANGLES, material=b.material(index), targets=targets)
    name = f"track_{track.track_id}"
    b.doc.meshes.append(g.Mesh(name=f"{name}_body", primitives=[prim], weights=[0.0] * 10,
                               extras={"targetNames": list(EXPRESSION_TARGETS)}))
    first = len(b.doc.nodes)
    offsets = rig.offsets
    for j in range(JOINT_NUM):
        b.node(name=SMPLX_JOINT_NAMES[j], translation=[float(x) for x in offsets[j]])
    for j in range(1, JOINT_NUM):
        b.doc.nodes[first + assets.parents[j]].children.append(first + j)
    ibm = np.tile(np.eye(4), (JOINT_NUM, 1, 1))
    ibm[:, :3, 3] = -rig.joints
    b.doc.skins.append(g.Skin(name=name, joints=list(range(first, first + JOINT_NUM)), skeleton=first,
                              inverseBindMatrices=b.accessor(ibm.reshape(-1, 16).astype(np.float32))))
    group = b.node(name=name, children=[first])
    body = b.node(name=f"{name}_body", mesh=len(b.doc.meshes) - 1, skin=len(b.doc.skins) - 1)
    return {"group": group, "joints": list(range(first, first + JOINT_NUM)), "body": body}


def _channel(b: GlbBuilder, anim, node: int, path: str, times: int, values: np.ndarray, interp: str) -> None:
    anim.samplers.append(b.g.AnimationSampler(input=times, output=b.accessor(values.astype(np.float32)),
                                              interpolation=interp))
    anim.channels.append(b.g.AnimationChannel(sampler=len(anim.samplers) - 1,
                                              target=b.g.AnimationChannelTarget(node=node, path=path)))


def write_animated_glb(path: str | Path, tracks: Sequence[TrackMotion], body_model_dir: str | Path,
                       camera: SceneCamera | None = None, *, fps: float | None = None,
                       start_time_s: float | None = None, max_gap_frames: int = 2, influences: int = 4,
                       gender: str = "neutral") -> Path:
    """Write the clip's animated .glb (module docstring) and return ``path``.

    ``tracks``: one :class:`TrackMotion` per person (transl in the scene camera); ``body_model_dir``: the folder
    holding ``smplx/SMPLX_<GENDER>.npz``; ``camera``: the scene camera, or None to leave it out; ``fps``: the video's
    frame rate (default: estimated from the tracks' time_s / frame_index); ``start_time_s``: the time (s, the
    stream's clock) that becomes animation time 0 (default: the earliest frame of any track; pass the clip's start
    to stay in sync with the overlay video); ``max_gap_frames``: longest run of missing frames bridged by
    interpolation; ``influences``: 4 (JOINTS_0 / WEIGHTS_0, what every viewer reads) or 8 (adds JOINTS_1 /
    WEIGHTS_1).
    """
    if not tracks:
        raise InputError("no tracks to export; run main.video_inference with --track on a clip with people")
    if max_gap_frames < 0:
        raise InputError(f"max_gap_frames must be >= 0, got {max_gap_frames}")
    for t in tracks:
        t.validate()
    if len({t.track_id for t in tracks}) != len(tracks):
        raise InputError("two tracks share a track_id; merge or renumber them")
    assets = load_smplx_assets(body_model_dir, gender)
    dt = _frame_period(tracks, fps)
    start = min(float(t.time_s[0]) for t in tracks) if start_time_s is None else float(start_time_s)
    if any(t.time_s[0] < start - 1e-9 for t in tracks):
        raise InputError(f"start_time_s={start} is after the first frame of a track; pass the clip's start or None")
    b = GlbBuilder()
    anim = b.g.Animation(name="clip")
    scene_nodes = [b.camera_node(camera)] if camera is not None else []
    flip = Rotation.from_matrix(CV_TO_GLTF)
    for k, track in enumerate(tracks):
        rig = shaped_rig(assets, track.baked_betas(), track.baked_expression())
        nodes = _add_character(b, track, rig, k, influences)
        scene_nodes += [nodes["group"], nodes["body"]]
        times, rows, vis_t, vis_v = key_schedule(track, dt, start, max_gap_frames)
        pose = full_pose(track, assets)[rows]
        pose[:, 0] = (flip * Rotation.from_rotvec(pose[:, 0])).as_rotvec()  # the camera frame, on the root
        quats = continuous_quaternions(pose)
        t_acc = b.accessor(times.astype(np.float32), bounds=True)
        for j, node in enumerate(nodes["joints"]):
            _channel(b, anim, node, "rotation", t_acc, quats[:, j], "LINEAR")
        root = (CV_TO_GLTF @ (rig.joints[0] + track.transl[rows].astype(np.float64)).T).T
        _channel(b, anim, nodes["joints"][0], "translation", t_acc, root, "LINEAR")
        _channel(b, anim, nodes["body"], "weights", t_acc, track.expression[rows].reshape(-1), "LINEAR")
        _channel(b, anim, nodes["group"], "scale", b.accessor(vis_t.astype(np.float32), bounds=True),
                 np.repeat(vis_v[:, None], 3, axis=1), "STEP")
    b.doc.animations.append(anim)
    return b.write(path, scene_nodes)
