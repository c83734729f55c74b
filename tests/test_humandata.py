"""HumanData reader, dataset catalog, datalist cache and the validate command (data/humandata.py, data/catalog.py,
data/cache.py, main/humandata_tool.py).

The HumanData files are written here with the official keys and shapes (tiny N, no images). Keypoint values encode
(sample, keypoint, source key) so that mappings and key priorities can be read back from the entries.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from common.errors import ConfigError, InputError
from common.utils.image import process_bbox
from data import cache as hd_cache
from data import humandata as hd
from data import npz_reader
from data.catalog import CATALOG, HUMANDATA_NAMES, DatasetFilesMissing, get_spec, resolve_files, resolve_img_dir
from data.npz_reader import decompress_keypoints
from main import humandata_tool

N_KPS = 144
H, W = 720, 1280
MASKED = (3, 60, 100)  # layer keypoints the files mark invalid: one outside the 137 set, two inside
KEY_OFFSET = {"keypoints3d_cam": 1e5, "keypoints3d": 2e5, "keypoints3d_smplx": 3e5, "keypoints3d_smpl": 4e5,
              "keypoints3d_original": 5e5, "keypoints2d": 6e5, "keypoints2d_smplx": 7e5, "keypoints2d_smpl": 8e5,
              "keypoints2d_original": 9e5}
# (137 index, SMPL-X layer keypoint) pairs written out by hand from the facts sheet, section 1.3
NAMED_PAIRS = [(0, 0), (3, 4), (7, 12), (12, 20), (13, 21), (14, 60), (20, 59), (22, 57), (23, 56), (24, 55),
               (25, 37), (28, 66), (29, 25), (44, 70), (45, 52), (64, 75), (65, 22), (66, 15), (67, 57), (68, 56),
               (69, 76), (119, 126), (120, 127), (136, 143)]


def make_humandata(n: int = 6, *, seed: int = 0, kps3d: tuple[str, ...] = ("keypoints3d_smplx",),
                   kps2d: tuple[str, ...] = ("keypoints2d_smplx",), source: str | None = "smplx",
                   meta: bool = True, masks: bool = True) -> dict:
    """A HumanData dict with official keys/shapes. Keypoint x = offset(key) + 1000 * row + keypoint index; keypoints
    masked out in the file hold garbage (777) that the reader must zero."""
    rng = np.random.default_rng(seed)
    d: dict = {"image_path": np.array([f"seq_{i // 3}/frame_{i:05d}.jpg" for i in range(n)]),
               "__keypoints_compressed__": np.array(False)}
    wh = rng.uniform(80, 300, (n, 2))
    d["bbox_xywh"] = np.c_[rng.uniform(0, 600, (n, 2)), wh, np.ones(n)].astype(np.float32)
    d["lhand_bbox_xywh"] = np.c_[rng.uniform(0, 600, (n, 2)), rng.uniform(10, 60, (n, 2)),
                                 np.arange(n) % 2].astype(np.float32)  # odd rows present
    d["rhand_bbox_xywh"] = np.c_[rng.uniform(0, 600, (n, 2)), rng.uniform(10, 60, (n, 2)), np.ones(n)]
    d["face_bbox_xywh"] = np.c_[rng.uniform(0, 600, (n, 2)), rng.uniform(10, 60, (n, 2)),
                                (np.arange(n) % 3 != 0).astype(float)]
    if meta:
        d["meta"] = {"height": [H] * n, "width": [W] * n, "gender": ["male"] * n}
    mask = np.ones(N_KPS)
    mask[list(MASKED)] = 0
    ij = 1000.0 * np.arange(n)[:, None] + np.arange(N_KPS)[None, :]
    for key in kps3d + kps2d:
        dim = 4 if key.startswith("keypoints3d") else 3
        a = rng.uniform(-1, 1, (n, N_KPS, dim)).astype(np.float32)
        a[:, :, 0] = KEY_OFFSET[key] + ij
        a[:, :, -1] = rng.uniform(0.2, 1.0, (n, N_KPS))
        a[:, list(MASKED)] = 777.0
        d[key] = a
        if masks:
            d[f"{key}_mask"] = mask.copy()
    if source is not None:
        d[source] = {"global_orient": rng.normal(size=(n, 3)), "body_pose": rng.normal(size=(n, 21, 3)),
                     "betas": rng.normal(size=(n, 10)), "transl": rng.normal(size=(n, 3)),
                     "left_hand_pose": rng.normal(size=(n, 15, 3)), "right_hand_pose": rng.normal(size=(n, 15, 3)),
                     "jaw_pose": rng.normal(size=(n, 3)), "expression": rng.normal(size=(n, 10)),
                     "leye_pose": np.zeros((n, 3)), "reye_pose": np.zeros((n, 3))}
    return d


def compress(d: dict) -> dict:
    """What mmhuman3d's compress_keypoints_by_mask stores: only the mask==1 columns of masked keypoint arrays."""
    out = dict(d)
    for key in list(d):
        if key.startswith("keypoints") and not key.endswith("_mask") and f"{key}_mask" in d:
            out[key] = d[key][:, d[f"{key}_mask"] == 1]
    out["__keypoints_compressed__"] = np.array(True)
    return out


def save(path: Path, d: dict) -> Path:
    np.savez(path, **d)
    return path


def load(path: Path, **kw) -> hd.HumanDataRecords:
    kw.setdefault("name", "Test")
    kw.setdefault("img_dir", path.parent / "images")
    return hd.load_humandata(path, **kw)


def entries_equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, dict):
            if not entries_equal(x, y):
                return False
        elif isinstance(x, np.ndarray):
            if not (isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y)):
                return False
        elif x != y:
            return False
    return True


# ----------------------------------------------------------------------------------------------------------------
# entries
def test_entry_schema_and_values(tmp_path):
    d = make_humandata(6)
    rec = load(save(tmp_path / "a.npz", d))
    assert len(rec) == 6 and rec.skipped == {}
    kp2, kp3, mask = d["keypoints2d_smplx"], d["keypoints3d_smplx"], d["keypoints3d_smplx_mask"]
    for i in range(6):
        e = rec.entry(i)
        assert tuple(e) == hd.ENTRY_KEYS
        assert e["img_path"] == os.path.join(str(tmp_path / "images"), d["image_path"][i])
        assert e["img_shape"] == (H, W) and all(type(v) is int for v in e["img_shape"])
        assert e["dataset"] == "Test" and e["index"] == i and e["camera"] == {}
        # body box: the reference process_bbox with the HumanData ratio bbox_ratio * 0.833
        ref = process_bbox(d["bbox_xywh"][i, :4], W, H, aspect_ratio=0.75, ratio=1.2 * 0.833)
        assert e["bbox"].dtype == np.float32 and np.array_equal(e["bbox"], ref)
        # hand / face boxes: processed with ratio 1.2 then xyxy; absent when confidence is 0
        for part, key in (("lhand", "lhand_bbox_xywh"), ("rhand", "rhand_bbox_xywh"), ("face", "face_bbox_xywh")):
            raw = d[key][i]
            if raw[4] > 0:
                b = process_bbox(raw[:4], W, H, aspect_ratio=0.75, ratio=1.2)
                np.testing.assert_array_equal(e[f"{part}_bbox"], np.r_[b[:2], b[:2] + b[2:]].astype(np.float32))
                assert e[f"{part}_bbox"].dtype == np.float32 and e[f"{part}_bbox"].shape == (4,)
            else:
                assert e[f"{part}_bbox"] is None
        # keypoints: named joints read back from the encoded x; masked ones zero
        assert e["joint_img"].shape == (137, 3) and e["joint_img"].dtype == np.float32
        assert e["joint_cam"].shape == (137, 3) and e["joint_cam"].dtype == np.float32
        for j137, layer in NAMED_PAIRS:
            if layer in MASKED:
                assert not e["joint_img"][j137].any() and not e["joint_cam"][j137].any()
                assert e["joint_valid"][j137, 0] == 0
            else:
                assert e["joint_img"][j137, 0] == KEY_OFFSET["keypoints2d_smplx"] + 1000 * i + layer
                assert e["joint_img"][j137, 1] == kp2[i, layer, 1] and e["joint_img"][j137, 2] == kp2[i, layer, 2]
                np.testing.assert_array_equal(e["joint_cam"][j137], kp3[i, layer, :3])
                assert e["joint_valid"][j137, 0] == 1
        assert e["joint_valid"].shape == (137, 1) and e["joint_valid"].dtype == np.float32
        assert e["joint_valid"].sum() == 137 - 2 * 1  # layer 60 and 100 are each used once in the 137 set
        assert mask[60] == 0 and e["joint_valid"][14, 0] == 0  # L_Big_toe
        # parameters: renamed, flattened, float32
        p, s = e["smplx_param"], d["smplx"]
        assert set(p) == {*hd.SMPLX_PARAM_DIMS, "lhand_valid", "rhand_valid", "face_valid", "gender"}
        for name, src in (("root_pose", "global_orient"), ("body_pose", "body_pose"), ("shape", "betas"),
                          ("trans", "transl"), ("lhand_pose", "left_hand_pose"), ("rhand_pose", "right_hand_pose"),
                          ("jaw_pose", "jaw_pose"), ("expr", "expression")):
            assert p[name].dtype == np.float32 and p[name].shape == (hd.SMPLX_PARAM_DIMS[name],)
            np.testing.assert_array_equal(p[name], s[src][i].reshape(-1).astype(np.float32))
        assert p["lhand_valid"] is True and p["rhand_valid"] is True and p["face_valid"] is True
        assert p["gender"] == "neutral"  # the original reads gender from the parameter dict only, not from meta
    # entries are independent copies
    e = rec.entry(0)
    e["joint_img"][:] = -1
    e["smplx_param"]["body_pose"][:] = -1
    assert rec.entry(0)["joint_img"][0, 0] != -1 and rec.entry(0)["smplx_param"]["body_pose"][0] != -1
    assert entries_equal(rec.entry(-1), rec.entry(5)) and entries_equal(rec[2], rec.entry(2))
    with pytest.raises(IndexError):
        rec.entry(6)


def test_catalog_camera_and_image_size(tmp_path):
    d = make_humandata(3, meta=False)
    rec = load(save(tmp_path / "gta.npz", d), name="GTA_Human2")
    e = rec.entry(1)
    assert e["img_shape"] == (1080, 1920)  # catalog size, no meta
    np.testing.assert_array_equal(e["camera"]["focal"], np.float32([1158.0337, 1158.0337]))
    np.testing.assert_array_equal(e["camera"]["princpt"], np.float32([960, 540]))
    assert e["camera"]["focal"].dtype == np.float32 and e["dataset"] == "GTA_Human2"
    ref = process_bbox(d["bbox_xywh"][1, :4], 1920, 1080, aspect_ratio=0.75, ratio=1.2 * 0.833)
    np.testing.assert_array_equal(e["bbox"], ref)


def test_process_bboxes_matches_reference():
    rng = np.random.default_rng(3)
    boxes = np.c_[rng.uniform(-200, 900, (400, 2)), rng.uniform(-20, 500, (400, 2))]
    boxes[:5] = [[10, 10, 0, 50], [10, 10, 50, 0], [700, 10, 50, 50], [10, 500, 50, 50], [np.nan, 0, 10, 10]]
    for ratio in (0.9996, 1.2):
        out, valid = hd.process_bboxes(boxes, 640, 480, 0.75, ratio)
        for b, o, v in zip(boxes, out, valid):
            ref = process_bbox(b, 640, 480, aspect_ratio=0.75, ratio=ratio) if np.isfinite(b).all() else None
            assert v == (ref is not None)
            if ref is not None:
                np.testing.assert_array_equal(o, ref)
            else:
                assert np.isnan(o).all()
    assert not valid[:5].any() and valid.sum() > 100


def test_compressed_and_uncompressed_give_identical_entries(tmp_path):
    d = make_humandata(7, seed=1, kps3d=("keypoints3d_smplx",), kps2d=("keypoints2d_smplx", "keypoints2d_original"))
    c = compress(d)
    assert c["keypoints2d_smplx"].shape == (7, N_KPS - len(MASKED), 3)
    plain = load(save(tmp_path / "plain.npz", d))
    np.savez_compressed(tmp_path / "packed.npz", **c)  # deflated members, as many released files
    packed = load(tmp_path / "packed.npz")
    assert len(plain) == len(packed) == 7
    for i in range(7):
        assert entries_equal(plain.entry(i), packed.entry(i))
    assert packed.stats()["keypoints"]["compressed"] is True
    # the standalone decompression puts the kept columns back in place, zeros elsewhere
    full = decompress_keypoints(c["keypoints3d_smplx"], d["keypoints3d_smplx_mask"])
    expect = d["keypoints3d_smplx"].copy()
    expect[:, list(MASKED)] = 0
    np.testing.assert_array_equal(full, expect)


def test_streamed_reading_in_small_chunks(tmp_path, monkeypatch):
    d = make_humandata(23, seed=2)
    np.savez_compressed(tmp_path / "z.npz", **compress(d))
    save(tmp_path / "u.npz", d)
    ref = {name: load(tmp_path / name, sample_interval=4) for name in ("z.npz", "u.npz")}
    monkeypatch.setattr(npz_reader, "_CHUNK_BYTES", 5200)  # 2-3 keypoint rows per chunk: many chunk boundaries
    for name, expect in ref.items():
        rec = load(tmp_path / name, sample_interval=4)
        assert [e["index"] for e in map(rec.entry, range(len(rec)))] == [0, 4, 8, 12, 16, 20]
        for i in range(len(rec)):
            assert entries_equal(rec.entry(i), expect.entry(i))
        assert rec.entry(5)["joint_cam"][0, 0] == KEY_OFFSET["keypoints3d_smplx"] + 20000


@pytest.mark.parametrize("present,chosen", [
    (("keypoints3d_cam", "keypoints3d", "keypoints3d_smplx", "keypoints3d_original"), "keypoints3d_cam"),
    (("keypoints3d", "keypoints3d_smplx", "keypoints3d_smpl"), "keypoints3d"),
    (("keypoints3d_smpl", "keypoints3d_smplx", "keypoints3d_original"), "keypoints3d_smplx"),
    (("keypoints3d_original", "keypoints3d_smpl"), "keypoints3d_smpl"),
    (("keypoints2d", "keypoints2d_smplx", "keypoints2d_original"), "keypoints2d"),
    (("keypoints2d_original", "keypoints2d_smplx"), "keypoints2d_smplx"),
    (("keypoints2d_original", "keypoints2d_smpl"), "keypoints2d_smpl"),
])
def test_keypoint_key_priorities(tmp_path, present, chosen):
    is3d = chosen.startswith("keypoints3d")
    d = make_humandata(2, kps3d=present if is3d else ("keypoints3d_smplx",),
                       kps2d=("keypoints2d_smplx",) if is3d else present)
    e = load(save(tmp_path / "p.npz", d)).entry(1)
    got = e["joint_cam"][0, 0] if is3d else e["joint_img"][0, 0]
    assert got == KEY_OFFSET[chosen] + 1000 * 1 + 0


def test_no_3d_keypoints_gives_none(tmp_path):
    d = make_humandata(3, kps3d=())
    rec = load(save(tmp_path / "p.npz", d))
    assert rec.entry(0)["joint_cam"] is None
    assert rec.stats()["keypoints"]["3d"] is None and rec.stats()["keypoints"]["mask"] == "keypoints2d_smplx_mask"


def test_masks(tmp_path):
    d = make_humandata(2)
    m3, m2 = np.ones(N_KPS), np.ones(N_KPS)
    m3[[20, 21]] = 0  # L_Wrist (137: 12), R_Wrist (13)
    m2[[16, 17]] = 0  # L_Shoulder (8), R_Shoulder (9)

    def valid(**keys):
        dd = {k: v for k, v in d.items() if not k.endswith("_mask")}
        dd.update(keys)
        return load(save(tmp_path / "m.npz", dd)).entry(0)["joint_valid"][:, 0]

    # own mask of the chosen 3D key wins over everything; then the generic 3D mask; then the 2D masks
    v = valid(keypoints3d_smplx_mask=m3, keypoints3d_mask=m2, keypoints2d_smplx_mask=m2)
    assert v[12] == v[13] == 0 and v[8] == v[9] == 1
    v = valid(keypoints3d_mask=m3, keypoints2d_smplx_mask=m2)
    assert v[12] == v[13] == 0 and v[8] == v[9] == 1
    v = valid(keypoints2d_smplx_mask=m2)
    assert v[8] == v[9] == 0 and v[12] == v[13] == 1
    v = valid(keypoints2d_mask=m2)
    assert v[8] == v[9] == 0 and v[12] == v[13] == 1
    v = valid()  # no mask at all: every keypoint valid (the original failed here)
    assert v.sum() == 137
    # without its own mask an uncompressed array is kept as is (no zeroing)
    e = load(save(tmp_path / "m.npz", {k: v for k, v in d.items() if not k.endswith("_mask")})).entry(0)
    assert e["joint_img"][14, 0] == 777.0


def test_eyeball_mapping(tmp_path):
    d = make_humandata(2)
    path = save(tmp_path / "e.npz", d)
    fixed = load(path).entry(1)["joint_img"][:, 0] - KEY_OFFSET["keypoints2d_smplx"] - 1000
    original = load(path, quirks={"humandata_eye_swap"}).entry(1)["joint_img"][:, 0] - KEY_OFFSET[
        "keypoints2d_smplx"] - 1000
    assert (fixed[67], fixed[68]) == (57, 56)  # Face_3 = left-eye vertex, Face_4 = right-eye vertex, as the model
    assert (original[67], original[68]) == (56, 57)  # the original HumanData mapping
    other = np.r_[0:67, 69:137]
    np.testing.assert_array_equal(fixed[other], original[other])


# ----------------------------------------------------------------------------------------------------------------
# parametric fits
def test_smpl_and_smplh_sources(tmp_path):
    d = make_humandata(3, source=None)
    rng = np.random.default_rng(5)
    smpl = {"global_orient": rng.normal(size=(3, 3)), "body_pose": rng.normal(size=(3, 23, 3)),
            "betas": rng.normal(size=(3, 10)), "transl": rng.normal(size=(3, 3))}
    p = load(save(tmp_path / "smpl.npz", {**d, "smpl": smpl})).entry(2)["smplx_param"]
    np.testing.assert_array_equal(p["body_pose"], smpl["body_pose"][2, :21].reshape(-1).astype(np.float32))
    np.testing.assert_array_equal(p["root_pose"], smpl["global_orient"][2].astype(np.float32))
    np.testing.assert_array_equal(p["trans"], smpl["transl"][2].astype(np.float32))
    assert not p["shape"].any() and not p["lhand_pose"].any() and not p["expr"].any() and not p["jaw_pose"].any()
    assert (p["lhand_valid"], p["rhand_valid"], p["face_valid"]) == (False, False, False)

    smplh = {"global_orient": rng.normal(size=(3, 3)), "body_pose": rng.normal(size=(3, 63)),
             "betas": rng.normal(size=(3, 16)), "left_hand_pose": rng.normal(size=(3, 45)),
             "right_hand_pose": rng.normal(size=(3, 15, 3))}
    p = load(save(tmp_path / "smplh.npz", {**d, "smplh": smplh})).entry(0)["smplx_param"]
    assert not p["shape"].any() and not p["trans"].any()  # betas dropped, transl absent -> zeros
    np.testing.assert_array_equal(p["rhand_pose"], smplh["right_hand_pose"][0].reshape(-1).astype(np.float32))
    assert (p["lhand_valid"], p["rhand_valid"], p["face_valid"]) == (True, True, False)
    # smplx is preferred over smpl when both are present
    both = {**d, "smplx": make_humandata(3)["smplx"], "smpl": smpl}
    p = load(save(tmp_path / "both.npz", both)).entry(0)["smplx_param"]
    np.testing.assert_array_equal(p["shape"], both["smplx"]["betas"][0].astype(np.float32))


def test_betas_neutral_gender_and_partial_fits(tmp_path):
    d = make_humandata(4)
    s = dict(d["smplx"])
    s["gender"] = np.array(["male", "f", "Female", "n"])
    p = [load(save(tmp_path / "g.npz", {**d, "smplx": s})).entry(i)["smplx_param"]["gender"] for i in range(4)]
    assert p == ["male", "female", "female", "neutral"]
    s["betas_neutral"] = np.random.default_rng(1).normal(size=(4, 10))
    p = load(save(tmp_path / "g.npz", {**d, "smplx": s})).entry(1)["smplx_param"]
    np.testing.assert_array_equal(p["shape"], s["betas_neutral"][1].astype(np.float32))
    assert p["gender"] == "neutral"  # neutral betas belong to the neutral model
    # no jaw pose -> face invalid even with an expression; longer betas truncated to the first 10
    s = {k: v for k, v in d["smplx"].items() if k != "jaw_pose"}
    s["betas"] = np.random.default_rng(2).normal(size=(4, 16))
    p = load(save(tmp_path / "g.npz", {**d, "smplx": s})).entry(3)["smplx_param"]
    assert p["face_valid"] is False and not p["jaw_pose"].any()
    np.testing.assert_array_equal(p["shape"], s["betas"][3, :10].astype(np.float32))
    s["gender"] = np.array(["robot"] * 4)
    with pytest.raises(InputError, match="robot"):
        load(save(tmp_path / "g.npz", {**d, "smplx": s}))


def test_talkshow_keeps_right_hand(tmp_path):
    d = make_humandata(3)
    s = dict(d["smplx"])
    s["expression"] = np.random.default_rng(3).normal(size=(3, 100))
    p = load(save(tmp_path / "t.npz", {**d, "smplx": s}), name="Talkshow").entry(2)["smplx_param"]
    np.testing.assert_array_equal(p["expr"], s["expression"][2, :10].astype(np.float32))
    np.testing.assert_array_equal(p["rhand_pose"], s["right_hand_pose"][2].reshape(-1).astype(np.float32))
    np.testing.assert_array_equal(p["lhand_pose"], s["left_hand_pose"][2].reshape(-1).astype(np.float32))
    assert not np.array_equal(p["rhand_pose"], p["lhand_pose"])  # the original copied the left hand here


def test_bedlam_subtracts_hand_means(tmp_path):
    d = make_humandata(3)
    s = dict(d["smplx"])
    s["betas"] = np.random.default_rng(4).normal(size=(3, 11))  # BEDLAM ships 11 betas
    path = save(tmp_path / "bedlam.npz", {**d, "smplx": s})
    p = load(path, name="BEDLAM").entry(1)["smplx_param"]
    # built-in means: SMPL-X hands_meanr starts (0.1117, -0.0429, 0.4164); the left mean mirrors it as (x, -y, -z)
    mean_r = s["right_hand_pose"][1].reshape(-1) - p["rhand_pose"]
    mean_l = s["left_hand_pose"][1].reshape(-1) - p["lhand_pose"]
    np.testing.assert_allclose(mean_r[:3], [0.11167871, -0.04289218, 0.41644183], atol=1e-6)
    np.testing.assert_allclose(mean_l[:3], [0.11167871, 0.04289218, -0.41644183], atol=1e-6)
    np.testing.assert_allclose(mean_l.reshape(15, 3), mean_r.reshape(15, 3) * [1, -1, -1], atol=1e-6)
    np.testing.assert_array_equal(p["shape"], s["betas"][1, :10].astype(np.float32))
    # with a body-model folder the means come from the SMPL-X model file
    rng = np.random.default_rng(9)
    ml, mr = rng.normal(size=45), rng.normal(size=45)
    (tmp_path / "models" / "smplx").mkdir(parents=True)
    np.savez(tmp_path / "models" / "smplx" / "SMPLX_NEUTRAL.npz", hands_meanl=ml, hands_meanr=mr)
    p = load(path, name="BEDLAM", body_model_dir=tmp_path / "models").entry(2)["smplx_param"]
    np.testing.assert_allclose(p["lhand_pose"], s["left_hand_pose"][2].reshape(-1) - ml, atol=1e-6)
    np.testing.assert_allclose(p["rhand_pose"], s["right_hand_pose"][2].reshape(-1) - mr, atol=1e-6)
    # other datasets are left alone
    p = load(path, name="RICH").entry(2)["smplx_param"]
    np.testing.assert_array_equal(p["lhand_pose"], s["left_hand_pose"][2].reshape(-1).astype(np.float32))


# ----------------------------------------------------------------------------------------------------------------
# sampling and skipping
@pytest.mark.parametrize("split,interval", [("train", 3), ("test", 4), ("train", 1)])
def test_sample_interval(tmp_path, split, interval):
    rec = load(save(tmp_path / "s.npz", make_humandata(10)), split=split, sample_interval=interval)
    assert [rec.entry(i)["index"] for i in range(len(rec))] == list(range(0, 10, interval))
    assert rec.stats()["rows_sampled"] == len(rec) and rec.split == split


def test_skipped_rows_counted_by_reason(tmp_path):
    d = make_humandata(10)
    d["meta"]["height"] = [H] * 9 + [0]  # row 9: no usable image size
    d["bbox_xywh"][1, 2] = 0  # zero width
    d["bbox_xywh"][2, :2] = (5000, 5000)  # entirely outside the image
    d["keypoints3d_smplx"][3, 30, 1] = np.nan  # valid keypoint
    d["keypoints2d_smplx"][4, 0, 0] = np.inf
    d["keypoints2d_smplx"][5, 60, 0] = np.nan  # masked keypoint: zeroed, row kept
    d["smplx"]["body_pose"][6, 4, 2] = np.nan
    rec = load(save(tmp_path / "k.npz", d))
    assert rec.skipped == {"missing_img_shape": 1, "invalid_bbox": 2, "nonfinite_keypoints3d": 1,
                           "nonfinite_keypoints2d": 1, "nonfinite_smplx": 1}
    assert [rec.entry(i)["index"] for i in range(len(rec))] == [0, 5, 7, 8]
    assert np.isfinite(rec.entry(1)["joint_img"]).all()
    # every row lacks an image size when there is neither meta nor a catalog size
    d = make_humandata(4, meta=False)
    rec = load(save(tmp_path / "k.npz", d))
    assert len(rec) == 0 and rec.skipped == {"missing_img_shape": 4}


@pytest.mark.parametrize("key", ["image_path", "bbox_xywh", "__keypoints_compressed__", "smplx"])
def test_missing_key_names_file_and_key(tmp_path, key):
    d = make_humandata(3)
    del d[key]
    path = save(tmp_path / "missing.npz", d)
    with pytest.raises(InputError) as err:
        load(path)
    assert str(path) in str(err.value) and key in str(err.value)


def test_parameters_optional_and_other_errors(tmp_path):
    d = make_humandata(3, source=None)
    rec = load(save(tmp_path / "nofit.npz", d), params_required=False)
    assert len(rec) == 3 and rec.entry(0)["smplx_param"] is None
    d = make_humandata(3)
    unmaskable = {k: v for k, v in compress(d).items() if k != "keypoints2d_smplx_mask"}
    with pytest.raises(InputError, match="keypoints2d_smplx_mask"):  # compressed without the mask to undo it
        load(save(tmp_path / "bad.npz", unmaskable))
    with pytest.raises(InputError, match="PCA hand poses"):
        s = {**d["smplx"], "left_hand_pose": np.zeros((3, 12))}
        load(save(tmp_path / "bad.npz", {**d, "smplx": s}))
    with pytest.raises(InputError, match="bbox_xywh"):
        load(save(tmp_path / "bad.npz", {**d, "bbox_xywh": d["bbox_xywh"][:2]}))
    with pytest.raises(ConfigError, match="unknown HumanData quirk"):
        load(save(tmp_path / "ok.npz", d), quirks={"bedlamm"})


def test_corrupt_and_missing_files(tmp_path):
    path = save(tmp_path / "good.npz", make_humandata(5))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        load(truncated)
    assert str(truncated) in str(err.value) and "corrupt or truncated" in str(err.value)
    with pytest.raises(InputError, match="not found"):
        load(tmp_path / "absent.npz")
    # damaged data inside a member (the zip directory intact): the error names the file and the key
    np.savez_compressed(tmp_path / "z.npz", **make_humandata(40))
    with zipfile.ZipFile(tmp_path / "z.npz") as zf:
        info = zf.getinfo("keypoints2d_smplx.npy")
    data = bytearray((tmp_path / "z.npz").read_bytes())
    start = info.header_offset + 30 + len(info.filename)
    data[start + info.compress_size // 2: start + info.compress_size // 2 + 64] = bytes(64)
    (tmp_path / "damaged.npz").write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        load(tmp_path / "damaged.npz")
    assert str(tmp_path / "damaged.npz") in str(err.value) and "keypoints2d_smplx" in str(err.value)


# ----------------------------------------------------------------------------------------------------------------
# cache
def test_cache_round_trip_and_invalidation(tmp_path, monkeypatch):
    annot = save(tmp_path / "c.npz", make_humandata(6))
    cache_dir = tmp_path / "cache"
    kw = dict(name="Test", img_dir=tmp_path / "images", cache_dir=cache_dir)
    built = hd_cache.load_or_build(annot, **kw)
    stores = list(cache_dir.glob("*.cols"))
    assert len(stores) == 1 and stores[0].name.startswith("Test_train_c_")
    calls = []
    real = hd_cache.scan_humandata
    monkeypatch.setattr(hd_cache, "scan_humandata", lambda *a, **k: calls.append(1) or real(*a, **k))
    cached = hd_cache.load_or_build(annot, **kw)
    assert calls == [] and len(cached) == len(built) == 6
    direct = hd_cache.load_or_build(annot, **kw, use_cache=False)
    for i in range(6):
        assert entries_equal(cached.entry(i), built.entry(i)) and entries_equal(cached.entry(i), direct.entry(i))
    assert cached.stats() == built.stats() == direct.stats()
    # plain .npy columns, opened without pickle
    assert np.load(next(stores[0].glob("*_joint_img.npy")), allow_pickle=False).shape == (6, 137, 3)
    # a new image root re-roots the paths without a rebuild
    moved = hd_cache.load_or_build(annot, **{**kw, "img_dir": tmp_path / "elsewhere"})
    assert calls == [] and moved.entry(0)["img_path"].startswith(str(tmp_path / "elsewhere"))
    # a different bbox_ratio is a different cache
    other = hd_cache.load_or_build(annot, **kw, bbox_ratio=1.5)
    assert calls == [1] and not np.array_equal(other.entry(0)["bbox"], built.entry(0)["bbox"])
    assert len(list(cache_dir.glob("*.cols"))) == 2
    # a changed annotation file invalidates its cache (and replaces it)
    d2 = make_humandata(6, seed=7)
    save(annot, d2)
    os.utime(annot, ns=(annot.stat().st_atime_ns, annot.stat().st_mtime_ns + 10**9))
    fresh = hd_cache.load_or_build(annot, **kw)
    assert calls == [1, 1] and len(list(cache_dir.glob("*.cols"))) == 2
    ref = process_bbox(d2["bbox_xywh"][0, :4], W, H, aspect_ratio=0.75, ratio=1.2 * 0.833)
    np.testing.assert_array_equal(fresh.entry(0)["bbox"], ref)
    # a damaged cache is rebuilt
    stores = sorted(cache_dir.glob("*.cols"), key=lambda p: (p / "COMPLETE").stat().st_mtime_ns)
    column = next(stores[-1].glob("*_joint_img.npy"))
    (tmp_path / "cut.npy").write_bytes(column.read_bytes()[:100])
    os.replace(tmp_path / "cut.npy", column)  # a new file: truncating the mapped one in place would crash `fresh`
    again = hd_cache.load_or_build(annot, **kw)
    assert calls == [1, 1, 1] and entries_equal(again.entry(3), fresh.entry(3))
    assert hd_cache.load_or_build(annot, **kw) is not None and calls == [1, 1, 1]


def test_load_dataset_concatenates_files(tmp_path):
    spec = get_spec("MPI_INF_3DHP")
    root = tmp_path / "dataset"
    (root / "MPI_INF_3DHP").mkdir(parents=True)
    (root / "preprocessed_datasets").mkdir()
    for k, rel in enumerate(spec.files["train"]):
        save(root / rel, make_humandata(7 + k, seed=k))
    ds = hd_cache.load_dataset("MPI_INF_3DHP", data_root=root)  # catalog interval 5: rows 0, 5 of each file
    assert len(ds) == 6 and ds.skipped == {}
    assert [ds.entry(i)["index"] for i in range(6)] == [0, 5, 0, 5, 0, 5]
    assert ds.entry(2)["img_path"] == str(root / "MPI_INF_3DHP" / "seq_0/frame_00000.jpg")
    assert ds.entry(5)["joint_img"][0, 0] == KEY_OFFSET["keypoints2d_smplx"] + 5000  # third file, row 5
    assert len(list((root / "cache").glob("MPI_INF_3DHP_train_*.cols"))) == 3
    with pytest.raises(ConfigError, match="own loader"):
        hd_cache.load_dataset("MSCOCO", data_root=root)


# ----------------------------------------------------------------------------------------------------------------
# catalog
def _fake_tree(root: Path) -> None:
    for spec in CATALOG.values():
        resolve_img_dir(spec, root).mkdir(parents=True, exist_ok=True)
        if spec.scene_dir:
            (root / spec.scene_dir / "scene_a").mkdir(parents=True, exist_ok=True)
        for files in spec.files.values():
            for rel in files:
                p = root / rel.format(scene="scene_a")
                p.parent.mkdir(parents=True, exist_ok=True)
                p.touch()


def test_catalog_matches_the_original_config():
    assert len(HUMANDATA_NAMES) == 26
    for name in ("MSCOCO", "AGORA", "UBody", "PW3D", "MPII", "Human36M", "EHF"):
        assert CATALOG[name].loader == "own"
    intervals = {n: CATALOG[n].interval("train") for n in HUMANDATA_NAMES if CATALOG[n].interval("train") != 1}
    assert intervals == {"BEDLAM": 5, "EgoBody_Kinect": 10, "MPI_INF_3DHP": 5, "InstaVariety": 10,
                         "RenBody_HiRes": 5, "ARCTIC": 10, "FIT3D": 10, "Talkshow": 10}
    assert (CATALOG["UBody"].interval("train"), CATALOG["UBody"].interval("test")) == (10, 100)
    assert CATALOG["ARCTIC"].interval("test") == CATALOG["RenBody_HiRes"].interval("test") == 10
    assert CATALOG["GTA_Human2"].camera() == {"focal": (1158.0337, 1158.0337), "princpt": (960.0, 540.0)}
    assert CATALOG["SynBody"].camera() == {"focal": (540.0, 540.0), "princpt": (640.0, 360.0)}
    assert sum(bool(CATALOG[n].camera()) for n in HUMANDATA_NAMES) == 2
    assert {n for n in HUMANDATA_NAMES if CATALOG[n].img_dir != n} == {
        "PoseTrack", "CHI3D", "FIT3D", "HumanSC3D", "EgoBody_Egocentric", "EgoBody_Kinect", "RenBody_HiRes"}
    assert CATALOG["PoseTrack"].img_dir == "PoseTrack/data/images" and CATALOG["CHI3D"].img_dir == ""
    assert CATALOG["EgoBody_Kinect"].img_dir == "EgoBody" and CATALOG["RenBody_HiRes"].img_dir == "RenBody"
    sizes = {n: CATALOG[n].img_shape for n in HUMANDATA_NAMES if CATALOG[n].img_shape}
    assert sizes == {"Behave": (1536, 2048), "CHI3D": (900, 900), "FIT3D": (900, 900), "HumanSC3D": (900, 900),
                     "EgoBody_Egocentric": (1080, 1920), "EgoBody_Kinect": (1080, 1920), "GTA_Human2": (1080, 1920),
                     "PROX": (1080, 1920), "SPEC": (1080, 1920), "InstaVariety": (224, 224), "MuCo": (1024, 1024),
                     "SSP3D": (512, 512), "SynBody": (720, 1280)}
    assert {n for n in HUMANDATA_NAMES if CATALOG[n].has_test} == {
        "SPEC", "EgoBody_Egocentric", "EgoBody_Kinect", "Behave", "ARCTIC", "RenBody_HiRes", "RenBody"}
    assert len(CATALOG["FIT3D"].files["train"]) == 6 and len(CATALOG["RenBody"].files["train"]) == 10
    assert CATALOG["ARCTIC"].files["test"] == ("preprocessed_datasets/p1_val.npz",)
    assert CATALOG["BEDLAM"].quirks == {"bedlam"} and CATALOG["Talkshow"].quirks == {"talkshow"}
    assert set(CATALOG["AGORA"].splits) == {"train", "val", "test"} and CATALOG["EHF"].splits == ("test",)


def test_every_catalog_entry_resolves_in_a_fake_tree(tmp_path):
    root = tmp_path / "dataset"
    _fake_tree(root)
    for spec in CATALOG.values():
        for split in spec.splits:
            paths = resolve_files(spec, split, root)
            assert paths and all(p.is_absolute() and p.is_file() and root in p.parents for p in paths)
            if spec.loader == "humandata":
                assert all(p.parent == root / "preprocessed_datasets" and p.suffix == ".npz" for p in paths)
    ubody = resolve_files(CATALOG["UBody"], "train", root)
    assert root / "UBody/annotations/scene_a/smplx_annotation.json" in ubody
    assert resolve_img_dir(CATALOG["CHI3D"], root) == root
    # missing files are all named, with the expected layout
    (root / "preprocessed_datasets/FIT3D_train_230511_1504_2.npz").unlink()
    (root / "preprocessed_datasets/FIT3D_train_230511_1504_5.npz").unlink()
    with pytest.raises(DatasetFilesMissing) as err:
        resolve_files(CATALOG["FIT3D"], "train", root)
    msg = str(err.value)
    assert "FIT3D_train_230511_1504_2.npz" in msg and "FIT3D_train_230511_1504_5.npz" in msg
    assert "_1504_0.npz" not in msg and "preprocessed_datasets" in msg and str(root) in msg
    (root / "EHF/data/EHF.json").unlink()
    with pytest.raises(DatasetFilesMissing, match="EHF/data/EHF.json"):
        resolve_files(CATALOG["EHF"], "test", root)
    with pytest.raises(ConfigError, match="no 'test' split"):
        resolve_files(CATALOG["BEDLAM"], "test", root)


def test_unknown_dataset_name_lists_known_names():
    with pytest.raises(ConfigError) as err:
        get_spec("EgoBody_Kinnect")
    assert "Did you mean EgoBody_Kinect" in str(err.value) and "SynBody" in str(err.value)
    with pytest.raises(ConfigError, match="Did you mean BEDLAM"):
        get_spec("bedlam")


# ----------------------------------------------------------------------------------------------------------------
# validate command
def test_validate_command(tmp_path, capsys):
    d = make_humandata(5)
    d["bbox_xywh"][2, 2:4] = 0
    path = save(tmp_path / "v.npz", d)
    assert humandata_tool.main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "4 usable of 5 sampled rows" in out and "invalid_bbox: 1" in out
    assert "keypoints2d_smplx                  (5, 144, 3) float32" in out and "smplx.body_pose" in out
    assert "valid ratio keypoints3d_smplx" in out and f"{100 * (N_KPS - 3) / N_KPS:.1f}%" in out

    assert humandata_tool.main(["validate", str(path), "--name", "SynBody", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["records"] == 4 and stats["camera"]["focal"] == [540.0, 540.0] and stats["name"] == "SynBody"

    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(path.read_bytes()[:500])
    assert humandata_tool.main(["validate", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(corrupt) in err and err.count("\n") == 1

    empty = save(tmp_path / "empty.npz", make_humandata(3, meta=False))
    assert humandata_tool.main(["validate", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "no usable records" in err and "missing_img_shape 3" in err and err.count("\n") == 1

    assert humandata_tool.main(["validate", str(path), "--name", "MSCOCO"]) == 2
    assert "own loader" in capsys.readouterr().err

    # a file named as in the catalog gets its dataset's settings: SPEC's fixed 1080x1920 image size here
    (tmp_path / "spec").mkdir()
    spec_file = save(tmp_path / "spec" / "spec_test_smpl.npz", make_humandata(3, meta=False))
    assert humandata_tool.main(["validate", str(spec_file), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["name"] == "SPEC" and stats["records"] == 3 and stats["split"] == "train"
