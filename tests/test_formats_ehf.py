"""EHF: the official layout (COCO json, images, scanner-frame PLY meshes) through the loader, the sample pipeline,
the evaluator and main.test."""

import json

import numpy as np
import pytest

from common.errors import InputError
from common.utils.image import process_bbox
from data.formats import load_own
from data.formats.ehf import ehf_rotation, read_ply_vertices, write_ply_vertices, write_synthetic_ehf


@pytest.fixture(scope="module")
def ehf(tmp_path_factory, body_model_dir):
    root = tmp_path_factory.mktemp("ehf_root")
    return root, write_synthetic_ehf(root, body_model_dir, n=3)


def test_ply_reader_ascii_and_binary_agree(tmp_path):
    v = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    write_ply_vertices(tmp_path / "b.ply", v, faces=np.array([[0, 1, 2], [2, 3, 4]]))
    lines = ["ply", "format ascii 1.0", "comment x", "element vertex 7", "property float x", "property float y",
             "property float z", "property uchar red", "element face 0", "property list uchar int vertex_indices",
             "end_header", *(f"{a:.9g} {b:.9g} {c:.9g} 255" for a, b, c in v)]
    (tmp_path / "a.ply").write_text("\n".join(lines) + "\n")
    np.testing.assert_array_equal(read_ply_vertices(tmp_path / "b.ply"), v)
    np.testing.assert_allclose(read_ply_vertices(tmp_path / "a.ply"), v, atol=1e-6)
    (tmp_path / "bad.ply").write_bytes(b"not a mesh")
    with pytest.raises(InputError, match="bad.ply"):
        read_ply_vertices(tmp_path / "bad.ply")


def test_loader_boxes_and_camera_frame_meshes(ehf, body_model_dir):
    from common.config import load_config
    from data.sample import build_sample

    root, truth = ehf
    records = load_own("EHF", "test", data_root=root)
    assert len(records) == 3 and records.skipped == {}
    annots = json.loads((root / "EHF" / "data" / "EHF.json").read_text())["annotations"]
    cfg = load_config("smpler_x_tiny")
    for i, e in enumerate(records.entries):
        np.testing.assert_allclose(e["bbox"], process_bbox(np.array(annots[i]["body_bbox"]), 640, 480, ratio=1.2))
        assert e["lhand_bbox"][2] > e["lhand_bbox"][0] and e["smplx_param"] is None
        _, targets, meta = build_sample(records.entry(i), np.random.default_rng(0), False, cfg.model)
        # the PLY holds R^T v (scanner frame); the loader's R brings back the camera-frame mesh
        np.testing.assert_allclose(targets["smplx_mesh_cam"], truth["meshes"][i], atol=2e-6)
        np.testing.assert_array_equal(meta["img_shape"], [480, 640])
    raw = read_ply_vertices(root / "EHF" / "data" / "01_align.ply")
    assert np.abs(raw - truth["meshes"][0]).max() > 0.1  # stored rotated: the rotation matters
    np.testing.assert_allclose(ehf_rotation() @ ehf_rotation().T, np.eye(3), atol=1e-12)


def test_ground_truth_as_prediction_scores_zero(ehf, body_model_dir):
    from common.body_model import load_eval_assets
    from common.engine.evaluator import WholeBodyEvaluator

    root, truth = ehf
    ev = WholeBodyEvaluator("EHF", load_eval_assets(body_model_dir))
    shift = truth["meshes"] + np.array([0.3, -0.1, 0.5], np.float32)  # translation: removed by every alignment
    ev.process({"smplx_mesh_cam": shift}, {"smplx_mesh_cam": truth["meshes"]}, {"img_path": ["a", "b", "c"]})
    res = ev.evaluate()
    assert len(res) == 14 and max(res.values()) < 0.1, res


def test_bad_annotations_are_named(tmp_path, ehf):
    import shutil

    root, _ = ehf
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    annot = copy / "EHF" / "data" / "EHF.json"
    db = json.loads(annot.read_text())
    del db["annotations"][1]["face_bbox"]
    annot.write_text(json.dumps(db))
    with pytest.raises(InputError, match="face_bbox"):
        load_own("EHF", "test", data_root=copy)
    annot.write_text("{broken")
    with pytest.raises(InputError, match="EHF.json"):
        load_own("EHF", "test", data_root=copy)
    (copy / "EHF" / "data" / "EHF.json").write_text(json.dumps(json.loads((root / "EHF" / "data" / "EHF.json")
                                                                          .read_text())))
    (copy / "EHF" / "data" / "02_align.ply").unlink()
    with pytest.raises(InputError, match="_align.ply"):
        load_own("EHF", "test", data_root=copy)


def test_main_test_on_ehf(tmp_path, ehf, body_model_dir, tiny_checkpoint):

    from main import test as test_cmd

    root, _ = ehf
    ckpt = tiny_checkpoint
    assert test_cmd.main(["--ckpt", str(ckpt), "--testset", "EHF", "--output", str(tmp_path / "out"),
                          "--body-model-dir", str(body_model_dir), "--no-progress", f"paths.data_root={root}"]) == 0
    res = json.loads((tmp_path / "out" / "result.json").read_text())
    assert res["num_samples"] == 3 and len(res["metrics"]) == 14
    assert all(np.isfinite(v) and v > 0 for v in res["metrics"].values())
