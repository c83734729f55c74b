"""The README's main job (main.demo: data -> train -> evaluate -> video) end to end at a tiny size, and the synthetic
clip it processes."""

import json

import av
import numpy as np
import pytest


def _frame_count(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_synthetic_clip_ground_truth_reproduces_boxes(tmp_path, body_model_dir):
    import torch

    from common.body_model import SMPLXLayer
    from data.synthetic_clip import write_synthetic_clip

    files = write_synthetic_clip(tmp_path, body_model_dir, num_frames=4, num_people=2, img_size=(120, 160))
    assert _frame_count(files["video"]) == 4
    gt = np.load(files["gt"])
    boxes = json.loads(files["boxes"].read_text())
    assert sorted(boxes, key=int) == ["0", "1", "2", "3"] and all(len(b) == 2 for b in boxes.values())
    layer = SMPLXLayer(body_model_dir)
    t = {k: torch.from_numpy(gt[k][2].reshape(2, -1)) for k in ("global_orient", "body_pose", "left_hand_pose",
                                                                 "right_hand_pose", "jaw_pose", "betas", "expression",
                                                                 "transl")}
    with torch.no_grad():
        v, _ = layer(t["global_orient"], t["body_pose"], t["left_hand_pose"], t["right_hand_pose"], t["jaw_pose"],
                     t["betas"], t["expression"], t["transl"])
    uv = v.numpy()[..., :2] / v.numpy()[..., 2:] * gt["focal"] + gt["princpt"]
    for j in range(2):  # the boxes file and the GT are the extents of the GT meshes' projections
        lo, hi = uv[j].min(0), uv[j].max(0)
        np.testing.assert_allclose(boxes["2"][j][:4], [*lo, *(hi - lo)], atol=0.05)
        np.testing.assert_allclose(gt["boxes"][2, j], [*lo, *(hi - lo)], atol=0.05)
    # the two people move (sideways walk and pose blend) and keep their shape
    assert np.abs(gt["transl"][-1] - gt["transl"][0]).max() > 0.1
    np.testing.assert_array_equal(gt["betas"][0], gt["betas"][-1])


@pytest.mark.timeout(600)
def test_demo_runs_train_evaluate_video(tmp_path, capsys):
    from main import demo

    out = tmp_path / "demo"
    args = ["--output", str(out), "--train-images", "8", "--test-images", "4", "--epochs", "1", "--frames", "6",
            "--no-progress"]
    assert demo.main(args) == 0
    text = capsys.readouterr().out
    assert (out / "train" / "model_dump" / "snapshot_0.pth.tar").is_file()
    for tag in ("untrained", "trained"):
        res = json.loads((out / "eval" / tag / "result.json").read_text())
        assert res["num_samples"] == 4 and np.isfinite(res["metrics"]["mpvpe_all"])
    overlay = out / "video" / "synthetic_clip_overlay.mp4"
    assert _frame_count(overlay) == 6
    stacked = np.load(out / "video" / "synthetic_clip.npz")
    assert stacked["transl"].shape == (12, 1, 3) and sorted(set(stacked["track_id"].tolist())) == [0, 1]
    assert "mpvpe_all" in text and str(overlay) in text and "silhouette IoU" in text
    # the main job's animation of the clip: one skinned character per track, keyed over the 6 frames
    import pygltflib

    glb = out / "video" / "synthetic_clip.glb"
    doc = pygltflib.GLTF2.load(str(glb))
    assert str(glb) in text and len(doc.skins) == 2 and len(doc.animations) == 1 and doc.cameras
    assert sorted(p.name for p in (out / "video" / "bvh").iterdir()) == ["synthetic_clip_track0.bvh",
                                                                         "synthetic_clip_track1.bvh"]
    assert not (out / "video_untrained" / "synthetic_clip.glb").exists()

    # a second run reuses the finished training; other settings in the same folder are refused with a clear error
    assert demo.main(args) == 0
    assert "reusing the finished run" in capsys.readouterr().out
    assert demo.main([*args[:3], "16", *args[4:]]) == 2
    assert "other settings" in capsys.readouterr().err


def test_silhouette_iou_is_one_for_the_truth_and_drops_when_shifted(tmp_path, body_model_dir):
    from data.synthetic_clip import PARAM_KEYS, silhouette_iou, write_synthetic_clip

    files = write_synthetic_clip(tmp_path, body_model_dir, num_frames=2, num_people=2, img_size=(120, 160))
    gt = np.load(files["gt"])
    rows = [(f, j) for f in range(2) for j in range(2)]

    def stacked(path, shift_x):
        # the layout of main.video_inference's <video>.npz, with the ground truth as the estimate
        est = {k: np.stack([gt[k][f, j] for f, j in rows])[:, None] for k in PARAM_KEYS}
        est["transl"] = est["transl"] + np.array([shift_x, 0.0, 0.0], np.float32)
        np.savez(path, **est, frame_index=np.array([f for f, _ in rows]), bbox_input=np.stack(
            [gt["boxes"][f, j] for f, j in rows]), focal=np.tile(gt["focal"], (4, 1)),
            princpt=np.tile(gt["princpt"], (4, 1)), image_size=np.array([160, 120]))
        return path

    exact = silhouette_iou(files["gt"], stacked(tmp_path / "exact.npz", 0.0), body_model_dir)
    assert exact["count"] == 4 and exact["min"] > 0.999
    shifted = silhouette_iou(files["gt"], stacked(tmp_path / "shifted.npz", 0.15), body_model_dir)
    assert 0.05 < shifted["mean"] < 0.9
