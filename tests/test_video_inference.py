"""Video inference end to end (main/video_inference.py) on a generated clip of walking stand-in SMPL-X bodies with
known boxes, parameters and silhouettes (tests/video_fixtures.py)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from common.utils import render

pytest.importorskip("av")
pytestmark = pytest.mark.skipif(not render.is_available(), reason="no EGL/OpenGL context to generate the clip")

from common.engine.detector import box_iou, xywh_to_xyxy  # noqa: E402
from common.utils.io import load_obj_vertices  # noqa: E402
from common.utils.video import FrameReader, probe  # noqa: E402
from common.video.network import NetworkStage  # noqa: E402
from common.video.scene import draw_frame, render_people  # noqa: E402
from common.video.schedule import DETECT_CHUNK  # noqa: E402
from main import video_inference as vi  # noqa: E402
from tests.video_fixtures import box_score, make_clip, smplx_vertices, write_clip  # noqa: E402

N_FRAMES, EMPTY, TINY = 12, 6, {2: [[5.0, 5.0, 12.0, 30.0]], 3: [[290.0, 200.0, 14.0, 20.0, 0.9]]}
PARAM_SHAPES = {"global_orient": (1, 3), "body_pose": (21, 3), "left_hand_pose": (15, 3), "right_hand_pose": (15, 3),
                "jaw_pose": (1, 3), "leye_pose": (1, 3), "reye_pose": (1, 3), "betas": (1, 10),
                "expression": (1, 10), "transl": (1, 3)}


@pytest.fixture(scope="module")
def layer(body_model_dir):
    from common.body_model import SMPLXLayer

    return SMPLXLayer(body_model_dir)


@pytest.fixture(scope="module")
def clip(layer):
    """12 frames 320x240 at 12 fps, 3 people (the last one walks out through the right border), nobody in frame 6."""
    return make_clip(layer, num_frames=N_FRAMES, empty_frames=(EMPTY,), exit_right=True)


@pytest.fixture(scope="module")
def clip_files(clip, tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    return write_clip(clip, d / "walk.mp4", d / "boxes.json", TINY)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """Official-format checkpoint of the tiny model, random weights, biased to an upright body in front of the
    camera (small output weights, as common.engine.demo_assets does for the S size)."""
    from common.config import load_config
    from common.engine.checkpoint import network_checkpoint, save_checkpoint
    from common.engine.demo_assets import IDENTITY_6D, UPRIGHT_6D
    from common.nets import SMPLerX

    torch.manual_seed(0)
    m = SMPLerX(load_config("smpler_x_tiny").model)
    m.init_weights()
    with torch.no_grad():
        for lin in (m.body_regressor.root_pose_out[0], m.body_regressor.body_pose_out[0],
                    m.hand_regressor.hand_pose_out[0], m.body_regressor.cam_out[0]):
            lin.weight.mul_(0.05)
        m.body_regressor.root_pose_out[0].bias.copy_(torch.tensor(UPRIGHT_6D))
        m.body_regressor.body_pose_out[0].bias.copy_(torch.tensor(IDENTITY_6D * 21))
        m.body_regressor.cam_out[0].bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    return save_checkpoint({"epoch": 0, "network": network_checkpoint(m)},
                           tmp_path_factory.mktemp("ck") / "tiny.pth.tar")


def run_cli(ckpt: Path, inp: Path, out: Path, body_model_dir: Path, *extra: str) -> int:
    return vi.main(["--ckpt", str(ckpt), "--input", str(inp), "--output", str(out), "--body-model-dir",
                    str(body_model_dir), "--no-progress", "--bbox_thr", "30", *extra])


@pytest.fixture(scope="module")
def full_run(tiny_ckpt, clip_files, body_model_dir, tmp_path_factory):
    """The whole pipeline with every output: multi-person, tracking, boxes, meshes, glb, frames."""
    video, boxes = clip_files
    out = tmp_path_factory.mktemp("run") / "out"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        code = run_cli(tiny_ckpt, video, out, body_model_dir, "--boxes", str(boxes), "--multi_person", "--track",
                       "--show_bbox", "--save_mesh", "--glb", "--save_frames", "--batch-size", "4")
    return code, out, buf.getvalue()


def gt_person_of(meta: dict, clip, frame: int) -> int:
    """Which generated person a meta file describes (its input box equals that person's known box)."""
    for p in clip.people[frame]:
        if np.allclose(meta["bbox_input"], p.box, atol=1e-3):
            return p.person
    raise AssertionError(f"frame {frame}: box {meta['bbox_input']} is nobody's")


def test_outputs_tracks_and_counts(full_run, clip):
    code, out, stdout = full_run
    assert code == 0, stdout
    # the summary counts the empty frame, the two tiny boxes and the person crossing the border
    assert "12 frame(s)" in stdout and "1 frame(s) with nobody" in stdout and "2 box(es) skipped as too small" in stdout
    assert "3 box(es) cut by the frame border" in stdout and "3 track(s)" in stdout
    frames_with_people = [i for i in range(N_FRAMES) if i != EMPTY]
    metas = sorted((out / "meta").glob("*.json"))
    assert len(metas) == 3 * len(frames_with_people)
    ids: dict[int, set[int]] = {}
    for path in metas:
        meta = json.loads(path.read_text())
        frame, k = (int(s) for s in path.stem.split("_"))
        assert meta["frame_index"] == frame and meta["track_id"] == k and meta["time_s"] == pytest.approx(frame / 12)
        person = gt_person_of(meta, clip, frame)
        assert meta["image_size"] == [320, 240] and meta["score"] == pytest.approx(box_score(frame, person))
        ids.setdefault(person, set()).add(k)
        p = np.load(out / "smplx" / f"{path.stem}.npz")
        assert {key: p[key].shape for key in p.files} == PARAM_SHAPES
        assert all(p[key].dtype == np.float32 for key in p.files)
        assert load_obj_vertices(out / "mesh" / f"{path.stem}.obj").shape == (10475, 3)
    # every generated person keeps one id through the whole clip, also across the empty frame; ids are distinct
    assert all(len(v) == 1 for v in ids.values()) and len({min(v) for v in ids.values()}) == 3, ids
    assert sorted(p.name for p in (out / "glb").iterdir()) == [f"{i:06d}.glb" for i in frames_with_people]
    assert sorted(p.name for p in (out / "img").iterdir()) == [f"{i:06d}.jpg" for i in range(N_FRAMES)]
    assert not list(out.rglob("*.tmp*")), "temporary files left behind"


def test_stacked_npz_reproduces_per_frame_files(full_run):
    _, out, _ = full_run
    s = np.load(out / "walk.npz")
    n = len(s["frame_index"])
    assert n == 33 and s["image_size"].tolist() == [320, 240] and float(s["fps"]) == 12.0
    for key, shape in PARAM_SHAPES.items():
        assert s[key].shape == (n, *shape)
    for key, dim in (("bbox", 4), ("bbox_input", 4), ("focal", 2), ("princpt", 2)):
        assert s[key].shape == (n, dim)
    assert np.all(np.diff(s["frame_index"]) >= 0)  # frame order
    for i in range(n):
        stem = f"{s['frame_index'][i]:06d}_{s['track_id'][i]}"
        p = np.load(out / "smplx" / f"{stem}.npz")
        for key in PARAM_SHAPES:
            assert np.array_equal(s[key][i], p[key]), (stem, key)
        meta = json.loads((out / "meta" / f"{stem}.json").read_text())
        for key in ("bbox", "bbox_input", "focal", "princpt"):
            assert s[key][i].tolist() == meta[key], (stem, key)
        assert s["time_s"][i] == meta["time_s"] and s["score"][i] == meta["score"]


def test_overlay_video(full_run, clip_files):
    _, out, _ = full_run
    info = probe(out / "walk_overlay.mp4")
    assert info.num_frames == N_FRAMES and (info.width, info.height) == (320, 240) and info.fps == pytest.approx(12)
    src = [f.rgb.astype(np.int16) for f in FrameReader(clip_files[0])]
    ovl = [f.rgb.astype(np.int16) for f in FrameReader(out / "walk_overlay.mp4")]
    # the empty frame is written unchanged (up to re-encoding)
    assert np.abs(ovl[EMPTY] - src[EMPTY]).mean() < 2.0
    # elsewhere the drawing (meshes, boxes) lies inside the people's processed crop boxes
    for frame in (0, 9):
        changed = np.abs(ovl[frame] - src[frame]).max(-1) > 60
        inside = np.zeros(changed.shape, bool)
        for path in (out / "meta").glob(f"{frame:06d}_*.json"):
            x, y, w, h = json.loads(path.read_text())["bbox"]
            inside[max(int(y), 0): int(y + h) + 1, max(int(x), 0): int(x + w) + 1] = True
        assert changed.sum() > 500 and (changed & inside).sum() / changed.sum() > 0.97


def read_glb(path: Path) -> tuple[dict, bytes]:
    """Independent glTF binary reader: (JSON document, BIN chunk)."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2 and length == len(data)
    jlen, jtype = struct.unpack_from("<I4s", data, 12)
    assert jtype == b"JSON" and jlen % 4 == 0
    doc = json.loads(data[20: 20 + jlen])
    blen, btype = struct.unpack_from("<I4s", data, 20 + jlen)
    assert btype == b"BIN\0" and 28 + jlen + blen == len(data)
    return doc, data[28 + jlen:]


def _glb_meshes(path: Path) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """(document, {node name: POSITION (V, 3) glTF frame}, faces) of a per-frame GLB, read independently."""
    doc, binary = read_glb(path)

    def accessor(i: int) -> np.ndarray:
        a = doc["accessors"][i]
        v = doc["bufferViews"][a["bufferView"]]
        dtype, width = {5126: (np.float32, {"VEC3": 3}.get(a["type"], 1)), 5125: (np.uint32, 1)}[a["componentType"]]
        arr = np.frombuffer(binary, dtype, a["count"] * width, v.get("byteOffset", 0))
        return arr.reshape(-1, 3) if a["type"] == "VEC3" else arr

    meshes, faces = {}, None
    for node in doc["nodes"]:
        if "mesh" in node:
            prim = doc["meshes"][node["mesh"]]["primitives"][0]
            meshes[node["name"]] = accessor(prim["attributes"]["POSITION"])
            a = doc["accessors"][prim["attributes"]["POSITION"]]
            assert np.allclose(a["min"], meshes[node["name"]].min(0)) and np.allclose(a["max"],
                                                                                     meshes[node["name"]].max(0))
            faces = accessor(prim["indices"]).reshape(-1, 3)
    return doc, meshes, faces


def test_glb_and_obj_place_everyone_in_one_scene_camera(full_run, layer):
    """Every person of a frame in one camera: the GLB (read independently) holds the OBJ meshes (the same scene
    frame), each is the SMPL-X mesh of its parameters at the scene translation, and each centroid projects through
    the scene camera onto that person's box, where the crop camera projected it."""
    _, out, _ = full_run
    for frame in (0, 4, 9):
        doc, meshes, faces = _glb_meshes(out / "glb" / f"{frame:06d}.glb")
        assert doc["asset"]["version"] == "2.0" and len(meshes) == 3 and np.array_equal(faces, layer.faces)
        (cam,) = [n for n in doc["nodes"] if "camera" in n]
        persp = doc["cameras"][cam["camera"]]["perspective"]
        F = 240 / 2 / np.tan(persp["yfov"] / 2)  # the scene camera: 320x240, principal point at the centre
        assert F == pytest.approx(320, rel=1e-5) and persp["aspectRatio"] == pytest.approx(320 / 240)
        centres = []
        for name, pos in meshes.items():
            k = name.removeprefix("track_")
            stem = f"{frame:06d}_{k}"
            scene = pos * [1, -1, -1]  # glTF is y-up looking down -z: back to the OpenCV camera frame
            assert np.allclose(scene, load_obj_vertices(out / "mesh" / f"{stem}.obj"), atol=1e-5)
            meta = json.loads((out / "meta" / f"{stem}.json").read_text())
            assert meta["scene"]["focal"] == 320 and meta["scene"]["princpt"] == [160, 120]
            params = {**dict(np.load(out / "smplx" / f"{stem}.npz")), "transl": np.array(meta["scene"]["transl"])}
            assert np.abs(smplx_vertices(layer, params) - scene).max() < 1e-4
            c = scene.mean(0)
            u, v = 320 * c[0] / c[2] + 160, 320 * c[1] / c[2] + 120
            x, y, w, h = meta["bbox_input"]
            assert x <= u <= x + w and y <= v <= y + h, (stem, (u, v), meta["bbox_input"])
            # the same pixel as in the person's own crop camera, at the depth that keeps the apparent size
            own = smplx_vertices(layer, dict(np.load(out / "smplx" / f"{stem}.npz"))).mean(0)
            fx, cx, cy = meta["focal"][0], *meta["princpt"]
            assert (u, v) == pytest.approx((fx * own[0] / own[2] + cx, fx * own[1] / own[2] + cy), abs=1e-3)
            assert c[2] == pytest.approx(own[2] * 320 / fx, rel=1e-5)
            centres.append((u, v))
        gaps = [np.hypot(a[0] - b[0], a[1] - b[1]) for i, a in enumerate(centres) for b in centres[i + 1:]]
        assert min(gaps) > 20, centres  # one crop camera for all (the old bug) gave ~0 px


def silhouette_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_ground_truth_silhouettes_through_the_overlay_path(clip, body_model_dir):
    """GT parameters -> SMPL-X (the pip package, built independently) -> the pipeline's renderer: the silhouettes
    match the clip's, both with the clip's camera and with per-person cameras like the network's (focal / princpt
    from each person's processed box, the mesh expressed in that camera). Catches camera, flip and axis errors."""
    import smplx

    from common.utils.image import process_bbox
    from common.utils.render import MeshRenderer

    model = smplx.create(str(body_model_dir), "smplx", gender="neutral", use_pca=False, use_face_contour=True,
                         flat_hand_mean=False, ext="npz")
    F, C = np.asarray(clip.focal), np.asarray(clip.princpt)

    class Rec:
        def __init__(self, vertices, focal, princpt):
            self.vertices, self.focal, self.princpt = vertices, tuple(focal), tuple(princpt)

    with MeshRenderer(clip.width, clip.height) as renderer:
        for i, people in enumerate(clip.people):
            shared, own = [], []
            for p in people:
                t = {k: torch.from_numpy(v).reshape(1, -1) for k, v in p.params.items()}
                with torch.no_grad():
                    v = model(**t).vertices[0].numpy().astype(np.float64)
                shared.append(Rec(v, F, C))
                box = process_bbox(p.box, clip.width, clip.height, 0.75, 1.25)
                f = np.array([5000 / 192 * box[2], 5000 / 256 * box[3]])
                c = np.array([96 / 192 * box[2] + box[0], 128 / 256 * box[3] + box[1]])
                # the same image points seen through camera (f, c): z' = z f / F, x' = x + (C - c) z / F
                v_own = np.column_stack([v[:, 0] + (C[0] - c[0]) * v[:, 2] / F[0],
                                         v[:, 1] + (C[1] - c[1]) * v[:, 2] / F[1], v[:, 2] * f[0] / F[0]])
                own.append(Rec(v_own, f, c))
            for recs in (shared, own):
                rgb, mask = render_people(renderer, recs, clip.faces)
                if not people:
                    assert not mask.any() and not clip.silhouettes[i].any()
                    continue
                assert silhouette_iou(mask, clip.silhouettes[i]) > 0.9, i
                # the overlay replaces exactly the silhouette's pixels
                frame = np.full((clip.height, clip.width, 3), 7, np.uint8)
                vis = draw_frame(frame, recs, clip.faces, renderer)
                assert silhouette_iou((vis != 7).any(-1), clip.silhouettes[i]) > 0.9


def test_truncated_video_keeps_decodable_frames(tiny_ckpt, clip_files, body_model_dir, tmp_path, capsys):
    video, boxes = clip_files
    data = video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    code = run_cli(tiny_ckpt, cut, tmp_path / "out", body_model_dir, "--boxes", str(boxes), "--multi_person")
    stdout = capsys.readouterr().out
    assert code == 0 and "INPUT PROBLEM" in stdout and "truncated" in stdout
    s = np.load(tmp_path / "out" / "cut.npz")
    done = sorted(set(s["frame_index"].tolist()))
    assert 0 < len(done) < N_FRAMES - 1 and done == list(range(len(done)))
    assert probe(tmp_path / "out" / "cut_overlay.mp4").num_frames == len(done)
    assert len(list((tmp_path / "out" / "smplx").glob("*.npz"))) == len(s["frame_index"])


def test_image_and_folder_inputs(tiny_ckpt, clip, body_model_dir, tmp_path, capsys):
    # a grayscale PNG as a single image: the whole frame is the box
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), cv2.cvtColor(clip.frames[0], cv2.COLOR_RGB2GRAY))
    code = run_cli(tiny_ckpt, grey, tmp_path / "img_out", body_model_dir, "--detector", "whole")
    stdout = capsys.readouterr().out
    assert code == 0 and "1 grayscale frame(s)" in stdout
    out = tmp_path / "img_out"
    assert (out / "smplx" / "000000_0.npz").is_file() and (out / "grey_overlay.jpg").is_file()
    assert json.loads((out / "meta" / "000000_0.json").read_text())["bbox_input"] == [0.0, 0.0, 320.0, 240.0]
    assert np.load(out / "grey.npz")["frame_index"].tolist() == [0]
    # a folder of RGBA PNGs in natural order (2 before 10), boxes by position
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, i in (("2.png", 0), ("10.png", 1), ("11.png", 2)):
        rgba = np.dstack([clip.frames[i], np.full(clip.frames[i].shape[:2], 200, np.uint8)])
        cv2.imwrite(str(folder / name), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    boxes = tmp_path / "b.json"
    boxes.write_text(json.dumps({str(i): [list(p.box) for p in clip.people[i]] for i in range(3)}))
    code = run_cli(tiny_ckpt, folder, tmp_path / "dir_out", body_model_dir, "--boxes", str(boxes), "--multi_person")
    stdout = capsys.readouterr().out
    assert code == 0 and "3 image(s) with alpha" in stdout
    out = tmp_path / "dir_out"
    s = np.load(out / "frames.npz")
    assert s["frame_index"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and float(s["fps"]) == 30.0
    assert probe(out / "frames_overlay.mp4").num_frames == 3


def test_smoothing_without_rendering(tiny_ckpt, clip_files, body_model_dir, full_run, tmp_path, layer):
    """--smooth (implies --track) with --no-render: parameter files only, smoother tracks, meshes rebuilt from the
    smoothed parameters."""
    video, boxes = clip_files
    out = tmp_path / "out"
    code = run_cli(tiny_ckpt, video, out, body_model_dir, "--boxes", str(boxes), "--multi_person", "--smooth",
                   "--no-render", "--glb")
    assert code == 0
    assert not (out / "walk_overlay.mp4").exists() and not (out / "img").exists()
    raw, smooth = np.load(full_run[1] / "walk.npz"), np.load(out / "walk.npz")
    assert np.array_equal(raw["track_id"], smooth["track_id"])
    for tid in range(3):
        jitter = [np.abs(np.diff(d["body_pose"][d["track_id"] == tid], axis=0)).sum() for d in (raw, smooth)]
        assert jitter[1] < 0.8 * jitter[0], jitter
    _, meshes, _ = _glb_meshes(out / "glb" / "000004.glb")
    for name, pos in meshes.items():
        stem = f"000004_{name.removeprefix('track_')}"
        meta = json.loads((out / "meta" / f"{stem}.json").read_text())
        params = {**dict(np.load(out / "smplx" / f"{stem}.npz")), "transl": np.array(meta["scene"]["transl"])}
        assert np.abs(smplx_vertices(layer, params) * [1, -1, -1] - pos).max() < 1e-4


def test_error_mid_way_keeps_completed_frames(tiny_ckpt, clip_files, body_model_dir, tmp_path, monkeypatch, capsys):
    video, boxes = clip_files
    calls = {"n": 0}
    real = NetworkStage.predict

    def failing(self, people):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated out-of-memory")
        return real(self, people)

    monkeypatch.setattr(NetworkStage, "predict", failing)
    out = tmp_path / "out"
    code = run_cli(tiny_ckpt, video, out, body_model_dir, "--boxes", str(boxes), "--multi_person", "--batch-size", "3")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "RuntimeError: simulated out-of-memory" in err[-1] and "stopped after 3 frame(s)" in err[-1]
    s = np.load(out / "walk.npz")  # finalised with the completed frames
    assert s["frame_index"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert probe(out / "walk_overlay.mp4").num_frames == 3
    assert len(list((out / "smplx").glob("*.npz"))) == 9 and (out / "error.log").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--input", "missing.mp4"], "input not found"),
    (["--boxes", "{boxes_bad}"], "boxes file"),
    (["--ckpt", "missing.pth.tar"], "missing.pth.tar"),
])
def test_errors_before_start(tiny_ckpt, clip_files, body_model_dir, tmp_path, capsys, extra, message):
    bad = tmp_path / "bad.json"
    bad.write_text('{"0": [[1, 2, 3]]}')
    args = ["--ckpt", str(tiny_ckpt), "--input", str(clip_files[0]), "--output", str(tmp_path / "out"),
            "--body-model-dir", str(body_model_dir), "--no-progress", "--boxes", str(clip_files[1])]
    for i in range(0, len(extra), 2):
        args[args.index(extra[i]) + 1] = extra[i + 1].format(boxes_bad=bad)
    code = vi.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written


def test_detector_failure_keeps_decoded_frames(tiny_ckpt, clip_files, body_model_dir, tmp_path, monkeypatch,
                                               capsys):
    """An error in the decode/detect thread: the frames it already handed over are finished, then exit code 2."""
    from common.engine.detector import BoxesFileDetector

    real = BoxesFileDetector.detect_batch

    def failing(self, frames, frame_indices=None):
        if min(frame_indices) >= DETECT_CHUNK:
            raise OSError("simulated read error")
        return real(self, frames, frame_indices)

    monkeypatch.setattr(BoxesFileDetector, "detect_batch", failing)
    out = tmp_path / "out"
    code = run_cli(tiny_ckpt, clip_files[0], out, body_model_dir, "--boxes", str(clip_files[1]), "--multi_person")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "OSError: simulated read error" in err[-1]
    assert sorted(set(np.load(out / "walk.npz")["frame_index"].tolist())) == list(range(DETECT_CHUNK))
    assert probe(out / "walk_overlay.mp4").num_frames == DETECT_CHUNK


def test_without_a_renderer_parameters_and_dots(tiny_ckpt, clip_files, body_model_dir, tmp_path, monkeypatch,
                                                capsys):
    """No OpenGL context: every parameter file is still written and the overlay falls back to vertex dots."""
    from common.utils.render import MeshRenderer, RendererUnavailable

    def unavailable(self, *a, **k):
        raise RendererUnavailable("no EGL here (simulated)")

    monkeypatch.setattr(MeshRenderer, "__init__", unavailable)
    out = tmp_path / "out"
    code = run_cli(tiny_ckpt, clip_files[0], out, body_model_dir, "--boxes", str(clip_files[1]), "--multi_person",
                   "--end", "0.25")
    stdout = capsys.readouterr().out
    assert code == 0 and "drew vertex dots instead" in stdout
    assert len(list((out / "smplx").glob("*.npz"))) == 9 and probe(out / "walk_overlay.mp4").num_frames == 3


def test_sigterm_finalises_outputs_and_leaves_no_temporaries(tiny_ckpt, clip_files, body_model_dir, tmp_path):
    """SIGTERM (timeout, docker stop, SLURM's time limit) stops like Ctrl-C: completed frames, the stacked npz and a
    playable overlay video are kept, temporary files removed, exit code 143."""
    import os
    import signal
    import subprocess
    import sys

    from common import paths
    from tests.process_wait import wait_until

    video, boxes = clip_files
    out = tmp_path / "out"
    # --fps 400 repeats the 1 s clip's frames into 400 slots: long enough to be stopped part-way
    cmd = [sys.executable, "-m", "main.video_inference", "--ckpt", str(tiny_ckpt), "--input", str(video), "--output",
           str(out), "--body-model-dir", str(body_model_dir), "--no-progress", "--bbox_thr", "30", "--boxes",
           str(boxes), "--multi_person", "--fps", "400", "--batch-size", "2"]
    proc = subprocess.Popen(cmd, cwd=paths.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(proc, lambda: len(list((out / "smplx").glob("*.npz"))) >= 12, poll=0.05)
    os.kill(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    s = np.load(out / "walk.npz")
    done = sorted(set(s["frame_index"].tolist()))
    assert 4 <= len(done) < 400 and done == list(range(len(done)))
    assert probe(out / "walk_overlay.mp4").num_frames == len(done)
    assert len(list((out / "smplx").glob("*.npz"))) == len(s["frame_index"])
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_nothing_decoded_is_an_error(tiny_ckpt, clip_files, body_model_dir, tmp_path, capsys):
    video, boxes = clip_files
    code = run_cli(tiny_ckpt, video, tmp_path / "out", body_model_dir, "--boxes", str(boxes), "--start", "50")
    err = capsys.readouterr().err
    assert code == 2 and "no frame was processed" in err and "--start 50" in err


def test_boxes_past_the_end_and_left_of_the_frame(tiny_ckpt, clip, clip_files, body_model_dir, tmp_path, capsys):
    video, _ = clip_files
    boxes = tmp_path / "b.json"
    boxes.write_text(json.dumps({"0": [list(p.box) for p in clip.people[0]] + [[-200, 10, 80, 200]],
                                 "1": [[10, -900, 80, 200]], "500": [[10, 10, 80, 200]], "501": []}))
    code = run_cli(tiny_ckpt, video, tmp_path / "out", body_model_dir, "--boxes", str(boxes), "--multi_person",
                   "--no-render")
    stdout = capsys.readouterr().out
    assert code == 0
    assert "2 box(es) outside the frame skipped" in stdout
    assert "boxes for 1 frame(s) after the last processed frame 11 (from frame 500)" in stdout
    s = np.load(tmp_path / "out" / "walk.npz")
    assert s["frame_index"].tolist() == [0] * len(clip.people[0])  # the outside boxes made no person


def test_truncated_jpeg_in_a_folder_is_skipped_and_named(tiny_ckpt, clip, body_model_dir, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.jpg"), cv2.cvtColor(clip.frames[i], cv2.COLOR_RGB2BGR))
    data = (folder / "1.jpg").read_bytes()
    (folder / "1.jpg").write_bytes(data[: len(data) // 2])
    code = run_cli(tiny_ckpt, folder, tmp_path / "out", body_model_dir, "--detector", "whole", "--no-render")
    stdout = capsys.readouterr().out
    assert code == 0 and "INPUT PROBLEM" in stdout and "1.jpg" in stdout
    assert sorted(set(np.load(tmp_path / "out" / "frames.npz")["frame_index"].tolist())) == [0, 2]
    single = run_cli(tiny_ckpt, folder / "1.jpg", tmp_path / "out1", body_model_dir, "--detector", "whole")
    assert single == 2 and "truncated" in capsys.readouterr().err


def test_detection_schedule_follows_the_people(tiny_ckpt, clip, clip_files, body_model_dir, full_run, tmp_path,
                                               capsys):
    """--detect-every 4 with the boxes file as the detector: the detector runs on a fraction of the frames, the
    person count of every frame equals the every-frame run's (the empty frame, the person leaving, the tiny boxes),
    and the interpolated boxes follow the true boxes (IoU >= 0.7) on the frames it skipped."""
    video, boxes = clip_files
    code = run_cli(tiny_ckpt, video, tmp_path / "out", body_model_dir, "--boxes", str(boxes), "--multi_person",
                   "--track", "--no-render", "--detect-every", "4")
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    s, ref = np.load(tmp_path / "out" / "walk.npz"), np.load(full_run[1] / "walk.npz")
    detected = sorted(set(s["frame_index"][s["detected"]].tolist()))
    assert "boxes interpolated on the others" in stdout and len(detected) < N_FRAMES - 2
    for f in range(N_FRAMES):
        assert (s["frame_index"] == f).sum() == (ref["frame_index"] == f).sum(), f
    skipped = ~s["detected"]
    assert skipped.sum() >= 9
    for i in np.flatnonzero(skipped):
        f, box = int(s["frame_index"][i]), s["bbox_input"][i]
        truth = np.array([p.box for p in clip.people[f]])
        iou = box_iou(xywh_to_xyxy(box[None]), xywh_to_xyxy(truth)).max()
        assert iou >= 0.7, (f, box, truth)


def test_slurm_inference_script_by_name(tiny_ckpt, clip_files, body_model_dir, tmp_path):
    """main/slurm_inference.sh VIDEO FORMAT FPS smpler_x_s32 under real srun: the name is resolved from the Hugging
    Face cache on the submitting host (offline), the job writes the original's folders plus the animation."""
    import os
    import shutil
    import subprocess
    import sys

    from common import paths
    from tests.slurm_gate import require_slurm
    from tests.test_weights import hub_cache

    require_slurm()
    demo = tmp_path / "demo"
    (demo / "videos").mkdir(parents=True)
    shutil.copy(clip_files[0], demo / "videos" / "walk.mp4")
    hub_cache(tmp_path / "hf", "caizhongang/SMPLer-X", "smpler_x_s32.pth.tar", tiny_ckpt.read_bytes())
    env = dict(os.environ, GRES="", CPUS_PER_TASK="1", OMP_NUM_THREADS="1", PYTHON=sys.executable,
               DEMO_DIR=str(demo), HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1",
               SMPLERX_PRETRAINED_DIR=str(tmp_path / "none"))
    out = subprocess.run(["bash", "main/slurm_inference.sh", "walk", "mp4", "12", "smpler_x_s32", "--boxes",
                          str(clip_files[1]), "--multi_person", "--track", "--body-model-dir", str(body_model_dir),
                          "--bbox_thr", "30", "--no-progress"], cwd=paths.REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    res = demo / "results" / "walk"
    assert (res / "walk.npz").is_file() and (res / "walk_overlay.mp4").is_file() and (res / "walk.glb").is_file()
    assert len(list((res / "mesh").glob("*.obj"))) == 33 and len(list((res / "bvh").glob("*.bvh"))) == 3
    bad = subprocess.run(["bash", "main/slurm_inference.sh", "walk", "mp4", "12", "smpler_x_l32"],
                         cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "smpler_x_l32.pth.tar" in bad.stderr and "hf download" in bad.stderr


def test_animation_of_the_clip_is_valid_and_replays_the_people(full_run, body_model_dir):
    """The pipeline's <stem>.glb (--track): Khronos-valid; played back independently at each frame's time (time 0 =
    the overlay's first frame), every track's skinned mesh is the SMPL-X mesh of that frame's parameters at its
    scene translation (with the track's baked shape) within docs/exports.md's bounds; one BVH per track."""
    import bvhio

    from common.body_model import SMPLXLayer
    from common.export import tracks_from_stacked
    from common.export.gltf import opencv_to_gltf
    from tests.gltf_skinning import GltfPlayer
    from tests.test_export_animation import FULL_MAX_MM, FULL_MEAN_MM, exact_smplx, run_validator

    _, out, _ = full_run
    (report,) = run_validator([out / "walk.glb"])
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"][:10]
    assert report["info"]["animationCount"] == 1 and report["info"]["hasSkins"]
    s = dict(np.load(out / "walk.npz"))
    tracks = tracks_from_stacked(s)
    assert [t.track_id for t in tracks] == [0, 1, 2]
    player = GltfPlayer(out / "walk.glb")
    layer = SMPLXLayer(body_model_dir).to(torch.float64)
    start = float(s["time_s"].min())
    errors = []
    for t in tracks:
        ref, _ = exact_smplx(layer, t)
        for i in range(len(t)):
            v = opencv_to_gltf(player.mesh_vertices(f"track_{t.track_id}_body", float(t.time_s[i] - start)))
            errors.append(np.linalg.norm(v - ref[i], axis=1) * 1000)
        bvh = bvhio.readAsBvh(str(out / "bvh" / f"walk_track{t.track_id}.bvh"))
        assert bvh.FrameCount == t.frame_index[-1] - t.frame_index[0] + 1
    errors = np.concatenate(errors)
    assert errors.mean() < FULL_MEAN_MM and errors.max() < FULL_MAX_MM, (errors.mean(), errors.max())


def test_scene_meshes_look_like_the_overlay(full_run, layer, body_model_dir):
    """The exports' rigid placement in the scene camera against the overlay's exact crop-camera projection: per
    person the silhouettes agree (only the perspective of the wider camera differs), so what a user sees in the
    exported scene is what the overlay showed."""
    from common.utils.render import MeshRenderer

    _, out, _ = full_run

    class Rec:
        def __init__(self, vertices, focal, princpt):
            self.vertices, self.focal, self.princpt = vertices, tuple(focal), tuple(princpt)

    ious = []
    with MeshRenderer(320, 240) as renderer:
        for frame in (0, 4, 9):
            for path in sorted((out / "meta").glob(f"{frame:06d}_*.json")):
                meta = json.loads(path.read_text())
                own = Rec(smplx_vertices(layer, dict(np.load(out / "smplx" / f"{path.stem}.npz"))), meta["focal"],
                          meta["princpt"])
                _, exact = render_people(renderer, [own], layer.faces)
                scene = load_obj_vertices(out / "mesh" / f"{path.stem}.obj").astype(np.float32)
                _, placed, _ = renderer.render([scene], layer.faces, (320.0, 320.0), (160.0, 120.0))
                ious.append(silhouette_iou(exact, placed))
    assert min(ious) > 0.8 and np.mean(ious) > 0.9, ious
