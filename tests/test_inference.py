"""Single-image inference through the real entry point: outputs, their meaning, and every error path."""

import json

import cv2
import numpy as np
import pytest
import torch

from common.engine.checkpoint import network_checkpoint, save_checkpoint
from common.utils.image import generate_patch_image, process_bbox
from common.utils.io import load_obj_vertices
from main import inference


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """An official-format checkpoint (no config inside) of the tiny model with input-dependent outputs."""
    from common.config import load_config
    from common.engine.demo_assets import IDENTITY_6D, UPRIGHT_6D
    from common.nets import SMPLerX

    torch.manual_seed(0)
    m = SMPLerX(load_config("smpler_x_tiny").model)
    m.init_weights()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        m.body_regressor.root_pose_out[0].bias += torch.tensor(UPRIGHT_6D)
        m.body_regressor.body_pose_out[0].bias += torch.tensor(IDENTITY_6D * 21)
        m.body_regressor.cam_out[0].bias[2] = 1.0
    return save_checkpoint({"epoch": 0, "network": network_checkpoint(m)}, tmp_path_factory.mktemp("ck") / "t.pth.tar")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    rng = np.random.default_rng(0)
    img = (rng.random((300, 400, 3)) * 255).astype(np.uint8)
    img = cv2.GaussianBlur(img, (9, 9), 3)
    path = tmp_path_factory.mktemp("img") / "person.jpg"
    cv2.imwrite(str(path), img)
    return path


def _run(tmp_path, ckpt, image, body_model_dir, *extra):
    out = tmp_path / "out"
    code = inference.main(["--ckpt", str(ckpt), "--input", str(image), "--output", str(out),
                           "--body-model-dir", str(body_model_dir), *extra])
    return code, out


def test_outputs_and_their_meaning(tmp_path, tiny_ckpt, image, body_model_dir):
    import smplx

    code, out = _run(tmp_path, tiny_ckpt, image, body_model_dir, "--bbox", "150,40,90,230", "--bbox", "-20,100,80,250")
    assert code == 0
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == ["img/person.jpg", "mesh/person_0.obj", "mesh/person_1.obj", "meta/person_0.json",
                     "meta/person_1.json", "smplx/person_0.npz", "smplx/person_1.npz"]
    layer = smplx.create(str(body_model_dir), "smplx", gender="neutral", use_pca=False, use_face_contour=True)
    for k, box in enumerate([(150, 40, 90, 230), (-20, 100, 80, 250)]):
        p = np.load(out / "smplx" / f"person_{k}.npz")
        shapes = {"global_orient": (1, 3), "body_pose": (21, 3), "left_hand_pose": (15, 3), "right_hand_pose": (15, 3),
                  "jaw_pose": (1, 3), "leye_pose": (1, 3), "reye_pose": (1, 3), "betas": (1, 10),
                  "expression": (1, 10), "transl": (1, 3)}
        assert {key: p[key].shape for key in p.files} == shapes
        assert not p["leye_pose"].any() and not p["reye_pose"].any()
        # the saved parameters reproduce the saved mesh through an independently built SMPL-X layer
        t = {key: torch.from_numpy(p[key]).reshape(1, -1) for key in p.files}
        with torch.no_grad():
            v = layer(**t).vertices[0].numpy()
        mesh = load_obj_vertices(out / "mesh" / f"person_{k}.obj")
        assert mesh.shape == (10475, 3) and np.abs(v - mesh).max() < 2e-5
        # the camera: the processed box, focal and principal point as the original demo computes them
        meta = json.loads((out / "meta" / f"person_{k}.json").read_text())
        pb = process_bbox(box, 400, 300, 0.75, 1.25)
        assert np.allclose(meta["bbox"], pb) and meta["bbox_input"] == list(map(float, box))
        assert np.allclose(meta["focal"], [5000 / 192 * pb[2], 5000 / 256 * pb[3]])
        assert np.allclose(meta["princpt"], [96 / 192 * pb[2] + pb[0], 128 / 256 * pb[3] + pb[1]])
        # projecting the mesh with that camera equals projecting with the network's virtual camera, mapped from
        # the 192x256 input back to the image through the crop box
        uv = mesh[:, :2] / mesh[:, 2:] * np.array(meta["focal"]) + np.array(meta["princpt"])
        uv_virtual = mesh[:, :2] / mesh[:, 2:] * 5000 + np.array([96, 128])
        assert np.allclose(uv, uv_virtual / np.array([192, 256]) * pb[2:] + pb[:2], atol=1e-3)


def test_whole_image_is_the_default_box(tmp_path, tiny_ckpt, image, body_model_dir):
    code, out = _run(tmp_path, tiny_ckpt, image, body_model_dir, "--no-vis")
    assert code == 0 and not (out / "img").exists()
    meta = json.loads((out / "meta" / "person_0.json").read_text())
    assert meta["bbox_input"] == [0.0, 0.0, 400.0, 300.0]


def test_crop_matches_the_original_preprocessing(tiny_ckpt, image, body_model_dir):
    """The network input is the 1.25x 3:4 box warped bilinearly from the float image, divided by 255."""
    from common.engine.predictor import Predictor, load_model
    from common.utils.image import load_image

    model, cfg = load_model(tiny_ckpt, body_model_dir=body_model_dir)
    img = load_image(image)
    crop, box = Predictor(model, cfg).crop(img, (150, 40, 90, 230))
    # independent construction of the same affine map from the box corners
    x, y, w, h = box
    src = np.float32([[x + w / 2, y + h / 2], [x + w / 2, y + h], [x + w, y + h / 2]])
    dst = np.float32([[192, 256], [192, 512], [384, 256]])
    ref = cv2.warpAffine(img, cv2.getAffineTransform(src, dst), (384, 512), flags=cv2.INTER_LINEAR) / 255
    # float32 rounding of the matrix can move OpenCV's 1/32-px sample grid by one step: tiny differences only,
    # while a wrong centre, scale or orientation would differ everywhere
    diff = np.abs(crop - ref.transpose(2, 0, 1))
    assert crop.shape == (3, 512, 384) and diff.max() < 0.01 and diff.mean() < 1e-4
    patch, trans, inv = generate_patch_image(img, box, 1.0, 0.0, False, (512, 384))
    assert np.allclose(np.vstack([inv, [0, 0, 1]]) @ np.vstack([trans, [0, 0, 1]]), np.eye(3), atol=1e-4)


ERRORS = [
    (["--input", "missing.jpg"], "image not found"),
    (["--bbox", "1,2,3"], "is not X,Y,W,H"),
    (["--bbox", "10,10,0,50"], "degenerate"),
    (["--bbox", "1000,1000,50,50"], "entirely outside"),
    (["--bbox", "-200,10,80,200"], "entirely outside"),  # left of the image: clipping alone would move it inside
    (["--bbox", "10,-900,80,200"], "entirely outside"),  # above the image
    (["--bbox", "10,10,50,50", "--config", "smpler_x_s32"], "does not fit the model"),
    (["--device", "cuda:0"], "CUDA is not available"),
]


@pytest.mark.parametrize("extra,message", ERRORS)
def test_errors_are_one_line_and_write_nothing(tmp_path, tiny_ckpt, image, body_model_dir, capsys, extra, message):
    if "cuda" in " ".join(extra) and torch.cuda.is_available():
        pytest.skip("CUDA present")
    args = ["--ckpt", str(tiny_ckpt), "--input", str(image), "--output", str(tmp_path / "out"),
            "--body-model-dir", str(body_model_dir)]
    for i in range(0, len(extra), 2):  # later flags replace earlier ones of the same name
        if extra[i] in args and extra[i] != "--bbox":
            args[args.index(extra[i]) + 1] = extra[i + 1]
        else:
            args += extra[i: i + 2]
    assert inference.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_checkpoint_and_missing_body_model(tmp_path, tiny_ckpt, image, body_model_dir, capsys):
    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"\x00" * 1000)
    code, out = _run(tmp_path, junk, image, body_model_dir)
    assert code == 2 and "cannot read checkpoint" in capsys.readouterr().err and not out.exists()
    empty = tmp_path / "no_models"
    empty.mkdir()
    code, out = _run(tmp_path, tiny_ckpt, image, empty)
    err = capsys.readouterr().err
    assert code == 2 and "SMPLX_NEUTRAL.npz" in err and str(empty.resolve()) in err and not out.exists()
    unreadable = tmp_path / "broken.jpg"
    unreadable.write_bytes(b"not really a jpeg")
    code, out = _run(tmp_path, tiny_ckpt, unreadable, body_model_dir)
    assert code == 2 and "cannot read image" in capsys.readouterr().err and not out.exists()


def test_grey_and_alpha_images(tmp_path, tiny_ckpt, body_model_dir):
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), (np.random.default_rng(0).random((200, 150)) * 255).astype(np.uint8))
    rgba = tmp_path / "rgba.png"
    cv2.imwrite(str(rgba), np.full((200, 150, 4), 128, np.uint8))
    for img in (grey, rgba):
        code, out = _run(tmp_path, tiny_ckpt, img, body_model_dir)
        assert code == 0 and (out / "smplx" / f"{img.stem}_0.npz").is_file()


def test_left_and_top_boxes_partly_inside_are_clipped_not_refused(tmp_path, tiny_ckpt, image, body_model_dir):
    code, out = _run(tmp_path, tiny_ckpt, image, body_model_dir, "--bbox", "-78,10,80,200", "--bbox", "10,-198,80,200")
    assert code == 0 and len(list((out / "smplx").glob("*.npz"))) == 2


def test_nan_weights_are_refused(tmp_path, tiny_ckpt, image, body_model_dir, capsys):
    ck = torch.load(tiny_ckpt, weights_only=True)
    key = "module.body_regressor.cam_out.0.weight"
    ck["network"][key] = ck["network"][key].clone()
    ck["network"][key][0, 0] = float("nan")
    bad = save_checkpoint(ck, tmp_path / "nan.pth.tar")
    code, out = _run(tmp_path, bad, image, body_model_dir)
    err = capsys.readouterr().err
    assert code == 2 and "NaN or infinite weights" in err and "body_regressor.cam_out.0.weight" in err
    assert not out.exists()


def test_truncated_jpeg_is_refused(tmp_path, tiny_ckpt, image, body_model_dir, capsys):
    from common.utils.image import jpeg_truncated

    data = image.read_bytes()
    assert not jpeg_truncated(data) and not jpeg_truncated(data + b"trailing bytes after the image")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert jpeg_truncated(cut.read_bytes())
    assert cv2.imread(str(cut)) is not None  # what the check is for: OpenCV decodes it, the rest grey
    code, out = _run(tmp_path, tiny_ckpt, cut, body_model_dir)
    err = capsys.readouterr().err
    assert code == 2 and "truncated" in err and str(cut) in err and not out.exists()


def _immutable(folder):
    """chattr +i: not writable even for root (the tests run as root in CI); None where unsupported."""
    import subprocess

    ok = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    return ok


@pytest.mark.parametrize("case", ["file", "under_file", "blocked_subdir", "unwritable"])
def test_bad_output_folder_is_named_before_the_model_loads(tmp_path, tiny_ckpt, image, body_model_dir, capsys,
                                                           monkeypatch, case):
    import subprocess

    import common.engine.predictor as predictor

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(predictor, "load_model", no_model)
    target = tmp_path / "out"
    if case == "file":
        target.write_text("x")
    elif case == "under_file":
        (tmp_path / "f").write_text("x")
        target = tmp_path / "f" / "out"
    elif case == "blocked_subdir":
        target.mkdir()
        (target / "mesh").write_text("x")
    else:
        target.mkdir()
        if not _immutable(target):
            pytest.skip("chattr +i unsupported here")
    try:
        code = inference.main(["--ckpt", str(tiny_ckpt), "--input", str(image), "--output", str(target),
                               "--body-model-dir", str(body_model_dir)])
    finally:
        if case == "unwritable":
            subprocess.run(["chattr", "-i", str(target)], check=True)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --output") and "\n" not in err, err
    assert {"file": "is a file", "under_file": "which is a file", "blocked_subdir": "mesh",
            "unwritable": "cannot write"}[case] in err
    if case in ("blocked_subdir", "unwritable"):
        assert sorted(p.name for p in target.iterdir()) == (["mesh"] if case == "blocked_subdir" else [])
