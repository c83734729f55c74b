"""Person detectors and the original demo's box post-processing (common/engine/detector.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from common.engine.detector import (
    BoxesFileDetector,
    TorchvisionDetector,
    WholeFrameDetector,
    box_iou,
    largest_box,
    nms,
    postprocess,
    size_filter,
)
from common.errors import CheckpointError, InputError


def test_box_iou_hand_computed() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 5, 15, 15], [10, 0, 20, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(box_iou(a, b), [[25 / 175, 0.0, 0.0, 1.0]])
    # the original's +1 widths: 11 x 11 boxes, 6 x 6 and 1 x 11 intersections
    np.testing.assert_allclose(box_iou(a, b, plus_one=True), [[36 / 206, 11 / 231, 0.0, 1.0]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)
    assert box_iou(np.array([[0, 0, 0, 0]]), np.array([[0, 0, 0, 0]]))[0, 0] == 0.0  # empty union


def test_nms_hand_computed() -> None:
    boxes = np.array([
        [0, 0, 100, 300],  # 0: best score
        [10, 0, 110, 300],  # 1: IoU with 0 = 90/110 = 0.82 -> suppressed
        [200, 0, 300, 300],  # 2: disjoint -> kept
        [0, 150, 100, 300],  # 3: inside 0, IoU = 0.5 exactly -> suppressed (kept only if iou < thr)
        [250, 0, 350, 300],  # 4: IoU with 2 = 50/150 = 0.33 -> kept
    ], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.75, 0.6])
    assert nms(boxes, scores, 0.5).tolist() == [0, 2, 4]
    assert nms(boxes, scores, 0.51).tolist() == [0, 3, 2, 4]  # 0.5 < 0.51: box 3 survives; best score first
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]  # 0.33 >= 0.3: box 4 goes too
    # equal scores: the larger box is visited first, as the original's area-sorted input
    assert nms(boxes[[3, 0]], np.array([0.5, 0.5]), 0.4).tolist() == [1]
    # +1 widths change IoU at the threshold: 100x300 boxes shifted by 50 -> 0.3333 vs 51*301/(2*101*301-51*301)
    pair = np.array([[0, 0, 100, 300], [50, 0, 150, 300]])
    iou_plus = 51 / (2 * 101 - 51)
    thr = (1 / 3 + iou_plus) / 2
    assert nms(pair, np.array([0.9, 0.8]), thr).tolist() == [0, 1]
    assert nms(pair, np.array([0.9, 0.8]), thr, plus_one=True).tolist() == [0]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_size_filter_and_largest_box() -> None:
    boxes = np.array([[0, 0, 50, 150], [0, 0, 49.9, 500], [0, 0, 300, 149.9], [10, 10, 70, 170]])
    assert size_filter(boxes, 50).tolist() == [0, 3]  # width >= 50 and height >= 150
    assert size_filter(boxes, 20).tolist() == [0, 1, 2, 3]  # width >= 20 and height >= 60: all
    assert largest_box(boxes).tolist() == [2]
    assert largest_box(np.zeros((0, 4))).tolist() == []


def test_size_filter_thresholds_exact() -> None:
    boxes = np.array([[0, 0, 20, 60], [0, 0, 19.99, 60], [0, 0, 20, 59.99]])
    assert size_filter(boxes, 20).tolist() == [0]


def test_postprocess_single_and_multi_person() -> None:
    boxes = np.array([
        [0, 0, 200, 600],  # 0: largest, low score
        [10, 0, 205, 600],  # 1: near-duplicate of 0 (IoU 0.93), a bit smaller, higher score
        [400, 0, 500, 400],  # 2: another person
        [700, 0, 730, 90],  # 3: too small (30 x 90 < 50 x 150)
    ], dtype=np.float32)
    scores = np.array([0.3, 0.9, 0.8, 0.99], dtype=np.float32)
    assert postprocess(boxes, scores).tolist() == [0]  # single person: the largest box, whatever its score
    assert postprocess(boxes, scores, score_thr=0.5).tolist() == [1]
    assert postprocess(boxes, scores, multi_person=True).tolist() == [1, 2]  # NMS then size rule, by score
    assert postprocess(boxes, scores, multi_person=True, bbox_thr=10).tolist() == [3, 1, 2]
    assert postprocess(boxes[3:], scores[3:]).tolist() == []  # the largest box is too small: nobody


def test_whole_frame_detector() -> None:
    d = WholeFrameDetector()
    boxes, scores = d(np.zeros((48, 64, 3), np.uint8))
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    np.testing.assert_array_equal(boxes, [[0, 0, 64, 48]])
    np.testing.assert_array_equal(scores, [1.0])
    with pytest.raises(InputError, match="uint8 RGB"):
        d(np.zeros((48, 64), np.uint8))
    assert len(d.detect_batch([np.zeros((8, 8, 3), np.uint8)] * 3)) == 3


def test_boxes_file_detector(tmp_path: Path) -> None:
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({"0": [[100, 40, 200, 480, 0.98], [420, 60, 180, 450]], "2": [], "10": [[1, 2, 3, 4]]}))
    d = BoxesFileDetector(path)
    frame = np.zeros((8, 8, 3), np.uint8)
    boxes, scores = d(frame, frame_index=0)
    np.testing.assert_allclose(boxes, [[100, 40, 300, 520], [420, 60, 600, 510]])  # xywh -> xyxy
    np.testing.assert_allclose(scores, [0.98, 1.0], rtol=1e-6)
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    for idx in (1, 2, 99):  # absent or empty frames: no boxes
        b, s = d(frame, frame_index=idx)
        assert b.shape == (0, 4) and s.shape == (0,)
    out = d.detect_batch([frame, frame], [10, 0])
    np.testing.assert_allclose(out[0][0], [[1, 2, 4, 6]])
    boxes[:] = 0  # callers get copies
    assert d(frame, frame_index=0)[0][0, 0] == 100
    with pytest.raises(ValueError, match="frame index"):
        d(frame)
    path.write_text(json.dumps({"3": [[10, 20, 30, 40]]}))
    np.testing.assert_allclose(BoxesFileDetector(path, box_format="xyxy")(frame, 3)[0], [[10, 20, 30, 40]])


@pytest.mark.parametrize("content, match", [
    ("[1, 2]", "JSON object"),
    ('{"a": []}', "not a frame index"),
    ('{"-1": []}', "not a frame index"),
    ('{"0": [[1, 2, 3]]}', r"not \[x, y, w, h\]"),
    ('{"0": [[1, 2, 3, "4"]]}', r"not \[x, y, w, h\]"),
    ('{"0": [1, 2, 3, 4]}', r"not \[x, y, w, h\]"),
    ('{"0": {"x": 1}}', "list of boxes"),
    ('{"0": [[1, 2, 0, 4]]}', "positive width"),
    ("{not json", "cannot read"),
])
def test_boxes_file_errors(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "boxes.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match):
        BoxesFileDetector(path)


def test_boxes_file_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        BoxesFileDetector(tmp_path / "nope.json")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Empty pretrained_models/ and torch hub folders (TORCH_HOME, as a user sets it), downloads off; any download
    attempt fails the test."""
    import urllib.request

    import torch

    from common.engine import weights

    def forbidden(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", forbidden)
    monkeypatch.setattr(torch.hub, "download_url_to_file", forbidden)
    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("SMPLERX_OFFLINE", "1")
    monkeypatch.setattr(weights.paths, "PRETRAINED_DIR", tmp_path / "pretrained_models")
    return tmp_path


def test_torchvision_detector_missing_weights(no_network: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        TorchvisionDetector(arch="fasterrcnn_resnet50_fpn")
    msg = str(info.value)
    assert "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth" in msg and "downloads are off" in msg
    assert str(no_network / "pretrained_models") in msg
    assert str(no_network / "torch_home" / "hub" / "checkpoints") in msg
    assert "https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth" in msg
    with pytest.raises(CheckpointError, match="not found"):
        TorchvisionDetector(weights=no_network / "missing.pth")
    bad = no_network / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot load"):
        TorchvisionDetector(weights=bad, min_size=64, max_size=96)
    with pytest.raises(InputError, match="unknown detector"):
        TorchvisionDetector(arch="yolo")


class _FakeModel:
    """Stands in for the network: returns a person (label 1), a car (3) and a person per image; records batches."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, images):
        import torch

        self.batches.append(len(images))
        for img in images:
            assert img.dtype == torch.float32 and img.shape[0] == 3 and float(img.max()) <= 1.0
        return [{"boxes": torch.tensor([[1.0, 2, 30, 40], [5, 5, 9, 9], [3, 4, 50, 60]]),
                 "labels": torch.tensor([1, 3, 1]), "scores": torch.tensor([0.9, 0.99, 0.4])} for _ in images]


def test_torchvision_detector_loads_cached_weights_and_keeps_persons(no_network: Path) -> None:
    """A (randomly initialised) state dict in torchvision's cache is found and loaded; output keeps class 1 only."""
    import torch
    import torchvision.models.detection as tvd

    hub = no_network / "torch_home" / "hub" / "checkpoints"  # torchvision's cache layout under TORCH_HOME
    hub.mkdir(parents=True)
    weights = hub / "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"  # the weights enum's file name
    torch.manual_seed(0)
    torch.save(tvd.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=91)
               .state_dict(), weights)
    try:
        d = TorchvisionDetector(min_size=64, max_size=96, batch_size=2)  # the default architecture
    finally:
        weights.unlink()  # 75 MB
    assert d.weights_path == weights
    boxes, scores = d(np.zeros((48, 64, 3), np.uint8))  # the real network runs (random weights: any count)
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4 and scores.shape == (len(boxes),)
    d.model = _FakeModel()
    frames = [np.full((40, 60, 3), 255, np.uint8)] * 3
    out = d.detect_batch(frames)
    assert d.model.batches == [2, 1]
    for boxes, scores in out:
        np.testing.assert_allclose(boxes, [[1, 2, 30, 40], [3, 4, 50, 60]])
        np.testing.assert_allclose(scores, [0.9, 0.4], rtol=1e-6)
        assert boxes.dtype == np.float32 and scores.dtype == np.float32
