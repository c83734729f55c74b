"""The synthetic HumanData set: official layout, annotations consistent with the camera, the body model and the
rendered pixels, compression, determinism, and the reader."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from common.body_model import SMPLXLayer, load_eval_assets
from common.body_model.joint_sets import JOINT_IDX
from data import humandata as hd
from data.synthetic_humandata import main, synthetic_background, write_synthetic_humandata

N_IMAGES, SIZE, SEED = 5, (240, 320), 3
# dropped from the compressed variant: the 17 contour landmarks and the left-hand finger tips
DROPPED = [*range(127, 144), *range(66, 71)]


def _load(path: Path) -> dict:
    with np.load(path, allow_pickle=True) as z:
        return {k: (z[k].item() if z[k].dtype == object and z[k].ndim == 0 else z[k]) for k in z.files}


@pytest.fixture(scope="module")
def written(tmp_path_factory, body_model_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synthetic_humandata")
    mask = np.ones(144, np.uint8)
    mask[DROPPED] = 0
    return {
        "plain": write_synthetic_humandata(root / "a", body_model_dir, n=N_IMAGES, seed=SEED, img_size=SIZE),
        "again": write_synthetic_humandata(root / "b", body_model_dir, n=N_IMAGES, seed=SEED, img_size=SIZE,
                                           compressed=True, keypoint_mask=mask),
        "multi": write_synthetic_humandata(root / "c", body_model_dir, n=3, seed=SEED + 1, img_size=SIZE,
                                           max_persons=3, split="test"),
    }


@pytest.fixture(scope="module")
def plain(written) -> dict:
    return _load(written["plain"])


def _camera(npz_path: Path) -> dict:
    return json.loads(npz_path.with_name(f"{npz_path.stem}_camera.json").read_text())


def test_official_keys_shapes_and_dtypes(written, plain):
    n = N_IMAGES
    assert written["plain"].name == "synthetic_train.npz"
    assert plain["image_path"].shape == (n,) and plain["image_path"].dtype.kind == "U"
    assert [str(p) for p in plain["image_path"]] == [f"images/train_{i:06d}.jpg" for i in range(n)]
    for key in ("bbox_xywh", "lhand_bbox_xywh", "rhand_bbox_xywh", "face_bbox_xywh"):
        assert plain[key].shape == (n, 5) and plain[key].dtype == np.float32
    assert plain["keypoints2d_smplx"].shape == (n, 144, 3) and plain["keypoints2d_smplx"].dtype == np.float32
    assert plain["keypoints3d_smplx"].shape == (n, 144, 4) and plain["keypoints3d_smplx"].dtype == np.float32
    for key in ("keypoints2d_smplx_mask", "keypoints3d_smplx_mask"):
        assert np.array_equal(plain[key], np.ones(144)) and plain[key].dtype == np.uint8
    assert plain["__keypoints_compressed__"].dtype == np.bool_ and not plain["__keypoints_compressed__"]
    assert int(plain["__data_len__"]) == n
    shapes = {"global_orient": (3,), "body_pose": (21, 3), "left_hand_pose": (15, 3), "right_hand_pose": (15, 3),
              "jaw_pose": (3,), "betas": (10,), "expression": (10,), "transl": (3,)}
    for key, shape in shapes.items():
        assert plain["smplx"][key].shape == (n, *shape) and plain["smplx"][key].dtype == np.float32, key
    meta = plain["meta"]
    assert meta["height"] == [SIZE[0]] * n and meta["width"] == [SIZE[1]] * n
    cam = _camera(written["plain"])
    assert cam == {"focal": [320.0, 320.0], "princpt": [160.0, 120.0]}
    assert np.array_equal(meta["focal"], [cam["focal"]] * n) and np.array_equal(meta["princpt"], [cam["princpt"]] * n)
    for i in range(n):
        img = cv2.imread(str(written["plain"].parent / plain["image_path"][i]))
        assert img is not None and img.shape == (*SIZE, 3)


def test_keypoints2d_are_the_projection_of_keypoints3d(written, plain):
    cam = _camera(written["plain"])
    xyz = plain["keypoints3d_smplx"][..., :3].astype(np.float64)
    assert (xyz[..., 2] > 0.5).all()
    u = cam["focal"][0] * xyz[..., 0] / xyz[..., 2] + cam["princpt"][0]
    v = cam["focal"][1] * xyz[..., 1] / xyz[..., 2] + cam["princpt"][1]
    np.testing.assert_allclose(plain["keypoints2d_smplx"][..., 0], u, atol=1e-3)
    np.testing.assert_allclose(plain["keypoints2d_smplx"][..., 1], v, atol=1e-3)
    assert (plain["keypoints2d_smplx"][..., 2] == 1).all() and (plain["keypoints3d_smplx"][..., 3] == 1).all()


def test_the_layer_with_the_stored_parameters_reproduces_keypoints3d(body_model_dir, plain):
    p = {k: torch.from_numpy(v.reshape(len(v), -1)) for k, v in plain["smplx"].items()}
    layer = SMPLXLayer(body_model_dir, "neutral").to(torch.float64)
    _, joints = layer(p["global_orient"], p["body_pose"], p["left_hand_pose"], p["right_hand_pose"],
                      p["jaw_pose"], p["betas"], p["expression"], p["transl"])
    np.testing.assert_allclose(plain["keypoints3d_smplx"][..., :3], joints.numpy(), atol=2e-5)
    # plausible bodies: upright (head above pelvis in the y-down image), facing the camera (nose nearer than the
    # head joint), 30-80 % of the image tall
    kp = plain["keypoints3d_smplx"]
    assert (kp[:, 15, 1] < kp[:, 0, 1] - 0.3).all() and (kp[:, 55, 2] < kp[:, 15, 2]).all()
    heights = plain["bbox_xywh"][:, 3] / 1.2 / SIZE[0]
    assert ((heights > 0.28) & (heights < 0.82)).all()
    assert np.abs(plain["smplx"]["betas"]).max() <= 2.0 and not np.allclose(plain["smplx"]["body_pose"], 0)


def test_the_rendered_body_is_where_the_box_says(written, plain):
    for i in range(N_IMAGES):
        img = cv2.imread(str(written["plain"].parent / plain["image_path"][i]))[:, :, ::-1].astype(np.int64)
        person = np.abs(img - synthetic_background(SEED, i, SIZE)).max(axis=2) > 30  # beyond JPEG noise
        x, y, w, h, conf = plain["bbox_xywh"][i]
        assert conf == 1
        cx, cy, w, h = x + w / 2, y + h / 2, w / 1.2, h / 1.2  # undo the 1.2 enlargement: the silhouette extent
        tight = np.clip([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 0, [SIZE[1] - 1, SIZE[0] - 1] * 2)
        ys, xs = np.nonzero(person)
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max(), ys.max()], tight, atol=1.5)
        inside = np.zeros_like(person)
        x1, y1, x2, y2 = np.round(tight).astype(int)
        inside[y1:y2 + 1, x1:x2 + 1] = True
        assert (person & ~inside).sum() <= 0.001 * person.size and person[inside].mean() > 0.12


def test_hand_and_face_boxes(body_model_dir, plain):
    kp = plain["keypoints2d_smplx"]
    for i in range(N_IMAGES):
        for key, joints in (("lhand_bbox_xywh", [20, *range(25, 40), *range(66, 71)]),
                            ("rhand_bbox_xywh", [21, *range(40, 55), *range(71, 76)]),
                            ("face_bbox_xywh", [55, 56, 57, *range(76, 127)])):
            x, y, w, h, conf = plain[key][i]
            uv = kp[i, joints, :2]
            assert conf == 1 and w > 0 and h > 0
            assert ((uv >= [x - 0.5, y - 0.5]) & (uv <= [x + w + 0.5, y + h + 0.5])).all(), (i, key)
        # a head box, not a body box: under a third of the body height
        assert plain["face_bbox_xywh"][i, 3] < plain["bbox_xywh"][i, 3] / 1.2 / 3
    # hand boxes are the extent of the MANO vertices: re-derive one from the layer
    assets = load_eval_assets(body_model_dir)
    p = {k: torch.from_numpy(v[:1].reshape(1, -1)) for k, v in plain["smplx"].items()}
    verts, _ = SMPLXLayer(body_model_dir, "neutral")(p["global_orient"], p["body_pose"], p["left_hand_pose"],
                                                     p["right_hand_pose"], p["jaw_pose"], p["betas"],
                                                     p["expression"], p["transl"])
    v = verts[0].numpy().astype(np.float64)[assets.hand_vertex_idx["left"]]
    uv = v[:, :2] / v[:, 2:] * 320.0 + [160.0, 120.0]
    np.testing.assert_allclose(plain["lhand_bbox_xywh"][0, :4], [*uv.min(0), *np.ptp(uv, axis=0)], atol=1e-2)


def test_determinism_and_compressed_variant(written, plain):
    again = _load(written["again"])
    assert bool(again["__keypoints_compressed__"])
    kept = np.flatnonzero(again["keypoints3d_smplx_mask"])
    assert len(kept) == 144 - len(DROPPED) and again["keypoints3d_smplx"].shape == (N_IMAGES, len(kept), 4)
    # same seed -> identical parameters, boxes and images
    for key in ("image_path", "bbox_xywh", "lhand_bbox_xywh", "rhand_bbox_xywh", "face_bbox_xywh"):
        assert np.array_equal(plain[key], again[key]), key
    for key, value in plain["smplx"].items():
        assert np.array_equal(value, again["smplx"][key]), key
    for rel in plain["image_path"]:
        assert (written["plain"].parent / rel).read_bytes() == (written["again"].parent / rel).read_bytes()
    # decompressing (zeros at mask 0, kept columns in order) gives the uncompressed arrays with those zeroed
    for key, dim in (("keypoints2d_smplx", 3), ("keypoints3d_smplx", 4)):
        full = np.zeros((N_IMAGES, 144, dim), np.float32)
        full[:, kept] = again[key]
        expected = plain[key].copy()
        expected[:, DROPPED] = 0
        assert np.array_equal(full, expected), key


def test_the_reader_loads_both_variants_identically(written, plain):
    entries = {}
    for variant in ("plain", "again"):
        path = written[variant]
        records = hd.load_humandata(path, name="Synthetic", img_dir=path.parent, camera=_camera(path))
        assert len(records) == N_IMAGES and not records.skipped
        entries[variant] = [records.entry(i) for i in range(N_IMAGES)]
    dropped = np.isin(JOINT_IDX, DROPPED)  # 137-set joints the compressed variant's mask removes
    for a, b in zip(*entries.values()):
        assert (a["joint_valid"] == 1).all() and np.array_equal(b["joint_valid"][:, 0], (~dropped).astype(np.float32))
        for key in ("joint_cam", "joint_img"):
            assert np.array_equal(a[key][~dropped], b[key][~dropped]) and (b[key][dropped] == 0).all()
        np.testing.assert_array_equal(a["camera"]["focal"], [320.0, 320.0])
    e = entries["plain"][1]
    np.testing.assert_allclose(e["joint_cam"], plain["keypoints3d_smplx"][1, list(JOINT_IDX), :3])
    np.testing.assert_allclose(e["smplx_param"]["trans"], plain["smplx"]["transl"][1])
    assert e["img_shape"] == SIZE and Path(e["img_path"]).is_file()
    assert e["smplx_param"]["lhand_valid"] and e["smplx_param"]["face_valid"]


def test_several_people_per_image(written, plain):
    multi = _load(written["multi"])
    paths = [str(p) for p in multi["image_path"]]
    assert len(paths) > 3 and sorted(set(paths)) == [f"images/test_{i:06d}.jpg" for i in range(3)]
    assert written["multi"].name == "synthetic_test.npz"
    assert not np.array_equal(multi["smplx"]["betas"][:1], plain["smplx"]["betas"][:1])  # another seed
    for p in set(paths):  # people of one image stand side by side
        rows = [r for r, q in enumerate(paths) if q == p]
        centres = multi["bbox_xywh"][rows, 0] + multi["bbox_xywh"][rows, 2] / 2
        assert (np.diff(centres) > 0).all()


def test_command_line(tmp_path, body_model_dir, capsys):
    assert main([str(tmp_path), "--body-model-dir", str(body_model_dir), "--n", "1", "--height", "96",
                 "--width", "128"]) == 0
    out = capsys.readouterr().out
    assert "synthetic_train.npz" in out and "1 HumanData rows" in out
    assert (tmp_path / "images" / "train_000000.jpg").is_file() and (tmp_path / "synthetic_train_camera.json").is_file()
    assert main([str(tmp_path / "x"), "--body-model-dir", str(tmp_path / "nothing"), "--n", "1"]) == 2


def test_prepared_synthetic_dataset_loads_through_the_catalog(tmp_path, body_model_dir):
    import json

    from data.cache import load_dataset
    from data.catalog import get_spec
    from data.synthetic_humandata import prepare_synthetic_dataset

    files = prepare_synthetic_dataset(tmp_path, body_model_dir, n_train=3, n_test=2)
    assert files["train"] == tmp_path / "preprocessed_datasets" / "synthetic_train.npz"
    train = load_dataset("Synthetic", "train", data_root=tmp_path)
    test = load_dataset("Synthetic", "test", data_root=tmp_path)
    assert len(train) == 3 and len(test) == 2
    entry = train.entry(0)
    assert Path(entry["img_path"]).is_file()
    cam = json.loads((tmp_path / "Synthetic" / "synthetic_train_camera.json").read_text())
    spec = get_spec("Synthetic")
    assert np.allclose(cam["focal"], spec.focal) and np.allclose(cam["princpt"], spec.princpt)
    assert np.allclose(entry["camera"]["focal"], cam["focal"])
    # the catalog camera projects the 3D keypoints onto the 2D ones
    j3, j2 = entry["joint_cam"], entry["joint_img"][:, :2]
    proj = j3[:, :2] / j3[:, 2:] * np.asarray(spec.focal) + np.asarray(spec.princpt)
    valid = entry["joint_valid"][:, 0] > 0
    assert np.abs(proj[valid] - j2[valid]).max() < 1e-2
