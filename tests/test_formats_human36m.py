"""Human3.6M: subject / frame / camera sampling, world-frame fits taken to each camera as the original, masks."""

import json
import shutil

import numpy as np
import pytest
import torch

from common.body_model import joint_sets as js
from common.errors import InputError
from data.formats import load_own
from data.formats.human36m import write_synthetic_human36m


@pytest.fixture(scope="module")
def h36m(tmp_path_factory, body_model_dir):
    root = tmp_path_factory.mktemp("h36m_root")
    return root, write_synthetic_human36m(root, body_model_dir)


def test_sampling(h36m):
    root, truth = h36m
    train = load_own("Human36M", "train", data_root=root)
    test = load_own("Human36M", "test", data_root=root)
    got = {(truth[e["index"]]["subject"], truth[e["index"]]["frame"], truth[e["index"]]["cam"]) for e in train.entries}
    assert got == {(s, f, c) for s in (1, 5, 6, 7, 8) for f in (0, 5) for c in ("1", "4")}
    assert {(truth[e["index"]]["subject"], truth[e["index"]]["frame"], truth[e["index"]]["cam"])
            for e in test.entries} == {(9, 0, "4"), (11, 0, "4")}


def test_fit_reaches_the_camera_as_the_keypoints_do(h36m, body_model_dir):
    from common.body_model import SMPLXLayer
    from common.config import load_config
    from data.datasets import collate
    from data.sample import build_sample
    from data.targets import build_model_targets

    root, truth = h36m
    records = load_own("Human36M", "train", data_root=root)
    cfg = load_config("smpler_x_tiny")
    n = 6
    batch = collate([build_sample(records.entry(i), np.random.default_rng(i), True, cfg.model, no_aug=True)
                     for i in range(n)])
    layer = SMPLXLayer(body_model_dir)
    targets, meta = build_model_targets(batch[1], batch[2], {"neutral": layer, "male": layer, "female": layer},
                                        cfg.model)
    # the world joints through each camera's R, t, f, c (independent of the fit) = the fit's projected joints
    for i in range(n):
        uv = truth[records.entries[i]["index"]]["uv"]
        crop = np.c_[uv, np.ones(len(uv))] @ batch[2]["img2bb_trans"][i].numpy().T
        hm = crop * [12 / 384, 16 / 512]
        body = [j for j in range(25) if meta["smplx_joint_valid"][i, j, 0] > 0]
        assert len(body) >= 15
        expected = hm[np.asarray(js.JOINT_IDX)[body]]
        err = np.abs(targets["smplx_joint_img"][i, body, :2].numpy() - expected)
        assert np.median(err) < 1e-3 and err.max() < 0.05, err.max()  # float32 rotations: < 1.6 crop px at worst
        # the H36M joints kept with the entry are in camera metres: they project onto the same pixels
        cam = records.entries[i]["camera"]
        h36 = records.entries[i]["h36m_joint_cam"]
        assert np.abs(h36[:, :2] / h36[:, 2:] * cam["focal"] + cam["princpt"] - uv[0]).min() < 1.0
    rot_valid = meta["smplx_pose_valid"].reshape(n, -1, 3)[:, :, 0]
    assert (rot_valid[:, js.ORIG_JOINTS_NAME.index("L_Wrist")] == 0).all()
    assert (rot_valid[:, 25:] == 0).all()  # no hand / face in the fit
    assert torch.isfinite(targets["smplx_joint_cam"]).all()


def test_missing_frame_fit_is_named(h36m, tmp_path):
    root, _ = h36m
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    path = copy / "Human36M" / "annotations" / "Human36M_subject5_SMPLX_NeuralAnnot.json"
    fits = json.loads(path.read_text())
    del fits["0"]["0"]["5"]
    path.write_text(json.dumps(fits))
    with pytest.raises(InputError, match="Human36M_subject5_data.json"):
        load_own("Human36M", "train", data_root=copy)
