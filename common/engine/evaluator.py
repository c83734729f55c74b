"""Benchmark evaluators with ``reset / process / evaluate`` (facts sheet section 6).

``process(out, targets, meta)`` takes one batch: ``out`` the network's test outputs (``SMPLerXOutput.to_dict()``,
numpy or torch), ``targets`` / ``meta`` the test sample's dicts (docs/data.md). Per-sample metric values (mm) are
kept with the sample's image path; ``evaluate()`` gathers them across ranks and returns plain means over samples
(parts with nothing to score, e.g. UBody's invisible hands, are left out of their mean, as the original).

Ground truth per test set (as the original):
* EHF, AGORA val: the GT mesh in ``targets['smplx_mesh_cam']``;
* HumanData test sets (EgoBody, ARCTIC, RenBody_HiRes, ...) and UBody: a pseudo-GT mesh from the GT SMPL-X
  parameters (``smplx_pose`` (159), ``smplx_shape``, ``smplx_expr``) with the neutral layer plus
  ``smplx_cam_trans``; UBody scores only vertices / joints whose projection lands inside the image;
* 3DPW: the SMPL mesh in ``targets['smpl_mesh_cam']`` and the 14-joint protocol.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.body_model import joint_sets as js
from common.evaluation import metrics as M
from common.utils.dist import all_gather_object
from common.utils.io import atomic_open

# The paper's "MPE": mean of the primary errors of these sets (the original README; not computed in its code).
MPE_PRIMARY = {"AGORA": "mpvpe_all", "EgoBody_Egocentric": "mpvpe_all", "UBody": "mpvpe_all", "PW3D": "pa_mpjpe_body",
               "EHF": "mpvpe_all"}


def _np(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class Evaluator:
    """Accumulates per-sample metrics; subclasses implement :meth:`metrics`."""

    def __init__(self, name: str):
        self.name = name
        self.reset()

    def reset(self) -> None:
        self.records: list[dict[str, Any]] = []

    def metrics(self, out: dict[str, np.ndarray], targets: dict[str, Any],
                meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """Per-sample metric values (mm), each (B,)."""
        raise NotImplementedError

    def process(self, out: dict, targets: dict, meta: dict) -> None:
        out = {k: _np(v) for k, v in out.items()}
        per_sample = self.metrics(out, targets, meta)
        n = len(next(iter(per_sample.values())))
        paths = meta.get("img_path", [""] * n)
        for i in range(n):
            rec = {"img_path": str(paths[i])}
            rec.update({k: float(v[i]) for k, v in per_sample.items()})
            self.records.append(rec)

    def evaluate(self) -> dict[str, float]:
        """Means over all samples of all ranks (every rank gets the result)."""
        self.records = [r for part in all_gather_object(self.records) for r in part]
        keys = [k for k in self.records[0] if k != "img_path"] if self.records else []
        return {k: float(np.nanmean([r[k] for r in self.records])) if any(np.isfinite(r[k]) for r in self.records)
                else float("nan") for k in keys}

    def write(self, result_dir: str | Path, summary: dict[str, float]) -> None:
        """``result.json`` (means + sample count) and ``per_sample.csv``, atomically."""
        result_dir = Path(result_dir)
        with atomic_open(result_dir / "result.json", "w") as f:
            json.dump({"testset": self.name, "num_samples": len(self.records), "metrics": summary}, f, indent=2)
        if self.records:
            with atomic_open(result_dir / "per_sample.csv", "w") as f:
                w = csv.DictWriter(f, fieldnames=["index", *self.records[0].keys()])
                w.writeheader()
                for i, r in enumerate(self.records):
                    w.writerow({"index": i, **r})


class WholeBodyEvaluator(Evaluator):
    """EHF / AGORA-val / HumanData test sets / UBody: the 14 whole-body metrics (10 without joints for AGORA)."""

    def __init__(self, name: str, assets, body_model=None, visibility: bool = False, joints: bool = True,
                 input_body_shape=(256, 192), input_img_shape=(512, 384), focal=(5000.0, 5000.0),
                 princpt=(96.0, 128.0)):
        self.assets, self.body_model, self.visibility, self.joints = assets, body_model, visibility, joints
        self.cam = {"focal": focal, "princpt": princpt, "input_body_shape": input_body_shape,
                    "input_img_shape": input_img_shape}
        super().__init__(name)

    def gt_mesh(self, targets: dict[str, Any]) -> np.ndarray:
        if "smplx_mesh_cam" in targets:
            return _np(targets["smplx_mesh_cam"])
        return _np(pseudo_gt_mesh(self.body_model, targets))

    def metrics(self, out, targets, meta):
        gt = self.gt_mesh(targets)
        pred = out["smplx_mesh_cam"]
        visible, visible_joints = None, None
        if self.visibility:
            bb2img, img_hw = _np(meta["bb2img_trans"]), _np(meta["img_shape"])
            visible = M.inside_image(M.project_to_image(gt, bb2img, **self.cam), img_hw)
            visible_joints = {
                key: M.inside_image(M.project_to_image(M.regress(reg, gt), bb2img, **self.cam), img_hw)
                for key, reg in (("body", self.assets.j14_regressor), ("left", self.assets.hand_regressors["left"]),
                                 ("right", self.assets.hand_regressors["right"]))}
        res = M.whole_body_metrics(pred, gt, self.assets, visible, visible_joints)
        if not self.joints:
            res = {k: v for k, v in res.items() if "mpjpe" not in k}
        return res


class PW3DEvaluator(Evaluator):
    """3DPW: MPJPE and PA-MPJPE on 14 joints (SMPL GT mesh, SMPL-X prediction)."""

    def __init__(self, smplx_j_regressor: np.ndarray, smpl_j_regressor: np.ndarray):
        self.smplx_reg, self.smpl_reg = smplx_j_regressor, smpl_j_regressor
        super().__init__("PW3D")

    def metrics(self, out, targets, meta):
        return M.pw3d_metrics(out["smplx_mesh_cam"], _np(targets["smpl_mesh_cam"]), self.smplx_reg, self.smpl_reg)


@torch.no_grad()
def pseudo_gt_mesh(body_model, targets: dict[str, Any]) -> torch.Tensor:
    """(B, 10475, 3) mesh of the GT SMPL-X parameters (neutral layer, as the original) plus ``smplx_cam_trans``."""
    p = next(iter(body_model.buffers()))
    t = {k: torch.as_tensor(targets[k], dtype=p.dtype, device=p.device)
         for k in ("smplx_pose", "smplx_shape", "smplx_expr", "smplx_cam_trans")}
    root, body, lh, rh, jaw = torch.split(t["smplx_pose"], list(js.POSE_SPLITS), dim=1)
    verts, _ = body_model(root, body, lh, rh, jaw, t["smplx_shape"], t["smplx_expr"])
    return verts + t["smplx_cam_trans"][:, None]


def mpe(results: dict[str, dict[str, float]]) -> float | None:
    """The paper's mean primary error over AGORA, EgoBody, UBody, 3DPW and EHF, when all five were run."""
    if not all(name in results for name in MPE_PRIMARY):
        return None
    return float(np.mean([results[name][key] for name, key in MPE_PRIMARY.items()]))


def format_table(name: str, summary: dict[str, float]) -> str:
    """A readable block: one metric per line, mm."""
    width = max((len(k) for k in summary), default=10)
    lines = [f"===== {name} ====="] + [f"{k:<{width}}  {v:8.2f} mm" for k, v in summary.items()]
    return "\n".join(lines)
