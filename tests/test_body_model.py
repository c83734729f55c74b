"""Body-model layer: the stand-in files, the SMPL-X wrapper over pip smplx, file checks and evaluation assets.

Expected values come from the files themselves (read with numpy/pickle, not through our code) and from
independent computations (linear blend skinning by hand, scipy rotations), so a wrong layer setting
(flat_hand_mean, expression slice, eye poses, ...) fails a test.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from common.body_model import joint_sets as js
from common.errors import BodyModelFilesMissing

# Vertex ids smplx hard-codes for the 21 extra joints 55-75 (smplx.vertex_ids['smplx'], in the layer's order).
EXTRA_IDS = {"nose": 9120, "reye": 9929, "leye": 9448, "rear": 616, "lear": 6, "LBigToe": 5770, "LSmallToe": 5780,
             "LHeel": 8846, "RBigToe": 8463, "RSmallToe": 8474, "RHeel": 8635, "lthumb": 5361, "lindex": 4933,
             "lmiddle": 5058, "lring": 5169, "lpinky": 5286, "rthumb": 8079, "rindex": 7669, "rmiddle": 7794,
             "rring": 7905, "rpinky": 8022}
SMPLX_FILES = ["smplx/SMPLX_NEUTRAL.npz", "smplx/SMPLX_MALE.npz", "smplx/SMPLX_FEMALE.npz", "smplx/SMPLX_to_J14.pkl",
               "smplx/MANO_SMPLX_vertex_ids.pkl", "smplx/SMPL-X__FLAME_vertex_ids.npy"]
SMPL_FILES = ["smpl/SMPL_NEUTRAL.pkl", "smpl/SMPL_MALE.pkl", "smpl/SMPL_FEMALE.pkl"]
PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
           20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38, 21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50,
           21, 52, 53]


@pytest.fixture(scope="module")
def npz(body_model_dir):
    with np.load(body_model_dir / "smplx" / "SMPLX_NEUTRAL.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def layer(body_model_dir):
    from common.body_model import SMPLXLayer

    return SMPLXLayer(body_model_dir)


def _load_pkl(path: Path):
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="latin1")


def _params(batch: int, dtype=torch.float32, **given) -> dict[str, torch.Tensor]:
    dims = {"root_pose": 3, "body_pose": 63, "lhand_pose": 45, "rhand_pose": 45, "jaw_pose": 3, "betas": 10, "expr": 10}
    return {k: given.get(k, torch.zeros(batch, d, dtype=dtype)) for k, d in dims.items()}


def _flat_hands(npz, batch: int = 1) -> dict[str, torch.Tensor]:
    """Hand inputs that cancel the model's mean hand pose (the layer adds it: flat_hand_mean=False)."""
    return {"lhand_pose": -torch.from_numpy(npz["hands_meanl"]).repeat(batch, 1),
            "rhand_pose": -torch.from_numpy(npz["hands_meanr"]).repeat(batch, 1)}


# ----------------------------------------------------------------------------------------------------------------
# The generator
def test_generation_is_deterministic_atomic_and_refuses_to_overwrite(body_model_dir, tmp_path):
    from common.body_model import write_synthetic_body_models

    again = write_synthetic_body_models(tmp_path / "same", seed=0)
    assert sorted(p.relative_to(tmp_path / "same").as_posix() for p in again) == sorted(SMPLX_FILES + SMPL_FILES)
    for p in again:
        rel = p.relative_to(tmp_path / "same")
        assert p.read_bytes() == (body_model_dir / rel).read_bytes(), rel
    other = write_synthetic_body_models(tmp_path / "other", seed=1, smpl=False)
    assert len(other) == len(SMPLX_FILES) and not (tmp_path / "other" / "smpl").exists()
    assert (tmp_path / "other" / SMPLX_FILES[0]).read_bytes() != (body_model_dir / SMPLX_FILES[0]).read_bytes()
    assert not [p for p in (tmp_path / "same").rglob("*") if p.name.endswith(".tmp")]  # temp files renamed away
    before = (tmp_path / "other" / SMPLX_FILES[0]).stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="SMPLX_NEUTRAL.npz"):
        write_synthetic_body_models(tmp_path / "other", seed=2, smpl=False)
    assert (tmp_path / "other" / SMPLX_FILES[0]).stat().st_mtime_ns == before


def test_cli_says_these_are_not_the_real_model(tmp_path, capsys):
    from common.body_model.synthetic import main

    assert main([str(tmp_path), "--no-smpl", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "NOT the real SMPL-X" in out and "SMPLX_NEUTRAL.npz" in out
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*")) == sorted(SMPLX_FILES)
    assert main([str(tmp_path), "--no-smpl"]) == 2  # exists, no --overwrite
    assert "overwrite" in capsys.readouterr().err


def test_files_have_the_official_keys_shapes_and_dtypes(body_model_dir, npz):
    v, j = js.SMPLX_VERTEX_NUM, 55
    shapes = {"v_template": (v, 3), "f": (js.SMPLX_FACE_NUM, 3), "J_regressor": (j, v), "weights": (v, j),
              "kintree_table": (2, j), "posedirs": (v, 3, 9 * (j - 1)), "shapedirs": (v, 3, 400),
              "hands_componentsl": (45, 45), "hands_componentsr": (45, 45), "hands_meanl": (45,), "hands_meanr": (45,),
              "lmk_faces_idx": (51,), "lmk_bary_coords": (51, 3), "dynamic_lmk_faces_idx": (79, 17),
              "dynamic_lmk_bary_coords": (79, 17, 3)}
    assert {k: a.shape for k, a in npz.items()} == shapes
    assert npz["f"].dtype == np.uint32 and npz["kintree_table"].dtype == np.int64
    # row 0: SMPL-X parents with the root's parent stored as uint32(-1), row 1: joint ids
    assert npz["kintree_table"][0, 0] == 2**32 - 1 and list(npz["kintree_table"][0, 1:]) == PARENTS[1:]
    assert list(npz["kintree_table"][1]) == list(range(55))
    # non-zero hand mean, right = left mirrored per joint as (x, -y, -z)
    assert np.abs(npz["hands_meanl"]).max() > 0.1
    np.testing.assert_array_equal(npz["hands_meanr"].reshape(15, 3), npz["hands_meanl"].reshape(15, 3) * (1, -1, -1))
    # betas use components 0-9 and expressions 300-309 (SMPL-X 2020 layout); everything else is zero
    used = np.abs(npz["shapedirs"]).max((0, 1)) > 0
    assert np.flatnonzero(used).tolist() == [*range(10), *range(300, 310)]
    np.testing.assert_allclose(npz["lmk_bary_coords"].sum(1), 1, atol=1e-6)

    j14 = _load_pkl(body_model_dir / "smplx" / "SMPLX_to_J14.pkl")
    assert isinstance(j14, np.ndarray) and j14.shape == (14, v) and j14.dtype == np.float64
    mano = _load_pkl(body_model_dir / "smplx" / "MANO_SMPLX_vertex_ids.pkl")
    assert set(mano) == {"left_hand", "right_hand"}
    assert all(a.shape == (778,) and a.dtype == np.int64 for a in mano.values())
    flame = np.load(body_model_dir / "smplx" / "SMPL-X__FLAME_vertex_ids.npy")
    assert flame.shape == (5023,) and flame.dtype == np.int64
    assert len(set(flame) | set(mano["left_hand"]) | set(mano["right_hand"])) == 5023 + 2 * 778  # disjoint

    smpl = _load_pkl(body_model_dir / "smpl" / "SMPL_NEUTRAL.pkl")
    assert type(smpl["J_regressor"]).__name__ == "csc_matrix" and smpl["J_regressor"].shape == (24, 6890)
    assert {k: np.shape(a) for k, a in smpl.items()} == {
        "v_template": (6890, 3), "f": (13776, 3), "J_regressor": (24, 6890), "weights": (6890, 24),
        "kintree_table": (2, 24), "shapedirs": (6890, 3, 10), "posedirs": (6890, 3, 207), "J": (24, 3)}


def test_mesh_is_a_sane_t_pose(npz):
    v, f = npz["v_template"].astype(np.float64), npz["f"].astype(np.int64)
    assert 1.6 < np.ptp(v[:, 1]) < 1.9 and np.ptp(v[:, 0]) > 1.5  # T-pose: arm span about the height, y up
    joints = npz["J_regressor"].astype(np.float64) @ v
    assert np.linalg.norm(joints[0]) < 0.02  # pelvis at the origin
    assert joints[20, 0] > 0.5 and joints[21, 0] < -0.5 and joints[15, 1] > 0.5  # +x = subject's left
    assert v[EXTRA_IDS["nose"], 2] > joints[15, 2] + 0.08  # +z = front
    # every vertex is used, faces are non-degenerate triangles of nearby vertices, oriented outwards
    assert np.array_equal(np.unique(f), np.arange(len(v)))
    area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1) / 2
    assert area.min() > 1e-8
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    length = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)
    assert np.median(length) < 0.02 and length.max() < 0.5
    # closed up to a few pin-holes: an edge is shared by at most two faces, once in each direction
    _, count = np.unique(np.sort(edges, 1), axis=0, return_counts=True)
    assert count.max() == 2 and (count == 1).sum() < 100
    assert len(np.unique(edges, axis=0)) == len(edges)
    volume = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6
    assert 0.03 < volume < 0.12  # m^3, positive = outward normals
    # skinning weights: rows sum to 1; the regressor rows are convex combinations near the designed joints
    w = npz["weights"]
    assert w.min() >= 0 and np.allclose(w.sum(1), 1, atol=1e-6)
    assert np.allclose(npz["J_regressor"].sum(1), 1, atol=1e-5) and npz["J_regressor"].min() >= 0
    # each face lies within one body part: its three vertices share their dominant joint or its parent
    dominant = w.argmax(1)
    parent = np.asarray(PARENTS)[dominant]
    same = (dominant[f] == dominant[f][:, :1]) | (parent[f] == dominant[f][:, :1]) | (dominant[f] == parent[f][:, :1])
    assert same.all()


def test_special_vertices_sit_on_the_right_body_parts(body_model_dir, npz):
    v = npz["v_template"]
    joints = npz["J_regressor"] @ v
    own = npz["weights"].argmax(1)  # dominant joint
    mano = _load_pkl(body_model_dir / "smplx" / "MANO_SMPLX_vertex_ids.pkl")
    flame = set(np.load(body_model_dir / "smplx" / "SMPL-X__FLAME_vertex_ids.npy").tolist())
    for name in ("nose", "reye", "leye", "rear", "lear"):
        assert EXTRA_IDS[name] in flame, name
    assert own[EXTRA_IDS["leye"]] == 23 and own[EXTRA_IDS["reye"]] == 24
    assert v[EXTRA_IDS["lear"], 0] > 0.06 and v[EXTRA_IDS["rear"], 0] < -0.06  # sides of the head
    for side, hand_key, foot, ankle, sign in (("L", "left_hand", 10, 7, 1), ("R", "right_hand", 11, 8, -1)):
        toe, small, heel = v[EXTRA_IDS[f"{side}BigToe"]], v[EXTRA_IDS[f"{side}SmallToe"]], v[EXTRA_IDS[f"{side}Heel"]]
        assert own[EXTRA_IDS[f"{side}BigToe"]] == foot and own[EXTRA_IDS[f"{side}Heel"]] in (ankle, foot)
        assert toe[2] > joints[foot, 2] and heel[2] < joints[ankle, 2] and heel[1] < joints[ankle, 1]
        assert sign * (small[0] - toe[0]) > 0  # small toe is lateral
        tips = [EXTRA_IDS[f"{side.lower()}{f}"] for f in ("thumb", "index", "middle", "ring", "pinky")]
        assert set(tips) <= set(mano[hand_key].tolist())
        last = [39, 27, 30, 36, 33] if side == "L" else [54, 42, 45, 51, 48]  # distal joint of each finger
        assert [own[t] for t in tips] == last
        for t, j in zip(tips, last):  # the tip lies beyond the distal joint, away from its parent
            assert np.dot(v[t] - joints[j], joints[j] - joints[PARENTS[j]]) > 0
    hands = np.concatenate([mano["left_hand"], mano["right_hand"]])
    assert set(own[hands]) == {20, 21, *range(25, 55)}
    assert set(own[sorted(flame)]) == {12, 15, 22, 23, 24}
    # the 51 static landmark faces are on the front of the face
    lmk = v[npz["f"][npz["lmk_faces_idx"]].astype(np.int64)].mean(1)
    assert (lmk[:, 2] > joints[15, 2] + 0.05).all() and (np.abs(lmk[:, 0]) < 0.07).all()


# ----------------------------------------------------------------------------------------------------------------
# The SMPL-X layer
def test_rest_pose_outputs_equal_the_template_and_the_regressor(layer, npz):
    verts, joints = layer(**{**_params(1), **_flat_hands(npz)})
    assert verts.shape == (1, 10475, 3) and joints.shape == (1, 144, 3) and layer.faces.shape == (20908, 3)
    assert layer.faces.dtype == np.int64 and layer.vertex_num == 10475
    np.testing.assert_array_equal(layer.faces, npz["f"].astype(np.int64))
    np.testing.assert_allclose(verts[0].numpy(), npz["v_template"], atol=1e-6)
    np.testing.assert_allclose(joints[0, :55].numpy(), npz["J_regressor"] @ npz["v_template"], atol=1e-5)
    height = np.ptp(verts[0, :, 1].numpy())
    assert 1.6 < height < 1.9


def test_extra_joints_are_the_documented_vertices(layer):
    torch.manual_seed(0)
    p = {k: torch.randn_like(x) * 0.3 for k, x in _params(2).items()}
    verts, joints = layer(**p)
    ids = list(EXTRA_IDS.values())
    torch.testing.assert_close(joints[:, 55:76], verts[:, ids], rtol=0, atol=0)
    assert joints.shape[1] == js.LAYER_JOINT_NUM


def test_hand_pose_is_an_offset_from_the_mean_hand(layer, npz):
    """Would fail with flat_hand_mean=True: then zero input gives the flat template hand."""
    mano_l = np.flatnonzero(npz["weights"][:, [20, *range(25, 40)]].sum(1) > 0.999)
    verts0, _ = layer(**_params(1))
    verts_flat, _ = layer(**{**_params(1), **_flat_hands(npz)})
    template = torch.from_numpy(npz["v_template"])
    assert (verts0[0, mano_l] - template[mano_l]).norm(dim=-1).max() > 0.01  # zero input = curled mean hand
    torch.testing.assert_close(verts_flat[0], template, rtol=0, atol=1e-6)


def test_betas_and_expression_use_the_documented_components(layer, npz):
    """At zero body pose, shape and expression pass straight through skinning: v = T + S[:10] b + S[300:310] e."""
    torch.manual_seed(1)
    betas, expr = torch.randn(1, 10), torch.randn(1, 10)
    base, _ = layer(**{**_params(1), **_flat_hands(npz)})
    verts, _ = layer(**{**_params(1, betas=betas, expr=expr), **_flat_hands(npz)})
    sd = npz["shapedirs"].astype(np.float64)
    expected = np.einsum("vck,k->vc", sd[:, :, :10], betas[0].double().numpy())
    expected += np.einsum("vck,k->vc", sd[:, :, 300:310], expr[0].double().numpy())
    np.testing.assert_allclose((verts - base)[0].numpy(), expected, atol=2e-5)
    # expression alone moves only FLAME (face) vertices, by millimetres
    verts_e, _ = layer(**{**_params(1, expr=expr), **_flat_hands(npz)})
    moved = np.flatnonzero((verts_e - base)[0].norm(dim=-1).numpy() > 1e-7)
    flame = np.load(layer.model_dir / "smplx" / "SMPL-X__FLAME_vertex_ids.npy")
    assert len(moved) > 100 and set(moved) <= set(flame.tolist())
    assert (verts_e - base).abs().max() < 0.05


def test_root_rotation_rotates_everything_about_the_pelvis(layer, npz):
    aa = np.array([0.3, -1.1, 0.5])
    base_v, base_j = layer(**_params(1))
    v, j = layer(**_params(1, root_pose=torch.tensor(aa[None], dtype=torch.float32)))
    pelvis = npz["J_regressor"][0] @ npz["v_template"]
    rot = Rotation.from_rotvec(aa).as_matrix()
    expected_v = (base_v[0].numpy() - pelvis) @ rot.T + pelvis
    np.testing.assert_allclose(v[0].numpy(), expected_v, atol=2e-5)
    # kinematic joints and vertex extras too (the contour landmarks switch faces with the head yaw)
    np.testing.assert_allclose(j[0, :76].numpy(), (base_j[0, :76].numpy() - pelvis) @ rot.T + pelvis, atol=2e-5)


def test_elbow_rotation_matches_hand_written_skinning(layer, npz):
    """Vertices skinned only to the left elbow's subtree turn rigidly about the elbow after its pose blend shape."""
    aa = np.array([0.2, -1.3, 0.4])
    body = torch.zeros(1, 63)
    body[0, 3 * 17:3 * 18] = torch.tensor(aa)  # body_pose holds joints 1-21; joint 18 is entry 17
    v, _ = layer(**{**_params(1, body_pose=body), **_flat_hands(npz)})
    subtree = [18, 20, *range(25, 40)]
    rigid = np.flatnonzero(npz["weights"][:, subtree].sum(1) > 1 - 1e-6)
    assert len(rigid) > 778
    rot = Rotation.from_rotvec(aa).as_matrix()
    elbow = npz["J_regressor"][18].astype(np.float64) @ npz["v_template"]
    feature = (rot - np.eye(3)).reshape(9)  # pose feature of joint 18: columns 9 * 17 ... 9 * 18 of posedirs
    rest = npz["v_template"][rigid] + npz["posedirs"][rigid, :, 9 * 17:9 * 18] @ feature
    np.testing.assert_allclose(v[0, rigid].numpy(), (rest - elbow) @ rot.T + elbow, atol=3e-5)


def test_any_batch_size_dtype_and_translation(layer):
    torch.manual_seed(2)
    p3 = {k: torch.randn_like(x) * 0.2 for k, x in _params(3).items()}
    v3, j3 = layer(**p3)
    v1, j1 = layer(**{k: x[1:2] for k, x in p3.items()})
    torch.testing.assert_close(v3[1:2], v1, atol=1e-6, rtol=0)  # batch rows are independent
    v0, j0 = layer(**_params(0))
    assert v0.shape == (0, 10475, 3) and j0.shape == (0, 144, 3)
    transl = torch.tensor([[0.1, -0.2, 3.0]] * 3)
    vt, jt = layer(**p3, transl=transl)
    torch.testing.assert_close(vt, v3 + transl[:, None], atol=1e-6, rtol=0)
    torch.testing.assert_close(jt, j3 + transl[:, None], atol=1e-6, rtol=0)

    import copy

    layer64 = copy.deepcopy(layer).to(torch.float64)
    v64, j64 = layer64(**{k: x.double() for k, x in p3.items()})
    assert v64.dtype == torch.float64 and j64.dtype == torch.float64
    np.testing.assert_allclose(v64.numpy(), v3.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="body_pose"):
        layer(**{**p3, "body_pose": torch.zeros(3, 21, 3)})


def test_genders_load_and_differ_in_size(body_model_dir):
    from common.body_model import SMPLXLayer

    heights = {}
    for g in ("male", "female"):
        verts, _ = SMPLXLayer(body_model_dir, gender=g)(**_params(1))
        heights[g] = np.ptp(verts[0, :, 1].numpy())
    assert 1.6 < heights["female"] < heights["male"] < 1.9
    with pytest.raises(ValueError, match="gender"):
        SMPLXLayer(body_model_dir, gender="other")


def test_smpl_files_load_with_pip_smplx(body_model_dir):
    import smplx

    for g in ("neutral", "male", "female"):
        model = smplx.create(str(body_model_dir), "smpl", gender=g)
        out = model()
        assert out.vertices.shape == (1, 6890, 3) and out.joints.shape == (1, 45, 3)
    raw = _load_pkl(body_model_dir / "smpl" / "SMPL_NEUTRAL.pkl")
    v = out.vertices[0].detach().numpy()
    scale = 0.96  # the last one loaded is FEMALE
    np.testing.assert_allclose(v, raw["v_template"] * scale, atol=1e-5)
    np.testing.assert_allclose(out.joints[0, :24].detach().numpy(), raw["J_regressor"].toarray() @ v, atol=1e-5)
    smplh_ids = [332, 6260, 2800, 4071, 583, 3216, 3226, 3387, 6617, 6624, 6787,
                 2746, 2319, 2445, 2556, 2673, 6191, 5782, 5905, 6016, 6133]
    np.testing.assert_allclose(out.joints[0, 24:].detach().numpy(), v[smplh_ids], atol=0)
    assert 1.5 < np.ptp(v[:, 1]) < 1.9 and v[2800, 0] > 0 > v[6260, 0]  # left eye on +x


# ----------------------------------------------------------------------------------------------------------------
# File checks and error messages
def test_missing_files_are_each_named_with_what_to_do(tmp_path, body_model_dir):
    from common import paths
    from common.body_model import SMPLXLayer, check_body_model_files

    with pytest.raises(BodyModelFilesMissing) as info:
        check_body_model_files(tmp_path, smpl=True)
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path.resolve()) in msg
    for name in SMPLX_FILES + SMPL_FILES:
        assert f"{name} (missing)" in msg
    for needle in (paths.SMPLX_DOWNLOAD_URL, paths.SMPL_DOWNLOAD_URL, "--body-model-dir", "smplx/",
                   "common/utils/human_model_files", "python -m common.body_model.synthetic"):
        assert needle in msg
    # only what is missing is named; SMPL is not asked for unless smpl=True
    shutil.copytree(body_model_dir / "smplx", tmp_path / "smplx")
    (tmp_path / "smplx" / "SMPLX_to_J14.pkl").unlink()
    (tmp_path / "smplx" / "SMPLX_MALE.npz").unlink()
    with pytest.raises(BodyModelFilesMissing) as info:
        check_body_model_files(tmp_path)
    msg = str(info.value)
    assert "smplx/SMPLX_to_J14.pkl (missing)" in msg and "smplx/SMPLX_MALE.npz (missing)" in msg
    assert "NEUTRAL" not in msg.split(".")[0] and "smpl/" not in msg and paths.SMPL_DOWNLOAD_URL not in msg
    check_body_model_files(tmp_path, only=["smplx/SMPLX_NEUTRAL.npz"])  # what the neutral layer needs is there
    SMPLXLayer(tmp_path)
    with pytest.raises(BodyModelFilesMissing, match="SMPLX_MALE.npz"):
        SMPLXLayer(tmp_path, gender="male")
    assert isinstance(info.value, FileNotFoundError)  # also catchable as the builtin


def test_damaged_files_give_a_clear_message(tmp_path, body_model_dir):
    from common.body_model import SMPLXLayer, check_body_model_files, load_eval_assets

    shutil.copytree(body_model_dir / "smplx", tmp_path / "smplx")
    npz_path = tmp_path / "smplx" / "SMPLX_NEUTRAL.npz"
    data = npz_path.read_bytes()
    npz_path.write_bytes(data[: len(data) // 2])  # truncated: no zip directory
    with pytest.raises(BodyModelFilesMissing, match=r"smplx/SMPLX_NEUTRAL.npz \(unreadable"):
        check_body_model_files(tmp_path)
    with pytest.raises(BodyModelFilesMissing, match="SMPLX_NEUTRAL.npz"):
        SMPLXLayer(tmp_path)
    # damaged inside a member but with an intact directory: caught when loading, same kind of message
    mid = len(data) // 3
    npz_path.write_bytes(data[:mid] + bytes(b ^ 0x5A for b in data[mid:mid + 4096]) + data[mid + 4096:])
    check_body_model_files(tmp_path, only=["smplx/SMPLX_NEUTRAL.npz"])
    with pytest.raises(BodyModelFilesMissing, match=r"SMPLX_NEUTRAL.npz \(unreadable"):
        SMPLXLayer(tmp_path)
    pkl = tmp_path / "smplx" / "MANO_SMPLX_vertex_ids.pkl"
    pkl.write_bytes(pkl.read_bytes()[:-10])
    with pytest.raises(BodyModelFilesMissing, match="MANO_SMPLX_vertex_ids.pkl"):
        load_eval_assets(tmp_path)
    npy = tmp_path / "smplx" / "SMPL-X__FLAME_vertex_ids.npy"
    npy.write_bytes(npy.read_bytes()[:1000])
    with pytest.raises(BodyModelFilesMissing, match=r"SMPL-X__FLAME_vertex_ids.npy \(unreadable"):
        check_body_model_files(tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# Evaluation assets
def test_eval_assets(body_model_dir, npz, monkeypatch):
    from common.body_model import load_eval_assets

    assets = load_eval_assets(body_model_dir)
    assert assets.j14_regressor.shape == (14, 10475) and assets.j14_regressor.dtype == np.float32
    assert assets.j_regressor.shape == (55, 10475) and assets.j_regressor.dtype == np.float32
    assert assets.face_vertex_idx.shape == (5023,) and assets.face_vertex_idx.dtype == np.int64
    assert {k: (a.shape, a.dtype) for k, a in assets.hand_vertex_idx.items()} == {
        "left": ((778,), np.int64), "right": ((778,), np.int64)}
    np.testing.assert_array_equal(assets.j_regressor, npz["J_regressor"])
    np.testing.assert_allclose(assets.j14_regressor, _load_pkl(body_model_dir / "smplx" / "SMPLX_to_J14.pkl"),
                               rtol=1e-6)
    v = npz["v_template"]
    assert (v[assets.hand_vertex_idx["left"], 0] > 0.6).all() and (v[assets.hand_vertex_idx["right"], 0] < -0.6).all()
    assert (v[assets.face_vertex_idx, 1] > 0.4).all()
    # hand regressors: J_regressor rows and one-hot finger-tip rows, order wrist, thumb, index, middle, ring, pinky
    tip_ids = {"left": [5361, 4933, 5058, 5169, 5286], "right": [8079, 7669, 7794, 7905, 8022]}
    for side, wrist in (("left", 20), ("right", 21)):
        tips = tip_ids[side]
        reg = assets.hand_regressors[side]
        assert reg.shape == (21, 10475) and reg.dtype == np.float32
        np.testing.assert_array_equal(reg[0], npz["J_regressor"][wrist])
        for k, tip in enumerate(tips):
            row = reg[4 + 4 * k]
            assert row[tip] == 1 and row.sum() == 1
        joints = reg @ v
        np.testing.assert_allclose(joints[[4, 8, 12, 16, 20]], v[tips], atol=0)
    assert not assets.j_regressor.flags.writeable
    # cached per absolute folder
    monkeypatch.chdir(body_model_dir.parent)
    assert load_eval_assets(body_model_dir.name) is assets
