"""3DPW: the official json layout through the loader, the GT SMPL meshes (gendered, camera extrinsics as the
original), the 14-joint protocol and main.test."""

import json

import numpy as np
import pytest
import torch

from common.errors import InputError
from common.utils.image import process_bbox
from data.formats import load_own
from data.formats.pw3d import PW3DSMPLEvaluator, SMPLMeshes, write_synthetic_pw3d


@pytest.fixture(scope="module")
def pw3d(tmp_path_factory, body_model_dir):
    root = tmp_path_factory.mktemp("pw3d_root")
    return root, write_synthetic_pw3d(root, body_model_dir, n_train=2, n_test=3)


def test_test_entries_rebuild_the_rendered_camera_frame_meshes(pw3d, body_model_dir):
    from common.config import load_config
    from data.datasets import collate
    from data.sample import build_sample

    root, truth = pw3d
    records = load_own("PW3D", "test", data_root=root)
    assert len(records) == 3
    db = json.loads((root / "PW3D" / "data" / "3DPW_test.json").read_text())
    cfg = load_config("smpler_x_tiny")
    samples = [build_sample(records.entry(i), np.random.default_rng(0), False, cfg.model) for i in range(3)]
    for i, e in enumerate(records.entries):
        np.testing.assert_allclose(e["bbox"], process_bbox(np.array(db["annotations"][i]["bbox"]), 640, 480,
                                                           ratio=1.2))
        assert e["img_path"].endswith(f"imageFiles/{db['images'][i]['sequence']}/{db['images'][i]['file_name']}")
    _, targets, _ = collate(samples)
    assert targets["smpl_gender"].tolist() == [0, 1, 2] and targets["smpl_has_Rt"].tolist() == [0, 1, 0]
    # the fixture stored world-frame parameters for image 1; R merged into the root and the root moved to R root + t
    # must give back exactly the mesh that was rendered
    meshes = SMPLMeshes(body_model_dir).camera_meshes(targets)
    np.testing.assert_allclose(meshes, truth["test_meshes"], atol=2e-5)


def test_train_entries_are_the_smpl_body_as_smplx(pw3d, body_model_dir):
    from common.body_model import SMPLXLayer
    from common.config import load_config
    from data.datasets import collate
    from data.sample import build_sample
    from data.targets import build_model_targets

    root, _ = pw3d
    records = load_own("PW3D", "train", data_root=root)
    db = json.loads((root / "PW3D" / "data" / "3DPW_train.json").read_text())
    for e, ann, img in zip(records.entries, db["annotations"], db["images"]):
        pose = np.asarray(ann["smpl_param"]["pose"], np.float32)
        np.testing.assert_array_equal(e["smplx_param"]["root_pose"], pose[:3])
        np.testing.assert_array_equal(e["smplx_param"]["body_pose"], pose[3:66])
        assert not e["smplx_param"]["shape"].any() and not e["smplx_param"]["lhand_valid"]
        assert ("R" in e["camera"]) == ("R" in img["cam_param"])
    cfg = load_config("smpler_x_tiny")
    batch = collate([build_sample(records.entry(i), np.random.default_rng(i), True, cfg.model) for i in range(2)])
    layer = SMPLXLayer(body_model_dir)
    targets, meta = build_model_targets(batch[1], batch[2], {"neutral": layer, "male": layer, "female": layer},
                                        cfg.model)
    assert meta["smplx_shape_valid"].tolist() == [0.0, 0.0]  # betas dropped, as the original
    pose_valid = meta["smplx_pose_valid"].reshape(2, -1, 3)[:, :, 0]
    assert (pose_valid[:, :22] == 1).all() and (pose_valid[:, 22:] == 0).all()  # root + body only
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in targets.values() if torch.is_tensor(v))


def test_protocol_matches_an_independent_computation(pw3d, body_model_dir):
    from common.body_model import SMPLXLayer, load_eval_assets
    from common.evaluation.metrics import PW3D_JOINTS

    root, truth = pw3d
    assets = load_eval_assets(body_model_dir)
    ev = PW3DSMPLEvaluator(assets.j_regressor, body_model_dir)
    records = load_own("PW3D", "test", data_root=root)
    gt = {k: np.stack([records.entries[i]["gt"][k] for i in range(3)]) for k in records.entries[0]["gt"]}
    layer = SMPLXLayer(body_model_dir)
    z = torch.zeros(3, 3)
    with torch.no_grad():
        pred, _ = layer(z + 0.1, torch.zeros(3, 63), torch.zeros(3, 45), torch.zeros(3, 45), z, torch.zeros(3, 10),
                        torch.zeros(3, 10), torch.tensor([[0.0, 0.2, 4.0]] * 3))
    pred = pred.numpy().astype(np.float64)
    ev.process({"smplx_mesh_cam": pred}, gt, {"img_path": ["a", "b", "c"]})
    res = ev.evaluate()
    # by hand: SMPL regressor on the GT, SMPL-X J_regressor on the prediction, pelvis-aligned, then Procrustes
    j_gt = np.einsum("jv,bvc->bjc", ev.smpl.j_regressor, truth["test_meshes"].astype(np.float64))
    j_pr = np.einsum("jv,bvc->bjc", assets.j_regressor.astype(np.float64), pred)
    idx = list(PW3D_JOINTS)
    aligned = j_pr[:, idx] - j_pr[:, :1] + j_gt[:, :1]
    mpjpe = np.linalg.norm(aligned - j_gt[:, idx], axis=2).mean(1) * 1000
    pa = []
    for a, b in zip(j_pr[:, idx], j_gt[:, idx]):
        ma, mb = a.mean(0), b.mean(0)
        u, s, vt = np.linalg.svd((b - mb).T @ (a - ma))
        d = np.sign(np.linalg.det(u @ vt))
        rot = u @ np.diag([1, 1, d]) @ vt
        scale = (s * [1, 1, d]).sum() / ((a - ma) ** 2).sum()
        pa.append(np.linalg.norm(scale * (a - ma) @ rot.T + mb - b, axis=1).mean() * 1000)
    assert res["mpjpe_body"] == pytest.approx(mpjpe.mean(), rel=1e-4)
    assert res["pa_mpjpe_body"] == pytest.approx(np.mean(pa), rel=1e-3)


def test_bad_annotation_is_named(tmp_path, pw3d):
    import shutil

    root, _ = pw3d
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    path = copy / "PW3D" / "data" / "3DPW_test.json"
    db = json.loads(path.read_text())
    db["annotations"][0]["smpl_param"]["pose"] = [0.0] * 10
    path.write_text(json.dumps(db))
    with pytest.raises(InputError, match="smpl_param.pose"):
        load_own("PW3D", "test", data_root=copy)
    del db["images"][0]["cam_param"]
    db["annotations"][0]["smpl_param"]["pose"] = [0.0] * 72
    path.write_text(json.dumps(db))
    with pytest.raises(InputError, match="cam_param"):
        load_own("PW3D", "test", data_root=copy)


def test_main_test_on_3dpw(tmp_path, pw3d, body_model_dir, tiny_checkpoint):
    from main import test as test_cmd

    root, _ = pw3d
    ckpt = tiny_checkpoint
    assert test_cmd.main(["--ckpt", str(ckpt), "--testset", "PW3D", "--output", str(tmp_path / "out"),
                          "--body-model-dir", str(body_model_dir), "--no-progress", f"paths.data_root={root}"]) == 0
    res = json.loads((tmp_path / "out" / "result.json").read_text())
    assert res["num_samples"] == 3 and set(res["metrics"]) == {"mpjpe_body", "pa_mpjpe_body"}
