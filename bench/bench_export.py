"""How far the animated glTF's skinning is from the exact SMPL-X meshes, and how close the BVH joints are.

    .venv/bin/python -m bench.bench_export [--frames 32] [--clip] [--body-model-dir DIR]

Writes one animated .glb per pose set with :func:`common.export.write_animated_glb`, plays it back with the
independent numpy player of tests/gltf_skinning.py (node hierarchy, morph targets, inverse bind matrices, weights) at
every keyframe, and compares the vertices with :class:`common.body_model.SMPLXLayer` fed the same parameters (the
track's baked betas, the frame's expression and the scene transl): mean / max over vertices and frames, in mm.
Rows:

* ``exact`` vs the full SMPL-X (pose correctives included): what a user gets;
* ``no posedirs``: the same with the layer's pose-corrective blend shapes zeroed, isolating the other
  approximations (top-4 weights, joints of the median expression);
* ``bvh joints``: the BVH's forward kinematics (bvhio, the PyPI reader) vs the layer's 55 joints with the track's
  baked (median) expression, the BVH's documented reference;
* ``expr joints``: how far the layer's 55 joints move between the frame's expression and the median one, the
  error both exports make on the joints by baking the median expression.

It also prints the LBS weight mass outside each vertex's 4 largest weights (what ``influences=4`` renormalises).

Pose sets: ``random`` (upright, body / hand / jaw axis-angle components normal with sigma 0.3 rad, expression
normal sigma 1); ``humandata`` (:func:`data.synthetic_humandata.sample_smplx_params`, the synthetic training poses);
``clip`` with ``--clip`` (the ground truth of :func:`data.synthetic_clip.write_synthetic_clip`, 2 people; renders
the clip, ~1 min). Without real SMPL-X files (licence-gated; ``--body-model-dir``) the stand-in model is used, whose
pose correctives are synthetic: its numbers say the code is right, not how large real SMPL-X correctives are.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch


def random_params(rng: np.random.Generator, n: int, sigma: float = 0.3) -> dict[str, np.ndarray]:
    go = (torch.tensor([[np.pi, 0.0, 0.0]]).repeat(n, 1).numpy() + rng.normal(0, 0.1, (n, 3)))
    return {"global_orient": go, "body_pose": rng.normal(0, sigma, (n, 21, 3)),
            "left_hand_pose": rng.normal(0, sigma, (n, 15, 3)), "right_hand_pose": rng.normal(0, sigma, (n, 15, 3)),
            "jaw_pose": rng.normal(0, sigma, (n, 3)), "betas": np.tile(rng.normal(0, 1, 10), (n, 1)),
            "expression": rng.normal(0, 1, (n, 10)), "transl": np.tile([0.0, 0.2, 4.0], (n, 1))}


def humandata_params(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    from data.synthetic_humandata import sample_smplx_params

    samples = [sample_smplx_params(rng) for _ in range(n)]
    out = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    out["betas"] = np.tile(out["betas"][0], (n, 1))
    out["transl"] = np.tile([0.0, 0.2, 4.0], (n, 1))
    return out


def clip_params(tmp: Path, model_dir: Path) -> list[dict[str, np.ndarray]]:
    from data.synthetic_clip import write_synthetic_clip

    gt = np.load(write_synthetic_clip(tmp, model_dir)["gt"])
    return [{k: gt[k][:, p] for k in ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose",
                                      "betas", "expression", "transl")} for p in range(gt["transl"].shape[1])]


def measure(tracks_params: list[dict[str, np.ndarray]], model_dir: Path, tmp: Path, name: str,
            influences: int = 4) -> dict[str, tuple[float, float]]:
    """{'exact': (mean, max) mm, 'no posedirs': ..., 'bvh joints': ...} over all tracks and keyframes."""
    import bvhio

    from common.body_model import SMPLXLayer
    from common.export import SceneCamera, TrackMotion, write_animated_glb, write_bvh
    from common.export.gltf import opencv_to_gltf
    from common.export.skeleton import SMPLX_JOINT_NAMES
    from tests.gltf_skinning import GltfPlayer

    fps = 10.0
    tracks = []
    for k, p in enumerate(tracks_params):
        n = len(p["transl"])
        tracks.append(TrackMotion(track_id=k, frame_index=np.arange(n), time_s=np.arange(n) / fps, **p))
    glb = write_animated_glb(tmp / f"{name}.glb", tracks, model_dir, SceneCamera(1000.0, 640, 480), fps=fps,
                             influences=influences)
    player = GltfPlayer(glb)
    layer = SMPLXLayer(model_dir).to(torch.float64)
    errors: dict[str, list[np.ndarray]] = {"exact": [], "no posedirs": [], "bvh joints": [], "expr joints": []}
    for zero_posedirs in (False, True):
        if zero_posedirs:
            layer.model.posedirs.zero_()
        for t in tracks:
            verts, joints = _layer(layer, t, t.expression)
            for i in range(len(t)):
                v = opencv_to_gltf(player.mesh_vertices(f"track_{t.track_id}_body", float(t.time_s[i])))
                errors["no posedirs" if zero_posedirs else "exact"].append(np.linalg.norm(v - verts[i], axis=1))
            if not zero_posedirs:
                _, baked = _layer(layer, t, np.tile(t.baked_expression(), (len(t), 1)))
                errors["expr joints"].append(np.linalg.norm(joints[:, :55] - baked[:, :55], axis=2).reshape(-1))
                root = bvhio.readAsHierarchy(str(write_bvh(tmp / f"{name}_{t.track_id}.bvh", t, model_dir, fps)))
                by_name = {j.Name: j for j, _, _ in root.layout()}
                for i in range(len(t)):
                    root.loadPose(i)
                    pos = np.array([list(by_name[nm].PositionWorld) for nm in SMPLX_JOINT_NAMES]) / 100.0
                    errors["bvh joints"].append(np.linalg.norm(opencv_to_gltf(pos) - baked[i, :55], axis=1))
    return {k: (float(np.concatenate(v).mean() * 1000), float(np.concatenate(v).max() * 1000))
            for k, v in errors.items()}


def _layer(layer, t, expression: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(t)

    def f(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, np.float64).reshape(n, -1))

    with torch.no_grad():
        v, j = layer(f(t.global_orient), f(t.body_pose), f(t.left_hand_pose), f(t.right_hand_pose), f(t.jaw_pose),
                     f(np.tile(t.baked_betas(), (n, 1))), f(expression), f(t.transl))
    return v.numpy(), j.numpy()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=32, help="frames per random / humandata pose set")
    p.add_argument("--clip", action="store_true", help="also measure the synthetic clip's poses (renders it)")
    p.add_argument("--body-model-dir", default=None, help="real SMPL-X files (default: stand-ins in a temp folder)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from common.body_model import write_synthetic_body_models

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = Path(args.body_model_dir) if args.body_model_dir else tmp / "body_models"
        if not args.body_model_dir:
            write_synthetic_body_models(model_dir, smpl=False)
        rng = np.random.default_rng(args.seed)
        sets = {"random": [random_params(rng, args.frames)], "humandata": [humandata_params(rng, args.frames)]}
        if args.clip:
            sets["clip"] = clip_params(tmp, model_dir)
        print(f"body model: {'given' if args.body_model_dir else 'synthetic stand-in'}; mean / max over vertices "
              "(joints for bvh) and frames, mm")
        from common.export.skeleton import load_smplx_assets

        w = np.sort(load_smplx_assets(model_dir).weights, axis=1)[:, ::-1]
        lost = 1.0 - w[:, :4].sum(1)
        print(f"LBS weight mass outside the top 4: mean {lost.mean():.4f}, max {lost.max():.4f}; vertices with more "
              f"than 4 influences: {int(((w > 1e-6).sum(1) > 4).sum())} of {len(w)}")
        print(f"{'poses':<10} {'frames':>6}" + "".join(f"{k:>17}" for k in ("exact", "no posedirs", "bvh joints",
                                                                             "expr joints")))
        for name, params in sets.items():
            r = measure(params, model_dir, tmp, name)
            frames = sum(len(x["transl"]) for x in params)
            print(f"{name:<10} {frames:>6} " + "".join(f" {r[k][0]:7.3f} / {r[k][1]:6.3f}" for k in r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
