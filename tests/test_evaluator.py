"""Evaluators (accumulation, pseudo-GT, UBody visibility, outputs) and the AGORA submission files."""

import json

import numpy as np
import pytest
import torch

from common.evaluation import agora
from common.evaluation import metrics as M


@pytest.fixture(scope="module")
def layer_and_assets(body_model_dir):
    from common.body_model import SMPLXLayer, load_eval_assets

    return SMPLXLayer(body_model_dir), load_eval_assets(body_model_dir)


def _params(b, seed):
    g = torch.Generator().manual_seed(seed)
    return {"smplx_pose": 0.2 * torch.randn(b, 159, generator=g), "smplx_shape": torch.randn(b, 10, generator=g),
            "smplx_expr": torch.randn(b, 10, generator=g),
            "smplx_cam_trans": torch.tensor([[0.0, 0.2, 45.0]]).repeat(b, 1)}


def test_pseudo_gt_mesh_is_the_layer_plus_translation(layer_and_assets):
    from common.engine.evaluator import pseudo_gt_mesh

    layer, _ = layer_and_assets
    t = _params(2, 0)
    mesh = pseudo_gt_mesh(layer, t)
    p = t["smplx_pose"]
    v, _ = layer(p[:, :3], p[:, 3:66], p[:, 66:111], p[:, 111:156], p[:, 156:], t["smplx_shape"], t["smplx_expr"])
    assert torch.allclose(mesh, v + t["smplx_cam_trans"][:, None])


def test_whole_body_evaluator_accumulates_and_writes(tmp_path, layer_and_assets):
    from common.engine.evaluator import WholeBodyEvaluator, pseudo_gt_mesh

    layer, assets = layer_and_assets
    ev = WholeBodyEvaluator("EgoBody_Egocentric", assets, body_model=layer)
    expected = []
    for seed in (1, 2):
        t = _params(3, seed)
        gt = pseudo_gt_mesh(layer, t).numpy()
        pred = gt + np.random.default_rng(seed).normal(scale=0.01, size=gt.shape)
        ev.process({"smplx_mesh_cam": pred}, t, {"img_path": [f"img{seed}_{i}.jpg" for i in range(3)]})
        expected.append(M.whole_body_metrics(pred, gt, assets))
    summary = ev.evaluate()
    for k in M.HUMANDATA_METRICS:
        assert np.isclose(summary[k], np.mean(np.concatenate([e[k] for e in expected])))
    assert summary["mpvpe_all"] > 5  # 1 cm noise per coordinate
    ev.write(tmp_path, summary)
    doc = json.loads((tmp_path / "result.json").read_text())
    assert doc["num_samples"] == 6 and doc["metrics"]["pa_mpvpe_all"] == summary["pa_mpvpe_all"]
    rows = (tmp_path / "per_sample.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("index,img_path,pa_mpvpe_all") and "img2_2.jpg" in rows[-1]


def test_ubody_visibility_excludes_invisible_parts(layer_and_assets):
    from common.engine.evaluator import WholeBodyEvaluator, pseudo_gt_mesh

    layer, assets = layer_and_assets
    t = _params(2, 3)
    gt = pseudo_gt_mesh(layer, t).numpy()
    pred = gt + np.random.default_rng(4).normal(scale=0.01, size=gt.shape)
    # crop -> image: identity; sample 0 sees the whole crop (512x384 image), sample 1 only its top 300 rows
    meta = {"bb2img_trans": np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (2, 1, 1)),
            "img_shape": np.array([[512, 384], [300, 384]]), "img_path": ["a.jpg", "b.jpg"]}
    ev = WholeBodyEvaluator("UBody", assets, body_model=layer, visibility=True)
    res = ev.metrics({"smplx_mesh_cam": pred}, t, meta)
    uv = M.project_to_image(gt, meta["bb2img_trans"])
    vis = M.inside_image(uv, meta["img_shape"])
    assert vis[0].mean() > 0.9 and 0.1 < vis[1].mean() < 0.9  # the body is cut in the second image
    pelvis = lambda m: (assets.j_regressor[0].astype(np.float64) @ m[1])  # noqa: E731
    d = np.linalg.norm(pred[1] - pelvis(pred) + pelvis(gt) - gt[1], axis=-1) * 1000
    assert np.isclose(res["mpvpe_all"][1], d[vis[1]].mean())
    left = np.asarray(assets.hand_vertex_idx["left"])
    if not vis[1, left].any():
        assert np.isnan(res["mpvpe_l_hand"][1])


def test_agora_submission_round_trip_and_person_numbering(tmp_path):
    out = {"cam_trans": np.array([0.1, 0.2, 9.0]), "smplx_root_pose": np.ones(3), "smplx_body_pose": np.zeros(63),
           "smplx_lhand_pose": np.zeros(45), "smplx_rhand_pose": np.zeros(45), "smplx_jaw_pose": np.zeros(3),
           "smplx_expr": np.arange(10.0), "smplx_shape": np.arange(10.0)}
    hm = np.random.default_rng(0).random((144, 2)) * [12, 16]
    bb2img = np.array([[2.0, 0, 100], [0, 2.0, 50]])
    joints = agora.joints_to_image(hm, bb2img)
    assert np.allclose(joints, np.stack([hm[:, 0] * 32 * 2 + 100, hm[:, 1] * 32 * 2 + 50], 1))
    w = agora.SubmissionWriter(tmp_path, split="val")
    p0 = w.add("/x/ag_trainset_renderpeople_bfh_archviz_5_10_cam00_00000_ann_id_12.png", out, joints)
    p1 = w.add("/x/ag_trainset_renderpeople_bfh_archviz_5_10_cam00_00000_ann_id_31.png", out, joints)
    assert p0.name == "ag_trainset_renderpeople_bfh_archviz_5_10_cam00_00000_personId_0.pkl"
    assert p1.name.endswith("_personId_1.pkl")  # the original wrote personId_0 twice (overwriting)
    d = agora.read_prediction(p1)
    assert set(d["params"]) == {"transl", "global_orient", "body_pose", "left_hand_pose", "right_hand_pose",
                                "reye_pose", "leye_pose", "jaw_pose", "expression", "betas"}
    assert d["params"]["body_pose"].shape == (1, 63) and d["joints"].shape == (1, 144, 2)
    assert np.allclose(d["joints"][0], joints) and np.allclose(d["params"]["betas"], out["smplx_shape"][None])
    t = agora.SubmissionWriter(tmp_path, split="test")
    assert t.add("/x/img_0001_pid_3.png", out, joints, person_idx=3).name == "img_0001_personId_3.pkl"


def test_mpe_needs_all_five():
    from common.engine.evaluator import mpe

    res = {"AGORA": {"mpvpe_all": 10.0}, "EgoBody_Egocentric": {"mpvpe_all": 20.0}, "UBody": {"mpvpe_all": 30.0},
           "PW3D": {"pa_mpjpe_body": 40.0}}
    assert mpe(res) is None
    res["EHF"] = {"mpvpe_all": 50.0}
    assert mpe(res) == 30.0
