"""UBody: the official per-scene layout through the loader (video split, skips, boxes, keypoint mapping), training
targets, the in-image evaluator and main.test."""

import json
import shutil

import numpy as np
import pytest
import torch

from common.body_model import joint_sets as js
from common.errors import InputError
from data.formats import load_own
from data.formats.coco_wholebody import WHOLEBODY_NAMES, to_supervision_set, wholebody_joints
from data.formats.ubody import UBODY_METRICS, video_name, write_synthetic_ubody


@pytest.fixture(scope="module")
def ubody(tmp_path_factory, body_model_dir):
    root = tmp_path_factory.mktemp("ubody_root")
    return root, write_synthetic_ubody(root, body_model_dir)


def test_video_split_and_keypoints(ubody):
    root, truth = ubody
    train = load_own("UBody", "train", data_root=root, sample_interval=1)
    test = load_own("UBody", "test", data_root=root, sample_interval=1)
    assert len(train) == 4 and len(test) == 4  # 2 scenes x 2 videos x 2 frames, the second video of each is test
    videos = {split: {video_name(e["img_path"].split("images/")[1].split("/", 1)[1]) for e in r.entries}
              for split, r in (("train", train), ("test", test))}
    assert videos["test"] == set(truth["test_videos"]) and not videos["train"] & videos["test"]
    assert "_Trim" not in "".join(videos["train"])  # the suffix is cut before the split lookup
    # annotated 2D keypoints land in the 137 set by name: they equal the projected layer joints of that name
    for e in train.entries:
        uv = truth["joints2d"][e["index"]]
        valid = e["joint_valid"][:, 0] > 0
        assert valid.sum() == 132 and valid[js.JOINTS_NAME.index("Neck")] == 0  # COCO has no neck
        named = valid.copy()
        named[js.ROOT_IDX] = False  # COCO's pelvis is the middle of the hips, not the layer's pelvis joint
        np.testing.assert_allclose(e["joint_img"][named, :2], uv[np.asarray(js.JOINT_IDX)[named]], atol=1e-3)
        hips = e["joint_img"][[js.JOINTS_NAME.index("L_Hip"), js.JOINTS_NAME.index("R_Hip")], :2]
        np.testing.assert_allclose(e["joint_img"][js.ROOT_IDX, :2], hips.mean(0), atol=1e-3)
        fit = truth["fits"][e["index"]]
        np.testing.assert_allclose(e["smplx_param"]["body_pose"], fit["smplx_param"]["body_pose"], atol=1e-6)
        np.testing.assert_allclose(e["camera"]["focal"], fit["cam_param"]["focal"])
        lh = e["lhand_bbox"]  # annotated box shrunk to 0.65 about its centre
        assert lh[2] > lh[0] and e["face_bbox"] is not None
    # every 2nd annotation per scene
    assert len(load_own("UBody", "train", data_root=root, sample_interval=2)) == 2


def test_fill_rule_and_pelvis():
    ann = {"keypoints": np.ones((17, 3)) * [10, 20, 2], "foot_kpts": np.zeros((6, 3)),
           "lefthand_kpts": np.zeros((21, 3)), "righthand_kpts": np.zeros((21, 3)), "face_kpts": np.zeros((68, 3))}
    ann["keypoints"][11] = [0, 0, 2]
    ann["keypoints"][12] = [4, 8, 2]
    j = wholebody_joints(ann)
    np.testing.assert_allclose(j[WHOLEBODY_NAMES.index("Pelvis")], [2, 4, 4])
    out, valid = to_supervision_set(j)
    # missing face point 18 takes the nose (both in the 137 set); hand wrists have no 137 slot
    f18 = js.JOINTS_NAME.index("Face_18")
    assert valid[f18, 0] == 1 and (out[f18, :2] == out[js.JOINTS_NAME.index("Nose"), :2]).all()
    assert valid[js.JOINTS_NAME.index("L_Thumb_1"), 0] == 0


def test_training_targets_are_finite_with_the_right_masks(ubody, body_model_dir):
    from common.body_model import SMPLXLayer
    from common.config import load_config
    from data.datasets import collate
    from data.sample import build_sample
    from data.targets import build_model_targets

    root, _ = ubody
    records = load_own("UBody", "train", data_root=root, sample_interval=1)
    cfg = load_config("smpler_x_tiny")
    batch = collate([build_sample(records.entry(i), np.random.default_rng(i), True, cfg.model) for i in range(4)])
    layer = SMPLXLayer(body_model_dir)
    targets, meta = build_model_targets(batch[1], batch[2], {"neutral": layer, "male": layer, "female": layer},
                                        cfg.model)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in targets.values())
    assert meta["smplx_shape_valid"].tolist() == [1.0] * 4 and meta["lhand_bbox_valid"].sum() > 0
    assert meta["smplx_joint_valid"].sum() > 0


def test_evaluator_scores_ground_truth_as_zero_and_prints_eight(ubody, body_model_dir, tmp_path):
    from common.body_model import SMPLXLayer, load_eval_assets
    from common.config import load_config
    from data.datasets import collate
    from data.formats import EvalContext, evaluator_for
    from data.sample import build_sample

    root, _ = ubody
    records = load_own("UBody", "test", data_root=root, sample_interval=1)
    cfg = load_config("smpler_x_tiny")
    _, targets, meta = collate([build_sample(records.entry(i), np.random.default_rng(0), False, cfg.model)
                                for i in range(len(records))])
    layer = SMPLXLayer(body_model_dir)
    ev = evaluator_for("UBody", "test", EvalContext(load_eval_assets(body_model_dir), layer, body_model_dir,
                                                    tmp_path))
    from common.engine.evaluator import pseudo_gt_mesh

    gt = pseudo_gt_mesh(layer, targets).numpy()
    ev.process({"smplx_mesh_cam": gt + 0.05}, targets, meta)
    res = ev.evaluate()
    assert tuple(res) == UBODY_METRICS and max(res.values()) < 0.1, res


def test_corrupt_fit_file_is_named(tmp_path, ubody):
    root, _ = ubody
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    path = copy / "UBody" / "annotations" / "Talk" / "smplx_annotation.json"
    fits = json.loads(path.read_text())
    del fits[next(iter(fits))]["cam_param"]
    path.write_text(json.dumps(fits))
    with pytest.raises(InputError, match="smplx_annotation.json"):
        load_own("UBody", "train", data_root=copy, sample_interval=1)
    path.write_text("[")
    with pytest.raises(InputError, match="smplx_annotation.json"):
        load_own("UBody", "test", data_root=copy)


def test_main_test_on_ubody(tmp_path, ubody, body_model_dir, tiny_checkpoint):
    from main import test as test_cmd

    root, _ = ubody
    ckpt = tiny_checkpoint
    from data.catalog import CATALOG

    assert CATALOG["UBody"].interval("test") == 100  # the original's; this tiny set needs every annotation
    assert test_cmd.main(["--ckpt", str(ckpt), "--testset", "UBody", "--output", str(tmp_path / "out"),
                          "--body-model-dir", str(body_model_dir), "--no-progress", "--sample-interval", "1",
                          f"paths.data_root={root}"]) == 0
    res = json.loads((tmp_path / "out" / "result.json").read_text())
    assert res["num_samples"] == 4 and tuple(res["metrics"]) == UBODY_METRICS
