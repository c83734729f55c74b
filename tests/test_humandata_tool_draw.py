"""`python -m main.humandata_tool draw`: pictures of records with keypoints, boxes and the projected fit."""

import numpy as np
import pytest

from common.body_model import joint_sets as js
from main import humandata_tool


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, body_model_dir):
    from data.synthetic_humandata import prepare_synthetic_dataset

    root = tmp_path_factory.mktemp("draw_data")
    prepare_synthetic_dataset(root, body_model_dir, n_train=4, n_test=2)
    return root


def test_fit_projection_lands_on_the_files_keypoints(synthetic, body_model_dir):
    from data.cache import load_dataset
    from data.draw import Layers, fit_in_camera, project

    records = load_dataset("Synthetic", "train", data_root=synthetic)
    layers = Layers(body_model_dir)
    for i in range(len(records)):
        e = records.entry(i)
        _, joints = fit_in_camera(e, layers)
        uv = project(joints[list(js.JOINT_IDX)], e["camera"])
        np.testing.assert_allclose(uv, e["joint_img"][:, :2], atol=0.05)  # the file's 2D keypoints


def test_fit_with_extrinsics_matches_the_rendered_joints(tmp_path, body_model_dir):
    from data.draw import Layers, fit_in_camera, project
    from data.formats import load_own
    from data.formats.human36m import write_synthetic_human36m

    truth = write_synthetic_human36m(tmp_path, body_model_dir, frames=(0,))
    records = load_own("Human36M", "train", data_root=tmp_path)
    layers = Layers(body_model_dir)
    for e in records.entries[:4]:  # world-frame fits, two cameras each
        _, joints = fit_in_camera(e, layers)
        np.testing.assert_allclose(project(joints, e["camera"])[:25], truth[e["index"]]["uv"][:25], atol=0.5)


def test_draw_command_both_modes(synthetic, body_model_dir, tmp_path, capsys):
    base = ["draw", "--dataset", "Synthetic", "--data-root", str(synthetic), "--body-model-dir", str(body_model_dir),
            "--out", str(tmp_path)]
    assert humandata_tool.main([*base, "--num", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("mesh" in line and "137 keypoints" in line for line in lines)
    assert humandata_tool.main([*base, "--indices", "1", "--crop"]) == 0
    assert "keypoint targets" in capsys.readouterr().out
    import cv2

    crop = cv2.imread(str(tmp_path / "Synthetic_train_1_crop.jpg"))
    assert crop.shape == (512, 384, 3)
    assert len(list(tmp_path.glob("Synthetic_train_*.jpg"))) == 3


def test_draw_shows_the_keypoints_where_the_targets_are(synthetic, body_model_dir):
    from common.config import load_config
    from data.cache import load_dataset
    from data.draw import BODY, BOX_PART, Layers, draw_training_sample
    from data.sample import build_sample

    records = load_dataset("Synthetic", "train", data_root=synthetic)
    cfg = load_config("smpler_x_tiny").model
    img, _ = draw_training_sample(records.entry(2), np.random.default_rng(5), cfg, Layers(body_model_dir))
    _, targets, meta = build_sample(records.entry(2), np.random.default_rng(5), True, cfg)
    # pelvis .. elbows (wrists, eyes, ears and nose lie under the hand / face dots drawn after them)
    inside = (meta["joint_trunc"][:12, 0] > 0)
    assert inside.sum() >= 8
    xy = targets["joint_img"][:12][inside, :2] * 32  # hm cells -> crop px
    pixels = [img[int(round(y)), int(round(x))].astype(int) for x, y in xy]
    body = [np.abs(p - BODY).max() < 60 for p in pixels]
    box = [np.abs(p - BOX_PART).max() < 60 for p in pixels]  # a box outline drawn over the dot
    assert all(a or b for a, b in zip(body, box)) and np.mean(body) >= 0.7


def test_errors_are_one_line(synthetic, tmp_path, capsys):
    assert humandata_tool.main(["draw", "--out", str(tmp_path)]) == 2
    assert "FILE or --dataset" in capsys.readouterr().err
    assert humandata_tool.main(["draw", "--dataset", "Synthetic", "--data-root", str(synthetic), "--indices", "99",
                                "--out", str(tmp_path)]) == 2
    assert "out of range" in capsys.readouterr().err
    assert humandata_tool.main(["draw", "--dataset", "Synthetic", "--data-root", str(synthetic), "--body-model-dir",
                                str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert "SMPLX_NEUTRAL" in capsys.readouterr().err
