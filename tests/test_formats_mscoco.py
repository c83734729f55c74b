"""MSCOCO: COCO-WholeBody + NeuralAnnot fits in the official layout through the loader and the training targets."""

import json
import shutil

import numpy as np
import pytest
import torch

from common.body_model import joint_sets as js
from common.errors import ConfigError, InputError
from common.utils.image import process_bbox
from data.formats import load_own
from data.formats.mscoco import write_synthetic_mscoco


@pytest.fixture(scope="module")
def coco(tmp_path_factory, body_model_dir):
    root = tmp_path_factory.mktemp("coco_root")
    return root, write_synthetic_mscoco(root, body_model_dir)


def test_entries_keypoints_boxes_and_fits(coco):
    root, truth = coco
    records = load_own("MSCOCO", "train", data_root=root)
    assert [e["index"] for e in records.entries] == [1, 2, 3] and records.skipped == {"crowd_or_no_keypoints": 1}
    assert records.info["without_fit (2D keypoints only)"] == 1
    db = json.loads((root / "MSCOCO" / "annotations" / "coco_wholebody_train_v1.0.json").read_text())
    for e in records.entries:
        ann = db["annotations"][e["index"]]
        np.testing.assert_allclose(e["bbox"], process_bbox(np.array(ann["bbox"]), 640, 480, ratio=1.2))
        hand = process_bbox(np.array(ann["lefthand_box"]), 640, 480, ratio=1.2)
        np.testing.assert_allclose(e["lhand_bbox"], [*hand[:2], *(hand[:2] + hand[2:])], rtol=1e-6)
        valid = e["joint_valid"][:, 0] > 0
        valid[js.ROOT_IDX] = False  # pelvis = middle of the hips (checked in the UBody tests)
        uv = truth["joints2d"][e["index"]]
        np.testing.assert_allclose(e["joint_img"][valid, :2], uv[np.asarray(js.JOINT_IDX)[valid]], atol=1e-3)
        assert e["img_path"].endswith(f"train2017/{e['index']:012d}.jpg")
        assert (e["smplx_param"] is None) == (e["index"] == 1)


def test_training_sample_projects_the_fit_onto_the_keypoints(coco, body_model_dir):
    from common.body_model import SMPLXLayer
    from common.config import load_config
    from data.datasets import collate
    from data.sample import build_sample
    from data.targets import build_model_targets

    root, _ = coco
    records = load_own("MSCOCO", "train", data_root=root)
    cfg = load_config("smpler_x_tiny")
    batch = collate([build_sample(records.entry(i), np.random.default_rng(i), True, cfg.model, no_aug=True)
                     for i in range(3)])
    layer = SMPLXLayer(body_model_dir)
    targets, meta = build_model_targets(batch[1], batch[2], {"neutral": layer, "male": layer, "female": layer},
                                        cfg.model)
    assert meta["is_3D"].tolist() == [0.0, 0.0, 0.0] and meta["has_smplx"].tolist() == [0.0, 1.0, 1.0]
    # the fit's projected joints (hm units, from the camera of the fit) coincide with the annotated 2D keypoints
    both = (meta["joint_valid"][1:, :25, 0] > 0) & (meta["smplx_joint_valid"][1:, :25, 0] > 0)
    both[:, js.ROOT_IDX] = False
    assert both.sum() > 30
    diff = (targets["smplx_joint_img"][1:, :25, :2] - targets["joint_img"][1:, :25, :2])[both]
    assert torch.abs(diff).max() < 1e-2


def test_errors(coco, tmp_path):
    root, _ = coco
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    path = copy / "MSCOCO" / "annotations" / "coco_wholebody_train_v1.0.json"
    db = json.loads(path.read_text())
    del db["annotations"][2]["foot_kpts"]
    path.write_text(json.dumps(db))
    with pytest.raises(InputError, match="foot_kpts"):
        load_own("MSCOCO", "train", data_root=copy)
    from data.formats import EvalContext, evaluator_for

    with pytest.raises(ConfigError, match="training set"):
        evaluator_for("MSCOCO", "test", EvalContext(None, None, tmp_path, tmp_path))


def test_entries_are_cached_keyed_and_rebuilt(coco, tmp_path, caplog):
    import logging
    import os

    root, _ = coco
    cache = tmp_path / "cache"
    first = load_own("MSCOCO", "train", data_root=root, cache_dir=cache)
    stores = list(cache.glob("MSCOCO_train_*.cols"))
    assert len(stores) == 1
    with caplog.at_level(logging.INFO, logger="data.formats"):
        again = load_own("MSCOCO", "train", data_root=root, cache_dir=cache)
    assert "from cache" in caplog.text and len(again) == len(first)
    for a, b in zip(first.entries, again.entries):
        np.testing.assert_array_equal(a["joint_img"], b["joint_img"])
        assert (a["smplx_param"] is None) == (b["smplx_param"] is None)
    assert not list(cache.rglob("*.pkl"))  # columns only
    # other options -> another cache; a changed annotation file -> rebuilt; a damaged cache -> rebuilt
    load_own("MSCOCO", "train", data_root=root, cache_dir=cache, sample_interval=2)
    assert len(list(cache.glob("MSCOCO_train_*.cols"))) == 2
    column = sorted(stores[0].glob("*.npy"))[-1]
    (tmp_path / "garbage").write_bytes(b"garbage")
    os.replace(tmp_path / "garbage", column)  # a new file: the mapped one stays valid for `first` and `again`
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="data.formats"):
        assert len(load_own("MSCOCO", "train", data_root=root, cache_dir=cache)) == len(first)
    assert "unreadable" in caplog.text
    annot = root / "MSCOCO" / "annotations" / "coco_wholebody_train_v1.0.json"
    st = annot.stat()
    os.utime(annot, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="data.formats"):
        load_own("MSCOCO", "train", data_root=root, cache_dir=cache)
    assert "from cache" not in caplog.text
