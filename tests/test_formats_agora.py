"""AGORA (4K mode): the official crop layout through the loader, the joint mapping, kid / adult betas, the submission
files in 4K pixels, the validation metrics and main.test for AGORA and AGORA:test."""

import json

import numpy as np
import pytest

from common.body_model import joint_sets as js
from common.errors import InputError
from common.evaluation.agora import read_prediction
from data.formats import load_own
from data.formats.agora import AGORA_NAMES, full_bb2img, write_synthetic_agora


@pytest.fixture(scope="module")
def agora(tmp_path_factory, body_model_dir):
    root = tmp_path_factory.mktemp("agora_root")
    return root, write_synthetic_agora(root, body_model_dir)


def test_agora_order_is_the_layer_order():
    # the 127 AGORA joints are the first 127 SMPL-X layer joints: a name maps to the same layer joint in both sets
    for i, name in enumerate(AGORA_NAMES):
        if name in js.JOINTS_NAME:
            assert js.JOINT_IDX[js.JOINTS_NAME.index(name)] == i, name


def test_train_entries(agora):
    root, truth = agora
    records = load_own("AGORA", "train", data_root=root)
    assert len(records) == 3 and records.skipped == {"not_valid": 1}
    by_id = {t["ann_id"]: t for t in truth["train"]}
    assert all("expand" in e for e in records.entries)  # per-person files are read per sample, not when listing
    for e in (records.entry(i) for i in range(len(records))):
        t = by_id[e["index"]]
        valid = e["joint_valid"][:, 0] > 0
        layer_idx = np.asarray(js.JOINT_IDX)[valid]
        crop_uv = t["uv4k"] @ t["affine"][:, :2].T + t["affine"][:, 2]  # 4K px -> crop px, independently
        np.testing.assert_allclose(e["joint_img"][valid, :2], crop_uv[layer_idx], atol=1e-3)
        np.testing.assert_allclose(e["joint_cam"][valid], t["joints"][layer_idx], atol=1e-5)
        assert not valid[[js.JOINTS_NAME.index(f"Face_{i}") for i in (1, 2, 3, 4, 60)]].any()  # no such AGORA joints
        np.testing.assert_allclose(e["smplx_param"]["shape"], t["betas_used"], atol=1e-6)  # kid: betas, adult: neutral
        np.testing.assert_array_equal(e["bbox"], [0, 0, 192, 256])
        lh = e["lhand_bbox"]
        assert lh is not None and 0 <= lh[0] < lh[2] <= 192 * 1.5


def test_crop_affine_composition_reaches_4k_pixels(agora):
    from common.config import load_config
    from data.sample import build_sample

    root, truth = agora
    records = load_own("AGORA", "val", data_root=root)
    cfg = load_config("smpler_x_tiny")
    _, _, meta = build_sample(records.entry(0), np.random.default_rng(0), False, cfg.model)
    b = full_bb2img(meta["bb2img_trans"][None], meta["agora_orig2crop"][None])[0]
    a = truth["val"][0]["affine"]
    # the network input's corners are the crop's corners (the box is the whole 3:4 crop) -> the crop region in 4K
    for inp, crop in (((0, 0), (0, 0)), ((384, 512), (192, 256)), ((192, 256), (96, 128))):
        expected = (np.asarray(crop, float) - a[:, 2]) / np.diag(a[:, :2])
        np.testing.assert_allclose(b @ [*inp, 1.0], expected, atol=1e-3)


def test_validation_ground_truth_scores_zero_and_submission_files(agora, body_model_dir, tmp_path):
    from common.body_model import SMPLXLayer, load_eval_assets
    from common.config import load_config
    from data.datasets import collate
    from data.formats import EvalContext, evaluator_for
    from data.sample import build_sample

    root, truth = agora
    records = load_own("AGORA", "val", data_root=root)
    cfg = load_config("smpler_x_tiny")
    _, targets, meta = collate([build_sample(records.entry(i), np.random.default_rng(0), False, cfg.model)
                                for i in range(len(records))])
    np.testing.assert_allclose(targets["smplx_mesh_cam"].numpy(), np.stack([t["verts"] for t in truth["val"]]),
                               atol=1e-6)
    layer = SMPLXLayer(body_model_dir)
    ev = evaluator_for("AGORA", "val", EvalContext(load_eval_assets(body_model_dir), layer, body_model_dir, tmp_path))
    n = len(records)
    params = [t["params"] for t in truth["val"]]
    out = {"smplx_mesh_cam": targets["smplx_mesh_cam"].numpy() + 0.2,
           "smplx_root_pose": np.stack([p["global_orient"] for p in params]),
           "smplx_body_pose": np.stack([p["body_pose"].reshape(-1) for p in params]),
           "smplx_lhand_pose": np.stack([p["left_hand_pose"].reshape(-1) for p in params]),
           "smplx_rhand_pose": np.stack([p["right_hand_pose"].reshape(-1) for p in params]),
           "smplx_jaw_pose": np.stack([p["jaw_pose"] for p in params]),
           "smplx_shape": np.stack([p["betas"] for p in params]),
           "smplx_expr": np.stack([p["expression"] for p in params]), "cam_trans": np.tile([0.0, 0.0, 20.0], (n, 1))}
    out = {k: np.asarray(v, np.float32) for k, v in out.items()}
    ev.process(out, targets, meta)
    res = ev.evaluate()
    assert len(res) == 10 and not any("mpjpe" in k for k in res) and max(res.values()) < 0.1, res
    files = sorted(p.name for p in (tmp_path / "predictions").iterdir())
    assert files == ["ag_validation_00000_personId_0.pkl", "ag_validation_00000_personId_1.pkl",
                     "ag_validation_00001_personId_0.pkl", "ag_validation_00001_personId_1.pkl"]
    pred = read_prediction(tmp_path / "predictions" / files[1])
    assert set(pred["params"]) == {"transl", "global_orient", "body_pose", "left_hand_pose", "right_hand_pose",
                                   "reye_pose", "leye_pose", "jaw_pose", "expression", "betas"}
    assert pred["params"]["body_pose"].shape == (1, 63) and pred["joints"].shape == (1, 144, 2)
    # the people sit side by side in the 4K frame: the predicted joints land in their person's half
    assert pred["joints"][0, :, 0].mean() > 1920 and read_prediction(
        tmp_path / "predictions" / files[0])["joints"][0, :, 0].mean() < 1920


def test_bad_crop_json_is_named(agora, tmp_path):
    import shutil

    root, _ = agora
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    crop = next((copy / "AGORA" / "data" / "3840x2160" / "validation_crop").glob("*.json"))
    crop.write_text(json.dumps({"resized_height": 256}))
    with pytest.raises(InputError, match=crop.name):
        load_own("AGORA", "val", data_root=copy)


@pytest.mark.parametrize("testset,metrics", [("AGORA", 10), ("AGORA:test", 0)])
def test_main_test_on_agora(tmp_path, agora, body_model_dir, tiny_checkpoint, testset, metrics):
    from main import test as test_cmd

    root, _ = agora
    ckpt = tiny_checkpoint
    assert test_cmd.main(["--ckpt", str(ckpt), "--testset", testset, "--output", str(tmp_path / "out"),
                          "--body-model-dir", str(body_model_dir), "--no-progress", f"paths.data_root={root}"]) == 0
    res = json.loads((tmp_path / "out" / "result.json").read_text())
    assert res["num_samples"] == 4 and len(res["metrics"]) == metrics
    assert len(list((tmp_path / "out" / "predictions").glob("*_personId_*.pkl"))) == 4
