"""MPII: keypoints mapped by name, NeuralAnnot fits with the untrusted rotations / foot joints masked."""

import json
import shutil

import numpy as np
import pytest

from common.body_model import joint_sets as js
from common.errors import InputError
from data.formats import load_own
from data.formats.mpii import UNTRUSTED_JOINTS, UNTRUSTED_ROTATIONS, write_synthetic_mpii


@pytest.fixture(scope="module")
def mpii(tmp_path_factory, body_model_dir):
    root = tmp_path_factory.mktemp("mpii_root")
    return root, write_synthetic_mpii(root, body_model_dir)


def test_entries(mpii):
    root, truth = mpii
    records = load_own("MPII", "train", data_root=root)
    assert len(records) == 3
    first = records.entries[0]
    valid = first["joint_valid"][:, 0] > 0
    assert valid.sum() == 13 and not valid[js.JOINTS_NAME.index("R_Knee")]  # 14 named, R_Knee invisible
    uv = truth["joints2d"][0]
    np.testing.assert_allclose(first["joint_img"][valid, :2], uv[np.asarray(js.JOINT_IDX)[valid]], atol=1e-3)
    assert records.entries[2]["smplx_param"] is None and records.entries[0]["lhand_bbox"] is None


@pytest.mark.parametrize("flip", [False, True])
def test_untrusted_parts_of_the_fit_are_masked(mpii, body_model_dir, flip):
    from common.body_model import SMPLXLayer
    from common.config import load_config
    from data.datasets import collate
    from data.sample import build_sample
    from data.targets import build_model_targets

    root, _ = mpii
    records = load_own("MPII", "train", data_root=root)
    cfg = load_config("smpler_x_tiny")

    class Rng:  # an augmentation draw with or without the flip, nothing else
        def __init__(self):
            self.g = np.random.default_rng(0)

        def __getattr__(self, k):
            return getattr(self.g, k)

        def random(self, *a):
            return 0.0 if flip else 0.99

    batch = collate([build_sample(records.entry(i), Rng(), True, cfg.model) for i in range(2)])
    layer = SMPLXLayer(body_model_dir)
    _, meta = build_model_targets(batch[1], batch[2], {"neutral": layer, "male": layer, "female": layer}, cfg.model)
    assert meta["do_flip"].tolist() == [float(flip)] * 2
    rot_valid = meta["smplx_pose_valid"].reshape(2, -1, 3)[:, :, 0]
    for name in UNTRUSTED_ROTATIONS:
        assert (rot_valid[:, js.ORIG_JOINTS_NAME.index(name)] == 0).all()
    assert rot_valid[:, js.ORIG_JOINTS_NAME.index("L_Knee")].tolist() == [1.0, 1.0]
    for name in UNTRUSTED_JOINTS:
        assert (meta["smplx_joint_valid"][:, js.JOINTS_NAME.index(name), 0] == 0).all()
    assert meta["is_3D"].tolist() == [0.0, 0.0]


def test_bad_keypoints_are_named(mpii, tmp_path):
    root, _ = mpii
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    path = copy / "MPII" / "data" / "annotations" / "train.json"
    db = json.loads(path.read_text())
    db["annotations"][1]["keypoints"] = [1.0, 2.0]
    path.write_text(json.dumps(db))
    with pytest.raises(InputError, match="train.json annotation 1"):
        load_own("MPII", "train", data_root=copy)
